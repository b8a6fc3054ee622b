"""Weights from a file into a model: a reslab checkpoint, a run folder, or a plain state-dict file.

Files are untrusted input: read with ``torch.load(weights_only=True)`` (tensors and plain containers only). The
``module.`` prefix that ``DataParallel`` and ``DistributedDataParallel`` add to every key is removed. A mismatch is
one line naming the first missing or unexpected key, never a wall of keys.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from reslab.errors import ModelError


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights in ``path``: a reslab checkpoint (its ``model`` entry), a run folder's, a state dict saved with
    ``torch.save`` (torchvision's files too), or a safetensors file (reslab's own, whose preprocessing entries are
    left out, or any other)."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.is_file():
        raise ModelError(f"weights not found: {path}")
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, foreign or holding code: refuse it in one line
        raise ModelError(f"cannot read weights from {path}: not a weights-only file ({type(e).__name__})") from e
    if isinstance(state, dict) and isinstance(state.get("model"), dict):
        state = state["model"]  # a reslab checkpoint
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{path} holds no state dict (a mapping of names to tensors)")
    return _unwrapped(state)


def _unwrapped(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Without the ``module.`` prefix DataParallel and DistributedDataParallel put on every key."""
    if state and all(k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"cannot read weights from {path}: not a safetensors file") from e
    return _unwrapped({k: v for k, v in state.items() if not k.startswith("reslab.")})  # not reslab's mean image


def load_weights(model: nn.Module, path: str | Path) -> nn.Module:
    """Load the weights in ``path`` into ``model`` (every key must match); returns the model."""
    return fit_weights(model, read_state_dict(path), path)


def fit_weights(model: nn.Module, state: dict[str, torch.Tensor], source: str | Path) -> nn.Module:
    """Load ``state`` (read from ``source``) into ``model``: every key and shape must match, else one line."""
    own = model.state_dict()
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
