"""The training loop, and nothing else: one iteration-based loop for every task and recipe, one process or many.

Per iteration: the learning rate from the schedule, the next batch (prepared by the task), the task's loss under
autocast, backward, the optimizer step. The task's statistics stay on the device and are read once per logging
interval (no per-step host sync); that is also where the NaN check and the schedule's observation happen.
Evaluations and checkpoints happen at interval ends, on a wall-clock timer, and when a signal asks the run to stop.

Everything else (building the model, the data, the run folder, resuming) is done by whoever builds the `Trainer`:
`reslab.engine.run` for ``reslab train``.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import torch
from torch import nn

from reslab.engine import distributed as D
from reslab.engine.precision import autocast
from reslab.engine.progress import Console
from reslab.engine.rundir import RunDir
from reslab.errors import ConfigError, OutOfMemory, ReslabError, TrainingInterrupted, is_out_of_memory

# Under torchrun the ranks must agree to stop (or to write a timed checkpoint) at the same iteration: they compare
# their flags in one small all-reduce, about every AGREE_SECONDS (the iterations between two comparisons are agreed
# on at each, from the slowest rank's step time). torchrun gives its workers 30 s after forwarding a signal.
AGREE_SECONDS = 5.0


class TrainingDiverged(ReslabError):
    """The loss, a weight or a buffer became NaN or Inf."""


class Task(Protocol):
    """What the loop needs from a task (see `reslab.tasks.classification.ClassificationTask`)."""

    def prepare(self, batch: Any, iteration: int) -> Any: ...

    def loss(self, net: nn.Module, batch: Any) -> tuple[torch.Tensor, torch.Tensor]: ...

    def interval_record(self, totals: list[float]) -> dict[str, float]: ...

    def evaluate(self, model: nn.Module) -> list[dict[str, Any]]: ...

    def final_evaluation(self, model: nn.Module) -> dict[str, Any]:
        """summary.json's results; an optional ``mistakes`` entry (each evaluation set's per-image top-1 misses, one
        view) goes to the run folder's mistakes.json instead (`RunDir.write_summary`)."""
        ...


