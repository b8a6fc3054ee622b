"""What every run writes next to its outputs so that it can be reproduced: versions, git commit, machine."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy
import torch

from reslab import __version__
from reslab.engine.precision import cpu_has_native_bf16


def git_commit() -> str:
    """The commit of the reslab source tree (with ``-dirty`` if it has uncommitted changes), or ``unknown``."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if sha.returncode:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()  # fmt: skip
        return sha.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # The development machines change between sessions, with and without native bf16: every figure names its CPU.
    desc = f"{cpu}, {os.cpu_count()} cores, {'native' if cpu_has_native_bf16() else 'no native'} bf16"
    if torch.cuda.is_available():
        desc += f", {torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    return desc


def run_info() -> dict[str, Any]:
    return {
        "reslab": __version__,
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "machine": machine(),
        "torch_threads": torch.get_num_threads(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
