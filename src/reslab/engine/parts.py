"""What a task gives the engine to build a trainer from: `TaskParts`. Each task (`reslab.tasks.TASKS`) has one
function that makes them from a `TrainConfig`; the engine builds the rest (placement, schedule, optimizer, the
checkpoint's metadata) the same way for every task, and names none."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn

from reslab.engine import distributed as D
from reslab.engine.config import TrainConfig


@dataclass
class TaskParts:
    """What differs between tasks when a trainer is built: the model (before placement), the data (with ``train``,
    ``classes``, ``train_size``, ``mean``, ``name``, ``label``, ``preprocess``), the task given the run's length, and
    the depth the paper's CIFAR warm-up rule reads (0: off)."""

    model: nn.Module
    source: Any
    make_task: Callable[[int], Any]
    warmup_depth: int = 0
    custom: bool = False


class MakeParts(Protocol):
    """A task's parts from a config. ``data`` and ``model``: given from Python instead of the config's (where the
    task allows it); ``load_init``: load ``config.init`` (off when resuming: the checkpoint holds the weights);
    ``mean`` and ``preprocess``: a resumed run's preprocessing."""

    def __call__(self, config: TrainConfig, *, data: Any, model: nn.Module | None, device: torch.device,
                 dist: D.DistInfo, log: Callable[[str], None], load_init: bool, mean: torch.Tensor | None,
                 preprocess: dict[str, Any] | None) -> TaskParts: ...  # fmt: skip
