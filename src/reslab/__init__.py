"""reslab: *Deep Residual Learning for Image Recognition* (He, Zhang, Ren, Sun, 2015), complete and testable."""

from reslab.errors import ConfigError, DataError, ModelError, ReslabError
from reslab.models import complexity, create_model, list_models

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "ModelError",
    "ReslabError",
    "__version__",
    "complexity",
    "create_model",
    "list_models",
]
