"""What every ``reslab reproduce`` experiment shares: budgets, the data loaded once, cached and resumable runs.

Runs live in ``DIR/runs/<model>[-<variant>]-s<seed>/`` and are shared between experiments: ``responses`` reads
the checkpoints that ``degradation`` trained, ``highway`` reuses its plain/ResNet runs, ``shortcuts`` its option-A
ResNets. A run with a ``summary.json`` is done and skipped; one with only a ``checkpoint.pt`` continues through
``train(..., resume=True)``, so a killed experiment picks up where it stopped.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from reslab.data.batches import eval_batches
from reslab.data.dataset import ImageDataset
from reslab.engine.config import TrainConfig
from reslab.engine.precision import autocast, resolve_device
from reslab.engine.run import train
from reslab.engine.rundir import FINAL_EVALUATION, MISTAKES, RunDir
from reslab.errors import ConfigError, ReslabError, TrainingInterrupted
from reslab.experiments.budgets import BUDGETS, Budget, get_budget
from reslab.experiments.jobs import train_in_parallel
from reslab.tasks.classification import evaluate
from reslab.tasks.classification_run import load_data

__all__ = ["BUDGETS", "Budget", "get_budget"]  # declared in reslab.experiments.budgets (light: --help reads them)
from reslab.models import model_spec
from reslab.models.trained import load_trained

# How far (points) a run's test mistakes may be from the error it recorded: those its final evaluation recorded, not
# at all; its model evaluated again in the precision it was tested in, 2 images or 0.1 points, whichever is more (bf16
# may flip a near-tie or two); evaluated in another precision (fp32 on a device without the run's), 0.5 points.
AGAIN_IMAGES, AGAIN_POINTS, OTHER_PRECISION_POINTS = 2, 0.1, 0.5


def mistakes_tolerance(images: int, source: str, precision: str, run_precision: str) -> float:
    """The tolerance above for mistakes from ``source`` (`FINAL_EVALUATION` or another) in ``precision``."""
    if source == FINAL_EVALUATION:
        return 0.5 * 100 / max(images, 1)  # half an image: the same count
    if precision != run_precision:
        return OTHER_PRECISION_POINTS
    return max(100 * AGAIN_IMAGES / max(images, 1), AGAIN_POINTS)


@dataclass(frozen=True)
class RunSpec:
    """One training run of an experiment; its name is its folder under ``DIR/runs``."""

    model: str
    seed: int = 0
    variant: str = ""
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    val_split: int = 0
    init: str | None = None  # start from these weights (TrainConfig.init)

    @property
    def key(self) -> str:
        """The run's name without the seed: what is averaged over seeds."""
        return f"{self.model}-{self.variant}" if self.variant else self.model

    @property
    def name(self) -> str:
        return f"{self.key}-s{self.seed}"

    @property
    def depth(self) -> int:
        return model_spec(self.model).depth


@dataclass
class RunResult:
    spec: RunSpec
    path: Path
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]

    def train_curve(self) -> tuple[list[int], list[float]]:
        """Training error (%) of each logging interval, by iteration (Fig. 6, thin dashed lines)."""
        rows = [m for m in self.metrics if "train_error" in m]
        return [m["iter"] for m in rows], [m["train_error"] for m in rows]

    def test_curve(self) -> tuple[list[int], list[float]]:
        """Error (%) of each periodic evaluation (test set, or validation set with a hold-out; Fig. 6 bold lines)."""
        rows = [m for m in self.metrics if "split" in m]
        return [m["iter"] for m in rows], [m["error"] for m in rows]

    def tail_train_errors(self, fraction: float = 0.1) -> list[float]:
        """The training-error records of the last ``fraction`` of the run (at least the last one)."""
        iters, errors = self.train_curve()
        if not iters:
            return []
        start = iters[-1] * (1 - fraction)
        return [e for i, e in zip(iters, errors, strict=True) if i > start] or errors[-1:]

    def final_train_error(self, fraction: float = 0.1) -> float:
        """Mean training error of the records in the last ``fraction`` of the run (single records are noisy)."""
        tail = self.tail_train_errors(fraction)
        return sum(tail) / len(tail) if tail else float("nan")


def by_key(results: dict[str, RunResult]) -> dict[str, list[RunResult]]:
    """Results grouped over seeds, in the experiment's order."""
    groups: dict[str, list[RunResult]] = {}
    for r in results.values():
        groups.setdefault(r.spec.key, []).append(r)
    return groups


