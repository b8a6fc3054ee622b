"""Residual units and their shortcuts (Sec. 3.2-3.3), written once and switched by flags.

Every unit computes a residual function F and merges it with the shortcut according to ``mode``:

* ``"residual"``: ``y = relu(F(x) + s(x))`` (Eq. 1/2; the pre-activation units of *Identity Mappings* drop the
  final ReLU: ``y = F(x) + s(x)``).
* ``"plain"``: ``y = relu(F(x))`` -- the paper's plain twin, the same layers without the addition. No shortcut
  module is built, so a plain net has exactly the parameters of its option-A ResNet.
* ``"highway"``: ``y = relu(T(x) * F(x) + (1 - T(x)) * s(x))`` with ``T = sigmoid(conv1x1(x))`` (Srivastava et
  al. 2015, the gated shortcut the paper contrasts with in Sec. 2). Not in the ResNet paper's experiments.

Shortcut options (Sec. 3.3 and Sec. 4.1 "Identity vs. Projection Shortcuts"):

* ``"A"``: identity; where the shape changes, stride-2 subsampling plus zero channels (no parameters). The paper
  does not say where the zeros go; any placement is a relabelling of channels for a net trained from scratch, but not
  for trained weights. ``zero_pad="after"`` (reslab's default) appends them after the old channels; ``"both"`` puts
  half before and half after, as akamaster/pytorch_resnet_cifar10 (the most used CIFAR ResNet weights) does.
* ``"B"``: identity, and a 1x1 convolution + BN projection only where the shape changes.
* ``"C"``: a 1x1 convolution + BN projection on every unit.

BN follows every convolution (Sec. 3.4). Module names follow torchvision (``conv1``, ``bn1``, ..., ``downsample``)
so that torchvision state dicts load unchanged.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reslab.errors import ModelError
from reslab.models.options import MODES, SHORTCUT_OPTIONS, ZERO_PADS


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    # No bias: the BN that follows has its own shift (Sec. 3.4).
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


class ZeroPadShortcut(nn.Module):
    """Option A: subsample with stride ``stride`` and add ``extra`` all-zero channels, after the old ones
    (``placement="after"``) or half before and half after (``"both"``). No parameters."""

    def __init__(self, stride: int, extra: int, placement: str = "after") -> None:
        super().__init__()
        if placement not in ZERO_PADS:
            raise ModelError(f"unknown zero_pad {placement!r}; choose one of {', '.join(ZERO_PADS)}")
        self.stride = stride
        self.extra = extra
        self.before = extra // 2 if placement == "both" else 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        if self.extra:
            x = F.pad(x, (0, 0, 0, 0, self.before, self.extra - self.before))
        return x

    def extra_repr(self) -> str:
        return f"stride={self.stride}, extra={self.extra}, before={self.before}"


def make_shortcut(option: str, in_ch: int, out_ch: int, stride: int, *, with_bn: bool = True,
                  zero_pad: str = "after") -> nn.Module | None:  # fmt: skip
    """The shortcut of one unit, or ``None`` for a plain identity.

    ``with_bn=False`` gives the conv-only projection of the pre-activation units (*Identity Mappings*, Fig. 5);
    ``zero_pad`` places option A's zero channels (`ZeroPadShortcut`).
    """
    if option not in SHORTCUT_OPTIONS:
        raise ModelError(f"unknown shortcut option {option!r}; choose one of A, B, C (Sec. 3.3)")
    reshapes = stride != 1 or in_ch != out_ch
    if option == "A":
        if not reshapes:
            return None
        if out_ch < in_ch:
            raise ModelError(
                f"shortcut option A cannot reduce channels ({in_ch} -> {out_ch}): it only zero-pads; use 'B' or 'C'"
            )
        return ZeroPadShortcut(stride, out_ch - in_ch, zero_pad)
    if option == "B" and not reshapes:
        return None
    layers: list[nn.Module] = [conv1x1(in_ch, out_ch, stride)]
    if with_bn:
        layers.append(nn.BatchNorm2d(out_ch))
    return nn.Sequential(*layers)


def bottleneck_strides(stride: int, stride_in_1x1: bool) -> tuple[int, int]:
    """(stride of the first 1x1, stride of the 3x3): the paper strides the 1x1, torchvision's v1.5 the 3x3."""
    return (stride, 1) if stride_in_1x1 else (1, stride)


