"""Data parallelism under ``torchrun``: one process per device, each taking its shard of every global batch.

Outside torchrun (no ``WORLD_SIZE`` in the environment) everything here is a no-op: rank 0 of a world of 1.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from reslab.errors import ReslabError

T = TypeVar("T")


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


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


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


def main_first(load: Callable[[], T]) -> T:
    """``load()`` on rank 0 first, then on the others: rank 0 downloads or decodes the data and fills the cache once,
    the others read the cache. If rank 0 fails, every rank stops with its error instead of waiting for it."""
    if not dist.is_initialized():
        return load()
    if dist.get_rank() == 0:
        try:
            result = load()
        except BaseException as e:
            broadcast_from_main(f"{type(e).__name__}: {e}")
            raise
        broadcast_from_main(None)
        return result
    failure = broadcast_from_main(None)
    if failure is not None:
        raise ReslabError(f"rank 0 could not load the data ({failure})")
    return load()
