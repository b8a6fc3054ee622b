"""Feature backbones: a network's stage outputs instead of its class scores (timm's ``features_only``).

``create_model(name, features_only=True, out_indices=(1, 2, 3, 4))`` returns a `FeatureNet` over the same modules
(the same parameter names, so any weights of the classification network load into it): index 0 is the stem's
output (after conv1-BN-ReLU, before the ImageNet stem's max pool, as in timm), index i the output of stage
``layer{i}`` (the paper's conv{i+1}_x). ``feature_info`` gives each output's channels, stride ("reduction") and
module name. A pre-activation net's last stage output is taken before its final BN-ReLU, like its other stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from reslab.errors import ModelError
from reslab.models.resnet import ResNet


@dataclass(frozen=True)
class Feature:
    """One output of a feature backbone: its index, the module that makes it, its channels and its stride."""

    index: int
    module: str
    num_chs: int
    reduction: int


class FeatureInfo(list[Feature]):
    """The outputs a `FeatureNet` returns, in order, with timm's accessors."""

    def channels(self) -> list[int]:
        return [f.num_chs for f in self]

    def reduction(self) -> list[int]:
        return [f.reduction for f in self]

    def module_name(self) -> list[str]:
        return [f.module for f in self]


def features(model: ResNet) -> list[Feature]:
    """Every output a `ResNet` can give as a feature map: the stem (index 0) and each stage."""
    stride = model.conv1.stride[0]
    out = [Feature(0, "conv1" if isinstance(model.relu, nn.Identity) else "relu", model.conv1.out_channels, stride)]
    stride *= 2 if isinstance(model.maxpool, nn.MaxPool2d) else 1
    for i, name in enumerate(model.stage_names, 1):
        stage = getattr(model, name)
        first = stage[0]
        stride *= 2 if _strides(first) else 1
        out.append(Feature(i, name, _last_conv(stage[-1]).out_channels, stride))
    return out


def _strides(unit: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) and m.stride[0] > 1 for m in unit.modules())


def _last_conv(unit: nn.Module) -> nn.Conv2d:
    """The unit's last convolution of F (conv2 of a basic unit, conv3 of a bottleneck): its width is the unit's."""
    names = [n for n, m in unit.named_children() if isinstance(m, nn.Conv2d) and n.startswith("conv")]
    return getattr(unit, sorted(names)[-1])


class FeatureNet(nn.Module):
    """The stem and stages of a `ResNet`, returning the outputs at ``out_indices`` (no pooling, no classifier)."""

    def __init__(self, model: ResNet, out_indices: Sequence[int] | None = None) -> None:
        super().__init__()
        available = features(model)
        indices = tuple(range(len(available))) if out_indices is None else tuple(out_indices)
        if not indices or any(not isinstance(i, int) or not 0 <= i < len(available) for i in indices) \
                or list(indices) != sorted(set(indices)):  # fmt: skip
            raise ModelError(f"out_indices must be increasing, distinct indices in 0..{len(available) - 1} (0: the "
                             f"stem, i: stage layer{{i}}); got {out_indices!r}")  # fmt: skip
        self.out_indices = indices
        self.feature_info = FeatureInfo(available[i] for i in indices)
        # The classification network's own modules, under their own names: its state dict (less fc and the final
        # pooling) loads as it is.
        self.conv1, self.bn1, self.relu, self.maxpool = model.conv1, model.bn1, model.relu, model.maxpool
        self.stage_names = model.stage_names[: max(indices)]
        for name in self.stage_names:
            self.add_module(name, getattr(model, name))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.relu(self.bn1(self.conv1(x)))
        out = [x] if 0 in self.out_indices else []
        x = self.maxpool(x)
        for i, name in enumerate(self.stage_names, 1):
            x = getattr(self, name)(x)
            if i in self.out_indices:
                out.append(x)
        return out
