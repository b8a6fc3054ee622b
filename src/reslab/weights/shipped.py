"""Weights that ship inside the package: ``files/`` holds one reslab safetensors file per model and
``manifest.json``, which says for each where it came from (recipe, data, test error, sha256, commit, date). Nothing is
downloaded: a name without shipped weights is a one-line error naming those that have them.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from reslab.errors import ModelError

WEIGHTS = Path(__file__).parent / "files"


@cache
def manifest() -> dict[str, dict[str, Any]]:
    """Model name -> its manifest entry, for every model with shipped weights."""
    return dict(json.loads((WEIGHTS / "manifest.json").read_text())["models"])


def has_weights(name: str) -> bool:
    return name in manifest()


def shipped_file(name: str) -> Path:
    """The safetensors file of ``name``'s shipped weights, checked against the manifest's sha256."""
    entry = manifest().get(name)
    if entry is None:
        have = ", ".join(sorted(manifest())) or "none yet"
        raise ModelError(f"reslab ships no weights for {name!r}; models with shipped weights: {have}")
    path = WEIGHTS / entry["file"]
    if not path.is_file():
        raise ModelError(f"shipped weights {path} are missing from this installation: reinstall reslab")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != entry["sha256"]:
        raise ModelError(f"shipped weights {path} are damaged (sha256 {digest[:12]}..., manifest says "
                         f"{entry['sha256'][:12]}...): reinstall reslab")  # fmt: skip
    return path
