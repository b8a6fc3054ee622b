"""Parameters and multiply-adds counted on the real module (no per-layer formulas).

`torch.utils.flop_counter` counts 2 FLOPs per multiply-add of convolutions and matrix products; the paper's
"FLOPs" (Table 1) are multiply-adds, so we halve it. Like the paper, BN, ReLU, additions and pooling are not counted.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def complexity(model: nn.Module, input_size: Sequence[int] = (3, 224, 224)) -> dict[str, int]:
    """``{"params": ..., "macs": ...}`` for one image of ``input_size`` (C, H, W)."""
    if len(input_size) == 4:
        input_size = input_size[1:]
    params = sum(p.numel() for p in model.parameters())
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()  # no running-stat updates while counting
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, *input_size, device=device))
    finally:
        model.train(was_training)
    return {"params": params, "macs": counter.get_total_flops() // 2}


def model_complexity(name: str, input_size: Sequence[int] | None = None, **kwargs: object) -> dict[str, int]:
    """`complexity` of a registered model, built on the meta device: shapes only, so no memory and no arithmetic
    (ResNet-1202 counts in a second). ``input_size`` defaults to the family's (32x32 CIFAR, 224x224 ImageNet)."""
    from reslab.models.registry import create_model, model_spec  # the registry imports the families

    size = input_size or model_spec(name).input_size
    with torch.device("meta"):
        return complexity(create_model(name, **kwargs), size)
