"""``reslab reproduce NAME``: one experiment (or ``all``, then the scorecard) on a shared, resumable run cache."""

from __future__ import annotations

import importlib
from pathlib import Path

from reslab.engine.config import TrainConfig
from reslab.errors import ConfigError
from reslab.experiments import ALL, EXPERIMENTS, ONE_SEED, module_of
from reslab.experiments.budgets import BUDGETS, DEFAULT_BUDGET
from reslab.experiments.runner import Context, Runner, get_budget
from reslab.experiments.scorecard import reproduce_all, write_scorecard


def reproduce(name: str, *, out: str | Path, data: str = TrainConfig.data, budget: str = DEFAULT_BUDGET, seeds: int = 1,
              data_dir: str | None = None, image_size: int | None = None, strict_data: bool = False,
              device: str = "auto", with_1202: bool = False, progress: bool = True, command: str = "", jobs: int = 1,
              scorecard_only: bool = False) -> Path:  # fmt: skip
    """Run experiment ``name`` (training only what is missing under ``out/runs``); returns its report.md. ``all``:
    every experiment, then the scorecard ``out/README.md`` (`reslab.experiments.scorecard`), which it returns.
    ``jobs``: train up to that many of an experiment's runs at once (`reslab.experiments.jobs`).
    ``scorecard_only`` (with ``all``): write the scorecard of the experiments already reported under ``out``.
    ``data`` is the training config's default unless given (`TRAINS_NOTHING` experiments read none)."""
    if name not in EXPERIMENTS and name != ALL:
        raise ConfigError(f"unknown experiment {name!r}; choose one of {', '.join(EXPERIMENTS)} or {ALL}")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    if name in ONE_SEED and seeds != 1:
        raise ConfigError(f"{name} uses one run of each net (seed 0); --seeds does not apply")
    chosen = get_budget(budget)  # an unknown budget: one line, before anything is read or written
    if with_1202 and not chosen.trains_1202:
        deep = ", ".join(b.name for b in BUDGETS.values() if b.trains_1202)
        raise ConfigError(f"--with-1202 goes with a budget that trains ResNet-110 ({deep}), not {budget!r}")
    if scorecard_only:
        if name != ALL:
            raise ConfigError("--scorecard-only goes with `reslab reproduce all`")
        training = {"--data": data != TrainConfig.data, "--seeds": seeds != 1, "--jobs": jobs != 1,
                    "--device": device != "auto", "--data-dir": data_dir is not None,
                    "--image-size": image_size is not None, "--strict": strict_data}  # fmt: skip
        given = [flag for flag, on in training.items() if on]
        if given:
            raise ConfigError(f"--scorecard-only trains nothing: {given[0]} does not apply")
        if not Path(out).is_dir():
            raise ConfigError(f"nothing is reported under {out}: no such folder")
        return write_scorecard(Path(out), budget, command)
    Path(out).mkdir(parents=True, exist_ok=True)  # an unusable --out fails now, not after hours of training
    runner = Runner(data, out, chosen, data_dir=data_dir, image_size=image_size,
                    strict_data=strict_data, device=device, progress=progress, jobs=jobs)  # fmt: skip
    if name == ALL:
        return reproduce_all(runner, Path(out), seeds, command)
    ctx = Context(name, runner, Path(out) / name, seeds=seeds, with_1202=with_1202)
    return importlib.import_module(module_of(name)).run(ctx)
