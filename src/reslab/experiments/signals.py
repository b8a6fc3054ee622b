"""Degradation is not vanishing gradients (Sec. 4.1): forward signals and backward gradients, layer by layer.

"We argue that this optimization difficulty is unlikely to be caused by vanishing gradients. These plain networks are
trained with BN, which ensures forward propagated signals to have non-zero variances. We also verify that the
backward propagated gradients exhibit healthy norms with BN."

For plain-20/56 and ResNet-20/56, at initialisation (the weights each run started from: its seed) and at the end of
training (`degradation`'s checkpoints), on the same fixed training batches (un-augmented, a seeded random choice) with
BN in training mode as in training, this measures per 3x3 layer the std of its response (after BN, before the ReLU or
the addition, as in Fig. 7) and the norm of the gradient of the loss with respect to its weights; per stage the std
of the stage's input and the norm of the gradient with respect to it; and, for the ResNets, per unit the std of the
residual F(x) relative to the std of what the shortcut adds it to. The verdict compares the first layer's gradient
norm with the last's: Yang et al. ("A Mean Field Theory of Batch Normalization", ICLR 2019) predict that in plain
nets with BN the gradients *explode* with depth at initialisation, the opposite of vanishing.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from reslab.experiments import degradation
from reslab.experiments.report import NOT_REPRODUCED, REPRODUCED, claim, markdown_table, write_report, write_results
from reslab.experiments.responses import conv_bn_pairs
from reslab.experiments.runner import Context, RunSpec
from reslab.models import ResNet, create_model
from reslab.models.trained import load_trained
from reslab.tasks.classification import EvalBatches

DEPTHS = (20, 56)
BATCHES = 4  # probe batches of the budget's batch size (1 at the smoke budget)


def specs(ctx: Context) -> list[RunSpec]:
    return [s for s in degradation.specs(ctx, DEPTHS) if s.seed == 0]


@dataclass
class Signals:
    """One network's signals, averaged over the probe batches."""

    response_std: list[float] = field(default_factory=list)  # per 3x3 layer, forward order
    weight_grad: list[float] = field(default_factory=list)  # per 3x3 layer: ‖dL/dW‖ (Frobenius)
    stage_input_std: list[float] = field(default_factory=list)
    stage_input_grad: list[float] = field(default_factory=list)  # ‖dL/dx‖ of each stage's input (Frobenius)
    residual_ratio: list[float] = field(default_factory=list)  # per unit: std F(x) / std of the shortcut's output
    shortcut_share: list[float] = field(default_factory=list)  # per identity unit: ‖dL/dy‖ / ‖dL/dx‖ (see measure)


def probe_batches(images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, batches: int,
                  batch_size: int) -> list[tuple[torch.Tensor, ...]]:  # fmt: skip
    """The fixed training batches: a seeded random choice (folder data is sorted by class), un-augmented."""
    n = min(batches * batch_size, len(labels))
    idx = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))[:n].sort().values
    return list(EvalBatches(images[idx], labels[idx], mean, batch_size))


