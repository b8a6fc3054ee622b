"""Weights from a file into a model: a reslab checkpoint, a run folder, or a plain state-dict file.

Files are untrusted input: read with ``torch.load(weights_only=True)`` (tensors and plain containers only). The
``module.`` prefix that ``DataParallel`` and ``DistributedDataParallel`` add to every key is removed. A mismatch is
one line naming the first missing or unexpected key, never a wall of keys. Other projects' formats that load but
compute something else unless built differently are recognised (`reslab.models.peers`).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab.errors import ModelError
from reslab.models.peers import Foreign, recognise


class ForeignWeightsWarning(UserWarning):
    """Weights in another project's format were recognised and loaded as that project built its network."""


@dataclass
class Weights:
    """What a weights file holds: the state dict (reslab's key names) and, where the file says, the configuration
    of the run that wrote it (a dict, reslab files) or the foreign format it is in."""

    state: dict[str, torch.Tensor]
    config: dict[str, Any] | None = None
    foreign: Foreign | None = None


def read_weights(path: str | Path) -> Weights:
    """The weights in ``path``: a reslab checkpoint (its ``model`` entry), a run folder's, a state dict saved with
    ``torch.save`` (torchvision's files too), a recognised foreign checkpoint (`reslab.models.peers`, its keys
    renamed), or a safetensors file (reslab's own, whose preprocessing entries are left out, or any other)."""
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
        state = state["model"]
        if not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ModelError(f"{path} holds no state dict (a mapping of names to tensors)")
        return Weights(_unwrapped(state), config)
    foreign = recognise(state)
    if foreign is not None:
        return Weights(foreign.state, foreign=foreign)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} holds no state dict (a mapping of names to tensors)")
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
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    try:
        state = load_file(str(path))
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"cannot read weights from {path}: not a safetensors file") from e
    try:
        config = json.loads(meta["config"]) if meta.get("format") == "reslab" else None
    except (KeyError, ValueError):
        config = None
    state = _unwrapped({k: v for k, v in state.items() if not k.startswith("reslab.")})  # not reslab's mean image
    return Weights(state, config if isinstance(config, dict) else None)


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
