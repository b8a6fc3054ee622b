"""The training loop: one iteration-based loop for every recipe, one process or many (torchrun).

Per iteration: draw the next batch from the stream, set the learning rate, forward under autocast, backward,
SGD step. Statistics stay on the device and are read once per logging interval (no per-step host sync); that is
also where the NaN check and the paper's warm-up rule look. Evaluation and checkpoints happen at interval ends.
"""

from __future__ import annotations

import gc
import json
import math
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reslab.data.batches import BatchStream, pixel_mean
from reslab.data.dataset import ImageDataset, holdout_split, load_dataset
from reslab.engine import distributed as D
from reslab.engine.checkpoint import load_checkpoint, save_atomic, write_text_atomic
from reslab.engine.config import RESUME_IGNORED, TrainConfig
from reslab.engine.evaluate import evaluate
from reslab.engine.precision import autocast, resolve_device, resolve_precision
from reslab.engine.recipes import PaperWarmup, build_optimizer, scheduled_lr
from reslab.engine.runinfo import run_info
from reslab.errors import ConfigError, ReslabError
from reslab.models import create_model, model_spec

CHECKPOINT = "checkpoint.pt"
Batch = tuple[torch.Tensor, torch.Tensor]
# What resuming needs beyond the entries every checkpoint has (checkpoint.REQUIRED).
RESUME_KEYS = ("optimizer", "scaler", "stream", "warmup", "interval_stats", "train_seconds", "rng_cpu")


class TrainingDiverged(ReslabError):
    """The loss became NaN or Inf."""


