"""Single-layer residual units (Sec. 3.1): a residual function of one layer shows no advantage.

"The form of the residual function F is flexible. Experiments in this paper involve a function F that has two or three
layers, while more layers are possible. But if F has only a single layer, Eqn.(1) is similar to a linear layer:
y = W1 x + x, for which we have not observed advantages."

At 20 and 56 layers this trains ResNets whose units hold one 3x3 convolution + BN (`resnetN_1layer`: twice as many
units, the same 3x3 layers and parameters) beside `degradation`'s plain nets and two-layer ResNets (reused), with the
recipe and curves of Fig. 6, and decides with the same noise margin whether one-layer units beat the plain net and
whether they match the two-layer units.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from reslab.experiments.degradation import TAIL, compare
from reslab.experiments.report import Curve, best_mean_std, curves_figure, markdown_table, write_report, write_results
from reslab.experiments.runner import Context, RunResult, RunSpec, by_key
from reslab.models import model_complexity

DEPTHS = (20, 56)
KINDS = {"plain": "plain", "resnet{}_1layer": "one-layer units", "resnet": "two-layer units"}


def model_name(kind: str, depth: int) -> str:
    return kind.format(depth) if "{}" in kind else f"{kind}{depth}"


def specs(ctx: Context) -> list[RunSpec]:
    # plain and two-layer runs share their names with degradation's, so an earlier `degradation` run is reused.
    return [RunSpec(model_name(k, d), s) for d in DEPTHS for k in KINDS for s in range(ctx.seeds)]


def rows(groups: dict[str, list[RunResult]]) -> list[dict[str, Any]]:
    out = []
    for d in DEPTHS:
        for kind, label in KINDS.items():
            runs = groups[model_name(kind, d)]
            tests = [r.summary["reported_test_error"] for r in runs]
            out.append({"net": f"{label}, {d} layers", "units": label, "depth": d,
                        "params": model_complexity(model_name(kind, d))["params"], "seeds": len(runs),
                        "final train error (%)": statistics.fmean(r.final_train_error(TAIL) for r in runs),
                        "test error (%)": best_mean_std(tests), "test mean (%)": statistics.fmean(tests)})  # fmt: skip
    return out


def verdicts(groups: dict[str, list[RunResult]]) -> tuple[list[str], dict[str, str]]:
    lines, flags = [], {}
    for d in DEPTHS:
        plain, one, two = (groups[model_name(k, d)] for k in ("plain", "resnet{}_1layer", "resnet"))
        o, p, vs_plain = compare(one, plain)
        _, t, vs_two = compare(one, two)
        flags[f"one_vs_plain_{d}"], flags[f"one_vs_two_{d}"] = vs_plain, vs_two
        lines.append(f"- **{d} layers**: one-layer units end at {o:.2f}% training error against {p:.2f}% for the plain "
                     f"net (**{vs_plain}**) and {t:.2f}% for two-layer units (**{vs_two}**).")  # fmt: skip
    gains = [d for d in DEPTHS if flags[f"one_vs_plain_{d}"] == "lower"]
    if not gains:
        verdict = "**consistent** with these runs: at no depth do one-layer units train better than the plain net"
    elif len(gains) == len(DEPTHS):
        verdict = "**not reproduced**: one-layer units train better than the plain nets at every depth here"
    else:
        verdict = (f"**mixed**: one-layer units train better than the plain net at {', '.join(map(str, gains))} "
                   "layers only")  # fmt: skip
    lines.append(f"- The paper saw no advantage in residual functions of one layer: {verdict}. A gap counts when it "
                 "exceeds twice its standard error, as in Fig. 6's report.")  # fmt: skip
    flags["verdict"] = verdict.split("**")[1]
    return lines, flags


def run(ctx: Context) -> Path:
    results = ctx.runner.run_all(specs(ctx))
    groups = by_key(results)
    panels = [(f"{d} layers (seed 0)", [Curve.of(label, groups[model_name(k, d)][0]) for k, label in KINDS.items()])
              for d in DEPTHS]  # fmt: skip
    ctx.out.mkdir(parents=True, exist_ok=True)
    curves_figure(ctx.out / "single_layer_curves.png", panels, data=ctx.data_label)
    table = rows(groups)
    statements, flags = verdicts(groups)
    shown = ["net", "params", "seeds", "final train error (%)", "test error (%)"]
    sections = [
        "## Training curves\n\n![single-layer units](single_layer_curves.png)\n\n"
        "Thin dashed: training error; bold: test error (as in Fig. 6).",
        "## Final errors\n\n" + markdown_table(table, shown),
        f"Final training error = mean of the training-error records in the last {TAIL:.0%} of the run, averaged over "
        "seeds; test error = final model, whole test set, best (mean±std) over seeds. One-layer units: "
        "y = relu(BN(W1 x) + x), option A shortcuts, twice as many units as the two-layer net of the same depth.",
        "## Verdict\n\n" + "\n".join(statements),
    ]
    write_results(ctx, table, flags)
    return write_report(ctx, f"Single-layer residual units on {ctx.data_label}", "Sec. 3.1", sections,
                        list(results.values()))  # fmt: skip
