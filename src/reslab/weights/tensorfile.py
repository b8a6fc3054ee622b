"""reslab's safetensors file (`reslab export --format safetensors`, the shipped weights): a model's state dict, plus
beside it everything a `TrainedModel` holds, so that it rebuilds without the run folder.

Tensors: the state dict under its own keys, the mean image as ``reslab.mean`` and tensor-valued preprocessing entries
as ``reslab.preprocess.<key>`` (no parameter name starts with ``reslab.``). Metadata (strings): ``format`` "reslab",
``config`` (the run's configuration, JSON), ``classes`` (JSON), ``iteration`` and ``preprocess`` (the plain entries,
JSON). Reading builds no model (`reslab.models.trained` does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import safe_open, save

from reslab.errors import ModelError
from reslab.files import atomic_write
from reslab.weights.trained import Arch, Preprocessing, TrainedModel

FORMAT = "reslab"
_MEAN = "reslab.mean"
_PRE = "reslab.preprocess."


@dataclass
class TensorFile:
    """What a reslab safetensors file holds, the model not yet built."""

    state: dict[str, torch.Tensor]
    arch: Arch
    classes: list[str]
    preprocessing: Preprocessing
    iteration: int
    config: dict[str, Any]


def write_tensorfile(trained: TrainedModel, path: str | Path) -> Path:
    """Write ``trained`` as one safetensors file (atomically)."""
    tensors = {k: v.detach().cpu().contiguous().clone() for k, v in trained.model.state_dict().items()}
    entries = trained.preprocessing.to_checkpoint()
    if entries["mean"] is not None:
        tensors[_MEAN] = entries["mean"].detach().cpu().contiguous()
    plain = {}
    for key, value in entries["preprocess"].items():
        if isinstance(value, torch.Tensor):
            tensors[_PRE + key] = value.detach().cpu().contiguous()
        else:
            plain[key] = value
    config = {**trained.config, "model": trained.arch.name, "model_kwargs": dict(trained.arch.kwargs)}
    meta = {"format": FORMAT, "config": json.dumps(config), "classes": json.dumps(list(trained.classes)),
            "iteration": str(trained.iteration), "preprocess": json.dumps(plain)}  # fmt: skip
    path = Path(path)
    with atomic_write(path) as f:
        f.write(save(tensors, metadata=meta))
    return path


def is_tensorfile(path: str | Path) -> bool:
    """Whether ``path`` is a safetensors file with reslab's metadata (False for anything unreadable)."""
    try:
        with safe_open(str(path), "pt") as f:
            return (f.metadata() or {}).get("format") == FORMAT
    except (SafetensorError, OSError, ValueError):
        return False


def read_tensorfile(path: str | Path, *, weights: bool = True) -> TensorFile:
    """A file `write_tensorfile` wrote; a bare state dict in safetensors form is refused in one line that says how
    to load it instead (``create_model(name, weights=FILE)``). ``weights=False``: its metadata and preprocessing
    only (``state`` empty), without reading the weights."""
    path = Path(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
            keys = [k for k in f.keys() if weights or k == _MEAN or k.startswith(_PRE)]  # noqa: SIM118 (not a dict)
            tensors = {k: f.get_tensor(k) for k in keys}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"cannot read {path}: not a safetensors file ({str(e).splitlines()[0][:80]})") from e
    if meta.get("format") != FORMAT:
        raise ModelError(f"{path} holds weights without reslab's metadata (model, classes, preprocessing): load them "
                         "with reslab.create_model(NAME, weights=FILE)")  # fmt: skip
    try:
        config = dict(json.loads(meta["config"]))
        classes = list(json.loads(meta["classes"]))
        preprocess: dict[str, Any] = dict(json.loads(meta.get("preprocess", "{}")))
        iteration = int(meta.get("iteration", 0))
        arch = Arch(config["model"], dict(config.get("model_kwargs") or {}))
    except (KeyError, ValueError, TypeError) as e:
        raise ModelError(f"{path}: its reslab metadata is damaged ({type(e).__name__}: {e})") from e
    mean = tensors.pop(_MEAN, None)
    for key in [k for k in tensors if k.startswith(_PRE)]:
        preprocess[key[len(_PRE) :]] = tensors.pop(key)
    pre = Preprocessing.from_checkpoint({"mean": mean, "preprocess": preprocess, "config": config})
    return TensorFile(tensors, arch, classes, pre, iteration, config)
