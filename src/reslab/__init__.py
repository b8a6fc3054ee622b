"""reslab: *Deep Residual Learning for Image Recognition* (He, Zhang, Ren, Sun, 2015), complete and testable."""

from reslab.errors import ConfigError, DataError, ModelError, ReslabError
from reslab.models import complexity, create_model, list_models

__version__ = "0.1.0"

# The training API, imported on first use so that `import reslab` (models only) stays light.
_ENGINE = {"train": "reslab.engine.trainer", "Trainer": "reslab.engine.trainer", "TrainConfig": "reslab.engine.config",
           "get_recipe": "reslab.engine.recipes"}  # fmt: skip


def __getattr__(name: str) -> object:
    if name in _ENGINE:
        import importlib

        return getattr(importlib.import_module(_ENGINE[name]), name)
    raise AttributeError(f"module 'reslab' has no attribute {name!r}")


__all__ = [
    "ConfigError",
    "DataError",
    "ModelError",
    "ReslabError",
    "TrainConfig",
    "Trainer",
    "__version__",
    "complexity",
    "create_model",
    "get_recipe",
    "list_models",
    "train",
]
