"""Table 6 (Sec. 4.2): CIFAR-10 test error of ResNet-20/32/44/56/110 (and 1202), "best (mean±std)" over seeds.

Every run reports the test error of its *final* model, one view as the paper's: nothing is chosen on the test set.
The paper fixed its schedule on a 45k/5k train/val split (Sec. 4.2) but does not say whether Table 6's models then
trained on 45k or all 50k. At the ``cpu`` budget each run holds out 5k of its 25k subset for validation (the periodic
curves and ``val_error`` are on it); at the ``fast`` budget the runs are Fig. 6's (``degradation``), trained on all 50k
images, since nothing is chosen. akamaster/pytorch_resnet_cifar10's errors (the most used reimplementation, official
data, best epoch chosen on the test set) are shown beside the paper's.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from reslab import paper
from reslab.experiments.report import (
    Mistakes,
    best_mean_std,
    claim,
    gap_verdict,
    markdown_table,
    mean_std,
    mistakes_note,
    test_noise,
    write_report,
    write_results,
)
from reslab.experiments.runner import Context, RunResult, RunSpec, by_key
from reslab.models import model_complexity


def depths(ctx: Context) -> tuple[int, ...]:
    """Table 6's depths up to the budget's deepest, and 1202 with ``--with-1202`` (`reproduce` refuses it for a
    budget that does not train it, `Budget.trains_1202`)."""
    chosen = ctx.budget.depths()
    return (*chosen, 1202) if ctx.with_1202 else chosen


def specs(ctx: Context) -> list[RunSpec]:
    if not ctx.budget.table6_holds_out:
        return [RunSpec(f"resnet{d}", s) for d in depths(ctx) for s in range(ctx.seeds)]
    # Variant "val": these runs hold out a validation split, so they differ from degradation's runs of the same net.
    val = ctx.budget.val_split
    return [RunSpec(f"resnet{d}", s, variant="val", val_split=val) for d in depths(ctx) for s in range(ctx.seeds)]


def params_m(model: str) -> float:
    return model_complexity(model)["params"] / 1e6


def paper_error(depth: int) -> str:
    if depth == 110:  # Table 6 gives ResNet-110 as best (mean±std) over 5 runs
        mean, std = paper.CIFAR_RESNET110_MEAN_STD
        return f"{paper.CIFAR_TEST_ERROR[110]:.2f} ({mean:.2f}±{std:.2f})"
    return f"{paper.CIFAR_TEST_ERROR[depth]:.2f}"


def first_below(run: RunResult, error: float) -> int | None:
    """The first logged iteration whose training error (%) is below ``error``; None if none is."""
    return next((i for i, e in zip(*run.train_curve(), strict=True) if e < error), None)


def _or_never(iteration: int | None) -> str:
    return "never" if iteration is None else str(iteration)


def rows(groups: dict[str, list[RunResult]], start_error: float) -> list[dict[str, Any]]:
    """One row per depth; ``start_error`` (%) is the paper's warm-up threshold: when each run's training error first
    fell below it (the paper needed lr 0.01 to get ResNet-110 there)."""
    out = []
    for runs in groups.values():
        spec = runs[0].spec
        tests = [r.summary["test_error"] for r in runs]
        views = [r.summary["reported_test_error"] for r in runs]  # the recipe's test-time views (fast: 6)
        vals = [r.summary["val_error"] for r in runs if "val_error" in r.summary]
        out.append({
            "net": f"ResNet-{spec.depth}", "layers": spec.depth, "params (M)": round(params_m(spec.model), 3),
            "paper params (M)": paper.CIFAR_PARAMS_M[spec.depth], "seeds": len(runs),
            "val error (%)": statistics.fmean(vals) if vals else "",
            "test error (%)": best_mean_std(tests), "test mean (%)": mean_std(tests)[0],
            "test std (%)": mean_std(tests)[1],
            "test error, recipe's views (%)": best_mean_std(views) if views != tests else "",
            "paper test error (%)": paper_error(spec.depth),
            "akamaster test error (%)": paper.AKAMASTER_TEST_ERROR.get(spec.depth, ""),
            f"iteration train error < {start_error:g}%": ", ".join(_or_never(first_below(r, start_error))
                                                                   for r in runs),
        })  # fmt: skip
    return out


def _step(text: str, paper_says: str, ours: str, tests: list[float], against: list[float], expected: str,
          images: int, mistakes: tuple[Mistakes, Mistakes] | None) -> dict[str, str]:  # fmt: skip
    """A scorecard row for "``tests`` lie ``expected`` (lower/higher) than ``against`` beyond noise" (`test_noise`
    on ``images`` test images, paired where the mistakes image by image are known)."""
    noise, how = test_noise(tests, against, images, mistakes)
    diff = statistics.fmean(tests) - statistics.fmean(against)
    direction = "lower" if -diff > noise else "higher" if diff > noise else "within noise"
    margin = f"gap {diff:+.2f}, noise {noise:.2f} ({how})"
    return claim(text, paper_says, ours, gap_verdict(direction, expected), margin)


def claims(groups: dict[str, list[RunResult]], images: int = 10_000,
           mistakes: dict[str, list[bool]] | None = None) -> list[dict[str, str]]:  # fmt: skip
    """Table 6 for the scorecard: each depth's test error beside the paper's; from the second depth on, whether it
    is lower than the shallower net's beyond noise, as the paper's are up to 110 layers (1202 is worse there). With
    three or more depths up to 110, one more row: the deepest of them against the shallowest, the trend Table 6
    shows, whose gap can exceed the test set's noise where single steps (a few tenths of a point) cannot. With
    ``mistakes`` (`Runner.test_mistakes` of every run, by run name) the test set's noise is the paired one."""
    out, previous, tested = [], None, {}
    by_depth = {runs[0].spec.depth: runs for runs in groups.values()}

    def paired(deep: int, shallow: int) -> tuple[Mistakes, Mistakes] | None:
        if mistakes is None:
            return None
        return [mistakes[r.spec.name] for r in by_depth[deep]], [mistakes[r.spec.name] for r in by_depth[shallow]]

    for runs in groups.values():
        depth = runs[0].spec.depth
        tests = tested[depth] = [r.summary["test_error"] for r in runs]
        ours = f"{best_mean_std(tests)} ({len(tests)} seed{'s' if len(tests) > 1 else ''})"
        if previous is None:
            out.append(claim(f"Table 6: ResNet-{depth}", f"{paper_error(depth)}%", ours, "baseline"))
        else:
            prev_depth, prev_tests = previous
            word = "above" if depth == 1202 else "below"
            out.append(_step(f"Table 6: ResNet-{depth} {word} ResNet-{prev_depth}",
                             f"{paper_error(depth)}% vs {paper.CIFAR_TEST_ERROR[prev_depth]:.2f}%", ours, tests,
                             prev_tests, "higher" if depth == 1202 else "lower", images,
                             paired(depth, prev_depth)))  # fmt: skip
        previous = (depth, tests)
    trend = [d for d in tested if d <= 110]
    if len(trend) >= 3:
        deep, shallow = max(trend), min(trend)
        means = " vs ".join(f"{mean_std(tested[d])[0]:.2f} (mean of {len(tested[d])})" for d in (deep, shallow))
        out.append(_step(f"Table 6: deeper ResNets test better, ResNet-{deep} below ResNet-{shallow}",
                         f"{paper_error(deep)}% vs {paper.CIFAR_TEST_ERROR[shallow]:.2f}%", means, tested[deep],
                         tested[shallow], "lower", images, paired(deep, shallow)))  # fmt: skip
    return out


