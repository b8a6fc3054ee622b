"""Other projects' checkpoint formats that reslab recognises, so that their weights compute what they computed.

A foreign state dict can load into a reslab model with every key and shape matching and still compute something else:
akamaster/pytorch_resnet_cifar10's CIFAR ResNets (the most used CIFAR weights) put option A's zero channels on both
sides of the channel axis, where reslab appends them, and normalise inputs per channel with ImageNet's mean and std,
where reslab subtracts the mean image. Loaded as they are, they make 86-95% test error. `recognise` tells such a file
by its layout and says what it needs: the reslab model and keywords that compute the same function, the key renames,
and the preprocessing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import torch

from reslab.data.dataset import CIFAR10_CLASSES
from reslab.data.presets import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class Foreign:
    """A recognised foreign checkpoint: its weights renamed to reslab's keys, and what computing with them needs."""

    source: str  # the project that wrote it
    model: str  # the reslab model name that has its architecture
    model_kwargs: dict[str, Any]  # keywords that make the reslab model compute the same function
    state: dict[str, torch.Tensor]  # renamed to reslab's keys; still expecting the source's input normalisation
    mean: tuple[float, ...]  # per-channel input normalisation (on [0, 1] pixels)
    std: tuple[float, ...]
    classes: tuple[str, ...]
    extra: dict[str, Any] = field(default_factory=dict)  # what else the file held (e.g. best_prec1)

    def note(self, path: object) -> str:
        """The one line that tells the user what was recognised and chosen."""
        kwargs = ", ".join(f"{k}={v!r}" for k, v in self.model_kwargs.items())
        return (f"{path}: a {self.source} checkpoint, loaded as {self.model}({kwargs}) with inputs normalised per "
                f"channel (mean {self.mean}, std {self.std})")  # fmt: skip

    def folded(self) -> dict[str, torch.Tensor]:
        """The weights with the std division folded into the stem convolution, so that reslab's preprocessing
        (subtract a mean image, here the constant per-channel mean) computes the same function. Exact up to
        rounding: the stem pads with zeros after normalisation, and zero / std is still zero."""
        std = torch.tensor(self.std, dtype=self.state["conv1.weight"].dtype).view(1, -1, 1, 1)
        return {**self.state, "conv1.weight": self.state["conv1.weight"] / std}

    def mean_image(self, size: int = 32) -> torch.Tensor:
        """The per-channel mean as reslab's [3, H, W] mean image."""
        return torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1).expand(-1, size, size).contiguous()


_AKAMASTER_UNIT = re.compile(r"layer(\d)\.(\d+)\.conv1\.weight")


def _akamaster(obj: Any) -> Foreign | None:
    """akamaster/pytorch_resnet_cifar10: ``{"state_dict": ..., "best_prec1": ...}`` (or the bare state dict), keys
    prefixed ``module.`` (DataParallel), classifier ``linear``, 3 stages of basic units, option A padded on both
    sides (``planes // 4`` channels before and after), inputs normalised with ImageNet's per-channel mean/std."""
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        return None
    state = {k.removeprefix("module."): v for k, v in state.items()}
    if "linear.weight" not in state or "conv1.weight" not in state or "fc.weight" in state:
        return None
    units = {(int(m[1]), int(m[2])) for k in state if (m := _AKAMASTER_UNIT.fullmatch(k))}
    stages = {s for s, _ in units}
    if stages != {1, 2, 3}:
        return None
    per_stage = [len([u for u in units if u[0] == s]) for s in (1, 2, 3)]
    if len(set(per_stage)) != 1 or state["conv1.weight"].shape[1:] != (3, 3, 3):
        return None
    renamed = {("fc" + k[len("linear") :] if k.startswith("linear.") else k): v for k, v in state.items()}
    extra = {k: v for k, v in obj.items() if k != "state_dict"} if "state_dict" in obj else {}
    return Foreign("akamaster/pytorch_resnet_cifar10", f"resnet{6 * per_stage[0] + 2}", {"zero_pad": "both"},
                   renamed, IMAGENET_MEAN, IMAGENET_STD, tuple(CIFAR10_CLASSES),
                   {k: v for k, v in extra.items() if isinstance(v, int | float | str)})  # fmt: skip


FORMATS = (_akamaster,)


def recognise(obj: Any) -> Foreign | None:
    """The foreign format ``obj`` (what ``torch.load`` returned) is in, or None."""
    for check in FORMATS:
        found = check(obj)
        if found is not None:
            return found
    return None
