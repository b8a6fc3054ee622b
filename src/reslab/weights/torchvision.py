"""torchvision's ImageNet weights by name: ``torchvision:resnet50`` (its default weights), ``torchvision:resnet50.
IMAGENET1K_V1``, torchvision's own spelling ``torchvision:ResNet50_Weights.IMAGENET1K_V2``, or, where the model is
already named (``create_model("resnet50", weights="torchvision:IMAGENET1K_V2")``), the weights alone.

Everything about the weights comes from torchvision's weights API (``torchvision.models.get_weight`` and the enum's
``url``, ``meta`` and ``transforms()``): the 1000 class names, the evaluation view (V1: shorter side 256, V2: 232;
centre crop 224) and the per-channel mean and std. The file is the one torchvision itself downloads into its hub
cache (``torch.hub.get_dir()/checkpoints/`` + the URL's file name, under ``TORCH_HOME``); reslab downloads nothing,
so a missing file is one line naming where torchvision keeps it and how to fetch it there.

torchvision's ResNets are the paper's networks with one documented deviation, its "v1.5": the bottleneck's stride
on the 3x3 conv instead of the first 1x1. They load into reslab's ``resnet18`` ... ``resnet152`` built with
``stride_in_1x1=False`` (`MODEL_KWARGS`) and give torchvision's outputs exactly.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from reslab.choices import TORCHVISION as PREFIX
from reslab.data.views import LargeAugment
from reslab.errors import ModelError

MODELS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")  # torchvision's names = reslab's names
MODEL_KWARGS: dict[str, Any] = {"stride_in_1x1": False}  # torchvision's "v1.5" bottleneck (see the module doc)


def is_torchvision_ref(ref: object) -> bool:
    return isinstance(ref, str) and ref.startswith(PREFIX)


@dataclass(frozen=True)
class TorchvisionWeights:
    """One of torchvision's weight enums for a ResNet reslab builds, with what its API says about it."""

    model: str  # reslab's (and torchvision's) model name, e.g. "resnet50"
    weights: Any  # the torchvision enum member, e.g. ResNet50_Weights.IMAGENET1K_V2

    @property
    def ref(self) -> str:
        """The canonical spelling, as configs record it: ``torchvision:resnet50.IMAGENET1K_V2``."""
        return f"{PREFIX}{self.model}.{self.weights.name}"

    @property
    def file(self) -> Path:
        """Where torchvision keeps the file (its ``load_state_dict_from_url`` cache: hub dir, checkpoints, the URL's
        file name)."""
        return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(self.weights.url).path)

    @property
    def classes(self) -> list[str]:
        return list(self.weights.meta["categories"])

    @property
    def view(self) -> dict[str, Any]:
        """The evaluation view of ``weights.transforms()``: crop, shorter side, per-channel mean and std ([0, 1])."""
        t = self.weights.transforms()
        return {"crop": int(t.crop_size[0]), "resize": int(t.resize_size[0]), "mean": tuple(t.mean),
                "std": tuple(t.std), "interpolation": t.interpolation.value}  # fmt: skip

    def fitted(self, aug: LargeAugment) -> LargeAugment:
        """``aug`` with the preprocessing these weights were trained for: per-channel normalisation, and their
        evaluation view's shorter side (V1: 256, V2: 232 for a 224 crop) scaled to ``aug``'s crop."""
        view = self.view
        short = max(aug.crop, round(view["resize"] * aug.crop / view["crop"]))
        return dataclasses.replace(aug, normalization="channel", test_short=short)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The weights from torchvision's cache (read with ``weights_only=True``); missing or damaged: one line."""
        path = self.file
        if not path.is_file():
            fn = f"torchvision.models.{self.model}(weights={self.weights.name!r})"
            raise ModelError(f"{self.ref}: torchvision's file {path.name} is not in its cache {path.parent} (reslab "
                             f"downloads nothing): fetch it there with `python -c \"import torchvision; {fn}\"` on a "
                             "machine online, or copy it in; TORCH_HOME moves the cache")  # fmt: skip
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # truncated by an interrupted download, or another file under that name
            raise ModelError(f"{self.ref}: {path} is damaged ({type(e).__name__}); delete it and fetch it again") from e
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ModelError(f"{self.ref}: {path} holds no state dict; delete it and fetch it again")
        return state


def parse(ref: str, model: str | None = None) -> TorchvisionWeights:
    """The weights ``ref`` names (see the module doc); ``model``: the model they are for, where already named."""
    if not is_torchvision_ref(ref):
        raise ModelError(f"{ref!r} does not name torchvision weights (torchvision:MODEL[.WEIGHTS])")
    from torchvision.models import get_model_weights, get_weight  # torchvision loads only for these names

    text = ref[len(PREFIX) :]
    head, _, tail = text.partition(".")
    if head.endswith("_Weights"):  # torchvision's own spelling: ResNet50_Weights.IMAGENET1K_V2
        try:
            weights = get_weight(text)
        except (KeyError, ValueError, AttributeError):
            raise ModelError(f"torchvision has no weights {text!r}") from None
        name = next((m for m in MODELS if type(weights) is get_model_weights(m)), None)
        if name is None:
            raise ModelError(f"{text} are weights for a network reslab does not build; it builds {', '.join(MODELS)}")
        return _checked(TorchvisionWeights(name, weights), model)
    if head in MODELS:
        name, choice = head, tail
    elif model is not None and not tail:  # create_model("resnet50", weights="torchvision:IMAGENET1K_V1")
        name, choice = model, head
    else:
        raise ModelError(f"{ref!r}: torchvision weights reslab loads are for {', '.join(MODELS)} "
                         "(torchvision:MODEL, or torchvision:MODEL.WEIGHTS)")  # fmt: skip
    if name not in MODELS:
        raise ModelError(f"torchvision's ImageNet weights are for {', '.join(MODELS)}, not {name}")
    enum = get_model_weights(name)
    if not choice or choice == "DEFAULT":
        return _checked(TorchvisionWeights(name, enum.DEFAULT), model)
    if choice not in enum.__members__:
        have = ", ".join(w.name for w in enum)
        raise ModelError(f"torchvision has no {name} weights {choice!r}; it has {have} (and DEFAULT)")
    return _checked(TorchvisionWeights(name, enum[choice]), model)


def named_file(path: str | Path) -> TorchvisionWeights | None:
    """The torchvision weights whose file ``path`` is, by its name (torchvision's file names end in their hash's
    first digits, e.g. resnet50-11ad3fa6.pth); None for any other name."""
    name = Path(path).name
    if not name.startswith(MODELS):
        return None
    from torchvision.models import get_model_weights  # torchvision loads only for these names

    found = (TorchvisionWeights(m, w) for m in MODELS for w in get_model_weights(m))
    return next((tv for tv in found if tv.file.name == name), None)


def _checked(found: TorchvisionWeights, model: str | None) -> TorchvisionWeights:
    if model is not None and model != found.model:
        raise ModelError(f"{found.ref} are weights for {found.model}, not {model}")
    return found
