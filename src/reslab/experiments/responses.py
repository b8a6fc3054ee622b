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
    claim,
    lines_figure,
    markdown_table,
    write_report,
    write_results,
)
from reslab.experiments.runner import Context, RunResult, RunSpec
from reslab.models import ResNet
from reslab.models.trained import load_trained


def specs(ctx: Context) -> list[RunSpec]:
    """Plain and ResNet at 20 and 56 layers (and 110 where the budget trains it), seed 0: Fig. 7 plots one run
    each."""
    return [s for s in degradation.specs(ctx, (20, 56, 110)) if s.seed == 0]


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


def statements(stds: dict[str, list[float]]) -> list[str]:
    """Fig. 7's two observations, decided from our numbers."""
    avg = {k: statistics.fmean(v) for k, v in stds.items()}
    out = []
    for plain in (k for k in avg if k.startswith("plain")):
        res = "ResNet" + plain[len("plain") :]
        if res in avg:
            word = "smaller" if avg[res] < avg[plain] else "not smaller"
            out.append(f"- {res} mean response std {avg[res]:.3f} vs {avg[plain]:.3f} for {plain}: **{word}** (the "
                       "paper: ResNets have generally smaller responses than their plain counterparts).")  # fmt: skip
    resnets = sorted((k for k in avg if k.startswith("ResNet")), key=lambda k: int(k.split("-")[1]))
    for a, b in itertools.pairwise(resnets):
        word = "smaller" if avg[b] < avg[a] else "not smaller"
        out.append(f"- {b} mean response std {avg[b]:.3f} vs {avg[a]:.3f} for {a}: **{word}** (the paper: the "
                   "deeper ResNet has smaller magnitudes of responses).")  # fmt: skip
    return out


def claims(stds: dict[str, list[float]]) -> list[dict[str, str]]:
    """Fig. 7's two observations for the scorecard (one run each: the comparison is exact for these checkpoints, so
    no noise margin; other seeds may differ)."""
    avg = {k: statistics.fmean(v) for k, v in stds.items()}
    pairs = [("ResNet" + p[len("plain") :], p) for p in avg if p.startswith("plain") and "ResNet" + p[len("plain") :]
             in avg]  # fmt: skip
    smaller = [avg[r] < avg[p] for r, p in pairs]
    resnets = sorted((k for k in avg if k.startswith("ResNet")), key=lambda k: int(k.split("-")[1]))
    falling = [avg[b] < avg[a] for a, b in itertools.pairwise(resnets)]
    return [
        claim("Fig. 7: ResNets respond less than their plain twins", "ResNet std below plain's at 20 and 56 layers",
              ", ".join(f"{r} {avg[r]:.3f} vs {p} {avg[p]:.3f}" for r, p in pairs),
              REPRODUCED if smaller and all(smaller) else NOT_REPRODUCED, "one run each (seed 0)"),
        claim("Fig. 7: deeper ResNets respond less", "std falls from ResNet-20 to 56 to 110",
              " > ".join(f"{k} {avg[k]:.3f}" for k in resnets),
              REPRODUCED if falling and all(falling) else NOT_REPRODUCED, "one run each (seed 0)"),
    ]  # fmt: skip


def run(ctx: Context) -> Path:
    results: dict[str, RunResult] = ctx.runner.run_all(specs(ctx))
    ds = ctx.runner.dataset
    stds = {degradation.label(r.spec.model): layer_stds(r.path, ds.test_images, ds.test_labels, ctx.runner.device)
            for r in results.values()}  # fmt: skip
    ctx.out.mkdir(parents=True, exist_ok=True)
    lines_figure(ctx.out / "fig7_responses.png", [
        ("std of layer responses, in layer order", "layer index (original)", stds),
        ("std of layer responses, sorted by magnitude", "layer index (sorted by magnitude)",
         {k: sorted(v, reverse=True) for k, v in stds.items()}),
    ], ylabel="std", data=ctx.data_label)  # fmt: skip
    table = [{"net": k, "3x3 layers": len(v), "mean std": statistics.fmean(v), "max std": max(v), "min std": min(v)}
             for k, v in stds.items()]  # fmt: skip
    sections = [
        "## Fig. 7: standard deviations of layer responses\n\n![Fig. 7](fig7_responses.png)",
        f"Response = output of the BN after each 3x3 convolution (stem included), before the ReLU or the addition; "
        f"final model in eval mode on the {len(ds.test_labels)} test images, preprocessed as in training (the "
        "checkpoint's mean image). Std over all elements (images, channels, positions) of each layer's response.",
        "## Summary\n\n" + markdown_table(table, list(table[0]), digits=3),
        "## Does Fig. 7 reproduce?\n\n" + "\n".join(statements(stds)),
    ]
    write_results(ctx, table, {"stds": stds, "claims": claims(stds)})
    return write_report(ctx, "Fig. 7: layer responses of plain nets and ResNets", "Fig. 7 (Sec. 4.2)", sections,
                        list(results.values()))  # fmt: skip
