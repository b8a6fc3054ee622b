"""Device and numeric precision: bf16 autocast on CPUs that have native bf16, AMP on CUDA, fp32 elsewhere."""

from __future__ import annotations

import contextlib
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from reslab.errors import ConfigError

if TYPE_CHECKING:
    import torch

# The names are read by every command's flags, before any work: torch is imported by the functions that need it.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def dtype_of(precision: str) -> torch.dtype:
    """The torch dtype of a reduced precision ("bf16" or "fp16")."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """AVX-512 BF16 or AMX: bf16 autocast is then faster than fp32 for these convnets (benchmarks/)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def check_device_name(name: str) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``: the spelling only (a config may name a device this machine lacks)."""
    kind, _, index = str(name).partition(":")
    if name not in ("auto", "cpu") and (kind != "cuda" or (index and not index.isdigit())):
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")


def check_precision_name(name: str) -> None:
    if name not in PRECISIONS:
        raise ConfigError(f"unknown precision {name!r}; choose one of {', '.join(PRECISIONS)}")


def resolve_device(name: str) -> torch.device:
    """The device ``name`` means on this machine; CUDA where there is none is a ConfigError."""
    import torch

    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    index = name.partition(":")[2]
    if not torch.cuda.is_available() or int(index or 0) >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r} asked for, but this machine has no such CUDA device")
    return torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """What ``auto`` means on this device: bf16 where it is native (CUDA with bf16, CPUs with AVX-512 BF16 or AMX),
    fp16 on older GPUs, else fp32."""
    import torch

    check_precision_name(name)
    if name == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_native_bf16() else "fp32"
    if name == "fp16" and device.type == "cpu":
        raise ConfigError("fp16 is for CUDA; on a CPU use bf16 or fp32")
    return name


def autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype_of(precision))
