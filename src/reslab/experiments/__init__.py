"""``reslab reproduce``: the paper's experiments, one command each, on top of the training API.

Each experiment module has ``run(ctx) -> Path`` (the report) and a docstring that is its ``--help``. Runs go to
``DIR/runs/<run>/`` and are shared by the experiments; each experiment writes ``DIR/<experiment>/report.md`` with its
figures, results.json and results.csv.
"""

from __future__ import annotations

# name -> what it reproduces (the module is `module_of(name)`)
EXPERIMENTS = {
    "degradation": "Fig. 6: plain vs ResNet at 20-56 layers (ResNet-110 too in the fast and paper budgets)",
    "depth": "Table 6: ResNet-20..56 (cpu), ..110 (fast, paper; 1202 with --with-1202), best (mean±std) over seeds",
    "shortcuts": "Table 3's options A/B/C, on CIFAR ResNet-32 and ResNet-56",
    "responses": "Fig. 7: std of the 3x3 layers' responses (reuses degradation's runs)",
    "highway": "plain vs residual vs highway at 20 and 56 layers",
    "table1": "Table 1 / Table 6: parameters and multiply-adds (no training)",
    "construction": "Sec. 1/3.1: plain-20 + identity units = a plain-56 as good as plain-20, which SGD does not find",
    "signals": "Sec. 4.1: forward stds and gradient norms by layer, at initialisation and trained (no vanishing)",
    "single-layer": "Sec. 3.1: residual units of one 3x3 layer against plain and two-layer units at 20 and 56 layers",
    "detection": "Sec. 4.3: Faster R-CNN C4 on ResNet and plain backbones, on canvases of the data's objects (mAP)",
}


# Experiments that use one run of each net (seed 0) whatever --seeds says (Sec. 4.1 plots one run each; the
# construction continues one run; Table 1 trains nothing): they take no --seeds, and `all` gives them one seed.
ONE_SEED = frozenset({"signals", "construction", "table1"})
# Experiments that count on freshly built modules: no data, no device, no runs (they take none of those options).
TRAINS_NOTHING = frozenset({"table1"})

ALL = "all"  # every experiment, then the scorecard


def module_of(name: str) -> str:
    """An experiment's module: ``single-layer`` is ``reslab.experiments.single_layer``."""
    return f"reslab.experiments.{name.replace('-', '_')}"
