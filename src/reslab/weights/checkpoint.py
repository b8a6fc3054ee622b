"""reslab's checkpoint file: the one reader and writer of ``checkpoint.pt`` and of "a run folder -> its checkpoint".

A checkpoint is a dict of tensors and plain containers (``torch.save``), read as untrusted input with
``weights_only=True``: no pickled code. Every checkpoint has the `REQUIRED` entries (what rebuilding and evaluating
the network needs: its weights, the run's configuration as a dict, the iteration, the input mean and the classes);
a training checkpoint has the engine's resume entries too (`reslab.engine.rundir`).
"""

from __future__ import annotations

import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from reslab.errors import ReslabError
from reslab.files import atomic_write

CHECKPOINT = "checkpoint.pt"  # its name in a run folder
REQUIRED = ("model", "config", "iteration", "mean", "classes")


class NotACheckpoint(ReslabError):
    """A readable weights-only file that is not a reslab checkpoint (a state dict, another project's format)."""


def checkpoint_file(path: str | Path) -> Path:
    """``path`` itself, or the checkpoint of the run folder ``path``."""
    path = Path(path)
    return path / CHECKPOINT if path.is_dir() else path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu", mmap: bool = False) -> dict[str, Any]:
    """The checkpoint in ``path`` (a file or a run folder), read as untrusted input (tensors and plain containers
    only). ``mmap`` maps the tensors instead of reading them: cheap when only the small entries are wanted; files in
    torch's legacy format (before 1.6, e.g. other projects' published weights) cannot be mapped and are read whole."""
    path = checkpoint_file(path)
    if not path.is_file():
        raise ReslabError(f"checkpoint not found: {path}")
    mmap = mmap and zipfile.is_zipfile(path)
    try:
        with warnings.catch_warnings():  # torch's notes (e.g. on pickle protocols) would come before our one line
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as e:  # a truncated, foreign or malicious file: refuse it in one line
        why = "it holds more than tensors" if isinstance(e, pickle.UnpicklingError) else type(e).__name__
        raise ReslabError(f"cannot read checkpoint {path}: not a valid reslab checkpoint ({why})") from e
    if not isinstance(state, dict):
        raise NotACheckpoint(f"{path} is not a reslab checkpoint (not a dictionary)")
    missing = [k for k in REQUIRED if k not in state]
    if missing:
        raise NotACheckpoint(f"{path} is not a reslab checkpoint (no {missing[0]!r} entry)")
    return state


def write_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: the old file stays whole until the new one is complete."""
    with atomic_write(Path(path)) as f:
        torch.save(state, f)
