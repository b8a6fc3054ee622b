"""Package names imported on first use (PEP 562): `import reslab.data.spec` then runs `reslab/data/__init__.py`
without importing the heavy modules (torch) that the package's public names live in."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_names(package: str, where: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` importing ``name`` from the module ``where[name]`` when it is first asked for."""

    def __getattr__(name: str) -> object:
        if name in where:
            return getattr(importlib.import_module(where[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
