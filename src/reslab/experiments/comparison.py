"""Several kinds of nets side by side at several depths, with Fig. 6's recipe, curves and final-error table: what
`highway` (plain / ResNet / highway) and `single-layer` (plain / one-layer / two-layer units) share."""

from __future__ import annotations

import statistics
from typing import Any

from reslab.experiments.degradation import TAIL
from reslab.experiments.report import Curve, best_mean_std, curves_figure, markdown_table
from reslab.experiments.runner import Context, RunResult
from reslab.models import model_complexity


def rows(groups: dict[str, list[RunResult]], nets: dict[int, dict[str, str]]) -> list[dict[str, Any]]:
    """One row per (depth, kind): ``nets[depth][kind]`` is the runs' key (the model's name)."""
    out = []
    for depth, kinds in nets.items():
        for kind, key in kinds.items():
            runs = groups[key]
            tests = [r.summary["test_error"] for r in runs]  # one view, as Fig. 6's and Table 6's tables
            out.append({"net": f"{kind}-{depth}", "kind": kind, "depth": depth,
                        "params": model_complexity(runs[0].spec.model, **runs[0].spec.model_kwargs)["params"],
                        "seeds": len(runs),
                        "final train error (%)": statistics.fmean(r.final_train_error(TAIL) for r in runs),
                        "test error (%)": best_mean_std(tests), "test mean (%)": statistics.fmean(tests)})  # fmt: skip
    return out


def sections(ctx: Context, groups: dict[str, list[RunResult]], nets: dict[int, dict[str, str]], figure: str,
             note: str) -> tuple[list[dict[str, Any]], list[str]]:  # fmt: skip
    """The curves figure (a panel per depth, seed 0) and the final-error table, as report sections."""
    panels = [(f"{d} layers (seed 0)", [Curve.of(f"{kind}-{d}", groups[key][0]) for kind, key in kinds.items()])
              for d, kinds in nets.items()]  # fmt: skip
    ctx.out.mkdir(parents=True, exist_ok=True)
    curves_figure(ctx.out / figure, panels, data=ctx.data_label)
    table = rows(groups, nets)
    shown = ["net", "params", "seeds", "final train error (%)", "test error (%)"]
    return table, [
        f"## Training curves\n\n![training curves]({figure})\n\nThin dashed: training error; bold: test error (as in "
        "Fig. 6).",
        "## Final errors\n\n" + markdown_table(table, shown),
        f"Final training error = mean of the training-error records in the last {TAIL:.0%} of the run, averaged over "
        f"seeds; test error = final model, whole test set, best (mean±std) over seeds. {note}",
    ]
