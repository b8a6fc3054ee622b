"""The ImageNet networks of Table 1 (ResNet-18/34/50/101/152) and their plain twins.

7x7/2 convolution with 64 filters, 3x3/2 max pool, four stages at 64/128/256/512 base width (56, 28, 14, 7 maps
for a 224 input), global average pool, 1000-way FC. Shortcut B by default (identity, projection where the shape
changes: the option the paper uses for 50/101/152, Sec. 4.1). State-dict keys match torchvision's, so torchvision
weights load with ``strict=True`` (use ``stride_in_1x1=False`` for torchvision's bottleneck nets).
"""

from __future__ import annotations

from typing import Any

from reslab import paper
from reslab.errors import ModelError
from reslab.models.blocks import BasicBlock, Bottleneck
from reslab.models.registry import register_builder, register_model
from reslab.models.resnet import ResNet

# Table 1: units per stage.
IMAGENET_DEPTHS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3)}
IMAGENET_WIDTHS = (64, 128, 256, 512)


def imagenet_resnet(depth: int = 50, *, num_classes: int = 1000, shortcut: str = "B", **kwargs: Any) -> ResNet:
    """ResNet-``depth`` of Table 1, option B; ``mode="plain"`` gives the plain twin (Sec. 4.1, Table 2).

    Other keywords go to `ResNet`, e.g. ``stride_in_1x1=False`` for torchvision's "v1.5" bottleneck (the default,
    ``True``, is the paper's).
    """
    if depth not in IMAGENET_DEPTHS:
        raise ModelError(f"ImageNet depth must be one of {sorted(IMAGENET_DEPTHS)} (Table 1), got {depth!r}")
    block = BasicBlock if depth < 50 else Bottleneck
    return ResNet(block, IMAGENET_DEPTHS[depth], IMAGENET_WIDTHS, stem="imagenet", num_classes=num_classes,
                  shortcut=shortcut, **kwargs)  # fmt: skip


register_builder("imagenet_resnet", imagenet_resnet, family="imagenet")

for _d in IMAGENET_DEPTHS:
    register_model(f"resnet{_d}", imagenet_resnet, family="imagenet", depth=_d,
                   doc=f"ResNet-{_d}, ImageNet (Table 1), shortcut B",
                   paper={"gmacs": paper.IMAGENET_GMACS[_d]})  # fmt: skip
for _d in IMAGENET_DEPTHS:
    # The paper states FLOPs only for the plain-18/34 it trained ("the same FLOPs as" the ResNets, Sec. 4.1).
    register_model(f"plain{_d}", imagenet_resnet, family="imagenet", depth=_d, mode="plain",
                   doc=f"plain-{_d}, ImageNet (Sec. 4.1): ResNet-{_d} without the shortcuts",
                   paper={"gmacs": paper.IMAGENET_GMACS[_d]} if _d < 50 else {})  # fmt: skip
