"""A ResNet's parts, defined once: the paper's conv1 (``stem``: the first convolution and its BN) and conv2_x ...
(``layer1`` ...: the stages, `ResNet.stage_names`). Fine-tuning's ``--freeze`` names them; the detector's
``trainable_stages`` counts them from the top. And the two ways of freezing BN, under two names:

* `freeze_statistics`: every BN normalises with its running statistics and keeps them; its scale and shift still
  train (`FrozenStatsBatchNorm2d`; ``--freeze-bn``, and the frozen parts of ``--freeze``);
* `freeze_batchnorm`: statistics *and* scale and shift fixed (torchvision's ``FrozenBatchNorm2d``), as Faster R-CNN's
  ResNet backbone had them (Sec. 4.3, Appendix A: detection batches are too small for BN statistics).
"""

from __future__ import annotations

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

from reslab.errors import ConfigError

STEM = "stem"


def parts(model: nn.Module) -> dict[str, list[nn.Module]]:
    """The part names (``stem``, then each stage's) and the modules each one covers, in the network's order."""
    stages = getattr(model, "stage_names", None)
    if stages is None:
        raise ConfigError(f"parts are those of a reslab ResNet (stem, stages, fc); {type(model).__name__} has no "
                          "stages")  # fmt: skip
    return {STEM: [model.conv1, model.bn1], **{name: [getattr(model, name)] for name in stages}}


class FrozenStatsBatchNorm2d(nn.BatchNorm2d):
    """A BatchNorm2d that always normalises with its running statistics and never updates them: ``train()`` leaves
    it in inference mode. Same parameters and buffers as ``nn.BatchNorm2d``, so checkpoints load into plain models."""

    def train(self, mode: bool = True) -> FrozenStatsBatchNorm2d:
        return super().train(False)


def freeze_statistics(module: nn.Module) -> None:
    """Every BatchNorm2d in ``module`` keeps and normalises with its running statistics (its affine still trains)."""
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = FrozenStatsBatchNorm2d  # the same attributes: swapped in place, the state dict unchanged
            m.eval()


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Every BatchNorm2d in ``module`` replaced by a FrozenBatchNorm2d holding its statistics and affine values."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            with torch.no_grad():
                frozen.weight.copy_(child.weight)
                frozen.bias.copy_(child.bias)
                frozen.running_mean.copy_(child.running_mean)
                frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_batchnorm(child)
    return module
