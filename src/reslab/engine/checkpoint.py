"""Checkpoints: written atomically, loaded as untrusted input.

A checkpoint is written to a temporary file in the same folder, flushed to disk and renamed over the old one, so a
crash or kill at any moment leaves either the old checkpoint or the new one, never a torn file. It is read back
with ``torch.load(weights_only=True)``: only tensors and plain containers, no pickled code.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from reslab.errors import ReslabError

# The entries every reslab checkpoint has (`reslab eval` needs them); resuming needs the rest of Trainer.state_dict.
REQUIRED = ("model", "config", "iteration", "mean", "classes")


def save_atomic(state: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temp file in the same folder, fsync, rename over ``path``, fsync the folder."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise ReslabError(f"cannot write {path}: {e.strerror or e}") from e
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a checkpoint is an ordinary output file
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):  # a full disk, a vanished folder: the old checkpoint is still there
            raise ReslabError(f"cannot write {path}: {e.strerror or e}") from e
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Small text outputs (config, summary, metrics after a resume) get the same temp-then-rename treatment."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise ReslabError(f"cannot write {path}: {e.strerror or e}") from e


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (a power cut, not just a kill); not every platform lets a folder be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ReslabError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated, foreign or malicious file: refuse it in one line
        why = "it holds more than tensors" if isinstance(e, pickle.UnpicklingError) else type(e).__name__
        raise ReslabError(f"cannot read checkpoint {path}: not a valid reslab checkpoint ({why})") from e
    if not isinstance(state, dict):
        raise ReslabError(f"{path} is not a reslab checkpoint (not a dictionary)")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise ReslabError(f"{path} is not a reslab checkpoint (no {missing[0]!r} entry)")
    return state
