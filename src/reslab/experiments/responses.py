"""Fig. 7 (Sec. 4.2, "Analysis of Layer Responses"): standard deviation of each 3x3 layer's response.

"The responses are the outputs of each 3x3 layer, after BN and before other nonlinearity (ReLU/addition)", on the
test set. We hook the BN that follows every 3x3 convolution, run the final model in eval mode on the test images
(preprocessed exactly as in training, with the training mean image stored in the checkpoint) and take the std over
all the response's elements. The runs are ``degradation``'s: their checkpoints are read, and only missing runs are
trained.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab.data.batches import eval_batches
from reslab.engine.precision import resolve_device
from reslab.experiments import degradation
from reslab.experiments.report import (
    NOT_REPRODUCED,
    REPRODUCED,
    UNRESOLVED,
    claim,
    lines_figure,
    markdown_table,
    seed_noise,
    write_report,
    write_results,
)
from reslab.experiments.runner import Context, RunResult, RunSpec
from reslab.models import ResNet
from reslab.models.trained import load_trained


def specs(ctx: Context) -> list[RunSpec]:
    """Plain and ResNet at 20 and 56 layers (and 110 where the budget trains it), every seed: Fig. 7 plots seed 0,
    and the observations compare the mean over seeds, beyond the spread between them."""
    return degradation.specs(ctx, (20, 56, 110))


def conv_bn_pairs(model: ResNet) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """Every 3x3 convolution with the BN after it, in forward order: the stem's, then each unit's."""
    pairs = [(model.conv1, model.bn1)]
    for unit in model.units():
        pairs += [(getattr(unit, f"conv{i}"), getattr(unit, f"bn{i}")) for i in (1, 2, 3) if hasattr(unit, f"conv{i}")]
    return [(conv, bn) for conv, bn in pairs if isinstance(bn, nn.BatchNorm2d) and conv.kernel_size == (3, 3)]


def response_bns(model: ResNet) -> list[nn.BatchNorm2d]:
    """The BN after every 3x3 convolution: its output is the layer's response (Fig. 7)."""
    return [bn for _, bn in conv_bn_pairs(model)]


@torch.no_grad()
def layer_stds(run: Path, images: torch.Tensor, labels: torch.Tensor, device: str = "auto") -> list[float]:
    """Std of every 3x3 layer's BN output over the given images, for the model in the run folder's checkpoint."""
    dev = resolve_device(device)
    loaded = load_trained(run, dev)
    model = loaded.model.eval()  # eval mode: BN uses its running statistics, as at test time
    bns = response_bns(model)
    sums = torch.zeros(len(bns), 3, dtype=torch.float64)  # (sum, sum of squares, count) per layer

    def hook(i: int) -> Callable[..., None]:
        def record(_module: nn.Module, _inputs: Any, out: torch.Tensor) -> None:
            v = out.detach().double()
            sums[i] += torch.stack([v.sum(), (v * v).sum(), torch.tensor(v.numel(), dtype=torch.float64)]).cpu()

        return record

    handles = [bn.register_forward_hook(hook(i)) for i, bn in enumerate(bns)]
    try:
        for x, _ in eval_batches(images, labels, loaded.preprocessing.mean, batch_size=500, device=str(dev)):
            model(x)
    finally:
        for h in handles:
            h.remove()
    mean = sums[:, 0] / sums[:, 2]
    return (sums[:, 1] / sums[:, 2] - mean**2).clamp_min(0).sqrt().tolist()


def compare(means: dict[str, list[float]], smaller: str, larger: str) -> tuple[str, str]:
    """("lower" | "higher" | "within noise", in words) for the mean response std of ``smaller`` against ``larger``
    (each a list over seeds): beyond twice the standard error over seeds where both have two or more; with one
    seed, "within noise": the comparison of those checkpoints is exact, but seeds move a net's std by about as much
    as the gap between ResNet-20 and ResNet-56 (0.005 between two ResNet-20 seeds, docs/results/fast)."""
    a, b = statistics.fmean(means[smaller]), statistics.fmean(means[larger])
    noise = seed_noise(means[smaller], means[larger])
    if noise is None:  # the checkpoints compare exactly, but another seed moves each net's std by an unknown amount
        return "within noise", f"{a:.3f} vs {b:.3f}, one seed: no estimate of the spread between seeds"
    direction = "lower" if b - a > noise else "higher" if a - b > noise else "within noise"
    return direction, f"{a:.3f} vs {b:.3f}, gap {a - b:+.3f}, noise {noise:.3f} ({len(means[smaller])} seeds)"


