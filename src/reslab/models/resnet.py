"""The one network skeleton behind every model: stem, stages of units, global pool, classifier.

The CIFAR nets (Sec. 4.2) and the ImageNet nets (Table 1) differ only in their stem, stage widths and depths, and
unit type, so both are `ResNet` instances; the builders in `cifar.py` and `imagenet.py` choose the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from reslab.errors import ModelError
from reslab.models.blocks import Unit, conv3x3

STEMS = ("cifar", "imagenet")


class ResNet(nn.Module):
    """A residual (or plain, or highway) network.

    Args:
        block: unit class (`BasicBlock`, `Bottleneck`, `PreActBasicBlock`, `PreActBottleneck`).
        depths: units per stage.
        widths: base width of each stage (the unit's output is ``width * block.expansion``).
        stem: ``"cifar"`` = 3x3 conv, 16 filters (Sec. 4.2); ``"imagenet"`` = 7x7/2 conv + 3x3/2 max pool (Table 1).
        num_classes: size of the final fully-connected layer.
        shortcut: ``"A"``, ``"B"`` or ``"C"`` (Sec. 3.3). No default here: it is a fact of each family (the paper's
            CIFAR nets use A, its ImageNet nets B), declared once by the family's builder.
        mode: ``"residual"``, ``"plain"`` (the paper's plain twin) or ``"highway"`` (see `reslab.models.blocks`): the
            one way to ask for a plain net.
        stride_in_1x1: bottleneck stride placement; ``True`` is the paper, ``False`` torchvision's v1.5.
        zero_init_residual: start each unit's last BN at gamma=0 (Goyal et al. 2017). Off by default: not in the paper.
        gate_bias: initial bias of the highway gate (negative: start near the carry path).
        zero_pad: where option A's zero channels go: ``"after"`` the old ones, or ``"both"`` sides (half each), as
            akamaster/pytorch_resnet_cifar10's weights need. The paper does not say (`reslab.models.blocks`).

    Initialisation follows the paper (Sec. 3.4, "as in [13]"): He-normal convolutions (fan-out, as in Caffe's
    MSRA filler for backward-pass scaling and in torchvision), BN weight 1 and bias 0, PyTorch's default linear layer.
    """

    def __init__(
        self,
        block: type[Unit],
        depths: Sequence[int],
        widths: Sequence[int],
        *,
        stem: str,
        num_classes: int,
        shortcut: str,
        mode: str = "residual",
        stride_in_1x1: bool = True,
        zero_init_residual: bool = False,
        gate_bias: float = -1.0,
        zero_pad: str = "after",
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if stem not in STEMS:
            raise ModelError(f"unknown stem {stem!r}; choose one of {', '.join(STEMS)}")
        if len(depths) != len(widths) or not depths or min(depths) < 1:
            raise ModelError(f"need one width per stage and at least one unit per stage, got {depths=} {widths=}")
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ModelError(f"num_classes must be a positive integer, got {num_classes!r}")
        if zero_init_residual and (mode != "residual" or block.preact):
            # A plain unit would output relu(0) = 0 with no gradient to its BN; a pre-activation unit has no BN
            # after its last conv. Zero-init only makes sense where an identity carries the signal past F.
            raise ModelError("zero_init_residual needs residual units with a BN after the last conv (not plain, "
                             "highway or pre-activation nets)")  # fmt: skip
        self.preact = block.preact
        stem_width = widths[0] if stem == "cifar" else 64
        # Registered in forward order (conv1, bn1, relu, maxpool, stages): code that runs a net's children in turn,
        # as torchvision's IntermediateLayerGetter does for FPN backbones, then computes what forward does.
        if stem == "cifar":
            self.conv1 = conv3x3(in_channels, stem_width)
        else:
            self.conv1 = nn.Conv2d(in_channels, stem_width, 7, stride=2, padding=3, bias=False)
        # A pre-activation net normalises at the start of each unit and once more before pooling instead.
        self.bn1 = nn.Identity() if self.preact else nn.BatchNorm2d(stem_width)
        self.relu = nn.Identity() if self.preact else nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if stem == "cifar" else nn.MaxPool2d(3, stride=2, padding=1)

        in_ch = stem_width
        self.stage_names: list[str] = []
        for i, (depth, width) in enumerate(zip(depths, widths, strict=False)):
            out_ch = width * block.expansion
            units = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                unit = block(in_ch, out_ch, stride, shortcut=shortcut, mode=mode, gate_bias=gate_bias,
                             stride_in_1x1=stride_in_1x1, zero_pad=zero_pad)  # fmt: skip
                units.append(unit)
                in_ch = out_ch
            name = f"layer{i + 1}"
            self.add_module(name, nn.Sequential(*units))
            self.stage_names.append(name)
        self.final_bn = nn.Sequential(nn.BatchNorm2d(in_ch), nn.ReLU(inplace=True)) if self.preact else nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        self._init_weights(zero_init_residual)

    def _init_weights(self, zero_init_residual: bool) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                bias = m.bias.detach().clone() if m.bias is not None else None  # keep the highway gate's bias
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if bias is not None:
                    m.bias.data.copy_(bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Unit) and m.last_bn() is not None:
                    nn.init.zeros_(m.last_bn().weight)

    def units(self) -> list[Unit]:
        """All residual units in forward order."""
        return [m for m in self.modules() if isinstance(m, Unit)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for name in self.stage_names:
            x = getattr(self, name)(x)
        return self.final_bn(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.forward_features(x))
        return self.fc(torch.flatten(x, 1))