def warmup_note(min_depth: int | None, start_error: float, batch_size: int) -> str:
    """What the `iteration train error < 80%` column answers under this budget's recipe."""
    rule = (f"This budget's recipe applies that rule to nets of {min_depth}+ layers." if min_depth
            else "This budget's recipe does not apply that rule (its own linear lr warm-up starts every run), so the "
            "column shows whether the deepest net starts converging without it: a net that could not would stay "
            f"at or above {start_error:g}% well past the others.")  # fmt: skip
    return (f"`iteration train error < {start_error:g}%` is the first logged iteration at which each run's training "
            "error fell below it: the paper found lr 0.1 \"slightly too large to start converging\" ResNet-110 and "
            f"trained it at lr 0.01 until the training error was below {start_error:g}% (about 400 iterations of 128 "
            f"images; these runs' iterations are of {batch_size}). "
            + rule)  # fmt: skip


def figure(path: Path, table: list[dict[str, Any]], data: str) -> Path:
    fig = Figure(figsize=(5.5, 4), layout="constrained")
    ax = fig.subplots()
    layers = [r["layers"] for r in table]
    ax.errorbar(layers, [r["test mean (%)"] for r in table], yerr=[r["test std (%)"] for r in table],
                marker="o", capsize=3, label="reslab (mean±std over seeds)")  # fmt: skip
    ax.plot(layers, [paper.CIFAR_TEST_ERROR[d] for d in layers], marker="s", linestyle="--", label="paper, Table 6")
    ax.set(xscale="log", xlabel="layers", ylabel="test error (%)", title=f"{data}: test error vs depth")
    ax.minorticks_off()  # the log axis' minor labels would overprint the depth labels
    ax.set_xticks(layers, [str(d) for d in layers])
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def run(ctx: Context) -> Path:
    results = ctx.runner.run_all(specs(ctx))
    recipe = ctx.runner.base.recipe
    start_error = recipe.paper_warmup_error * 100
    table = rows(by_key(results), start_error)
    ctx.out.mkdir(parents=True, exist_ok=True)
    figure(ctx.out / "table6_depth.png", table, ctx.data_label)
    shown = [
        "net",
        "params (M)",
        "paper params (M)",
        "seeds",
        "val error (%)",
        "test error (%)",
        "test error, recipe's views (%)",
        "paper test error (%)",
        "akamaster test error (%)",
        f"iteration train error < {start_error:g}%",
    ]
    shown = [c for c in shown if any(r[c] != "" for r in table)]
    ds = ctx.runner.dataset
    mistakes = {name: ctx.runner.test_mistakes(r) for name, r in results.items()}
    val = ctx.budget.val_split if ctx.budget.table6_holds_out else 0
    held = (
        f"Training on {len(ctx.runner.dataset.train_labels) - val} images, {val} more held out for validation "
        "(the paper fixed its schedule on a 45k/5k split); `val error` is the final model on them. "
        if val
        else f"Training on all {len(ctx.runner.dataset.train_labels)} training images (the runs of Fig. 6). "
    )
    sections = [
        "## Table 6: test error by depth\n\n" + markdown_table(table, shown),
        held + "`test error` is the final model on the whole test set, one view as the paper's (no selection on the "
        "test set), as best (mean±std) over the seeds, like Table 6's ResNet-110 entry; `recipe's views` is the "
        "same models tested as their recipe says (the fast recipe: the mean softmax of 6 views, flips x shifts). "
        "akamaster/pytorch_resnet_cifar10 trained on the official images and picked each net's best epoch on the "
        "test set (its README); its numbers are not measured here.",
        "## Noise margins\n\nA step between two depths counts when its gap exceeds twice its standard error: the test "
        "set's sampling, paired (both nets are tested on the same images and mostly miss the same ones: the spread "
        "of the per-image difference of their mistakes, McNemar's), and, with two or more seeds, the spread over "
        "seeds, added in variance less the seeds' disagreements image by image, which the paired term holds already "
        "(`reslab.experiments.report.test_noise`). " + mistakes_note(results, mistakes),
        warmup_note(recipe.paper_warmup_min_depth, start_error, recipe.batch_size),
        "![test error vs depth](table6_depth.png)",
    ]
    write_results(ctx, table, {"claims": claims(by_key(results), len(ds.test_labels), mistakes)})
    return write_report(ctx, f"Table 6: ResNets by depth on {ctx.data_label}", "Table 6 (Sec. 4.2)", sections,
                        list(results.values()))  # fmt: skip
