"""Every network of the paper, behind one registry."""

from reslab.models.blocks import (
    BasicBlock,
    Bottleneck,
    PreActBasicBlock,
    PreActBottleneck,
    SingleLayerBlock,
    Unit,
    ZeroPadShortcut,
)
from reslab.models.complexity import complexity, model_complexity
from reslab.models.registry import ModelSpec, create_model, family_and_depth, list_models, model_spec
from reslab.models.resnet import ResNet

__all__ = [
    "BasicBlock",
    "Bottleneck",
    "ModelSpec",
    "PreActBasicBlock",
    "PreActBottleneck",
    "ResNet",
    "SingleLayerBlock",
    "Unit",
    "ZeroPadShortcut",
    "complexity",
    "create_model",
    "family_and_depth",
    "list_models",
    "model_complexity",
    "model_spec",
]
