"""Every network of the paper, behind one registry.

The names below are imported on first use, so that the light modules of this package (`reslab.models.options`) can be
read without loading torch.
"""

from reslab.lazy import lazy_names

_WHERE = {
    "BasicBlock": "blocks", "Bottleneck": "blocks", "PreActBasicBlock": "blocks", "PreActBottleneck": "blocks",
    "SingleLayerBlock": "blocks", "Unit": "blocks", "ZeroPadShortcut": "blocks", "complexity": "counting",
    "model_complexity": "counting", "ModelSpec": "registry", "create_model": "registry",
    "family_and_depth": "registry", "list_models": "registry", "model_spec": "registry", "ResNet": "resnet",
}  # fmt: skip


__getattr__ = lazy_names("reslab.models", {k: f"reslab.models.{v}" for k, v in _WHERE.items()})

__all__ = sorted(_WHERE)
