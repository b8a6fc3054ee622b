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

import torch
from matplotlib.figure import Figure
from torch import nn

from reslab.data.batches import eval_batches
from reslab.engine.precision import resolve_device
from reslab.experiments import comparison
from reslab.experiments.degradation import compare, train_claim
from reslab.experiments.report import write_report, write_results
from reslab.experiments.runner import Context, RunResult, RunSpec, by_key
from reslab.models.trained import load_trained

DEPTHS = (20, 56)
KINDS = {"plain": "plain", "resnet": "ResNet", "highway": "highway"}


def specs(ctx: Context) -> list[RunSpec]:
    # plain/resnet runs share their names with degradation's, so an earlier `degradation` run is reused.
    return [RunSpec(f"{k}{d}", s) for d in DEPTHS for k in KINDS for s in range(ctx.seeds)]


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


@torch.no_grad()
def gate_means(run: Path, images: torch.Tensor, labels: torch.Tensor, device: str = "auto") -> list[float]:
    """Mean transform gate T = sigmoid(gate(x)) of each unit of a trained highway net over the given images (inference
    mode): T = 0 carries the input unchanged, T = 1 passes only F(x)."""
    dev = resolve_device(device)
    loaded = load_trained(run, dev)
    units = [u for u in loaded.model.eval().units() if u.gate is not None]
    sums = torch.zeros(len(units), dtype=torch.float64)

    def hook(i: int) -> Any:
        def record(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            sums[i] += torch.sigmoid(out.float()).mean().item() * len(out)

        return record

    handles = [u.gate.register_forward_hook(hook(i)) for i, u in enumerate(units)]
    try:
        for x, _ in eval_batches(images, labels, loaded.preprocessing.mean, batch_size=500, device=str(dev)):
            loaded.model(x)
    finally:
        for h in handles:
            h.remove()
    return (sums / len(labels)).tolist()


def gates_figure(path: Path, gates: dict[str, list[float]], data: str) -> Path:
    fig = Figure(figsize=(7, 3.8), layout="constrained")
    ax = fig.subplots()
    for label, values in gates.items():
        ax.plot(range(1, len(values) + 1), values, marker=".", label=label)
    ax.axhline(torch.sigmoid(torch.tensor(-1.0)).item(), color="grey", linestyle=":", label="at initialisation")
    ax.set(title=f"{data}: mean transform gate T per unit (test images)", xlabel="unit", ylabel="mean T", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def why(groups: dict[str, list[RunResult]], gates: dict[str, list[float]]) -> str:
    """The readers' question, answered from the measured numbers."""
    hi = DEPTHS[-1]
    t = gates[f"highway-{hi}"]
    h, r, verdict = compare(groups[f"highway{hi}"], groups[f"resnet{hi}"])
    result = {"higher": "trains worse than", "lower": "trains better than",
              "within noise": "trains as well as"}[verdict]  # fmt: skip
    return (
        "Why should ResNets train better than highway networks, when the identity is in the highway's solution "
        "space? A highway unit computes y = relu(T·F(x) + (1 − T)·x): it reaches the identity only by closing its gate "
        "(T → 0), and a closed gate also scales F's output and F's gradient by T. A residual unit keeps both paths at "
        "full strength: the shortcut always carries x and the gradient, and F adds to it. Measured here, the trained "
        f"highway-{hi}'s gates sit at a mean T of {statistics.fmean(t):.2f} (units from {min(t):.2f} to {max(t):.2f}; "
        f"{torch.sigmoid(torch.tensor(-1.0)).item():.2f} at initialisation, gate bias −1): every unit passes part of "
        f"its residual function and part of its input. Highway-{hi} ends at {h:.2f}% training error against {r:.2f}% "
        f"for ResNet-{hi}: it **{result}** the ResNet at this budget (a gap counts when it exceeds twice its standard "
        "error, as in Fig. 6's report)."
    )


def run(ctx: Context) -> Path:
    results = ctx.runner.run_all(specs(ctx))
    groups = by_key(results)
    ds = ctx.runner.dataset
    gates = {f"highway-{d}": gate_means(groups[f"highway{d}"][0].path, ds.test_images, ds.test_labels,
                                        ctx.runner.device) for d in DEPTHS}  # fmt: skip
    nets = {d: {name: f"{k}{d}" for k, name in KINDS.items()} for d in DEPTHS}
    table, sections = comparison.sections(ctx, groups, nets, "highway_curves.png", "The paper reports no highway "
                                          "numbers; highway units here: y = relu(T(x)·F(x) + (1 − T(x))·x) with T = "
                                          "sigmoid(1x1 conv), gate bias −1.")  # fmt: skip
    gates_figure(ctx.out / "highway_gates.png", gates, ctx.data_label)
    sections += [
        "## Findings\n\n" + paragraph(table),
        "## The gates\n\n![gates](highway_gates.png)\n\n" + why(groups, gates),
    ]
    hi = DEPTHS[-1]
    claims = [train_claim(f"Highway-{hi} trains worse than ResNet-{hi}", "no highway runs in the paper (Sec. 2: "
                          "highway nets have not shown gains at extreme depth)", groups, f"highway{hi}",
                          f"resnet{hi}", "higher")]  # fmt: skip
    write_results(ctx, table, {"gate_means": gates, "claims": claims})
    title = f"Plain vs residual vs highway networks on {ctx.data_label}"
    return write_report(ctx, title, "Sec. 2 and Fig. 6", sections, list(results.values()))
