"""Data parallelism under ``torchrun``: one process per device, each taking its shard of every global batch.

Outside torchrun (no ``WORLD_SIZE`` in the environment) everything here is a no-op: rank 0 of a world of 1.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device_type: str, timeout_s: float = 600.0) -> DistInfo:
    """Join the process group torchrun set up (gloo on CPU, nccl on CUDA).

    A finite collective timeout turns a dead peer into an error instead of a hang; torchrun then stops the job.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if device_type == "cuda" else "gloo"
        if device_type == "cuda":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return info


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(t)
    return t


def broadcast_from_main(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (pickled through the process group); ``obj`` itself outside torchrun."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
