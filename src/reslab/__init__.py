"""reslab: *Deep Residual Learning for Image Recognition* (He, Zhang, Ren, Sun, 2015), complete and testable."""

from reslab.errors import ConfigError, DataError, ModelError, ReslabError
from reslab.lazy import lazy_names

__version__ = "0.1.0"

# The public API, imported on first use: `import reslab` (and so the `reslab` command's own import) loads no torch.
_ENGINE = {"create_model": "reslab.models", "complexity": "reslab.models", "list_models": "reslab.models",
           "train": "reslab.engine.run", "build_trainer": "reslab.engine.run", "Trainer": "reslab.engine.trainer",
           "TrainConfig": "reslab.engine.config", "get_recipe": "reslab.engine.recipes",
           "evaluate_checkpoint": "reslab.engine.evaluate", "load_trained": "reslab.models.trained",
           "ClassificationData": "reslab.tasks.classification",
           "create_detector": "reslab.detection.model"}  # fmt: skip


__getattr__ = lazy_names("reslab", _ENGINE)


__all__ = [
    "ClassificationData",
    "ConfigError",
    "DataError",
    "ModelError",
    "ReslabError",
    "TrainConfig",
    "Trainer",
    "__version__",
    "build_trainer",
    "complexity",
    "create_detector",
    "create_model",
    "evaluate_checkpoint",
    "get_recipe",
    "list_models",
    "load_trained",
    "train",
]
