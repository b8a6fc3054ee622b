"""Identity vs projection shortcuts (Sec. 4.1, Table 3), on the CIFAR-10 ResNet-32 and ResNet-56.

Option A: identity, zero-padding where the shape changes (no parameters); B: projections only where the shape
changes; C: projections everywhere. The paper compares them on ImageNet ResNet-34 (Table 3); here the same three
options are trained on the CIFAR nets of Sec. 4.2, and the paper's ImageNet figures are shown for their ordering.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from reslab import paper
from reslab.experiments.report import (
    NOT_REPRODUCED,
    REPRODUCED,
    UNRESOLVED,
    Mistakes,
    best_mean_std,
    claim,
    markdown_table,
    mistakes_note,
    test_noise,
    write_report,
    write_results,
)
from reslab.experiments.runner import Context, RunResult, RunSpec, by_key
from reslab.models import model_complexity

MODELS = ("resnet32", "resnet56")
OPTIONS = ("A", "B", "C")


def spec(model: str, option: str, seed: int) -> RunSpec:
    # The CIFAR ResNets are option A by definition (Sec. 4.2), so option A *is* degradation's run of that name:
    # sharing it avoids training the same network twice.
    if option == "A":
        return RunSpec(model, seed)
    return RunSpec(model, seed, variant=option, model_kwargs={"shortcut": option})


def specs(ctx: Context) -> list[RunSpec]:
    return [spec(m, o, s) for m in MODELS for o in OPTIONS for s in range(ctx.seeds)]


def params(model: str, option: str) -> int:
    return model_complexity(model, shortcut=option)["params"]


def rows(ctx: Context, results: dict[str, RunResult]) -> list[dict[str, Any]]:
    groups = by_key(results)
    out = []
    for model in MODELS:
        for option in OPTIONS:
            runs = groups[spec(model, option, 0).key]
            tests = [r.summary["test_error"] for r in runs]
            out.append({
                "net": f"ResNet-{runs[0].spec.depth}", "option": option, "params": params(model, option),
                "seeds": len(runs), "test error (%)": best_mean_std(tests), "test mean (%)": statistics.fmean(tests),
                "tests": tests,
                "paper, ImageNet ResNet-34 top-1 error (%)": paper.IMAGENET_TOP1_10CROP[f"resnet34_{option}"],
            })  # fmt: skip
    return out


def ordering(table: list[dict[str, Any]], net: str) -> str:
    chosen = sorted((r for r in table if r["net"] == net), key=lambda r: r["test mean (%)"])
    return " < ".join(f"{r['option']} ({r['test mean (%)']:.2f}%)" for r in chosen)


STEPS = (("C", "B"), ("B", "A"))  # Table 3's order, step by step: (better, worse)


def order_claim(table: list[dict[str, Any]], net: str, images: int = 10_000,
                mistakes: dict[str, Mistakes] | None = None) -> dict[str, str]:  # fmt: skip
    """Table 3's order (C < B < A in error) at one depth: each step counts when it exceeds the noise (`test_noise`
    on ``images`` test images: their sampling error, paired where ``mistakes`` gives each option's, and the spread
    over seeds); the margin shows both steps."""
    rows = {r["option"]: r for r in table if r["net"] == net}
    tests = {o: [float(v) for v in rows[o]["tests"]] for o in OPTIONS}
    steps, margins = [], []
    for better, worse in STEPS:
        pair = (mistakes[better], mistakes[worse]) if mistakes else None
        noise, how = test_noise(tests[better], tests[worse], images, pair)
        diff = statistics.fmean(tests[worse]) - statistics.fmean(tests[better])
        steps.append("lower" if diff > noise else "higher" if -diff > noise else "within noise")
        margins.append(f"{better} vs {worse}: gap {-diff:+.2f}, noise {noise:.2f} ({how})")
    verdict = NOT_REPRODUCED if "higher" in steps else REPRODUCED if steps == ["lower", "lower"] else UNRESOLVED
    paper_order = " < ".join(sorted(OPTIONS, key=lambda o: paper.IMAGENET_TOP1_10CROP[f"resnet34_{o}"]))
    return claim(
        f"Shortcuts: C < B < A in error, {net}",
        f"{paper_order} (Table 3, ImageNet ResNet-34)",
        ordering(table, net),
        verdict,
        "; ".join(margins),
    )


def run(ctx: Context) -> Path:
    results = ctx.runner.run_all(specs(ctx))
    table = rows(ctx, results)
    paper_order = sorted(OPTIONS, key=lambda o: paper.IMAGENET_TOP1_10CROP[f"resnet34_{o}"])
    nets = list(dict.fromkeys(r["net"] for r in table))
    findings = [f"- {net}: test error {ordering(table, net)} (by mean over seeds)" for net in nets]
    shown = ["net", "option", "params", "seeds", "test error (%)", "paper, ImageNet ResNet-34 top-1 error (%)"]
    sections = [
        "## Shortcut options A / B / C\n\n" + markdown_table(table, shown),
        "Parameters counted on the built module (`reslab.complexity`); test error = final model, whole test set, "
        "best (mean±std) over seeds. The paper's column is Table 3 (ImageNet, ResNet-34, 10-crop top-1 error): another "
        "dataset and network, shown only for the ordering of the options.",
        "## Ordering\n\n" + "\n".join(findings) + f"\n- paper (Table 3, ImageNet): {' < '.join(paper_order)}",
    ]
    images = len(ctx.runner.dataset.test_labels)
    groups, mistakes = by_key(results), {name: ctx.runner.test_mistakes(r) for name, r in results.items()}
    sections.append(mistakes_note(results, mistakes))

    def by_option(model: str) -> dict[str, Mistakes]:
        return {o: [mistakes[r.spec.name] for r in groups[spec(model, o, 0).key]] for o in OPTIONS}

    by_net = {f"ResNet-{spec(m, 'A', 0).depth}": m for m in MODELS}
    write_results(ctx, table, {"claims": [order_claim(table, net, images, by_option(by_net[net])) for net in nets]})
    return write_report(ctx, f"Identity vs projection shortcuts on {ctx.data_label}", "Table 3 (Sec. 4.1)", sections,
                        list(results.values()))  # fmt: skip
