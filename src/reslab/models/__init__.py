"""Every network of the paper, behind one registry.

The names below are imported on first use, so that the light modules of this package (`reslab.models.options`) can be
read without loading torch.
"""

import importlib

_WHERE = {
    "BasicBlock": "blocks", "Bottleneck": "blocks", "PreActBasicBlock": "blocks", "PreActBottleneck": "blocks",
    "SingleLayerBlock": "blocks", "Unit": "blocks", "ZeroPadShortcut": "blocks", "complexity": "complexity",
    "model_complexity": "complexity", "ModelSpec": "registry", "create_model": "registry",
    "family_and_depth": "registry", "list_models": "registry", "model_spec": "registry", "ResNet": "resnet",
}  # fmt: skip


def __getattr__(name: str) -> object:
    if name in _WHERE:
        return getattr(importlib.import_module(f"reslab.models.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'reslab.models' has no attribute {name!r}")


__all__ = sorted(_WHERE)
