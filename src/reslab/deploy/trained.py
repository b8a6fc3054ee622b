"""A trained model ready for new images: the network, its class names and its preprocessing, from any source.

``load_trained(ref)`` takes what users hold:

* a reslab checkpoint or run folder (`reslab train` wrote it);
* a safetensors file written by `save_safetensors` (`reslab export --format safetensors`): the weights, plus the
  run's configuration, classes and preprocessing as metadata, so it rebuilds without anything else;
* the name of a model reslab ships weights for (`reslab.deploy.shipped`);
* torchvision's ImageNet weights by name (``torchvision:resnet50``, `reslab.models.torchvision_weights`), from
  torchvision's cache, with its 1000 class names and its evaluation view (resize, crop, per-channel mean and std);
* a checkpoint in another project's format that reslab recognises (`reslab.models.peers`): built as that project
  built it, its input normalisation turned into reslab's (the per-channel mean as the mean image, the std folded
  into the stem convolution), said in one warning.

All of them come back as a `LoadedModel` (the type `reslab eval` uses), so prediction and export never guess a
model's input size or mean: they read them from it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch

from reslab.data.views import preset
from reslab.engine.config import TrainConfig
from reslab.engine.recipes import IMAGENET_TORCHVISION
from reslab.engine.rundir import CHECKPOINT, LoadedModel, load_model
from reslab.errors import ModelError, ReslabError
from reslab.files import atomic_write
from reslab.models.torchvision_weights import MODEL_KWARGS, is_torchvision_ref
from reslab.models.torchvision_weights import parse as parse_torchvision

FORMAT = "reslab"  # the safetensors metadata's "format" entry for files written here
_MEAN = "reslab.mean"  # tensor entries beside the weights; no model parameter name starts with "reslab."
_PRE = "reslab.preprocess."


def save_safetensors(loaded: LoadedModel, path: str | Path) -> Path:
    """Write ``loaded`` as one safetensors file (atomically): the state dict, the mean image and preprocessing
    tensors, and as metadata the configuration, classes and preprocessing."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in loaded.model.state_dict().items()}
    if loaded.mean is not None:
        tensors[_MEAN] = loaded.mean.detach().cpu().contiguous()
    plain = {}
    for key, value in loaded.preprocess.items():
        if isinstance(value, torch.Tensor):
            tensors[_PRE + key] = value.detach().cpu().contiguous()
        else:
            plain[key] = value
    meta = {"format": FORMAT, "config": json.dumps(loaded.config.to_dict()), "classes": json.dumps(loaded.classes),
            "iteration": str(loaded.iteration), "preprocess": json.dumps(plain)}  # fmt: skip
    path = Path(path)
    with atomic_write(path) as f:
        f.write(save(tensors, metadata=meta))
    return path


def read_safetensors(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """A `LoadedModel` from a file `save_safetensors` wrote; a bare state dict in safetensors form is refused in
    one line that says how to load it instead (``create_model(name, weights=FILE)``)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    from reslab.models import create_model
    from reslab.models.weights import fit_weights

    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"cannot read {path}: not a safetensors file ({str(e).splitlines()[0][:80]})") from e
    if meta.get("format") != FORMAT:
        raise ModelError(f"{path} holds weights without reslab's metadata (model, classes, preprocessing): load them "
                         "with reslab.create_model(NAME, weights=FILE)")  # fmt: skip
    try:
        config = TrainConfig.from_dict(json.loads(meta["config"]))
        classes = list(json.loads(meta["classes"]))
        preprocess: dict[str, Any] = dict(json.loads(meta.get("preprocess", "{}")))
        iteration = int(meta.get("iteration", 0))
    except (KeyError, ValueError, TypeError) as e:
        raise ModelError(f"{path}: its reslab metadata is damaged ({type(e).__name__}: {e})") from e
    mean = tensors.pop(_MEAN, None)
    for key in [k for k in tensors if k.startswith(_PRE)]:
        preprocess[key[len(_PRE) :]] = tensors.pop(key)
    model = create_model(config.model, num_classes=len(classes), **config.model_kwargs)
    fit_weights(model, tensors, path)
    return LoadedModel(model.to(device).eval(), config, classes, mean, iteration, path, preprocess)


def load_trained(ref: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """The model ``ref`` names, in eval mode: a checkpoint, a run folder, a reslab safetensors file, the name of
    a model with shipped weights, or torchvision's weights (``torchvision:resnet50``)."""
    from reslab.deploy.shipped import load_shipped
    from reslab.models.registry import is_model_name

    if is_torchvision_ref(ref):
        return load_torchvision(str(ref), device)
    path = Path(ref)
    if (path.is_dir() and (path / CHECKPOINT).is_file()) or (path.is_file() and path.suffix != ".safetensors"):
        try:
            loaded = load_model(path, device)
        except ReslabError as e:
            if "is not a reslab checkpoint" not in str(e):
                raise
            raise ModelError(f"{e}: plain weights carry no classes or preprocessing; load them with "
                             "reslab.create_model(NAME, weights=FILE)") from None  # fmt: skip
        loaded.model.eval()
        return loaded
    if path.is_file():
        return read_safetensors(path, device)
    if isinstance(ref, str) and is_model_name(ref):
        return load_shipped(ref, device)
    if path.is_dir():
        raise ModelError(f"{path} holds no {CHECKPOINT}: not a reslab run folder")
    raise ModelError(f"no such file, run folder or model name: {ref}")


TORCHVISION_DATA = "imagenet"  # what a torchvision model's config names as its data: no local path (eval: --data)


def load_torchvision(ref: str, device: str | torch.device = "cpu") -> LoadedModel:
    """torchvision's weights ``ref`` as a `LoadedModel`: reslab's network built as torchvision's
    (``stride_in_1x1=False``), the enum's class names, and its evaluation view as the large-image preprocessing
    (shorter side ``resize_size``, centre crop ``crop_size``, per-channel mean and std)."""
    from reslab.models import create_model

    tv = parse_torchvision(ref)
    view = tv.view
    model = create_model(tv.model, weights=tv.ref)
    aug = dataclasses.replace(preset(IMAGENET_TORCHVISION.augmentation, view["crop"]), test_short=view["resize"])
    config = TrainConfig(model=tv.model, model_kwargs=dict(MODEL_KWARGS), recipe=IMAGENET_TORCHVISION,
                         data=TORCHVISION_DATA)  # fmt: skip
    object.__setattr__(config, "data", TORCHVISION_DATA)  # not a path: __post_init__ made it one
    mean = torch.tensor(view["mean"]).view(3, 1, 1)
    std = torch.tensor(view["std"]).view(3, 1, 1)
    preprocess = {"large": dataclasses.asdict(aug), "std": std, "source": tv.ref}
    return LoadedModel(model.to(device).eval(), config, tv.classes, mean, 0, tv.file, preprocess)