def _fmt_hhmm(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    minutes = round(seconds / 60)
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _has_checkpoint(config: TrainConfig) -> bool:
    """Whether the run was started before (then it resumes)."""
    return RunDir(config.run_dir).status().iteration is not None


@contextlib.contextmanager
def _continue_hint() -> Iterator[None]:
    """A stopped run says how to go on: the same command resumes it (and skips the finished ones)."""
    try:
        yield
    except TrainingInterrupted as e:
        e.hint = "run the same `reslab reproduce` command again to continue"
        raise


class Runner:
    """Trains (or finds) the runs of an experiment under ``out/runs`` with the budget's settings."""

    def __init__(self, data: str, out: str | Path, budget: Budget, *, data_dir: str | None = None,
                 image_size: int | None = None, strict_data: bool = False,
                 device: str = "auto", progress: bool = True, jobs: int = 1) -> None:  # fmt: skip
        if jobs < 1:
            raise ConfigError(f"--jobs must be at least 1, got {jobs}")
        self.budget, self.out, self.jobs = budget, Path(out), jobs
        # What every run of the experiment shares; `config` fills in each run's own fields.
        self.base = TrainConfig(data=data, data_dir=data_dir, image_size=image_size,
                                strict_data=strict_data,
                                train_subset=budget.train_subset, test_subset=budget.test_subset,
                                recipe=budget.recipe(), device=device, eval_every=budget.eval_every,
                                log_every=budget.log_every, progress=progress)  # fmt: skip
        self._dataset: ImageDataset | None = None

    @property
    def data(self) -> str:
        return self.base.data

    @property
    def device(self) -> str:
        return self.base.device

    @property
    def dataset(self) -> ImageDataset:
        """The data, loaded once for every run of the experiment (cut to the budget's subset, as each run records)."""
        if self._dataset is None:
            self._dataset = load_data(self.base)
        return self._dataset

    def run_dir(self, spec: RunSpec) -> Path:
        return self.out / "runs" / spec.name

    def test_mistakes(self, run: RunResult) -> list[bool]:
        """Whether the run's final model misses each image of the test set, one view: what `report.paired_noise`
        compares. Read from the run folder where its final evaluation recorded them; a run older than that record is
        evaluated again, once, in the precision it was tested in where this device has it (else fp32), and the result
        kept in its folder. Refused if their error is not the one the run recorded (`mistakes_tolerance`): other
        weights, data or views."""
        folder = RunDir(run.path)
        found = folder.mistakes("test")
        if found is not None:
            misses, how = found
            self._check_mistakes(run, misses, how.get("source", ""), how.get("precision", ""), folder.file(MISTAKES),
                                 f"not this run's final model on these images; delete {MISTAKES} to evaluate the "
                                 "model again")  # fmt: skip
            return misses
        misses, precision = self._evaluate_mistakes(run)
        self._check_mistakes(run, misses, "again", precision, folder.path,
                             f"its checkpoint or this data is not what the run was tested with (evaluated again in "
                             f"{precision}, the run in {run.summary.get('precision', 'fp32')})")  # fmt: skip
        record = {"source": "re-evaluated by reslab.experiments.runner.Runner.test_mistakes", "precision": precision,
                  "device": str(resolve_device(self.device)), "splits": {"test": misses}}  # fmt: skip
        with contextlib.suppress(ReslabError):  # a read-only folder: the next report evaluates it again
            folder.write_mistakes(record)
        return misses

    def _check_mistakes(self, run: RunResult, misses: list[bool], source: str, precision: str, where: Path | str,
                        why: str) -> None:  # fmt: skip
        recorded, n, images = run.summary["test_error"], len(misses), len(self.dataset.test_labels)
        missed = 100 * sum(misses) / max(n, 1)
        allowed = mistakes_tolerance(n, source, precision, run.summary.get("precision", "fp32"))
        if n != images or abs(missed - recorded) > allowed:
            raise ConfigError(f"{where}: {missed:.2f}% of {n} test images missed, but the run recorded "
                              f"{recorded:.2f}% test error on {images}: {why}")  # fmt: skip

    def _evaluate_mistakes(self, run: RunResult) -> tuple[list[bool], str]:
        dev = resolve_device(self.device)
        loaded = load_trained(run.path, dev)
        same = str(run.summary.get("device", "cpu")).split(":")[0] == dev.type
        precision = run.summary.get("precision", "fp32") if same else "fp32"
        ds = self.dataset
        batches = eval_batches(ds.test_images, ds.test_labels, loaded.preprocessing.mean, 500, str(dev))
        with autocast(precision, dev):
            result = evaluate(loaded.model, batches, len(loaded.classes), device=dev, mistakes=True)
        return result["mistakes"], precision

    def config(self, spec: RunSpec) -> TrainConfig:
        return replace(
            self.base,
            model=spec.model,
            model_kwargs=dict(spec.model_kwargs),
            val_split=spec.val_split,
            seed=spec.seed,
            init=spec.init,
            out=str(self.run_dir(spec)),
        )

    def is_done(self, spec: RunSpec) -> bool:
        return RunDir(self.run_dir(spec)).status().finished

    def run_all(self, specs: Sequence[RunSpec]) -> dict[str, RunResult]:
        """Train every run that is not finished yet (resuming partial ones) and return all results by name."""
        specs = list({s.name: s for s in specs}.values())  # experiments may list a shared run twice
        pending = [s for s in specs if not self.is_done(s)]
        if self.jobs > 1 and len(pending) > 1:
            runs = [(head, replace(self.config(spec), progress=False), _has_checkpoint(self.config(spec)))
                    for head, spec in self._to_train(specs, pending)]  # fmt: skip
            with _continue_hint():
                train_in_parallel(runs, self.jobs, self.say)
        else:
            self._train_in_turn(specs, pending)
        return {s.name: self.result(s) for s in specs}

    def _to_train(self, specs: Sequence[RunSpec], pending: Sequence[RunSpec]) -> Iterator[tuple[str, RunSpec]]:
        """Each pending run with its progress line's head, in order; the finished ones are reported as reused."""
        pending_names = {s.name for s in pending}
        for i, spec in enumerate(specs, 1):
            head = f"run {i}/{len(specs)}: {spec.name}"
            if spec.name in pending_names:
                yield head, spec
            else:
                self.reuse(self.config(spec), head)

    def _train_in_turn(self, specs: Sequence[RunSpec], pending: Sequence[RunSpec]) -> None:
        left = list(pending)
        seconds_per_layer: list[float] = []  # measured seconds / depth of the runs finished in this call
        for head, spec in self._to_train(specs, pending):
            seconds = self.train_one(self.config(spec), self.dataset, head,
                                     f", ETA {self._eta(left, seconds_per_layer)}")  # fmt: skip
            seconds_per_layer.append(seconds / spec.depth)
            left.remove(spec)
            self.say(f"{head} finished in {seconds:.0f} s, ETA {self._eta(left, seconds_per_layer)}")

    def reuse(self, config: TrainConfig, head: str) -> bool:
        """Whether ``config``'s run is finished (then checked to be the same run and reported as skipped)."""
        if not RunDir(config.run_dir).status().finished:
            return False
        self.check_same_config(config)
        self.say(f"{head} already done (summary.json), skipped")
        return True

    def train_one(self, config: TrainConfig, data: ImageDataset | None, head: str, suffix: str = "") -> float:
        """Train ``config`` (resuming its folder's checkpoint if there is one); its wall-clock seconds. The progress
        line is ``head``, "started" or "resumed", then ``suffix``."""
        resuming = _has_checkpoint(config)
        self.say(f"{head} {'resumed' if resuming else 'started'}{suffix}")
        t0 = time.perf_counter()
        with _continue_hint():
            train(config, data=data, resume=resuming)
        return time.perf_counter() - t0

    def result(self, spec: RunSpec) -> RunResult:
        run = RunDir(self.run_dir(spec))
        return RunResult(spec, run.path, run.summary(), run.metrics())

    def _eta(self, pending: Sequence[RunSpec], seconds_per_layer: Sequence[float]) -> str:
        # A run's cost grows about linearly with depth: the runs finished so far give the seconds per layer.
        if not pending:
            return "00:00"
        if not seconds_per_layer:
            return _fmt_hhmm(None)
        rate = sum(seconds_per_layer) / len(seconds_per_layer)
        return _fmt_hhmm(rate * sum(s.depth for s in pending))

    def check_same_config(self, config: TrainConfig) -> None:
        """A finished run is reused only if it computed what this experiment would compute now."""
        changed = config.changed_from(RunDir(config.run_dir).config())
        if changed:
            raise ConfigError(f"{config.run_dir} was trained with {changed} (another --budget or --data?); use another "
                              "--out")  # fmt: skip

    def say(self, message: str) -> None:
        print(f"[reproduce] {message}", file=sys.stderr, flush=True)


@dataclass
class Context:
    """One ``reslab reproduce`` invocation: its runner, its report folder ``DIR/<experiment>`` and its options."""

    experiment: str
    runner: Runner
    out: Path
    seeds: int = 1
    with_1202: bool = False
    started: float = field(default_factory=time.perf_counter)

    @property
    def budget(self) -> Budget:
        return self.runner.budget

    @property
    def data_label(self) -> str:
        """What the data is, read from its contents (e.g. "CIFAR-10 (JPEG q75 copy)"), for titles and tables."""
        return self.runner.dataset.label
