"""The run folder: the only code that writes or reads one.

```
RUN/
  .lock          an OS file lock held while a process trains into RUN (released by the kernel if it dies)
  config.json    the resolved config, seed, versions, git commit, machine, date; each resumed session appended
  metrics.jsonl  one JSON record per logging interval and per evaluation; on resume truncated back to the
                 checkpoint's iteration, never deleted
  checkpoint.pt  the latest checkpoint, replaced atomically; read with torch.load(weights_only=True)
  summary.json   the final evaluation and the run's clocks: present only when the run is finished
  mistakes.json  which images the final model misses, one view, per evaluation set (classification runs; written
                 just before summary.json, or afterwards by `write_mistakes` for runs older than it)
```

Also here: whether a folder can be started or resumed (`RunDir.check_start`), whether a checkpoint can continue a
configuration (`check_resumable`) and reading results. The checkpoint file itself is `reslab.weights.checkpoint`'s;
rebuilding its network is `reslab.models.trained.load_trained`'s.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reslab.engine.config import TrainConfig
from reslab.errors import ConfigError, ReslabError
from reslab.files import json_text, read_json, write_json, write_text
from reslab.weights.checkpoint import CHECKPOINT, read_checkpoint, write_checkpoint

try:
    import fcntl
except ImportError:  # not a POSIX system: runs are not locked
    fcntl = None  # type: ignore[assignment]

CONFIG, METRICS, SUMMARY, LOCK, MISTAKES = "config.json", "metrics.jsonl", "summary.json", ".lock", "mistakes.json"
FINAL_EVALUATION = "final evaluation"  # mistakes.json's ``source`` when the run's own final evaluation wrote it
RUN_FILES = (CONFIG, METRICS, SUMMARY, CHECKPOINT)
# A checkpoint's entries beyond those every reslab checkpoint has (`weights.checkpoint.REQUIRED`): what resuming needs.
RESUME_KEYS = ("optimizer", "scaler", "stream", "schedule", "interval_stats", "train_seconds", "rng_cpu")


class RunInUse(ReslabError):
    """Another process holds the run folder's lock."""


@dataclass(frozen=True)
class RunStatus:
    """What a folder holds, read without loading any weights."""

    path: Path
    files: tuple[str, ...]  # which of RUN_FILES exist
    iteration: int | None  # the checkpoint's iteration
    total: int | None  # the run's length, from config.json
    checkpoint_error: str | None = None  # why checkpoint.pt cannot be read, if it cannot

    @property
    def holds_run(self) -> bool:
        return bool(self.files)

    @property
    def started(self) -> bool:
        """Holds more than a config.json: a run that trained (a lone config.json is a start that never got going)."""
        return any(f != CONFIG for f in self.files)

    @property
    def finished(self) -> bool:
        return SUMMARY in self.files

    def describe(self) -> str:
        if self.finished:
            return "finished"
        if self.checkpoint_error:
            return f"unreadable checkpoint: {self.checkpoint_error}"
        if self.iteration is not None:
            of = f" of {self.total}" if self.total else ""
            return f"unfinished: checkpoint at iteration {self.iteration}{of}"
        if self.started:
            return "stopped before its first checkpoint"
        return "never started (config.json only)" if self.holds_run else "no run"


