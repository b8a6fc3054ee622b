"""``reslab reproduce``: the paper's experiments, one command each, on top of the training API.

Each experiment module has ``run(ctx) -> Path`` (the report) and a docstring that is its ``--help``. Runs go to
``DIR/runs/<run>/`` and are shared by the experiments; each experiment writes ``DIR/<experiment>/report.md`` with its
figures, results.json and results.csv.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from reslab.errors import ConfigError

# name -> what it reproduces (the module is `module_of(name)`)
EXPERIMENTS = {
    "degradation": "Fig. 6: plain vs ResNet at 20-56 layers (110 in the paper budget)",
    "depth": "Table 6: ResNet-20..56 (cpu budget), ..110 (paper; 1202 with --with-1202), best (mean±std) of seeds",
    "shortcuts": "Table 3's options A/B/C, on CIFAR ResNet-32 and ResNet-56",
    "responses": "Fig. 7: std of the 3x3 layers' responses (reuses degradation's runs)",
    "highway": "plain vs residual vs highway at 20 and 56 layers",
    "table1": "Table 1 / Table 6: parameters and multiply-adds (no training)",
    "construction": "Sec. 1/3.1: plain-20 + identity units = a plain-56 as good as plain-20, which SGD does not find",
    "signals": "Sec. 4.1: forward stds and gradient norms by layer, at initialisation and trained (no vanishing)",
    "single-layer": "Sec. 3.1: residual units of one 3x3 layer against plain and two-layer units at 20 and 56 layers",
    "detection": "Sec. 4.3: Faster R-CNN C4 on ResNet and plain backbones, on canvases of the data's objects (mAP)",
}


def reproduce(name: str, *, data: str, out: str | Path, budget: str = "cpu", seeds: int = 1,
              data_dir: str | None = None, image_size: int | None = None, strict_data: bool = False,
              device: str = "auto", with_1202: bool = False, progress: bool = True,
              command: str = "") -> Path:  # fmt: skip
    """Run experiment ``name`` (training only what is missing under ``out/runs``); returns its report.md. ``all``:
    every experiment, then the scorecard ``out/README.md`` (`reslab.experiments.scorecard`), which it returns."""
    from reslab.experiments.runner import Context, Runner, get_budget

    if name not in EXPERIMENTS and name != ALL:
        raise ConfigError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)} or {ALL}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    runner = Runner(data, out, get_budget(budget), data_dir=data_dir, image_size=image_size, strict_data=strict_data,
                    device=device, progress=progress)  # fmt: skip
    if name == ALL:
        from reslab.experiments.scorecard import reproduce_all

        return reproduce_all(runner, Path(out), seeds, command)
    ctx = Context(name, runner, Path(out) / name, seeds=seeds, with_1202=with_1202)
    return importlib.import_module(module_of(name)).run(ctx)


ALL = "all"  # every experiment, then the scorecard


def module_of(name: str) -> str:
    """An experiment's module: ``single-layer`` is ``reslab.experiments.single_layer``."""
    return f"reslab.experiments.{name.replace('-', '_')}"
