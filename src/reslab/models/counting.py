"""Parameters and multiply-adds counted on the real module: every convolution and linear layer's multiply-adds from
the shapes it actually sees in a forward pass (on the meta device: shapes only, no arithmetic).

The paper's "FLOPs" (Table 1) are multiply-adds; like the paper, BN, ReLU, additions and pooling are not counted. Why
hooks and not `torch.utils.flop_counter.FlopCounterMode` (which counts the same numbers: a test compares them): it
intercepts every operator, BN's decomposition included, and made ``reslab models`` take half a minute; a hook runs once
per layer. A network that multiplies outside ``nn.Conv*``/``nn.Linear`` modules would be under-counted: none here does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def _unchanged(x: torch.Tensor) -> torch.Tensor:
    return x


def complexity(model: nn.Module, input_size: Sequence[int] = (3, 224, 224)) -> dict[str, int]:
    """``{"params": ..., "macs": ...}`` for one image of ``input_size`` (C, H, W)."""
    if len(input_size) == 4:
        input_size = input_size[1:]
    params = sum(p.numel() for p in model.parameters())
    device = next(model.parameters()).device
    macs = 0

    def count(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        nonlocal macs
        if isinstance(module, CONVS):  # each output value: in/groups x kernel multiply-adds
            macs += output.numel() * module.in_channels // module.groups * math.prod(module.kernel_size)
        else:
            macs += output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (*CONVS, nn.Linear))]
    # BN keeps shapes and is not counted, but its meta kernel was 3/4 of the counting time: passed over meanwhile.
    norms = [m for m in model.modules() if isinstance(m, NORMS)]
    for m in norms:
        m.forward = _unchanged  # type: ignore[method-assign]
    was_training = model.training
    model.eval()  # no running-stat updates while counting
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_size, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
        for m in norms:
            del m.forward  # the class's forward again
    return {"params": params, "macs": macs}


def model_complexity(name: str, input_size: Sequence[int] | None = None, **kwargs: object) -> dict[str, int]:
    """`complexity` of a registered model, built on the meta device: shapes only, so no memory and no arithmetic
    (ResNet-1202 counts in a second). ``input_size`` defaults to the family's (32x32 CIFAR, 224x224 ImageNet)."""
    from reslab.models.registry import create_model, model_spec  # the registry imports the families

    size = input_size or model_spec(name).input_size
    with torch.device("meta"):
        return complexity(create_model(name, **kwargs), size)
