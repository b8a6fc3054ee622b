"""Fig. 6 (Sec. 4.2): the degradation problem on CIFAR-10.

Plain-20/32/44/56 (and 110) get *higher training error* as they get deeper; ResNets of the same depths do not.
The report draws Fig. 6 (plain left, ResNet right; thin dashed training error, bold test error) and states in
words whether our runs show both halves of the effect.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from reslab import paper
from reslab.experiments.report import (
    Curve,
    best_mean_std,
    claim,
    curves_figure,
    gap_verdict,
    markdown_table,
    seed_noise,
    write_report,
    write_results,
)
from reslab.experiments.runner import Context, RunResult, RunSpec, by_key

TAIL = 0.1  # the final training error averages the records of the last 10% of the run
KINDS = {"plain": "plain", "resnet": "ResNet"}


DEPTHS = (20, 32, 44, 56, 110)  # Fig. 6's depths; each budget trains those up to its deepest (Budget.depths)


def specs(ctx: Context, only_depths: tuple[int, ...] | None = None) -> list[RunSpec]:
    """The runs of Fig. 6; ``responses``, ``highway``, ``depth`` and ``detection`` ask for some of them by the same
    names, so one results folder trains each once."""
    chosen = only_depths or DEPTHS
    return [RunSpec(f"{k}{d}", seed) for k in KINDS for d in ctx.budget.depths(chosen, plain=k == "plain")
            for seed in range(ctx.seeds)]  # fmt: skip


def label(model: str) -> str:
    for k, name in KINDS.items():
        if model.startswith(k) and model[len(k) :].isdigit():
            return f"{name}-{model[len(k) :]}"
    return model


def final_train_error(runs: list[RunResult]) -> float:
    return statistics.fmean(r.final_train_error(TAIL) for r in runs)


def rows(groups: dict[str, list[RunResult]]) -> list[dict[str, Any]]:
    out = []
    for key, runs in groups.items():
        depth = runs[0].spec.depth
        out.append({
            "net": label(key), "depth": depth, "seeds": len(runs),
            "final train error (%)": final_train_error(runs),
            "test error (%)": best_mean_std([r.summary["test_error"] for r in runs]),
            "paper test error (%)": paper.CIFAR_TEST_ERROR.get(depth, "") if key.startswith("resnet") else "",
        })  # fmt: skip
    return out


def standard_error(runs: list[RunResult]) -> float:
    """Standard error of `final_train_error` (the mean over seeds of each run's tail mean), treating the tail's
    records as independent draws: a yardstick for "is this gap more than noise", not a confidence interval."""
    var = 0.0
    for r in runs:
        tail = r.tail_train_errors(TAIL)
        if len(tail) < 2:  # one record says nothing of its noise: no gap may count against it
            return math.inf
        var += statistics.variance(tail) / len(tail)
    return math.sqrt(var) / len(runs)


def margin(deep: list[RunResult], shallow: list[RunResult]) -> float:
    """The noise a gap between two final training errors must exceed: twice its standard error within the runs
    (`standard_error`) or, where larger, over seeds (`seed_noise`, when both have two or more)."""
    within = 2 * math.hypot(standard_error(deep), standard_error(shallow))
    seeds = seed_noise([r.final_train_error(TAIL) for r in deep], [r.final_train_error(TAIL) for r in shallow])
    return max(within, seeds or 0.0)


def noise_text(noise: float) -> str:
    return f"noise {noise:.2f}" if math.isfinite(noise) else "noise unknown (one training-error record in the tail)"


def compare(deep: list[RunResult], shallow: list[RunResult]) -> tuple[float, float, str]:
    """(deep, shallow, "higher" | "lower" | "within noise"): deep's final training error against shallow's, where
    a gap counts only if it exceeds twice its standard error (`margin`)."""
    d, s = final_train_error(deep), final_train_error(shallow)
    noise = margin(deep, shallow)
    return d, s, "higher" if d - s > noise else "lower" if s - d > noise else "within noise"


def train_claim(text: str, paper_says: str, groups: dict[str, list[RunResult]], deep: str, shallow: str,
                expected: str) -> dict[str, str]:  # fmt: skip
    """A scorecard row for "``deep`` ends with a higher/lower training error than ``shallow``"."""
    d, s, direction = compare(groups[deep], groups[shallow])
    seeds = min(len(groups[deep]), len(groups[shallow]))
    return claim(text, paper_says, f"{label(deep)} {d:.2f}% vs {label(shallow)} {s:.2f}% training error "
                 f"({seeds} seed{'s' if seeds > 1 else ''})", gap_verdict(direction, expected),
                 f"gap {d - s:+.2f}, {noise_text(margin(groups[deep], groups[shallow]))}")  # fmt: skip


def verdicts(groups: dict[str, list[RunResult]]) -> tuple[list[str], dict[str, str]]:
    """The two claims of Fig. 6, decided from our numbers: plain-56 above plain-20 (degradation), ResNet-56 below
    ResNet-20 (residual learning gains from depth)."""
    p56, p20, plain = compare(groups["plain56"], groups["plain20"])
    r56, r20, res = compare(groups["resnet56"], groups["resnet20"])
    flags = {"plain56_vs_plain20_train_error": plain, "resnet56_vs_resnet20_train_error": res}
    res_text = {
        "lower": "**lower** than ResNet-20's: deeper is better, as in Fig. 6 right (**reproduced**)",
        "within noise": "**within noise** of ResNet-20's: no degradation, but the gain from depth that Fig. 6 right "
        "shows is **not resolved** in these runs",
        "higher": "**higher** than ResNet-20's, unlike Fig. 6 right (**not reproduced**)",
    }[res]
    lines = [
        f"- **Plain nets (degradation):** plain-56 ends with training error {p56:.2f}% vs {p20:.2f}% for plain-20: "
        f"**{plain}**, so the degradation problem is **{'reproduced' if plain == 'higher' else 'not reproduced'}** "
        "in these runs.",
        f"- **ResNets:** ResNet-56 ends with training error {r56:.2f}% vs {r20:.2f}% for ResNet-20: {res_text}.",
    ]
    if "resnet110" in groups:
        r110, _, deeper = compare(groups["resnet110"], groups["resnet56"])
        flags["resnet110_vs_resnet56_train_error"] = deeper
        word = {
            "lower": "**lower**: deeper is better again (**reproduced**)",
            "higher": "**higher** (**not reproduced**)",
            "within noise": "**within noise** (**not resolved** in these runs)",
        }[deeper]
        lines.append(f"- **ResNet-110:** training error {r110:.2f}% vs {r56:.2f}% for ResNet-56: {word}.")
    lines.append(
        "- A gap counts when it exceeds twice its standard error, estimated from the spread of the final "
        "records (as if independent) and the number of seeds."
    )
    return lines, flags


def claims(groups: dict[str, list[RunResult]]) -> list[dict[str, str]]:
    """Fig. 6's claims for the scorecard."""
    out = [train_claim("Degradation: the deeper plain net trains worse", "plain-56 above plain-20 (Fig. 6 left)",
                       groups, "plain56", "plain20", "higher"),
           train_claim("Deeper ResNets train better", "ResNet-56 below ResNet-20 (Fig. 6 right)", groups, "resnet56",
                       "resnet20", "lower")]  # fmt: skip
    if "resnet110" in groups:
        out.append(train_claim("Deeper ResNets train better, to 110 layers", "ResNet-110 below ResNet-56 (Fig. 6 "
                               "right)", groups, "resnet110", "resnet56", "lower"))  # fmt: skip
    return out


def run(ctx: Context) -> Path:
    results = ctx.runner.run_all(specs(ctx))
    groups = by_key(results)
    first = {k: v[0] for k, v in groups.items()}  # curves of the first seed, as a figure shows one run per net
    panels = [(f"{name} networks (seed 0)", [Curve.of(label(k), r) for k, r in first.items() if k.startswith(kind)])
              for kind, name in KINDS.items()]  # fmt: skip
    ctx.out.mkdir(parents=True, exist_ok=True)
    curves_figure(ctx.out / "fig6_degradation.png", panels, data=ctx.data_label)
    table = rows(groups)
    statements, flags = verdicts(groups)
    log_every = ctx.budget.log_every
    sections = [
        "## Fig. 6: training and test error\n\n![Fig. 6](fig6_degradation.png)\n\n"
        "Thin dashed: training error (each point is the error on the augmented training batches of one logging "
        f"interval of {log_every} iterations, in train mode); bold: test error of the periodic evaluations.",
        "## Final errors\n\n" + markdown_table(table, list(table[0])),
        f"Final training error = mean of the training-error records in the last {TAIL:.0%} of the iterations "
        f"(one record per {log_every} iterations), averaged over seeds: one record is too noisy. Test error = the "
        "final model on the whole test set, one view as the paper's (`test_error` of summary.json): best (mean±std) "
        "over seeds. "
        "The paper's test errors are Table 6's (ResNets; it gives the plain nets only as curves).",
        "## Does Fig. 6 reproduce?\n\n" + "\n".join(statements),
    ]
    write_results(ctx, table, {"final_train_error_tail_fraction": TAIL, **flags, "claims": claims(groups)})
    return write_report(ctx, f"Fig. 6: plain vs residual networks on {ctx.data_label}", "Fig. 6 (Sec. 4.2)", sections,
                        list(results.values()))  # fmt: skip