class RunDir:
    """One run folder (see the module docstring). Only rank 0 of a distributed run writes."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __str__(self) -> str:
        return str(self.path)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def checkpoint_path(self) -> Path:
        return self.path / CHECKPOINT

    # -- state -----------------------------------------------------------------------------------------------------
    def status(self) -> RunStatus:
        files = tuple(f for f in RUN_FILES if (self.path / f).is_file())
        iteration = total = error = None
        if CHECKPOINT in files:
            try:
                iteration = int(read_checkpoint(self.checkpoint_path, mmap=True)["iteration"])
            except (ReslabError, KeyError, TypeError, ValueError) as e:
                error = str(e)
        if CONFIG in files:
            with contextlib.suppress(ReslabError, KeyError, TypeError, ValueError):
                total = int(self.record()["iterations"])
        return RunStatus(self.path, files, iteration, total, error)

    def check_start(self, resume: bool) -> RunStatus:
        """Whether a training may start (or, with ``resume``, continue) here; a one-line error says why not.

        A folder that holds a run is never started over (a lone config.json, left by a start that failed before its
        first step, is not a run); ``resume`` without a checkpoint is an error too, so that a mistyped ``--out``
        cannot silently start a new run.
        """
        status = self.status()
        if status.checkpoint_error and not status.finished:
            raise ConfigError(f"{self.path}: {status.checkpoint_error}; move the folder aside to start again")
        if resume and not status.finished and status.iteration is None:
            if status.started:
                why = "it holds a run stopped before its first checkpoint: delete it to start again"
            elif status.holds_run:
                why = "it never started: leave out --resume"
            else:
                why = "check --out, or leave out --resume to start a new run"
            raise ConfigError(f"--resume: no checkpoint in {self.path} ({why})")
        if not resume and status.started:
            what = ("it is finished: evaluate it with `reslab eval`" if status.finished
                    else "pass --resume to continue it" if status.iteration is not None else "delete it")  # fmt: skip
            raise ConfigError(f"{self.path} already holds a run ({status.describe()}): {what}, or choose another "
                              "--out")  # fmt: skip
        return status

    def discard(self) -> None:
        """Remove what a start wrote before its first step finished (it holds nothing worth keeping)."""
        for name in (CONFIG, METRICS, CHECKPOINT, MISTAKES):
            (self.path / name).unlink(missing_ok=True)

    # -- the lock --------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[RunDir]:
        """Hold the folder's lock for the block: a second process training into it gets a one-line refusal.

        An OS lock (``flock``): the kernel releases it when the holder exits or is killed, so no stale lock is left.
        A folder created here and left without any run file (a start that failed early) is removed again.
        """
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"cannot use the run folder {self.path}: it is a file; choose a folder for --out")
        created = not self.path.exists()
        lock_existed = (self.path / LOCK).exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigError(f"cannot use the run folder {self.path}: {e.strerror or e}") from e
        held = False
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError as e:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
                    raise RunInUse(f"{self.path} is in use by another reslab process (pid {holder}); wait for it, "
                                   "or choose another --out") from e  # fmt: skip
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            held = True
            for stale in self.path.glob(".*.tmp"):  # a killed writer's temp file (see files.atomic_write)
                if any(stale.name.startswith(f".{name}.") for name in (*RUN_FILES, MISTAKES)):
                    stale.unlink(missing_ok=True)
            yield self
        finally:
            if held and not lock_existed and not self.status().holds_run:  # a start that failed early: no trace
                with contextlib.suppress(OSError):
                    (self.path / LOCK).unlink()
                    if created:
                        self.path.rmdir()
            os.close(fd)  # releases the lock

    # -- writing ---------------------------------------------------------------------------------------------------
    def begin(self, record: dict[str, Any], resumed_from: int | None = None) -> None:
        """Write config.json for a new run, or add this session to it on resume (the first session's record stays:
        code, versions and machine may differ between sessions); truncate metrics.jsonl to the checkpoint."""
        if resumed_from is not None and (self.path / CONFIG).is_file():
            first = self.record()
            session = {"from_iteration": resumed_from, **{k: record[k] for k in _SESSION_KEYS if k in record}}
            record = {**first, "resumed": [*first.get("resumed", []), session]}
        write_json(self.path / CONFIG, record)
        metrics = self.path / METRICS
        if resumed_from is not None and metrics.exists():
            keep = [ln for ln in metrics.read_text().splitlines() if _logged_iter(ln) <= resumed_from]
            write_text(metrics, "".join(ln + "\n" for ln in keep))

    def log(self, record: dict[str, Any]) -> None:
        """Append one record to metrics.jsonl (a line torn by a kill is dropped on resume)."""
        try:
            with open(self.path / METRICS, "a") as f:
                f.write(json_text(record) + "\n")
        except OSError as e:
            raise ReslabError(f"cannot write {self.path / METRICS}: {e.strerror or e}") from e

    def sync_metrics(self) -> None:
        """Flush metrics.jsonl to disk (the records are appended without it, for speed)."""
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(self.path / METRICS, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        write_checkpoint(self.checkpoint_path, state)

    def write_summary(self, summary: dict[str, Any], mistakes: dict[str, Any] | None = None) -> None:
        """summary.json, which marks the run finished, after ``mistakes`` (see `write_mistakes`) if given."""
        if mistakes:
            self.write_mistakes(mistakes)
        write_json(self.path / SUMMARY, summary)

    def write_mistakes(self, record: dict[str, Any]) -> None:
        """mistakes.json: ``record`` says how the mistakes were found (``source``, ``precision``, ``device``) and
        maps each evaluation set to its images' top-1 misses with one view (``splits``), stored as a string of 0s
        and 1s, one per image in the set's order."""
        splits = {k: "".join("1" if m else "0" for m in v) for k, v in record["splits"].items()}
        write_json(self.path / MISTAKES, {**record, "views": 1, "splits": splits})

    # -- reading ---------------------------------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        """config.json: the config and the run's circumstances."""
        if not (self.path / CONFIG).is_file():
            raise ConfigError(f"{self.path} is not a reslab run folder (no {CONFIG})")
        return read_json(self.path / CONFIG)

    def config(self) -> TrainConfig:
        try:
            return TrainConfig.from_dict(self.record()["config"])
        except (KeyError, TypeError) as e:
            raise ConfigError(f"cannot read the config in {self.path / CONFIG} ({e})") from e

    def summary(self) -> dict[str, Any]:
        if not (self.path / SUMMARY).is_file():
            raise ConfigError(f"{self.path} is not a finished run (no {SUMMARY}; {self.status().describe()})")
        return read_json(self.path / SUMMARY)

    def mistakes(self, split: str = "test") -> tuple[list[bool], dict[str, Any]] | None:
        """The final model's misses on ``split`` (one view, image by image) and how they were found; None where the
        folder has none recorded for it."""
        if not (self.path / MISTAKES).is_file():
            return None
        path = self.path / MISTAKES
        try:
            record = read_json(path)
        except ReslabError as e:
            raise ConfigError(f"{e}; delete it to evaluate the run's model again") from e
        splits = record.get("splits")
        bits = splits.get(split) if isinstance(splits, dict) else None
        if bits is None:
            return None
        if not isinstance(bits, str) or set(bits) - {"0", "1"}:
            raise ConfigError(f"cannot read {path}: its {split!r} entry is not a string of 0s and 1s; delete it to "
                              "evaluate the run's model again")  # fmt: skip
        return [b == "1" for b in bits], {k: v for k, v in record.items() if k != "splits"}

    def metrics(self) -> list[dict[str, Any]]:
        """Every record of metrics.jsonl (a torn last line is skipped)."""
        path = self.path / METRICS
        if not path.is_file():
            return []
        records = []
        for line in path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                records.append(json.loads(line))
        return records

    def load_checkpoint(self, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        return read_checkpoint(self.checkpoint_path, map_location)

    def check_resumable(self, state: dict[str, Any], config: TrainConfig, precision: str) -> None:
        """Refuse to continue a checkpoint with a config that computes something else (one line)."""
        path = self.checkpoint_path
        missing = [k for k in RESUME_KEYS if k not in state]
        if missing:
            raise ConfigError(f"cannot resume {path}: it has no {missing[0]!r} entry (written by an earlier reslab?)")
        changed = config.changed_from(TrainConfig.from_dict(state["config"]))
        if changed:
            raise ConfigError(f"cannot resume {path}: it was trained with {changed}")
        # `precision: auto` resolves per machine: a bf16 run must not go on in fp32 (or fp16) without notice.
        if state.get("precision", precision) != precision:
            raise ConfigError(f"cannot resume {path}: it trained in {state['precision']}, this machine resolves "
                              f"--precision {config.precision} to {precision}; pass --precision "
                              f"{state['precision']} if this device supports it")  # fmt: skip


_SESSION_KEYS = ("device", "world_size", "reslab", "git_commit", "python", "torch", "numpy", "machine",
                 "torch_threads", "date")  # fmt: skip


def _logged_iter(line: str) -> float:
    """The iteration of a metrics.jsonl line; a line torn by a kill counts as never written."""
    try:
        return json.loads(line)["iter"]
    except (ValueError, KeyError, TypeError):
        return math.inf