def measure(model: ResNet, batches: list[tuple[torch.Tensor, ...]]) -> Signals:
    """Forward stds and backward gradient norms of ``model`` (a copy, in training mode: BN uses batch statistics).

    ``shortcut_share`` is, for each unit whose shortcut is the identity, the norm of the gradient at the sum
    y = F(x) + x (which the addition passes unchanged to x) over the norm of the whole gradient at x (the shortcut's
    part plus what flows back through F): near 1 when x's gradient comes through the shortcut.
    """
    model = copy.deepcopy(model).float().train()
    pairs = conv_bn_pairs(model)
    stages = [getattr(model, name) for name in model.stage_names]
    residual = [u for u in model.units() if u.mode == "residual"]
    identity = [u for u in residual if u.downsample is None]
    sums = {"response": torch.zeros(len(pairs)), "grad": torch.zeros(len(pairs)), "in_std": torch.zeros(len(stages)),
            "in_grad": torch.zeros(len(stages)), "ratio": torch.zeros(len(residual)),
            "share": torch.zeros(len(identity))}  # fmt: skip
    stage_inputs: list[torch.Tensor] = []
    branch: dict[nn.Module, torch.Tensor] = {}
    merged: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}  # unit -> (its input x, the sum F(x) + x)

    def traced(unit: nn.Module) -> Callable[..., torch.Tensor]:
        original = unit.merge

        def merge(f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            y = original(f, x)
            x.retain_grad()
            y.retain_grad()
            merged[unit] = (x, y)
            return y.clone()  # the unit's in-place ReLU then acts on the clone: y.grad stays dL/d(F(x) + x)

        return merge

    for unit in identity:
        unit.merge = traced(unit)  # on the copy only

    def response(i: int) -> Callable[..., None]:
        def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            sums["response"][i] += out.detach().float().std().item()

        return hook

    def stage_input(_m: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        args[0].retain_grad()
        stage_inputs.append(args[0])

    def last_bn(unit: nn.Module) -> Callable[..., None]:
        def hook(_m: nn.Module, _inp: Any, out: torch.Tensor) -> None:
            branch[unit] = out.detach().float()

        return hook

    def unit_ratio(i: int) -> Callable[..., None]:
        def hook(unit: nn.Module, args: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
            x = args[0].detach().float()
            shortcut = x if unit.downsample is None else unit.downsample(x)
            sums["ratio"][i] += (branch[unit].std() / shortcut.std().clamp_min(1e-12)).item()

        return hook

    handles = [bn.register_forward_hook(response(i)) for i, (_, bn) in enumerate(pairs)]
    handles += [s.register_forward_pre_hook(stage_input) for s in stages]
    handles += [u.last_bn().register_forward_hook(last_bn(u)) for u in residual]
    handles += [u.register_forward_hook(unit_ratio(i)) for i, u in enumerate(residual)]
    try:
        for x, y in batches:
            stage_inputs.clear()
            model.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            sums["grad"] += torch.stack([conv.weight.grad.norm() for conv, _ in pairs]).float()
            sums["in_std"] += torch.stack([t.detach().float().std() for t in stage_inputs])
            sums["in_grad"] += torch.stack([t.grad.norm() for t in stage_inputs]).float()
            if identity:
                sums["share"] += torch.stack([merged[u][1].grad.norm() / merged[u][0].grad.norm().clamp_min(1e-30)
                                              for u in identity]).float()  # fmt: skip
    finally:
        for h in handles:
            h.remove()
    avg = {k: (v / len(batches)).tolist() for k, v in sums.items()}
    return Signals(avg["response"], avg["grad"], avg["in_std"], avg["in_grad"], avg["ratio"], avg["share"])


def weight_change(initial: ResNet, trained: ResNet) -> tuple[list[float], int, int]:
    """Per 3x3 layer ‖W_trained − W_initial‖ / ‖W_initial‖; how many parameter tensors training left unchanged; how
    many take no gradient."""
    changes = [((b.weight - a.weight).norm() / a.weight.norm()).item()
               for (a, _), (b, _) in zip(conv_bn_pairs(initial), conv_bn_pairs(trained), strict=True)]  # fmt: skip
    unchanged = sum(torch.equal(a, b) for a, b in zip(initial.parameters(), trained.parameters(), strict=True))
    return changes, unchanged, sum(not p.requires_grad for p in trained.parameters())


def initial_model(spec: RunSpec, num_classes: int) -> ResNet:
    """The weights the run started from: `reslab train` seeds the global generator with the run's seed, then builds."""
    torch.manual_seed(spec.seed)
    return create_model(spec.model, num_classes=num_classes, **spec.model_kwargs)


def figure(path: Path, signals: dict[tuple[str, str], Signals], data: str) -> Path:
    fig = Figure(figsize=(11, 7.5), layout="constrained")
    fig.suptitle(f"{data}: forward responses and backward gradients by layer (BN in training mode)")
    axes = fig.subplots(2, 2)
    for col, state in enumerate(("initialisation", "end of training")):
        nets = [(net, sig) for (net, st), sig in signals.items() if st == state]
        for i, (net, sig) in enumerate(nets):
            x = range(1, len(sig.response_std) + 1)
            axes[0, col].plot(x, sig.response_std, marker=".", color=f"C{i}", label=net)
            axes[1, col].plot(x, sig.weight_grad, marker=".", color=f"C{i}", label=net)
        axes[0, col].set(title=f"std of each 3x3 layer's response, {state}", ylabel="std")
        axes[1, col].set(title=f"‖dL/dW‖ of each 3x3 layer, {state}", xlabel="layer (forward order)",
                         ylabel="gradient norm")  # fmt: skip
        # BN makes every response std ~1 at initialisation: a fixed decade keeps that flat line from filling the panel
        axes[0, col].set_ylim(0.3, 3)
        for row in range(2):
            axes[row, col].set_yscale("log")
            axes[row, col].grid(alpha=0.3)
            axes[row, col].legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def run(ctx: Context) -> Path:
    results = ctx.runner.run_all(specs(ctx))
    ds = ctx.runner.dataset
    signals: dict[tuple[str, str], Signals] = {}
    n_batches, batch_size = (1 if ctx.budget.name == "smoke" else BATCHES), ctx.budget.batch_size
    changes: dict[str, tuple[list[float], int, int]] = {}
    for r in results.values():
        trained = load_trained(r.path)
        initial = initial_model(r.spec, ds.num_classes)
        batches = probe_batches(ds.train_images, ds.train_labels, trained.preprocessing.mean, n_batches, batch_size)
        net = degradation.label(r.spec.model)
        signals[net, "initialisation"] = measure(initial, batches)
        signals[net, "end of training"] = measure(trained.model, batches)
        changes[net] = weight_change(initial, trained.model.cpu())
    ctx.out.mkdir(parents=True, exist_ok=True)
    figure(ctx.out / "signals.png", signals, ctx.data_label)
    table = []
    for (net, state), sig in signals.items():
        g = sig.weight_grad
        table.append({"net": net, "state": state, "3x3 layers": len(g), "first layer ‖dL/dW‖": g[0],
                      "last layer ‖dL/dW‖": g[-1], "first / last": g[0] / g[-1], "smallest / last": min(g) / g[-1],
                      "smallest response std": min(sig.response_std),
                      "stage inputs ‖dL/dx‖": ", ".join(f"{v:.3g}" for v in sig.stage_input_grad),
                      "mean std F(x) / std x": _mean(sig.residual_ratio),
                      "mean ‖dL/dy‖ / ‖dL/dx‖": _mean(sig.shortcut_share)})  # fmt: skip
    training = [{"net": net, "3x3 layers": len(c), "smallest relative change of a layer's weights": min(c),
                 "largest": max(c), "parameter tensors unchanged": unchanged,
                 "parameter tensors that take no gradient": frozen}
                for net, (c, unchanged, frozen) in changes.items()]  # fmt: skip
    layers = [{"net": net, "state": state, "layer": i + 1, "response std": std, "‖dL/dW‖": grad}
              for (net, state), sig in signals.items()
              for i, (std, grad) in enumerate(zip(sig.response_std, sig.weight_grad, strict=True))]  # fmt: skip
    sections = [
        "## Signals by layer\n\n![signals](signals.png)",
        "## Summary\n\n" + markdown_table(table, list(table[0]), digits=3),
        "## What it shows\n\n" + "\n".join(verdict(table)),
        "## Nothing is frozen\n\n" + markdown_table(training, list(training[0]), digits=3) + "\n\nHow far training "
        "moved each 3x3 layer's weights: ‖W_trained − W_initial‖ / ‖W_initial‖, smallest and largest over the layers; "
        "the parameter tensors that training left exactly as they started, and those that take no gradient.",
        f"Probe: {n_batches} batches of {batch_size} training images (a seeded random choice, un-augmented, normalised "
        "with the run's mean image), cross-entropy loss, BN in training mode; every figure is the mean over the "
        "batches. ‖dL/dW‖ is the Frobenius norm of the gradient of the batch's mean loss with respect to a layer's "
        "weights; a stage's ‖dL/dx‖ is that of its input. Initialisation: the weights each run started from (its "
        "seed). The per-layer numbers are in results.json.",
    ]
    units = {f"{net}, {state}": {"std F(x) / std x": sig.residual_ratio, "‖dL/dy‖ / ‖dL/dx‖": sig.shortcut_share}
             for (net, state), sig in signals.items() if sig.residual_ratio}  # fmt: skip
    write_results(ctx, table, {"layers": layers, "units": units, "training": training,
                               "weight_change": {net: c for net, (c, _, _) in changes.items()},
                               "claims": claims(table)})  # fmt: skip
    return write_report(ctx, "Signals and gradients of plain nets and ResNets", "Sec. 4.1", sections,
                        list(results.values()))  # fmt: skip


def _mean(values: list[float]) -> float | str:
    return sum(values) / len(values) if values else ""


def verdict(table: list[dict[str, Any]]) -> list[str]:
    """Statements from the numbers: no vanishing; the direction of the first/last ratio and what Yang et al. say."""
    low = min(table, key=lambda r: r["smallest / last"])
    vanish = low["smallest / last"] < 0.1
    lines = [(f"- **Some gradients shrink**: {low['net']} ({low['state']}) has a layer whose ‖dL/dW‖ is "
              f"{low['smallest / last']:.2g} of the last layer's." if vanish else
              f"- **No layer's gradient vanishes**: in every net and state each layer's ‖dL/dW‖ is at least "
              f"{low['smallest / last']:.2g} of the last layer's (the lowest: {low['net']}, {low['state']}).")
             + f" Every response has a std of at least {min(r['smallest response std'] for r in table):.2g}: BN keeps "
             "the forward signals alive, as the paper says."]  # fmt: skip
    for r in table:
        direction = "grows towards the input" if r["first / last"] > 1 else "shrinks towards the input"
        lines.append(f"- {r['net']}, {r['state']}: the first layer's gradient norm is {r['first / last']:.3g}x the "
                     f"last's: it {direction}.")  # fmt: skip
    init = {r["net"]: r["first / last"] for r in table if r["state"] == "initialisation"}
    plain = sorted((k for k in init if k.startswith("plain")), key=lambda k: int(k.split("-")[1]))
    if len(plain) == 2:
        grows = init[plain[1]] > init[plain[0]] > 1
        lines.append(f"- At initialisation the plain nets' first/last ratio is {init[plain[0]]:.3g} ({plain[0]}) and "
                     f"{init[plain[1]]:.3g} ({plain[1]}): "
                     + ("gradients grow towards the input, more with depth, as Yang et al. (2019) predict for plain "
                        "nets with BN (explosion, not vanishing)." if grows else
                        "not the growth with depth that Yang et al. (2019) predict for plain nets with BN at "
                        "initialisation."))  # fmt: skip
    return lines


def claims(table: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Sec. 4.1's "neither forward nor backward signals vanish" in plain nets with BN, for the scorecard."""
    plain = [r for r in table if r["net"].startswith("plain")]
    low = min(plain, key=lambda r: r["smallest / last"])
    std = min(r["smallest response std"] for r in plain)
    alive = low["smallest / last"] >= 0.1 and std >= 0.1
    return [
        claim(
            "Plain nets with BN: signals do not vanish",
            "forward responses and gradients keep non-zero variances (Sec. 4.1)",
            f"smallest layer ‖dL/dW‖ {low['smallest / last']:.2g} of the last layer's "
            f"({low['net']}, {low['state']}); smallest response std {std:.2g}",
            REPRODUCED if alive else NOT_REPRODUCED,
            "a layer counts as vanished below 0.1 of the last's",
        )
    ]
