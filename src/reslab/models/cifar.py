"""The CIFAR-10 networks of Sec. 4.2 and their plain, highway and pre-activation relatives.

Sec. 4.2: a 3x3 convolution with 16 filters, then three stages of ``2n`` 3x3 layers with 16, 32 and 64 filters on
32x32, 16x16 and 8x8 maps (sub-sampling by stride-2 convolutions), global average pooling and a 10-way fully
connected layer: ``6n + 2`` weighted layers. Shortcuts are identity everywhere, option A where the shape changes,
so the ResNet has exactly the parameters of its plain twin.
"""

from __future__ import annotations

from typing import Any

from reslab import paper
from reslab.errors import ModelError
from reslab.models.blocks import BasicBlock, PreActBasicBlock, PreActBottleneck, SingleLayerBlock
from reslab.models.registry import register_builder, register_model
from reslab.models.resnet import ResNet

CIFAR_WIDTHS = (16, 32, 64)


def _units_per_stage(depth: Any, layers_per_unit: int) -> int:
    per_stage_layers = 3 * layers_per_unit
    if not isinstance(depth, int) or depth < per_stage_layers + 2 or (depth - 2) % per_stage_layers:
        form = f"{per_stage_layers}n+2"
        raise ModelError(
            f"depth must be {form} with n >= 1 for this family (e.g. {per_stage_layers + 2}), got {depth!r}"
        )
    return (depth - 2) // per_stage_layers


UNIT_BLOCKS = {2: BasicBlock, 1: SingleLayerBlock}  # unit_layers -> block


def cifar_resnet(depth: int = 20, *, num_classes: int = 10, shortcut: str = "A", unit_layers: int = 2,
                 widths: tuple[int, ...] = CIFAR_WIDTHS, **kwargs: Any) -> ResNet:  # fmt: skip
    """The 6n+2 CIFAR net of Sec. 4.2 (ResNet-20/32/44/56/110/1202 for n = 3/5/7/9/18/200), option A.

    ``mode="plain"`` gives the plain twin, ``mode="highway"`` the gated twin (not in the paper).
    ``unit_layers=1`` gives units of one 3x3 layer (`SingleLayerBlock`, Sec. 3.1's single-layer F): twice as many
    units for the same ``depth`` (3n+2 layers), the same 3x3 layers and parameters. Other keywords go to `ResNet`.
    """
    if unit_layers not in UNIT_BLOCKS:
        raise ModelError(f"unit_layers must be 1 or 2, got {unit_layers!r}")
    n = _units_per_stage(depth, unit_layers)
    return ResNet(UNIT_BLOCKS[unit_layers], [n] * 3, widths, stem="cifar", num_classes=num_classes,
                  shortcut=shortcut, **kwargs)  # fmt: skip


def cifar_preact_resnet(depth: int = 164, *, bottleneck: bool = True, num_classes: int = 10,
                        shortcut: str = "B", **kwargs: Any) -> ResNet:  # fmt: skip
    """Pre-activation CIFAR ResNets (*Identity Mappings in Deep Residual Networks*, He et al. 2016).

    Basic units give depth 6n+2 (ResNet-110); bottleneck units (output 64/128/256) give 9n+2 (ResNet-164, 1001).
    Shortcut B by default (that paper's projection, conv only, where the shape changes). The stride sits where
    `Bottleneck` puts it (``stride_in_1x1``); the final BN-ReLU before pooling is that paper's.
    """
    block = PreActBottleneck if bottleneck else PreActBasicBlock
    n = _units_per_stage(depth, 3 if bottleneck else 2)
    return ResNet(block, [n] * 3, CIFAR_WIDTHS, stem="cifar", num_classes=num_classes, shortcut=shortcut, **kwargs)


register_builder("cifar_resnet", cifar_resnet, family="cifar")
register_builder("cifar_preact_resnet", cifar_preact_resnet, family="cifar")

for _d in (20, 32, 44, 56, 110, 1202):
    _paper = {"params_m": paper.CIFAR_PARAMS_M[_d], "test_error": paper.CIFAR_TEST_ERROR[_d]}
    _doc = f"ResNet-{_d}, CIFAR-10 (Sec. 4.2, Table 6), shortcut A"
    register_model(f"resnet{_d}", cifar_resnet, family="cifar", depth=_d, doc=_doc, paper=_paper)
for _d in (20, 32, 44, 56, 110):
    _doc = f"plain-{_d}, CIFAR-10 (Sec. 4.2, Fig. 6): ResNet-{_d} without the shortcuts"
    register_model(f"plain{_d}", cifar_resnet, family="cifar", depth=_d, mode="plain", doc=_doc)
for _d in (20, 32, 44, 56, 110):
    _doc = f"ResNet-{_d} with single-layer residual units: {_d - 2} units of one 3x3 conv (Sec. 3.1)"
    register_model(f"resnet{_d}_1layer", cifar_resnet, family="cifar", depth=_d, unit_layers=1, doc=_doc)
for _d in (20, 32, 44, 56, 110):
    _doc = f"highway-{_d}: ResNet-{_d} with a sigmoid-gated shortcut (Srivastava et al. 2015)"
    register_model(f"highway{_d}", cifar_resnet, family="cifar", depth=_d, mode="highway", doc=_doc)
_doc = "pre-activation ResNet-110, basic units (Identity Mappings, 2016)"
register_model("preact_resnet110", cifar_preact_resnet, family="cifar", depth=110, bottleneck=False, doc=_doc)
for _d in (164, 1001):
    _paper = {"params_m": paper.PREACT_PARAMS_M[_d], "test_error": paper.PREACT_TEST_ERROR[_d]}
    _doc = f"pre-activation ResNet-{_d}, bottleneck units (Identity Mappings, 2016)"
    register_model(f"preact_resnet{_d}", cifar_preact_resnet, family="cifar", depth=_d, bottleneck=True, doc=_doc,
                   paper=_paper)  # fmt: skip