class Schedule(Protocol):
    def lr(self, iteration: int) -> float: ...

    def observe(self, record: dict[str, Any]) -> None: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class StopRequest:
    """SIGINT and SIGTERM while the loop runs: finish the current step, write a checkpoint, stop.

    A second signal stops at once (the last checkpoint stays as it was). Signal handlers can only be set from the
    main thread; elsewhere the loop runs without them.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, console: Console) -> None:
        self.console = console
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def __exit__(self, *exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _handle(self, signum: int, frame: object) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt(f"{signal.Signals(signum).name} again: stopped without a new checkpoint")
        self.signum = signum
        self.console.log(f"{signal.Signals(signum).name} received: finishing this step and writing a checkpoint "
                         "(send it again to stop at once)")  # fmt: skip


@contextlib.contextmanager
def stop_at_once(where: str) -> Iterator[None]:
    """SIGINT and SIGTERM outside the loop (the final evaluation): stop now, saying in one line what was kept
    (``where``); the run's last checkpoint is complete, so nothing is lost."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: object) -> None:
        raise TrainingInterrupted(signal.Signals(signum).name, signum, where)

    previous = {s: signal.signal(s, handle) for s in StopRequest.SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


class Trainer:
    """The loop over (model, batches, task loss, optimizer, schedule), with logging, evaluation and checkpoints.

    Args:
        model: the network (its ``state_dict`` goes into checkpoints).
        task: what a batch is, the loss, the interval's metrics and the evaluation (`Task`).
        batches: an iterable of batches; a finite one is restarted when it ends. Resume is exact when it has
            ``state_dict``/``load_state_dict``.
        optimizer, schedule: the update and the learning rate of each iteration (`Schedule`).
        total: the run's length in iterations; batch_size: images per step over all processes (for img/s, epochs
            and messages); train_size: images per epoch (0: no epoch column).
        net: what the forward pass runs (``model`` wrapped by DDP or ``torch.compile``); default ``model``.
        precision, device, dist: autocast precision, the device, the process group (`distributed.DistInfo`).
        rundir: where records and checkpoints go (None: nowhere, e.g. a benchmark); meta: entries added to every
            checkpoint (the config, the classes, the preprocessing).
        log_every, eval_every, checkpoint_every: iterations between logging records, evaluations and checkpoints
            (0: only at the end); checkpoint_minutes: also checkpoint after this long without one (0: off).
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        batches: Iterable[Any],
        optimizer: torch.optim.Optimizer,
        schedule: Schedule,
        *,
        total: int,
        batch_size: int,
        train_size: int = 0,
        net: nn.Module | None = None,
        precision: str = "fp32",
        device: torch.device | str = "cpu",
        dist: D.DistInfo | None = None,
        rundir: RunDir | None = None,
        meta: dict[str, Any] | None = None,
        log_every: int = 50,
        eval_every: int = 0,
        checkpoint_every: int = 0,
        checkpoint_minutes: float = 0.0,
        console: Console | None = None,
    ) -> None:
        self.model, self.net, self.task = model, net if net is not None else model, task
        self.batches, self._batches = batches, iter(batches)
        self.optimizer, self.schedule = optimizer, schedule
        self.total, self.batch_size, self.train_size = total, batch_size, train_size
        self.precision, self.device, self.dist = precision, torch.device(device), dist or D.DistInfo()
        self.rundir, self.meta = rundir, dict(meta or {})
        self.log_every, self.eval_every, self.checkpoint_every = log_every, eval_every, checkpoint_every
        self.checkpoint_seconds = 60.0 * checkpoint_minutes
        self.console = console or Console(enabled=False)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=precision == "fp16")
        self.iteration = 0
        # Seconds in training steps, and in the whole loop (steps, evaluations, logging, checkpoints), summed over
        # every session of a resumed run: time redone after a kill counts, time lost to it does not.
        self.train_seconds = self.loop_seconds = 0.0
        self.interval_seconds, self.interval_steps = 0.0, 0  # of the current logging interval (for img/s)
        self.stats: torch.Tensor | None = None  # the task's statistics of the current logging interval, on the device
        self._last_checkpoint = time.monotonic()
        self._agree_at, self._agreed = 1, (0, time.monotonic())  # next iteration to compare flags; the last one

    # -- state -----------------------------------------------------------------------------------------------------
    def close(self) -> None:
        """Stop the data sources' worker processes (training batches and the task's evaluation sets, where they have
        any); the trainer cannot train afterwards."""
        for source in (self.batches, *getattr(getattr(self.task, "data", None), "eval_sets", {}).values()):
            close = getattr(source, "close", None)
            if callable(close):
                close()

    def state_dict(self) -> dict[str, Any]:
        """The loop's whole state (every rank joins the statistics' all-reduce inside)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "stream": self.batches.state_dict() if hasattr(self.batches, "state_dict") else None,
            "schedule": self.schedule.state_dict(),
            "iteration": self.iteration,
            "interval_stats": None if self.stats is None else D.all_reduce_sum(self.stats.clone()).cpu(),
            "interval_steps": self.interval_steps,
            "train_seconds": self.train_seconds,
            "loop_seconds": self.loop_seconds,
            "interval_seconds": self.interval_seconds,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not hasattr(self.batches, "load_state_dict") or state["stream"] is None:
            raise ConfigError("cannot resume exactly: the batch source has no state_dict/load_state_dict")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.batches.load_state_dict(state["stream"])
        self._batches = iter(self.batches)
        self.schedule.load_state_dict(state["schedule"])
        self.iteration = int(state["iteration"])
        # The saved statistics are summed over ranks: rank 0 carries them on, the others start from zero.
        main = float(self.dist.is_main)
        stats = state["interval_stats"]
        self.stats = None if stats is None else stats.to(self.device) * main
        self.interval_steps = int(state["interval_steps"]) if self.dist.is_main else 0
        self.train_seconds, self.loop_seconds = float(state["train_seconds"]), float(state["loop_seconds"])
        self.interval_seconds = float(state["interval_seconds"]) * main
        torch.set_rng_state(state["rng_cpu"])
        if self.device.type == "cuda" and state.get("rng_cuda"):
            torch.cuda.set_rng_state_all(state["rng_cuda"])

    # -- the loop --------------------------------------------------------------------------------------------------
    def run(self, until: int | None = None) -> None:
        """Train to iteration ``until`` (default: the end), checkpointing there; raises `TrainingInterrupted` after
        a checkpoint if a signal asked the run to stop."""
        until = min(self.total, until or self.total)
        self.console.open_bar(until, self.iteration, desc=type(self.model).__name__)
        tick = loop_tick = time.perf_counter()
        self._last_checkpoint = time.monotonic()
        self._agree_at, self._agreed = self.iteration + 1, (self.iteration, time.monotonic())
        self.net.train()
        try:
            with StopRequest(self.console) as stop:
                while self.iteration < until:
                    lr = self.schedule.lr(self.iteration)
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr * group.get("lr_scale", 1.0)
                    self._step(self._prepared())
                    self.iteration += 1
                    self.interval_steps += 1
                    self.console.advance()
                    it = self.iteration
                    log_now = it % self.log_every == 0 or it == self.total
                    eval_now = (self.eval_every and it % self.eval_every == 0) or it == self.total
                    ckpt_now = (self.checkpoint_every and it % self.checkpoint_every == 0) or it == until
                    stop_now, due = self._flags(stop)
                    if not (log_now or eval_now or ckpt_now or stop_now or due):
                        continue
                    totals = self._checked_totals()  # one host sync per boundary (raises on NaN/Inf): on a GPU the
                    seconds = time.perf_counter() - tick  # clock is read after it, when the queued steps are done
                    self.train_seconds += seconds
                    self.interval_seconds += seconds
                    if log_now:
                        self._log_interval(totals, lr)
                    if eval_now:
                        self._evaluate()
                    if ckpt_now or stop_now or due:
                        self.loop_seconds += time.perf_counter() - loop_tick
                        loop_tick = time.perf_counter()
                        self.checkpoint()
                    if stop_now:
                        raise self._interrupted(stop.signum)
                    tick = time.perf_counter()
        finally:
            self.console.close_bar()
        self.loop_seconds += time.perf_counter() - loop_tick

    def _next_batch(self) -> Any:
        try:
            return next(self._batches)
        except StopIteration:  # a finite iterable: start its next pass
            self._batches = iter(self.batches)
            return next(self._batches)

    def _prepared(self) -> Any:
        """The next batch as the task prepares it (augmentation, transfer to the device)."""
        try:
            return self.task.prepare(self._next_batch(), self.iteration)
        except Exception as e:
            if is_out_of_memory(e):
                raise self._out_of_memory("preparing a training batch") from e
            raise

    def _out_of_memory(self, where: str) -> OutOfMemory:
        per = f" ({self.batch_size // self.dist.world} per process)" if self.dist.enabled else ""
        return OutOfMemory(f"out of memory {where} at batch size {self.batch_size}{per} on {self.device}: lower "
                           "--batch-size")  # fmt: skip

    def _step(self, batch: Any) -> None:
        try:
            with autocast(self.precision, self.device):
                loss, stats = self.task.loss(self.net, batch)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        except Exception as e:
            if is_out_of_memory(e):
                raise self._out_of_memory("in a training step") from e
            raise
        self.stats = stats.detach().clone() if self.stats is None else self.stats + stats.detach()

    def _flags(self, stop: StopRequest) -> tuple[bool, bool]:
        """(stop now?, a timed checkpoint due?), the same on every rank."""
        now = time.monotonic()
        due = self.checkpoint_seconds > 0 and now - self._last_checkpoint >= self.checkpoint_seconds
        if not self.dist.enabled:
            return stop.signum is not None, due
        if self.iteration < self._agree_at:
            return False, False
        step = (now - self._agreed[1]) / max(self.iteration - self._agreed[0], 1)
        gap = max(1, min(1000, int(AGREE_SECONDS / max(step, 1e-6))))
        # MAX of the flags; MAX of -gap is the smallest gap proposed: the slowest rank's pace sets the next comparison.
        flags = D.all_reduce_max(torch.tensor([float(stop.signum is not None), float(due), -gap], device=self.device))
        self._agree_at, self._agreed = self.iteration - int(flags[2]), (self.iteration, now)
        return bool(flags[0]), bool(flags[1])

    def _interrupted(self, signum: int | None) -> TrainingInterrupted:
        signum = signum or signal.SIGTERM  # a rank that was told by the others, not by a signal
        kept = f"checkpoint written to {self.rundir.checkpoint_path}" if self.rundir else "no run folder"
        where = f"stopped at iteration {self.iteration} of {self.total}; {kept}" if self.dist.is_main else ""
        return TrainingInterrupted(signal.Signals(signum).name, signum, where)

    def _hint(self) -> str:
        return "lower --lr" + (" or use --precision fp32" if self.precision != "fp32" else "")

    def _last_good(self) -> str:
        if self.rundir is not None and self.rundir.checkpoint_path.exists():
            return f"the last good checkpoint ({self.rundir.checkpoint_path}) is untouched"
        return "no checkpoint was written yet"

    def _checked_totals(self) -> list[float]:
        """This interval's statistics summed over all ranks; stops the run if they are not finite.

        Checkpoints are only written after this check, so a diverged run never overwrites its last good checkpoint.
        """
        totals = D.all_reduce_sum(self.stats.clone()).tolist() if self.stats is not None else []
        if not all(math.isfinite(t) for t in totals):
            raise TrainingDiverged(f"the loss became {totals[0]} before iteration {self.iteration}; stopped, "
                                   f"{self._last_good()}: {self._hint()}")  # fmt: skip
        return totals

    def _log_interval(self, totals: list[float], lr: float) -> None:
        record: dict[str, Any] = {"iter": self.iteration}
        if self.train_size:
            record["epoch"] = round(self.iteration * self.batch_size / self.train_size, 3)
        record.update(**self.task.interval_record(totals), lr=lr)
        record["img_per_s"] = self.interval_steps * self.batch_size / max(self.interval_seconds, 1e-9)
        # The paper's warm-up rule reads whole logging intervals only, so that a run that was stopped and resumed
        # in the middle of an interval decides exactly as an uninterrupted one.
        self.schedule.observe(record)
        if self.dist.is_main and self.rundir is not None:
            self.rundir.log(record)
        if self.console.bar is not None:
            self.console.bar.set_postfix_str(describe(record, skip=("iter", "epoch", "img_per_s")))
        else:  # a log file, not a terminal: one plain line per interval
            self.console.log(f"iter {self.iteration}/{self.total}: {describe(record, skip=('iter', 'epoch'))}")
        self.stats = torch.zeros_like(self.stats) if self.stats is not None else None
        self.interval_seconds, self.interval_steps = 0.0, 0

    def _evaluate(self) -> None:
        if self.dist.is_main:  # rank 0 evaluates alone
            with autocast(self.precision, self.device):
                records = self.task.evaluate(self.model)
            for r in records:
                self.schedule.observe(r)  # the plateau rule reads the validation error
                if self.rundir is not None:
                    self.rundir.log({"iter": self.iteration, **r})
                self.console.log(f"iter {self.iteration}/{self.total}: {describe(r)}")
        if self.dist.enabled:  # ... so every rank takes its schedule's decision from rank 0
            self.schedule.load_state_dict(D.broadcast_from_main(self.schedule.state_dict()))

    def checkpoint(self) -> None:
        """Write the loop's state to the run folder, after checking that weights and buffers are finite (a finite
        loss does not prove them finite: the last update, or BN's running variance, may have overflowed)."""
        bad = next((n for n, t in (*self.model.named_parameters(), *self.model.named_buffers())
                    if t.is_floating_point() and not torch.isfinite(t).all()), None)  # fmt: skip
        if self.dist.enabled:  # all ranks stop together, or none does
            flag = D.all_reduce_max(torch.tensor([float(bad is not None)], device=self.device))
            bad = bad or ("a tensor on another rank" if flag[0] else None)
        if bad is not None:
            raise TrainingDiverged(f"{bad} became NaN/Inf before iteration {self.iteration}; stopped, "
                                   f"{self._last_good()}: {self._hint()}")  # fmt: skip
        state = self.state_dict()
        if self.dist.is_main and self.rundir is not None:
            self.rundir.sync_metrics()  # the records up to the checkpoint survive a power cut with it
            self.rundir.save_checkpoint({**state, **self.meta, "total": self.total})
        self._last_checkpoint = time.monotonic()


def describe(record: dict[str, Any], skip: tuple[str, ...] = ("iter",)) -> str:
    """A metrics record as one short line: ``loss 2.1017, train error 76.64%, lr 0.1, 829 img/s``, or for an
    evaluation ``test error 12.32%, test top5 error 0.53%, test loss 0.4121``."""
    parts = []
    prefix = f"{record['split']} " if "split" in record else ""
    for key, value in record.items():
        if key in skip or key == "split":
            continue
        name = prefix + key.replace("train_", "train ").replace("_", " ").replace("train loss", "loss")
        if key == "img_per_s":
            parts.append(f"{value:.0f} img/s")
        elif key == "lr":
            parts.append(f"lr {value:.4g}")
        elif key.endswith("error"):
            parts.append(f"{name} {value:.2f}%")
        elif isinstance(value, float):
            parts.append(f"{name} {value:.4f}")
        else:
            parts.append(f"{name} {value}")
    return ", ".join(parts)