class Trainer:
    """Builds everything a run needs from a `TrainConfig` and runs it with `fit()`.

    ``dataset`` may be passed in (experiments load the data once for many runs); otherwise ``config.data`` is loaded.
    ``batches`` replaces the built-in in-memory stream with any iterable of model-ready ``(images, labels)`` batches
    (already normalised and augmented; a finite one, like a ``DataLoader``, is restarted at its end). The dataset
    still provides the evaluation split and the mean image. Resume is exact only for a stream with
    ``state_dict``/``load_state_dict`` (as `BatchStream` has); metrics show epochs if it has ``batches_per_epoch``.
    """

    def __init__(
        self, config: TrainConfig, dataset: ImageDataset | None = None, batches: Iterable[Batch] | None = None
    ) -> None:
        config.validate()
        self.cfg, self.recipe = config, config.recipe
        self.device = resolve_device(config.device)
        self.dist = D.init_distributed(self.device.type)
        if self.dist.enabled and self.device.type == "cuda":
            self.device = torch.device("cuda", self.dist.local_rank)
        self.precision = resolve_precision(config.precision, self.device)
        torch.manual_seed(config.seed)  # the model's initial weights

        if dataset is None:  # rank 0 first: it downloads or decodes, the other ranks read its cache
            dataset = D.main_first(lambda: load_dataset(config.data, config.data_dir, strict=config.strict_data))
        ds = dataset
        self.full_test = (ds.test_images, ds.test_labels)  # the test set, also when test_* below is a validation set
        self.dataset = holdout_split(ds, config.val_split) if config.val_split else ds
        self.model = self._build_model()
        self.mean = pixel_mean(self.dataset.train_images)
        self.total = self.recipe.resolve_iterations(len(self.dataset.train_labels))
        self.stream: Iterable[Batch] = batches if batches is not None else BatchStream(
            self.dataset.train_images, self.dataset.train_labels, self.recipe.batch_size, self.mean,
            seed=config.seed, augment=config.augment, flip=self.recipe.flip, rank=self.dist.rank, world=self.dist.world,
            device=self.device, channels_last=config.channels_last,
        )  # fmt: skip
        self._batches: Iterator[Batch] = iter(self.stream)
        self.optimizer = build_optimizer(self.model, self.recipe)
        self.warmup = PaperWarmup(self.recipe, self._depth())
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self.criterion = nn.CrossEntropyLoss(label_smoothing=self.recipe.label_smoothing)
        self.iteration = 0
        # Seconds in training steps, and in the whole loop (steps, evaluations, logging, checkpoints), summed over
        # every session of a resumed run: time redone after a kill counts, time lost to it does not.
        self.train_seconds = 0.0
        self.loop_seconds = 0.0
        self.interval_seconds = 0.0  # training-step seconds of the current logging interval (for img/s)
        self._bar: Any = None
        # (loss sum, wrong predictions, images) of the current logging interval, kept on the device.
        self.stats = torch.zeros(3, device=self.device)
        self.batches_per_epoch: int | None = getattr(self.stream, "batches_per_epoch", None)
        self.eval_every = config.eval_every or max(
            self.batches_per_epoch or 1, math.ceil(self.total / self.recipe.evaluations)
        )
        self.checkpoint_every = config.checkpoint_every or self.eval_every
        self.out = Path(config.out)
        self.net = self._wrap(self.model)

    # -- construction -------------------------------------------------------------------------------------------
    def _build_model(self) -> nn.Module:
        model = create_model(self.cfg.model, num_classes=self.dataset.num_classes, **self.cfg.model_kwargs)
        if self.cfg.sync_bn:
            if not (self.dist.enabled and self.device.type == "cuda"):
                raise ConfigError("--sync-bn needs several CUDA processes (torchrun); PyTorch has no CPU SyncBatchNorm")
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        model = model.to(self.device)
        if self.cfg.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def _depth(self) -> int:
        """Depth for the paper's warm-up rule, which is a CIFAR rule (Sec. 4.2): 0 for the ImageNet family."""
        try:
            spec = model_spec(self.cfg.model)
            return spec.depth if spec.family == "cifar" else 0
        except ReslabError:  # a generic builder: the depth is a keyword
            return int(self.cfg.model_kwargs.get("depth", 0)) if self.cfg.model.startswith("cifar") else 0

    def _wrap(self, model: nn.Module) -> nn.Module:
        net = model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            net = nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if self.cfg.compile:
            net = torch.compile(net)
        return net

    # -- state --------------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "config": self.cfg.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "stream": self.stream.state_dict() if hasattr(self.stream, "state_dict") else None,
            "warmup": self.warmup.state_dict(),
            "iteration": self.iteration,
            "interval_stats": self._reduced_stats().cpu(),
            "train_seconds": self.train_seconds,
            "loop_seconds": self.loop_seconds,
            "interval_seconds": self.interval_seconds,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "precision": self.precision,
            "device_type": self.device.type,
            "mean": self.mean,
            "classes": list(self.dataset.classes),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if not hasattr(self.stream, "load_state_dict") or state["stream"] is None:
            raise ConfigError("cannot resume exactly: the batch stream has no state_dict/load_state_dict")
        self.stream.load_state_dict(state["stream"])
        self._batches = iter(self.stream)
        self.warmup.load_state_dict(state["warmup"])
        self.iteration = int(state["iteration"])
        # The saved statistics are summed over ranks: rank 0 carries them on, the others start from zero.
        self.stats = state["interval_stats"].to(self.device) * float(self.dist.is_main)
        self.train_seconds = float(state["train_seconds"])
        # Checkpoints written before the loop time was saved know only their training steps.
        self.loop_seconds = float(state.get("loop_seconds", self.train_seconds))
        self.interval_seconds = float(state.get("interval_seconds", 0.0)) if self.dist.is_main else 0.0
        torch.set_rng_state(state["rng_cpu"])
        if self.device.type == "cuda" and state.get("rng_cuda"):
            torch.cuda.set_rng_state_all(state["rng_cuda"])

    def _reduced_stats(self) -> torch.Tensor:
        return D.all_reduce_sum(self.stats.clone())

    def save_checkpoint(self) -> None:
        # A finite loss does not prove finite weights: the last step's update may have overflowed.
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise TrainingDiverged(f"weights became NaN/Inf before iteration {self.iteration}; stopped, "
                                   f"{self._last_good()}")  # fmt: skip
        state = self.state_dict()  # every rank joins the statistics' all-reduce inside
        if self.dist.is_main:
            save_atomic(state, self.out / CHECKPOINT)

    def _last_good(self) -> str:
        path = self.out / CHECKPOINT
        return f"the last good checkpoint ({path}) is untouched" if path.exists() else "no checkpoint was written yet"

    def resume(self) -> bool:
        """Continue from ``out/checkpoint.pt`` if it exists; the run's configuration must be the same."""
        path = self.out / CHECKPOINT
        # Only rank 0 writes checkpoints, so only rank 0 is sure to see one (the ranks need not share a filesystem):
        # it reads the file and sends the state to the others. The state came through weights_only loading.
        state = load_checkpoint(path) if self.dist.is_main and path.exists() else None
        state = D.broadcast_from_main(state)
        if state is None:
            return False
        missing = [k for k in RESUME_KEYS if k not in state]
        if missing:
            raise ConfigError(f"cannot resume {path}: the checkpoint has no {missing[0]!r} entry")
        saved = TrainConfig.from_dict(state["config"])
        diff = [k for k, v in saved.to_dict().items() if k not in RESUME_IGNORED and self.cfg.to_dict()[k] != v]
        if diff:
            raise ConfigError(f"cannot resume {path}: it was trained with a different {diff[0]!r}")
        # `precision: auto` resolves per machine: a bf16 run must not go on in fp32 (or fp16) without notice.
        if state.get("precision", self.precision) != self.precision:
            raise ConfigError(f"cannot resume {path}: it trained in {state['precision']}, this machine resolves "
                              f"--precision {self.cfg.precision} to {self.precision}; pass --precision "
                              f"{state['precision']} if this device supports it")  # fmt: skip
        if state.get("device_type", self.device.type) != self.device.type:
            self._log(f"warning: resuming a {state['device_type']} run on {self.device.type}: not bit-exact")
        self.load_state_dict(state)
        return True

    # -- the loop -----------------------------------------------------------------------------------------------
    def _set_lr(self) -> float:
        lr = self.warmup.apply(scheduled_lr(self.recipe, self.iteration, self.total))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def _next_batch(self) -> Batch:
        try:
            x, y = next(self._batches)
        except StopIteration:  # a finite iterable: start its next pass
            self._batches = iter(self.stream)
            x, y = next(self._batches)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        size = self.recipe.low_res_size
        if size and self.iteration < self.recipe.low_res_fraction * self.total and x.shape[-1] > size:  # never upsample
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if self.cfg.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)  # a no-op for the built-in stream
        return x, y

    def _step(self, x: torch.Tensor, y: torch.Tensor, stats: torch.Tensor) -> None:
        with autocast(self.precision, self.device):
            logits = self.net(x)
            loss = self.criterion(logits, y)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        with torch.no_grad():  # device-side sums: no host sync per step
            stats[0] += loss.detach().float() * len(y)
            stats[1] += (logits.argmax(1) != y).sum()
            stats[2] += len(y)

    def fit(self, resume: bool = False) -> dict[str, Any]:
        """Train to the end (or to ``stop_at``) and return the summary (empty if stopped early)."""
        if not resume and (self.out / CHECKPOINT).exists():
            raise ConfigError(f"{self.out} already holds a run: pass --resume to continue it, or choose another --out")
        if resume and self.resume():
            self._log(f"resumed from iteration {self.iteration}")
        self._start_run_dir(resumed=self.iteration > 0)
        stop = min(self.total, self.cfg.stop_at or self.total)
        bar = self._bar = self._progress(stop)
        tick = loop_tick = time.perf_counter()
        self.net.train()
        while self.iteration < stop:
            lr = self._set_lr()
            x, y = self._next_batch()
            self._step(x, y, self.stats)
            self.iteration += 1
            if bar is not None:
                bar.update(1)
            log_now = self.iteration % self.cfg.log_every == 0 or self.iteration == self.total
            eval_now = self.iteration % self.eval_every == 0 or self.iteration == self.total
            ckpt_now = self.iteration % self.checkpoint_every == 0 or self.iteration == stop
            if not (log_now or eval_now or ckpt_now):
                continue
            seconds = time.perf_counter() - tick
            self.train_seconds += seconds
            self.interval_seconds += seconds
            totals = self._checked_totals()  # one host sync per boundary; raises on NaN/Inf
            if log_now:
                self._log_interval(totals, lr, self.interval_seconds, bar)
                self.stats.zero_()
                self.interval_seconds = 0.0
            if eval_now:
                self._evaluate_periodic()
            if ckpt_now:
                self.loop_seconds += time.perf_counter() - loop_tick
                loop_tick = time.perf_counter()
                self.save_checkpoint()
            tick = time.perf_counter()
        if bar is not None:
            bar.close()
            self._bar = None
        if self.iteration < self.total:
            return {}
        self.loop_seconds += time.perf_counter() - loop_tick
        return self._finish()

    def _checked_totals(self) -> list[float]:
        """This interval's (loss sum, wrong, seen) over all ranks; stops the run if the loss is not finite.

        Checkpoints are only written after this check, so a diverged run never overwrites its last good checkpoint.
        """
        totals = self._reduced_stats().tolist()
        if not math.isfinite(totals[0]):
            raise TrainingDiverged(
                f"loss became {totals[0]} before iteration {self.iteration}; stopped, {self._last_good()}: "
                f"lower --lr or use --precision fp32"
            )
        return totals

    def _log_interval(self, totals: list[float], lr: float, seconds: float, bar: Any) -> None:
        loss_sum, wrong, n = totals
        # The paper's warm-up rule reads the training error of whole logging intervals only, so that a run that
        # was stopped and resumed in the middle of an interval decides exactly as an uninterrupted one.
        self.warmup.observe(wrong / n)
        epoch = round(self.iteration / self.batches_per_epoch, 3) if self.batches_per_epoch else None
        record = {"iter": self.iteration, "epoch": epoch, "lr": lr, "train_loss": loss_sum / n,
                  "train_error": 100.0 * wrong / n, "img_per_s": n / max(seconds, 1e-9)}  # fmt: skip
        self._write_metrics(record)
        if bar is not None:
            bar.set_postfix(loss=f"{record['train_loss']:.3f}", err=f"{record['train_error']:.1f}%", lr=f"{lr:.3g}")
        else:  # a log file, not a terminal: one plain line per interval
            self._log(f"iter {self.iteration}/{self.total}: loss {record['train_loss']:.4f}, train error "
                      f"{record['train_error']:.2f}%, lr {lr:.4g}, {record['img_per_s']:.0f} img/s")  # fmt: skip

    def _eval_split(self, images: torch.Tensor, labels: torch.Tensor, tta: bool, shift: int = 0) -> dict[str, Any]:
        return evaluate(self.model, images, labels, self.mean, num_classes=self.dataset.num_classes,
                        device=self.device, precision=self.precision, tta_flip=tta, tta_shift=shift,
                        batch_size=self.cfg.eval_batch_size, channels_last=self.cfg.channels_last)  # fmt: skip

    def _evaluate_periodic(self) -> None:
        if not self.dist.is_main:
            return
        split = "val" if self.cfg.val_split else "test"
        result = self._eval_split(self.dataset.test_images, self.dataset.test_labels, tta=False)
        self._write_metrics({"iter": self.iteration, "split": split, "error": result["error"],
                             "top5_error": result["top5_error"], "loss": result["loss"]})  # fmt: skip
        self._log(f"iter {self.iteration}/{self.total}: {split} error {result['error']:.2f}%")

    def _finish(self) -> dict[str, Any]:
        """Final evaluation and summary.json. ``wall_seconds`` is the training loop's wall-clock over all sessions,
        ``overhead_fraction`` its share outside training steps (evaluations, logging, checkpoints); data loading and
        the final evaluation are outside the loop (``final_eval_seconds``)."""
        summary: dict[str, Any] = {}
        if self.dist.is_main:
            t0 = time.perf_counter()
            summary = self.final_evaluation()
            overhead = 1 - self.train_seconds / max(self.loop_seconds, 1e-9)
            summary.update(iterations=self.total, train_seconds=self.train_seconds, wall_seconds=self.loop_seconds,
                           overhead_fraction=overhead, final_eval_seconds=time.perf_counter() - t0,
                           precision=self.precision, device=str(self.device), world_size=self.dist.world)  # fmt: skip
            write_text_atomic(self.out / "summary.json", json.dumps(summary, indent=2) + "\n")
            self._log(f"done: {json.dumps({k: v for k, v in summary.items() if 'error' in k})}")
        return summary

    def final_evaluation(self) -> dict[str, Any]:
        """Final errors: on the held-out validation split if there is one, and on the test set, without TTA, with
        flip TTA and, if the recipe sets ``tta_shift``, with its 6 views. The test set is never used for any choice
        during training."""
        out: dict[str, Any] = {"dataset": self.dataset.name, "data_label": self.dataset.label}
        splits = {"val" if self.cfg.val_split else "test": (self.dataset.test_images, self.dataset.test_labels)}
        if self.cfg.val_split:
            splits["test"] = self.full_test
        for split, (images, labels) in splits.items():
            plain = self._eval_split(images, labels, tta=False)
            flip = self._eval_split(images, labels, tta=True)
            out[f"{split}_error"], out[f"{split}_top5_error"] = plain["error"], plain["top5_error"]
            out[f"{split}_error_tta"] = flip["error"]
            if self.recipe.tta_shift:
                views = self._eval_split(images, labels, tta=True, shift=self.recipe.tta_shift)
                out[f"{split}_error_tta_shift"] = views["error"]
            out[f"{split}_per_class_accuracy"] = plain["per_class_accuracy"]
        reported = "_tta_shift" if self.recipe.tta_shift else "_tta" if self.recipe.tta_flip else ""
        out["reported_test_error"] = out[f"test_error{reported}"]
        return out

    # -- output -------------------------------------------------------------------------------------------------
    def _start_run_dir(self, resumed: bool) -> None:
        if not self.dist.is_main:
            return
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot create the run folder {self.out}: {e.strerror}") from e
        now = run_info()
        info = {"config": self.cfg.to_dict(), "seed": self.cfg.seed, "iterations": self.total,
                "precision": self.precision, "device": str(self.device), "world_size": self.dist.world,
                "dataset": self.dataset.name, "data_label": self.dataset.label,
                "train_images": len(self.dataset.train_labels), **now}  # fmt: skip
        if resumed:  # keep the first session's record; add this one's (code, versions, machine may differ)
            first = _read_json(self.out / "config.json") or info
            session = {"device": info["device"], "world_size": info["world_size"], **now}
            info = {**first, "resumed": [*first.get("resumed", []), {"from_iteration": self.iteration, **session}]}
        write_text_atomic(self.out / "config.json", json.dumps(info, indent=2) + "\n")
        metrics = self.out / "metrics.jsonl"
        if resumed and metrics.exists():  # drop what was logged after the checkpoint we resume from
            keep = [ln for ln in metrics.read_text().splitlines() if _logged_iter(ln) <= self.iteration]
            write_text_atomic(metrics, "".join(ln + "\n" for ln in keep))
        elif metrics.exists():
            metrics.unlink()

    def _write_metrics(self, record: dict[str, Any]) -> None:
        if self.dist.is_main:
            with open(self.out / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")

    def _progress(self, stop: int) -> Any:
        if not (self.cfg.progress and self.dist.is_main and sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(total=stop, initial=self.iteration, desc=self.cfg.model, unit="it", dynamic_ncols=True)

    def _log(self, message: str) -> None:
        if not (self.dist.is_main and self.cfg.progress):
            return
        if self._bar is not None:  # above the bar, not through it
            self._bar.write(f"[reslab] {message}", file=sys.stderr)
        else:
            print(f"[reslab] {message}", file=sys.stderr, flush=True)


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _logged_iter(line: str) -> float:
    """The iteration of a metrics.jsonl line; a line torn by a kill counts as never written."""
    try:
        return json.loads(line)["iter"]
    except (ValueError, KeyError, TypeError):
        return math.inf


def train(
    config: TrainConfig,
    dataset: ImageDataset | None = None,
    resume: bool = False,
    batches: Iterable[Batch] | None = None,
) -> dict[str, Any]:
    """Train one run described by ``config`` and return its summary (the Python API behind ``reslab train``)."""
    trainer = None
    try:
        trainer = Trainer(config, dataset, batches)
        summary = trainer.fit(resume=resume)
        D.barrier()  # rank 0 ran the final evaluation alone: the ranks leave together, none exits under the others
        return summary
    finally:
        # DDP's reducer holds the process group past destroy_process_group. Left to interpreter exit, gloo's threads
        # can free tensors after Python is gone and abort the process (a rare SIGABRT seen in CI); free it here.
        del trainer
        gc.collect()
        D.shutdown()