class Unit(nn.Module):
    """What every unit shares: the shortcut, the optional highway gate, and the merge of ``F(x)`` with ``x``."""

    expansion = 1
    preact = False

    def __init__(self, in_ch: int, out_ch: int, stride: int, *, shortcut: str, mode: str, gate_bias: float,
                 zero_pad: str) -> None:  # fmt: skip
        # No defaults here: the skeleton (`ResNet`) and the family builders own them, each once.
        super().__init__()
        if mode not in MODES:
            raise ModelError(f"unknown unit mode {mode!r}; choose one of {', '.join(MODES)}")
        if mode == "highway" and self.preact:
            raise ModelError("highway gating is defined for the post-activation units only")
        self.mode = mode
        self.relu = nn.ReLU(inplace=True)
        # A plain unit has no shortcut at all: its parameters equal the option-A ResNet's (Sec. 4.1).
        self.downsample = (
            None
            if mode == "plain"
            else make_shortcut(shortcut, in_ch, out_ch, stride, with_bn=not self.preact, zero_pad=zero_pad)
        )
        self.gate = None
        if mode == "highway":
            self.gate = nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=True)
            nn.init.constant_(self.gate.bias, gate_bias)  # negative: start close to "carry", as in Highway nets

    def merge(self, f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "plain":
            return f
        s = x if self.downsample is None else self.downsample(x)
        if self.gate is not None:
            t = torch.sigmoid(self.gate(x))
            return t * f + (1.0 - t) * s
        return f + s

    def last_bn(self) -> nn.BatchNorm2d | None:
        """The BN whose output is added to the shortcut (zeroed by ``zero_init_residual``)."""
        return None


class BasicBlock(Unit):
    """Two 3x3 convolutions (Fig. 2 / Fig. 5 left), used by the CIFAR nets and ResNet-18/34."""

    layers = 2  # 3x3 convolutions in F (`SingleLayerBlock`: 1)

    def __init__(self, in_ch: int, out_ch: int, stride: int, *, stride_in_1x1: bool, **unit: Any) -> None:
        super().__init__(in_ch, out_ch, stride, **unit)  # stride_in_1x1 concerns bottlenecks only
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.bn1 = nn.BatchNorm2d(out_ch)
        if self.layers == 2:
            self.conv2 = conv3x3(out_ch, out_ch)
            self.bn2 = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn1(self.conv1(x))
        if self.layers == 2:
            out = self.bn2(self.conv2(self.relu(out)))
        return self.relu(self.merge(out, x))

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2 if self.layers == 2 else self.bn1


class SingleLayerBlock(BasicBlock):
    """A residual function of one 3x3 convolution (+ BN): ``y = relu(BN(W1 x) + x)``.

    Sec. 3.1: "if F has only a single layer, Eqn.(1) is similar to a linear layer: y = W1 x + x, for which we have not
    observed advantages". Not one of the paper's networks: for `reslab reproduce single-layer`, at the same number of
    3x3 layers (and parameters) as the two-layer units.
    """

    layers = 1


class Bottleneck(Unit):
    """1x1 reduce, 3x3, 1x1 expand (x4) (Fig. 5 right), used by ResNet-50/101/152.

    ``stride_in_1x1=True`` is the paper: the stride-2 of a down-sampling unit sits on the first 1x1 ("performed by
    conv3_1, conv4_1, and conv5_1 with a stride of 2"), which gives Table 1's 3.8/7.6/11.3 GFLOPs.
    ``stride_in_1x1=False`` is torchvision's "ResNet v1.5": the stride sits on the 3x3 (more multiply-adds,
    slightly more accurate).
    """

    expansion = 4

    def __init__(self, in_ch: int, out_ch: int, stride: int, *, stride_in_1x1: bool, **unit: Any) -> None:
        super().__init__(in_ch, out_ch, stride, **unit)
        width, (s1, s3) = out_ch // self.expansion, bottleneck_strides(stride, stride_in_1x1)
        self.conv1 = conv1x1(in_ch, width, s1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, s3)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_ch)
        self.bn3 = nn.BatchNorm2d(out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(self.merge(out, x))

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3


class PreActBasicBlock(Unit):
    """Full pre-activation unit, BN-ReLU-conv twice (*Identity Mappings*, Fig. 4e): ``y = F(x) + s(x)``.

    A projection shortcut (conv only, no BN) reads the pre-activated input, as in that paper's code.
    """

    preact = True

    def __init__(self, in_ch: int, out_ch: int, stride: int, *, stride_in_1x1: bool, **unit: Any) -> None:
        super().__init__(in_ch, out_ch, stride, **unit)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = conv3x3(in_ch, out_ch, stride)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.conv2 = conv3x3(out_ch, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv2(self.relu(self.bn2(self.conv1(pre))))
        return self.merge(out, x if self.downsample is None else pre)


class PreActBottleneck(Unit):
    """Pre-activation bottleneck (*Identity Mappings*, ResNet-164/1001); stride placement as in `Bottleneck`."""

    expansion = 4
    preact = True

    def __init__(self, in_ch: int, out_ch: int, stride: int, *, stride_in_1x1: bool, **unit: Any) -> None:
        super().__init__(in_ch, out_ch, stride, **unit)
        width, (s1, s3) = out_ch // self.expansion, bottleneck_strides(stride, stride_in_1x1)
        self.bn1 = nn.BatchNorm2d(in_ch)
        self.conv1 = conv1x1(in_ch, width, s1)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, s3)
        self.bn3 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        out = self.conv3(self.relu(self.bn3(out)))
        return self.merge(out, x if self.downsample is None else pre)
