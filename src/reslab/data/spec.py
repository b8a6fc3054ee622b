"""The ``--data`` value: what it may be and how a run records it. No torch here: `TrainConfig` (and so every
command's flags) reads it."""

from __future__ import annotations

import os

from reslab.errors import DataError

SYNTHETIC_DEFAULT_SIZE = 512


def is_builtin(spec: str) -> bool:
    return spec == "cifar10" or spec == "synthetic" or spec.startswith("synthetic:")


def resolve_spec(spec: str) -> str:
    """A `--data` value as a run records it: the built-in names checked and unchanged, a path made absolute, so that
    a checkpoint evaluated from another folder still finds its data. The one parser of the spec string."""
    if not isinstance(spec, str) or not spec:
        raise DataError(f"bad data spec {spec!r}: expected 'cifar10', 'synthetic[:N]', a folder or a .tar")
    if spec.startswith("synthetic:"):
        parse_synthetic_size(spec)
    return spec if is_builtin(spec) else os.path.abspath(os.path.expanduser(spec))


def parse_synthetic_size(spec: str) -> int:
    if spec == "synthetic":
        return SYNTHETIC_DEFAULT_SIZE
    text = spec.partition(":")[2]
    if not text.isdigit() or int(text) < 4:
        raise DataError(f"bad synthetic dataset spec {spec!r}: expected 'synthetic:N' with N >= 4 training images")
    return int(text)
