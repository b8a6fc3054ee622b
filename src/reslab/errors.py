"""Errors that mean "the user asked for something wrong" or "the machine could not do it", as opposed to bugs.

The CLI turns a `ReslabError` into one line on stderr and exit code 2, and a `TrainingInterrupted` into its message
and exit code 128 + the signal's number; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import sys


class ReslabError(Exception):
    """A user mistake or an unusable input: reported as one line, never a traceback."""


class ModelError(ReslabError, ValueError):
    """Unknown model name, impossible depth, bad shortcut option, ..."""


class DataError(ReslabError):
    """Missing, corrupt or malformed data."""


class ConfigError(ReslabError, ValueError):
    """A bad hyperparameter or flag value."""


class OutOfMemory(ReslabError):
    """A batch did not fit in the device's memory."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped a training run after the current step, with a checkpoint written.

    A `KeyboardInterrupt`, so that code which handles Ctrl-C handles it; ``exit_code`` is the shell's 128 + signal.
    ``where`` says what was kept (empty on the ranks of a distributed run that do not write), ``hint`` how to go on.
    """

    def __init__(self, signal_name: str, signum: int, where: str, hint: str = "continue with --resume") -> None:
        super().__init__(signal_name)
        self.signal_name, self.signum, self.where, self.hint = signal_name, signum, where, hint
        self.exit_code = 128 + signum

    def __str__(self) -> str:
        return f"{self.signal_name}: {self.where}; {self.hint}" if self.where else ""


def is_out_of_memory(e: BaseException) -> bool:
    """CUDA's ``OutOfMemoryError``, or the CPU allocator's failure (a plain ``RuntimeError`` from c10)."""
    import torch

    return isinstance(e, torch.OutOfMemoryError | MemoryError) or (
        isinstance(e, RuntimeError) and "can't allocate memory" in str(e)
    )


_PEER_LOST = ("Connection closed by peer", "Connection reset by peer", "Broken pipe", "[gloo", "NCCL communicator")


def is_peer_lost(e: BaseException) -> bool:
    """A collective failed because another process of a torchrun job died (gloo's and NCCL's errors, however deep
    in the stack: DataLoader workers, all-reduces, barriers)."""
    dist = sys.modules.get("torch.distributed")  # not imported (or torch failed to load): no job to have lost
    if dist is None or not dist.is_available():
        return False
    # a torchrun job (its process group may be destroyed by now: the run's own clean-up ran before this question)
    if not dist.is_initialized() and os.environ.get("WORLD_SIZE", "1") in ("", "0", "1"):
        return False
    return isinstance(e, dist.DistError) or (isinstance(e, RuntimeError) and any(s in str(e) for s in _PEER_LOST))


def class_mismatch(data: list[str], model: list[str]) -> str:
    """The one line that says how a dataset's classes differ from a model's: the counts, and the first difference."""
    first = next((i for i, (a, b) in enumerate(zip(data, model)) if a != b), min(len(data), len(model)))
    where = (f"class {first}: {data[first]!r} in the data, {model[first]!r} in the model" if first < min(len(data),
             len(model)) else f"the {'data' if len(data) > len(model) else 'model'} has more, from "
             f"{(data if len(data) > len(model) else model)[first]!r} on")  # fmt: skip
    return f"the data's classes differ from the model's: {len(data)} in the data, {len(model)} in the model; {where}"
