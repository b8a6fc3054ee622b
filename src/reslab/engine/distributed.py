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

from reslab.engine.precision import resolve_device
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


def setup(device_name: str) -> tuple[torch.device, DistInfo]:
    """The device this process trains on and its place in the process group: under torchrun each CUDA process takes
    the GPU of its local rank."""
    device = resolve_device(device_name)
    info = init_distributed(device.type)
    if info.enabled and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    return device, info


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


def all_reduce_max(t: torch.Tensor) -> torch.Tensor:
    if dist.is_initialized():
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t


def broadcast_from_main(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (pickled through the process group); ``obj`` itself outside torchrun."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def on_main(compute: Callable[[], T]) -> T:
    """``compute()`` on rank 0 only, its result sent to every rank; if it fails there (a user error, say), every rank
    raises instead of waiting for rank 0 in a collective."""
    if not dist.is_initialized():
        return compute()
    if dist.get_rank() == 0:
        try:
            result = compute()
        except BaseException as e:
            broadcast_from_main(("error", f"{e}"))
            raise
        return broadcast_from_main(("ok", result))[1]
    status, value = broadcast_from_main(None)
    if status == "error":
        raise ReslabError(f"rank 0 stopped: {value}")
    return value


def main_first(load: Callable[[], T]) -> T:
    """``load()`` on each node's first process (local rank 0) first, then on that node's other processes: nodes
    share no disk, so each node's first process downloads or decodes the data and fills its own cache, which the
    node's other processes then read. If a first process fails, every rank stops with its error instead of waiting."""
    if not dist.is_initialized():
        return load()
    first = int(os.environ.get("LOCAL_RANK", "0")) == 0
    loaded: list[T] = []
    error: BaseException | None = None
    if first:
        try:
            loaded.append(load())
        except BaseException as e:  # the others must hear of it before they raise: collected below
            error = e
    errors: list[str | None] = [None] * dist.get_world_size()
    dist.all_gather_object(errors, None if error is None else f"{error}")
    if error is not None:
        raise error
    failed = next(((rank, e) for rank, e in enumerate(errors) if e is not None), None)
    if failed is not None:
        raise ReslabError(f"rank {failed[0]} stopped: {failed[1]}")
    return loaded[0] if loaded else load()
