"""Weights from a file into a model: a reslab checkpoint, a run folder, or a plain state-dict file.

Files are untrusted input: read with ``torch.load(weights_only=True)`` (tensors and plain containers only). The
``module.`` prefix that ``DataParallel`` and ``DistributedDataParallel`` add to every key is removed. A mismatch is
one line naming the first missing or unexpected key, never a wall of keys. Other projects' formats that load but
compute something else unless built differently are recognised (`reslab.weights.peers`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from reslab.errors import ModelError, ReslabError
from reslab.weights.checkpoint import NotACheckpoint, checkpoint_file, read_checkpoint
from reslab.weights.peers import Foreign, recognise
from reslab.weights.tensorfile import is_tensorfile, read_tensorfile
from reslab.weights.torchvision import named_file
from reslab.weights.trained import Preprocessing


class ForeignWeightsWarning(UserWarning):
    """Weights in another project's format were recognised and loaded as that project built its network."""


@dataclass
class Weights:
    """What a weights file holds: the state dict (reslab's key names) and, where the file says, the configuration
    of the run that wrote it (a dict, reslab files) or the foreign format it is in, and the preprocessing it records
    (`recorded_preprocessing`)."""

    state: dict[str, torch.Tensor]
    config: dict[str, Any] | None = None
    foreign: Foreign | None = None
    preprocessing: Preprocessing | None = None


def read_weights(path: str | Path) -> Weights:
    """The weights in ``path``: a reslab checkpoint (its ``model`` entry), a run folder's, a state dict saved with
    ``torch.save``, a recognised foreign checkpoint (`reslab.models.peers`, its keys renamed), or a safetensors file
    (reslab's own, whose preprocessing entries are left out, or any other). torchvision's own files are refused with
    the name that loads them right (``torchvision:MODEL.WEIGHTS``)."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise ModelError(f"weights not found: {path}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        with warnings.catch_warnings():  # torch's notes on pickle protocols would come before our one line
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, foreign or holding code: refuse it in one line
        raise ModelError(f"cannot read weights from {path}: not a weights-only file ({type(e).__name__})") from e
    if isinstance(state, dict) and isinstance(state.get("model"), dict):  # a reslab checkpoint
        config = state.get("config") if isinstance(state.get("config"), dict) else None
        pre, state = Preprocessing.from_checkpoint(state), state["model"]
        if not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ModelError(f"{path} holds no state dict (a mapping of names to tensors)")
        return Weights(_unwrapped(state), config, preprocessing=pre)
    foreign = recognise(state)
    if foreign is not None:
        return Weights(foreign.state, foreign=foreign, preprocessing=Preprocessing(foreign.mean_image()))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} holds no state dict (a mapping of names to tensors)")
    tv = named_file(path)
    if tv is not None:  # its keys fit reslab's net, but torchvision's bottleneck strides its 3x3, not its 1x1
        raise ModelError(f"{path} is torchvision's {tv.model} {tv.weights.name} file: load it as {tv.ref}, which "
                         "brings torchvision's network (stride on the 3x3), classes and normalisation and reads the "
                         f"file from {tv.file.parent} (copy it there)")  # fmt: skip
    return Weights(_unwrapped(state))


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict of `read_weights`."""
    return read_weights(path).state


def _unwrapped(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Without the ``module.`` prefix DataParallel and DistributedDataParallel put on every key."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def _read_safetensors(path: Path) -> Weights:
    if is_tensorfile(path):  # reslab's own: the run's configuration comes with it
        found = read_tensorfile(path)
        return Weights(_unwrapped(found.state), found.config, preprocessing=found.preprocessing)
    try:
        return Weights(_unwrapped(load_file(str(path))))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"cannot read weights from {path}: not a safetensors file") from e


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the weights in ``path`` into ``model`` (every key must match); returns the model."""
    return fit_weights(model, read_state_dict(path), path)


def fit_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> nn.Module:
    """Load ``state`` (read from ``source``) into ``model``: every key and shape must match, else one line."""
    own = model.state_dict()
    # BN's step counter (PyTorch >= 0.4.1) is absent from older files; it only matters for momentum=None BN.
    state = {**{k: v for k, v in own.items() if k.endswith(".num_batches_tracked")}, **state}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    if missing or unexpected:
        what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise ModelError(f"the weights in {source} do not fit this {type(model).__name__}: {what} "
                         f"({len(missing)} missing, {len(unexpected)} unexpected keys)")  # fmt: skip
    wrong = next((k for k in own if own[k].shape != state[k].shape), None)
    if wrong is not None:
        raise ModelError(f"the weights in {source} do not fit: {wrong!r} is {list(state[wrong].shape)} there, "
                         f"{list(own[wrong].shape)} in the model")  # fmt: skip
    model.load_state_dict(state)
    return model


def recorded_preprocessing(path: str | Path) -> Preprocessing | None:
    """The preprocessing a weights file records, read without building anything: a reslab checkpoint's or run
    folder's, a reslab safetensors file's, a recognised foreign checkpoint's (its per-channel mean as a mean image);
    None for plain weights and for files that cannot be read (loading them says why)."""
    path = checkpoint_file(path)
    try:
        if path.suffix == ".safetensors":
            return read_tensorfile(path, weights=False).preprocessing if is_tensorfile(path) else None
        return Preprocessing.from_checkpoint(read_checkpoint(path, mmap=True))
    except NotACheckpoint:
        return read_weights(path).preprocessing
    except (ReslabError, OSError):
        return None
