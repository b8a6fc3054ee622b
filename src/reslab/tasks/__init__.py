"""Tasks of the training loop: what a batch is, the loss, the metrics and the evaluation (classification today)."""

from reslab.tasks.classification import ClassificationData, ClassificationTask, evaluate, in_memory

__all__ = ["ClassificationData", "ClassificationTask", "evaluate", "in_memory"]
