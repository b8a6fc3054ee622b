"""Tasks of the training loop: what a batch is, the loss, the metrics and the evaluation (classification today).

The names below are imported on first use, so that `reslab.tasks.tta` can be read without loading torch.
"""

import importlib

_NAMES = ("ClassificationData", "ClassificationTask", "evaluate", "in_memory")


def __getattr__(name: str) -> object:
    if name in _NAMES:
        return getattr(importlib.import_module("reslab.tasks.classification"), name)
    raise AttributeError(f"module 'reslab.tasks' has no attribute {name!r}")


__all__ = list(_NAMES)
