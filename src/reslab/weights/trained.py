"""A trained network with what using it needs, as one typed record: `TrainedModel` (the network, its architecture,
classes, preprocessing, iteration and source) and its `Preprocessing`, written and read here and nowhere else.

Every source of weights becomes a `TrainedModel` through one loader (`reslab.models.trained.load_trained`): a
checkpoint or run folder, a reslab safetensors file, a shipped model's name, torchvision's weights by name, another
project's recognised checkpoint. Prediction, export and evaluation read the input size and normalisation from it,
never from the user.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Arch:
    """What ``create_model(name, **kwargs)`` builds (without the classifier's size, which the classes give)."""

    name: str
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class Preprocessing:
    """How an image becomes the network's input; two kinds.

    * In memory (the CIFAR path, ``view`` None): ``mean`` is the training images' per-pixel mean image [3, H, W] in
      [0, 1] units (Sec. 4.2), subtracted from [0, 1] pixels; the input is H x W. Images of another size were resized
      to shorter side ``image_size`` and centre-cropped (``--image-size``), if it is set.
    * Streamed large images (``view``: the `reslab.data.views.LargeAugment` fields): the evaluation view is the centre
      ``view["crop"]`` square of the image resized to shorter side ``view["test_short"]``; ``mean`` is a per-pixel
      mean image [3, crop, crop] (normalization "pixel", the paper's) or a per-channel mean [3, 1, 1] with its
      ``std`` [3, 1, 1] ("channel", torchvision's).

    ``source``: where the preprocessing was set by someone else (``torchvision:resnet50.IMAGENET1K_V2``), else None.
    """

    mean: torch.Tensor | None
    std: torch.Tensor | None = None
    view: dict[str, Any] | None = None
    image_size: int | None = None
    source: str | None = None

    @property
    def input_size(self) -> tuple[int, int] | None:
        """(height, width) of the network's input: the view's crop, or the mean image's size; None when neither
        says (a per-channel mean without a view: the model family's usual size applies)."""
        if self.view:
            return int(self.view["crop"]), int(self.view["crop"])
        if self.mean is not None and self.mean.dim() == 3 and self.mean.shape[1] > 1:
            return int(self.mean.shape[1]), int(self.mean.shape[2])
        return None

    def to_checkpoint(self) -> dict[str, Any]:
        """The checkpoint entries that hold it: ``mean`` and ``preprocess`` (the view, std, image size, source)."""
        extra: dict[str, Any] = {"large": self.view, "std": self.std, "image_size": self.image_size,
                                 "source": self.source}  # fmt: skip
        return {"mean": self.mean, "preprocess": {k: v for k, v in extra.items() if v is not None}}

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any]) -> Preprocessing:
        """The preprocessing a checkpoint's (or a reslab safetensors file's) entries record."""
        extra = dict(state.get("preprocess") or {})
        config = state.get("config") if isinstance(state.get("config"), dict) else {}
        image_size = extra.get("image_size", config.get("image_size") if not extra.get("large") else None)
        return cls(state.get("mean"), extra.get("std"), extra.get("large"), image_size, extra.get("source"))


@dataclass
class TrainedModel:
    """A network ready for new images, in eval mode, with its architecture, class names (in logit order),
    preprocessing, the iteration it was saved at, where it came from, and the configuration of the run that trained
    it where one did (`reslab.engine.config.TrainConfig.to_dict()`; empty for foreign or torchvision weights)."""

    model: nn.Module
    arch: Arch
    classes: list[str]
    preprocessing: Preprocessing
    iteration: int = 0
    source: Path | str = ""
    config: dict[str, Any] = field(default_factory=dict)
