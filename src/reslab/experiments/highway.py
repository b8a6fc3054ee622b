"""Plain vs residual vs highway shortcuts at 20 and 56 layers.

Sec. 2 contrasts the parameter-free identity shortcut with the gated shortcuts of highway networks: "when a gated
shortcut is 'closed' (approaching zero), the layers in highway networks represent non-residual functions", and
highway networks "have not demonstrated accuracy gains with extremely increased depth". The paper trains no
highway net; this experiment puts the three side by side with the recipe and curves of Fig. 6. The paragraph in
the report is written from the measured numbers.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from reslab.experiments.degradation import TAIL
from reslab.experiments.report import Curve, best_mean_std, curves_figure, markdown_table, write_report, write_results
from reslab.experiments.runner import Context, RunResult, RunSpec, by_key
from reslab.models import model_complexity

DEPTHS = (20, 56)
KINDS = {"plain": "plain", "resnet": "ResNet", "highway": "highway"}


def specs(ctx: Context) -> list[RunSpec]:
    # plain/resnet runs share their names with degradation's, so an earlier `degradation` run is reused.
    return [RunSpec(f"{k}{d}", s) for d in DEPTHS for k in KINDS for s in range(ctx.seeds)]


def params(model: str) -> int:
    return model_complexity(model)["params"]


def rows(groups: dict[str, list[RunResult]]) -> list[dict[str, Any]]:
    out = []
    for d in DEPTHS:
        for kind, name in KINDS.items():
            runs = groups[f"{kind}{d}"]
            tests = [r.summary["reported_test_error"] for r in runs]
            out.append({
                "net": f"{name}-{d}", "kind": name, "depth": d, "params": params(f"{kind}{d}"), "seeds": len(runs),
                "final train error (%)": statistics.fmean(r.final_train_error(TAIL) for r in runs),
                "test error (%)": best_mean_std(tests), "test mean (%)": statistics.fmean(tests),
            })  # fmt: skip
    return out


def paragraph(table: list[dict[str, Any]]) -> str:
    """Findings stated from the numbers: the best net at each depth, and what going deeper did to each kind."""
    at = {(r["kind"], r["depth"]): r for r in table}
    parts = []
    for d in DEPTHS:
        ranked = sorted((r for r in table if r["depth"] == d), key=lambda r: r["test mean (%)"])
        parts.append(f"At {d} layers the test errors rank " + " < ".join(
            f"{r['kind']} ({r['test mean (%)']:.2f}%)" for r in ranked) + ".")  # fmt: skip
    lo, hi = DEPTHS
    for kind in KINDS.values():
        dtrain = at[kind, hi]["final train error (%)"] - at[kind, lo]["final train error (%)"]
        dtest = at[kind, hi]["test mean (%)"] - at[kind, lo]["test mean (%)"]
        if dtrain == 0:
            change = f"left the final training error of the {kind} nets unchanged"
        else:
            change = (
                f"{'raised' if dtrain > 0 else 'lowered'} the final training error of the {kind} nets by "
                f"{abs(dtrain):.2f} points"
            )
        parts.append(f"Going from {lo} to {hi} layers {change} (test error {dtest:+.2f}).")
    extra = at["highway", hi]["params"] - at["ResNet", hi]["params"]
    share = extra / at["ResNet", hi]["params"]
    parts.append(f"The highway gates add {extra:,} parameters to the {hi}-layer net ({share:.0%} more than the "
                 "parameter-free identity shortcuts).")  # fmt: skip
    return " ".join(parts)


def run(ctx: Context) -> Path:
    results = ctx.runner.run_all(specs(ctx))
    groups = by_key(results)
    panels = [(f"{d} layers (seed 0)", [Curve.of(f"{name}-{d}", groups[f"{k}{d}"][0]) for k, name in KINDS.items()])
              for d in DEPTHS]  # fmt: skip
    ctx.out.mkdir(parents=True, exist_ok=True)
    curves_figure(ctx.out / "highway_curves.png", panels, data=ctx.data_label)
    table = rows(groups)
    shown = ["net", "params", "seeds", "final train error (%)", "test error (%)"]
    sections = [
        "## Training curves\n\n![plain vs residual vs highway](highway_curves.png)\n\n"
        "Thin dashed: training error; bold: test error (as in Fig. 6).",
        "## Final errors\n\n" + markdown_table(table, shown),
        f"Final training error = mean of the training-error records in the last {TAIL:.0%} of the run, averaged "
        "over seeds; test error = final model, whole test set, best (mean±std) over seeds. The paper reports no "
        "highway numbers; highway units here: y = relu(T(x)·F(x) + (1 − T(x))·x) with T = sigmoid(1x1 conv), gate bias "
        "−1.",
        "## Findings\n\n" + paragraph(table),
    ]
    write_results(ctx, table)
    title = f"Plain vs residual vs highway networks on {ctx.data_label}"
    return write_report(ctx, title, "Sec. 2 and Fig. 6", sections, list(results.values()))
