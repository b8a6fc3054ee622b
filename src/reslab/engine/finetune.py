"""Starting a run from trained weights: fine-tuning on new classes, frozen parts, frozen BN statistics.

The paper trains every network from scratch; fine-tuning is what practitioners do with it next, so the choices
here are the usual ones (torchvision's and detectron2's), each a `TrainConfig` field:

* ``init``: the weights to start from (a checkpoint, run folder, safetensors or state-dict file, the name of a
  model with shipped weights, or torchvision's ImageNet weights, ``torchvision:resnet50``). Every tensor must fit
  the model except the classifier (``fc``): when the data has another number of classes, the classifier keeps its
  fresh initialisation and the run says so.
* ``freeze``: parts of the network whose weights do not train: ``stem`` (conv1 and its BN) and the stages
  ``layer1`` ... (``layer3`` for the CIFAR nets, ``layer4`` for the ImageNet ones), the paper's conv1 and
  conv2_x ... conv5_x. Their BN layers also keep their statistics (they run in inference mode). The pre-activation
  nets' final BN (after the last stage) belongs to no part: it trains unless ``freeze_bn``.
* ``freeze_bn``: every BN layer keeps the statistics of the initial weights and normalises with them (inference
  mode), as Faster R-CNN's ResNet backbone did (Sec. 4.3 and Appendix A); their scale and shift still train.
* ``head_lr_scale``: the classifier's learning rate as a multiple of the schedule's (a new head on trained features
  is often given 10x).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from reslab.choices import SHIPPED, TORCHVISION
from reslab.errors import ConfigError, ModelError
from reslab.models.parts import freeze_statistics, parts
from reslab.models.registry import check_architecture
from reslab.weights.peers import Foreign
from reslab.weights.shipped import shipped_file
from reslab.weights.state import Weights, fit_weights, read_weights
from reslab.weights.tensorfile import read_tensorfile
from reslab.weights.torchvision import parse as parse_torchvision
from reslab.weights.trained import Preprocessing

HEAD = "fc"  # the classifier of every reslab model (`ResNet.fc`)


@dataclass(frozen=True)
class Init:
    """The ``init`` weights of a run (`TrainConfig.init`), read once: the state dict, the run configuration they
    record (reslab files), the foreign format they are in (`reslab.weights.peers`, with the per-channel
    normalisation they were trained with) and the preprocessing they record (reslab checkpoints, run folders,
    safetensors files and shipped weights; a recognised foreign checkpoint's per-channel mean as a mean image, its
    std folded into the weights by `state`). torchvision's weights record none of these here: their preprocessing
    has its own path (`weights.torchvision`)."""

    ref: str
    weights: Weights

    @property
    def foreign(self) -> Foreign | None:
        return self.weights.foreign

    @property
    def preprocessing(self) -> Preprocessing | None:
        return self.weights.preprocessing

    @property
    def mean(self) -> torch.Tensor | None:
        """The mean image the weights were trained with, if they record one; in-memory data is normalised with it
        where it has the data's shape."""
        return None if self.preprocessing is None else self.preprocessing.mean

    def state(self, fold: bool = True) -> dict[str, torch.Tensor]:
        """The state dict; ``fold``: a foreign checkpoint's std division goes into the stem, so that data which only
        subtracts a mean (the run's reslab preprocessing) fits it; False where the data divides by that std itself
        (streamed images normalised per channel with the weights' own statistics)."""
        foreign = self.weights.foreign
        return foreign.folded() if foreign is not None and fold else self.weights.state


def read_init(ref: str) -> Init:
    """The weights ``ref`` names: a weights file or run folder, ``shipped:NAME`` or torchvision's weights
    (``torchvision:resnet50.IMAGENET1K_V2``)."""
    if ref.startswith(SHIPPED):
        found = read_tensorfile(shipped_file(ref[len(SHIPPED) :]))
        return Init(ref, Weights(found.state, found.config, preprocessing=found.preprocessing))
    if ref.startswith(TORCHVISION):
        return Init(ref, Weights(parse_torchvision(ref).state_dict()))
    return Init(ref, read_weights(ref))


def load_init(
    model: nn.Module,
    init: Init,
    log: Callable[[str], None] = print,
    name: str | None = None,
    kwargs: dict[str, Any] | None = None,
    fold: bool = True,
) -> None:
    """Load ``init`` into ``model`` (built as ``name(**kwargs)``, where given); a classifier of another size is left
    as initialised (and logged). Weights that record another architecture whose keys would fit (plain vs residual,
    option A's zero placement) are refused, as `create_model` refuses them. ``fold``: see `Init.state`."""
    ref, state, recorded = init.ref, init.state(fold), init.weights.config
    if name is not None and recorded is not None:
        try:
            check_architecture(name, dict(kwargs or {}), recorded, ref)
        except ModelError as e:
            raise ModelError(f"--init: {e}") from None
    own = model.state_dict()
    head = [k for k in own if k.startswith(f"{HEAD}.")]
    if any(k in state and state[k].shape != own[k].shape for k in head):
        theirs, ours = state[f"{HEAD}.weight"].shape[0], own[f"{HEAD}.weight"].shape[0]
        log(f"classifier replaced: {theirs} classes in {ref}, {ours} in the data; it starts from a fresh "
            "initialisation")  # fmt: skip
        state = {**state, **{k: own[k] for k in head}}
    try:
        fit_weights(model, state, ref)
    except ModelError as e:
        raise ModelError(f"--init: {e}") from None


def freeze(model: nn.Module, names: tuple[str, ...], freeze_bn: bool) -> None:
    """Stop the named parts from training (weights and BN statistics); with ``freeze_bn``, every BN's statistics."""
    available = parts(model) if names else {}
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ConfigError(f"cannot freeze {unknown[0]!r}: this model's parts are {', '.join(available)}")
    for name in names:
        for module in available[name]:
            module.requires_grad_(False)
            freeze_statistics(module)
    if freeze_bn:
        freeze_statistics(model)


def head_parameters(model: nn.Module) -> set[int]:
    """ids of the classifier's parameters (for their own learning rate)."""
    head = getattr(model, HEAD, None)
    return {id(p) for p in head.parameters()} if isinstance(head, nn.Module) else set()