def _pairs(means: dict[str, list[float]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(ResNet, plain twin) at each depth with both, and (deeper, shallower) ResNets in depth order."""
    twins = [("ResNet" + p[len("plain") :], p) for p in means
             if p.startswith("plain") and "ResNet" + p[len("plain") :] in means]  # fmt: skip
    resnets = sorted((k for k in means if k.startswith("ResNet")), key=lambda k: int(k.split("-")[1]))
    return twins, [(b, a) for a, b in itertools.pairwise(resnets)]


def statements(means: dict[str, list[float]]) -> list[str]:
    """Fig. 7's two observations, decided from our numbers (``means``: each net's mean response std, per seed)."""
    words = {"lower": "smaller", "higher": "larger", "within noise": "not resolved"}
    twins, deeper = _pairs(means)
    out = []
    for res, plain in twins:
        direction, text = compare(means, res, plain)
        out.append(f"- {res} against {plain}, mean response std {text}: **{words[direction]}** (the paper: ResNets "
                   "have generally smaller responses than their plain counterparts).")  # fmt: skip
    for deep, shallow in deeper:
        direction, text = compare(means, deep, shallow)
        out.append(f"- {deep} against {shallow}, mean response std {text}: **{words[direction]}** (the paper: the "
                   "deeper ResNet has smaller magnitudes of responses).")  # fmt: skip
    return out


def _chain(nets: list[str], value: Callable[[str], float]) -> str:
    """``ResNet-20 0.934 > ResNet-56 0.925 < ...``: each value with the relation measured to the next."""
    out = f"{nets[0]} {value(nets[0]):.3f}" if nets else ""
    for a, b in itertools.pairwise(nets):
        out += f" {'>' if value(a) > value(b) else '<' if value(a) < value(b) else '='} {b} {value(b):.3f}"
    return out


def claims(means: dict[str, list[float]]) -> list[dict[str, str]]:
    """Fig. 7's two observations for the scorecard: each comparison counts beyond twice its standard error over
    seeds, so with one seed each is "not resolved" (`compare`)."""
    twins, deeper = _pairs(means)
    seeds = min(len(v) for v in means.values())
    margin = "one seed: no estimate of the spread between seeds" if seeds < 2 else f"twice the SE over {seeds} seeds"

    def verdict(steps: list[str]) -> str:
        if not steps or "higher" in steps:
            return NOT_REPRODUCED
        return REPRODUCED if all(d == "lower" for d in steps) else UNRESOLVED

    def avg(k: str) -> float:
        return statistics.fmean(means[k])

    def margin_of(pairs: list[tuple[str, str]]) -> str:
        """The margin, and with seeds the comparison nearest to it: a verdict that holds by 0.001 says so."""
        if seeds < 2 or not pairs:
            return margin
        scored = [(avg(small) - avg(big), seed_noise(means[small], means[big]) or 0.0, small, big)
                  for small, big in pairs]  # fmt: skip
        gap, noise, small, big = min(scored, key=lambda t: -t[0] - t[1])  # the least room beyond the noise
        return f"{margin}; narrowest: {small} vs {big}, gap {gap:+.4f}, noise {noise:.4f}"

    return [
        claim("Fig. 7: ResNets respond less than their plain twins", "ResNet std below plain's at 20 and 56 layers",
              ", ".join(f"{r} {avg(r):.3f} vs {p} {avg(p):.3f}" for r, p in twins),
              verdict([compare(means, r, p)[0] for r, p in twins]), margin_of(twins)),
        claim("Fig. 7: deeper ResNets respond less", "std falls from ResNet-20 to 56 to 110",
              _chain([*(s for _, s in deeper[:1]), *(d for d, _ in deeper)], avg),
              verdict([compare(means, d, s)[0] for d, s in deeper]), margin_of(deeper)),
    ]  # fmt: skip


def run(ctx: Context) -> Path:
    results: dict[str, RunResult] = ctx.runner.run_all(specs(ctx))
    ds = ctx.runner.dataset
    per_run = {name: layer_stds(r.path, ds.test_images, ds.test_labels, ctx.runner.device)
               for name, r in results.items()}  # fmt: skip
    stds: dict[str, list[float]] = {}  # seed 0's, layer by layer: the figure
    means: dict[str, list[float]] = {}  # each seed's mean over layers: the observations
    for name, r in results.items():
        net = degradation.label(r.spec.model)
        if r.spec.seed == 0:
            stds[net] = per_run[name]
        means.setdefault(net, []).append(statistics.fmean(per_run[name]))
    ctx.out.mkdir(parents=True, exist_ok=True)
    lines_figure(ctx.out / "fig7_responses.png", [
        ("std of layer responses, in layer order", "layer index (original)", stds),
        ("std of layer responses, sorted by magnitude", "layer index (sorted by magnitude)",
         {k: sorted(v, reverse=True) for k, v in stds.items()}),
    ], ylabel="std", data=ctx.data_label)  # fmt: skip
    table = [{"net": k, "3x3 layers": len(v), "mean std": statistics.fmean(v), "max std": max(v), "min std": min(v),
              "mean std, each seed": ", ".join(f"{m:.3f}" for m in means[k])} for k, v in stds.items()]  # fmt: skip
    sections = [
        "## Fig. 7: standard deviations of layer responses\n\n![Fig. 7](fig7_responses.png)",
        f"Response = output of the BN after each 3x3 convolution (stem included), before the ReLU or the addition; "
        f"final model in eval mode on the {len(ds.test_labels)} test images, preprocessed as in training (the "
        "checkpoint's mean image). Std over all elements (images, channels, positions) of each layer's response. The "
        "figure and the columns but the last are seed 0's run of each net; the observations below compare the mean "
        "over seeds of each run's mean std.",
        "## Summary\n\n" + markdown_table(table, list(table[0]), digits=3),
        "## Does Fig. 7 reproduce?\n\n" + "\n".join(statements(means)),
    ]
    write_results(ctx, table, {"stds": stds, "means": means, "claims": claims(means)})
    return write_report(ctx, "Fig. 7: layer responses of plain nets and ResNets", "Fig. 7 (Sec. 4.2)", sections,
                        list(results.values()))  # fmt: skip
