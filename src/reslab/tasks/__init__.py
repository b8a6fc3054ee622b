"""Tasks of the training loop: what a batch is, the loss, the metrics and the evaluation (classification today).

The names below are imported on first use, so that `reslab.tasks.tta` can be read without loading torch.
"""

from reslab.lazy import lazy_names

_NAMES = ("ClassificationData", "ClassificationTask", "evaluate", "in_memory")


__getattr__ = lazy_names("reslab.tasks", dict.fromkeys(_NAMES, "reslab.tasks.classification"))

__all__ = list(_NAMES)
