"""One training run from a `TrainConfig`: processes and device, data, model, run folder, the loop, the summary.

This module wires the pieces and owns no mechanism of its own: the loop is `trainer.Trainer`, the run folder
`rundir.RunDir`, the task `reslab.tasks.classification`, the recipe's numbers `recipes`.

    train(config)          -> summary dict   (what ``reslab train`` runs; writes the run folder)
    build_trainer(config)  -> Trainer        (the same run's loop without a folder: benchmarks, custom loops)
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn

from reslab.data.dataset import ImageDataset, load_dataset
from reslab.data.large import LargeData, open_large, subset_index
from reslab.data.loader import channel_stats, default_workers, estimate_pixel_mean
from reslab.data.views import LargeAugment, preset
from reslab.engine import distributed as D
from reslab.engine.config import TORCHVISION, TrainConfig
from reslab.engine.finetune import freeze, head_parameters, init_mean
from reslab.engine.finetune import load_init as load_init_weights
from reslab.engine.precision import autocast, resolve_device, resolve_precision
from reslab.engine.progress import Console
from reslab.engine.recipes import LRSchedule, build_optimizer
from reslab.engine.rundir import RunDir
from reslab.engine.runinfo import run_info
from reslab.engine.trainer import Trainer, stop_at_once
from reslab.errors import ConfigError, DataError
from reslab.models import create_model, family_and_depth
from reslab.models.torchvision_weights import parse as parse_torchvision
from reslab.tasks.classification import ClassificationData, ClassificationTask, in_memory, streaming

Data = ImageDataset | ClassificationData


def train(config: TrainConfig, *, data: Data | None = None, model: nn.Module | None = None,
          resume: bool = False) -> dict[str, Any]:  # fmt: skip
    """Train the run ``config`` describes into its run folder and return its summary ({} if it stopped early).

    Args:
        data: an in-memory `ImageDataset` (experiments load the data once for many runs) or any
            `ClassificationData` (e.g. a ``DataLoader`` over data too large for memory); default: ``config.data``.
        model: a network to train instead of ``config.model`` (its checkpoint then records it as custom).
        resume: continue from the folder's checkpoint, which must exist; a finished run is left as it is.

    SIGINT/SIGTERM stop the run after the current step with a checkpoint (`TrainingInterrupted`); a second
    process training into the same folder is refused (`rundir.RunInUse`).
    """
    device, dist = D.setup(config.device)
    console = Console(config.progress and dist.is_main)
    rundir = RunDir(config.run_dir)
    trainer = None
    try:
        with rundir.lock() if dist.is_main else contextlib.nullcontext():
            status = D.on_main(lambda: rundir.check_start(resume))
            if status.finished:
                recorded = D.on_main(rundir.config)
                diff = config.differences(recorded)
                if diff:
                    raise ConfigError(f"--resume: {rundir} holds a finished run with another {diff[0]!r} "
                                      f"({getattr(recorded, diff[0])!r}, not {getattr(config, diff[0])!r})")
                console.log(f"{rundir} is finished (summary.json): nothing to resume")
                return D.on_main(rundir.summary)
            precision = resolve_precision(config.precision, device)
            state = None
            if resume:
                state = D.on_main(lambda: _resumable(rundir, config, precision))  # rank 0 reads; all get the state
                if state.get("device_type", device.type) != device.type:
                    console.log(f"warning: resuming a {state['device_type']} run on {device.type}: not bit-exact")
            trainer = build_trainer(config, data=data, model=model, device=device, dist=dist,
                                    rundir=rundir if dist.is_main else None, console=console,
                                    load_init=state is None,  # a resumed run's weights come from its checkpoint
                                    mean=None if state is None else state["mean"],  # and its preprocessing
                                    preprocess=None if state is None else state.get("preprocess"))  # fmt: skip
            if state is not None:
                trainer.load_state_dict(state)
                console.log(f"resumed {rundir} from iteration {trainer.iteration}")
            if dist.is_main:
                rundir.begin(_record(config, trainer), resumed_from=trainer.iteration if state is not None else None)
            try:
                if state is None:
                    trainer.checkpoint()  # iteration 0: from now on an interrupted run can always be resumed
                trainer.run(config.stop_at)
            except BaseException:
                if state is None and trainer.iteration == 0 and dist.is_main:
                    rundir.discard()  # failed before its first step (out of memory, say): nothing to keep
                raise
            summary = {}
            if trainer.iteration == trainer.total and dist.is_main:
                kept = (f"stopped during the final evaluation; the checkpoint at iteration {trainer.iteration} of "
                        f"{trainer.total} is complete ({rundir.checkpoint_path})")  # fmt: skip
                with stop_at_once(kept):
                    summary = _finish(trainer, rundir, console)
            D.barrier()  # rank 0 ran the final evaluation alone: the ranks leave together, none exits under the others
            return summary
    finally:
        if trainer is not None:
            trainer.close()  # workers stopped now: an exception's traceback may keep the trainer alive until exit
        # DDP's reducer holds the process group past destroy_process_group. Left to interpreter exit, gloo's threads
        # can free tensors after Python is gone and abort the process (a rare SIGABRT seen in CI); free it here.
        del trainer
        gc.collect()
        D.shutdown()


def _resumable(rundir: RunDir, config: TrainConfig, precision: str) -> dict[str, Any]:
    state = rundir.load_checkpoint()
    rundir.check_resumable(state, config, precision)
    if config.stop_at is not None and config.stop_at <= state["iteration"]:
        raise ConfigError(f"--stop-at {config.stop_at}: {rundir} is at iteration {state['iteration']} already")
    return state


def build_trainer(
    config: TrainConfig,
    *,
    data: Data | None = None,
    model: nn.Module | None = None,
    device: torch.device | None = None,
    dist: D.DistInfo | None = None,
    rundir: RunDir | None = None,
    console: Console | None = None,
    load_init: bool = True,
    mean: torch.Tensor | None = None,
    preprocess: dict[str, Any] | None = None,
) -> Trainer:
    """The `Trainer` of the run ``config`` describes; it writes only into ``rundir`` (none by default).

    ``config.init`` weights are loaded into the model unless ``load_init`` is off (a resumed run's come from its
    checkpoint, so the file need not exist any more). Images held in memory are normalised with ``mean`` (a resumed
    run's), else with the ``init`` weights' own mean image where it has the data's shape (the features were
    trained on inputs minus that mean), else with the training images' mean (Sec. 4.2)."""
    device = device or resolve_device(config.device)
    dist = dist or D.DistInfo()
    console = console or Console(enabled=False)
    recipe = config.recipe
    precision = resolve_precision(config.precision, device)
    if config.detects:
        from reslab.detection.run import detection_parts

        if data is not None or model is not None:
            raise ConfigError("a detection run builds its model and data from the config")
        parts = detection_parts(config, device=device, dist=dist, log=console.log, load_init=load_init, mean=mean,
                                preprocess=preprocess)  # fmt: skip
    else:
        parts = _classification_parts(config, data, model, device, dist, console, load_init, mean)
    source = parts.source
    model, net = _place(parts.model, config, device, dist)
    total = recipe.resolve_iterations(source.train_size)
    # Periodic evaluations: the recipe's number per run, at least an epoch apart; checkpoints at each by default.
    eval_every = config.eval_every or max(source.train_size // recipe.batch_size, math.ceil(total / recipe.evaluations))
    schedule = LRSchedule(recipe, total, parts.warmup_depth)
    meta: dict[str, Any] = {"config": config.to_dict(), "classes": list(source.classes), "mean": source.mean,
                            "precision": precision, "device_type": device.type, "dataset": source.name,
                            "data_label": source.label or source.name,
                            "preprocess": source.preprocess}  # fmt: skip
    if parts.custom:
        meta["custom_model"] = type(model).__name__
    optimizer = build_optimizer(model, recipe, head_parameters(model), config.head_lr_scale)
    return Trainer(model, parts.make_task(total), source.train, optimizer, schedule, total=total,
                   batch_size=recipe.batch_size, train_size=source.train_size, net=net, precision=precision,
                   device=device, dist=dist, rundir=rundir, meta=meta, log_every=config.log_every,
                   eval_every=eval_every, checkpoint_every=config.checkpoint_every or eval_every,
                   checkpoint_minutes=config.checkpoint_minutes, console=console)  # fmt: skip


@dataclass
class TaskParts:
    """What differs between tasks when a trainer is built: the model (before placement), the data (with ``train``,
    ``classes``, ``train_size``, ``mean``, ``name``, ``label``, ``preprocess``), the task given the run's length, and
    the depth the paper's CIFAR warm-up rule reads (0: off)."""

    model: nn.Module
    source: Any
    make_task: Callable[[int], Any]
    warmup_depth: int = 0
    custom: bool = False


def _classification_parts(config: TrainConfig, data: Data | None, model: nn.Module | None, device: torch.device,
                          dist: D.DistInfo, console: Console, load_init: bool,
                          mean: torch.Tensor | None) -> TaskParts:  # fmt: skip
    recipe = config.recipe
    if model is None:  # the model's keywords and frozen parts checked on the meta device, before any data is loaded
        with torch.device("meta"):
            freeze(create_model(config.model, num_classes=2, **config.model_kwargs), config.freeze, False)
    if mean is None and config.init and load_init:
        mean = init_mean(config.init)
    source = _data(config, data, dist, device, mean)
    if mean is not None and source.mean is mean and load_init:
        console.log(f"images normalised with the mean image of the --init weights ({config.init})")
    custom = model is not None
    torch.manual_seed(config.seed)  # the initial weights
    if model is None:
        model = create_model(config.model, num_classes=source.num_classes, **config.model_kwargs)
    if config.init and load_init:
        load_init_weights(model, config.init, console.log)
    freeze(model, config.freeze, config.freeze_bn)  # before DDP wraps the model: it registers the trainable ones

    def make_task(total: int) -> ClassificationTask:
        return ClassificationTask(source, label_smoothing=recipe.label_smoothing, low_res_size=recipe.low_res_size,
                                  low_res_until=int(recipe.low_res_fraction * total),
                                  views=(recipe.tta_flip, recipe.tta_shift), device=device,
                                  channels_last=config.channels_last, log=console.log)  # fmt: skip

    family, depth = family_and_depth(config.model, **config.model_kwargs)
    return TaskParts(model, source, make_task, depth if family == "cifar" else 0, custom)  # the warm-up: a CIFAR rule


def load_data(config: TrainConfig) -> ImageDataset:
    """The in-memory dataset ``config`` trains on: its data, image size and subsets."""
    return load_dataset(config.data, config.data_dir, strict=config.strict_data, image_size=config.image_size,
                        train_subset=config.train_subset, test_subset=config.test_subset)  # fmt: skip


def open_stream(config: TrainConfig) -> tuple[LargeData, LargeAugment]:
    """The large-image dataset ``config`` streams (with its subsets) and the augmentation its recipe names."""
    large = open_large(config.data)
    large.splits["train"] = subset_index(large.splits["train"], config.train_subset)
    large.splits["val"] = subset_index(large.splits["val"], config.test_subset)
    aug = preset(config.recipe.augmentation, config.image_size or 224)
    if config.init and config.init.startswith(TORCHVISION):
        # torchvision's weights saw per-channel normalised images and are evaluated at their own shorter side (V1:
        # 256, V2: 232 for a 224 crop): the run's preprocessing follows them, scaled to its crop size.
        view = parse_torchvision(config.init).view
        aug = replace(aug, normalization="channel", test_short=max(aug.crop, round(view["resize"] * aug.crop /
                                                                                  view["crop"])))  # fmt: skip
    return large, aug


def _stream(config: TrainConfig, dist: D.DistInfo, device: torch.device) -> ClassificationData:
    large, aug = open_stream(config)
    # Every rank indexes the data itself; a rank that sees other files (a copy still syncing, another mount) would
    # read other images for its part of each batch: stop all ranks together instead.
    counts = [len(large.splits["train"]), len(large.splits["val"])]
    differs = D.all_reduce_max(torch.tensor([float(D.broadcast_from_main(counts) != counts)], device=device))
    if differs.item():
        raise DataError(f"the ranks index different data in {config.data} (this rank: {counts[0]} training and "
                        f"{counts[1]} validation images): every rank must see the same files")  # fmt: skip
    workers = default_workers() if config.workers is None else config.workers
    if aug.normalization == "pixel":  # rank 0 estimates the mean image, every rank gets the same one
        mean, std = D.on_main(lambda: estimate_pixel_mean(large.splits["train"], aug, workers=workers)), None
    else:
        mean, std = channel_stats()
    return streaming(large, aug, mean, std, batch_size=config.recipe.batch_size, seed=config.seed, rank=dist.rank,
                     world=dist.world, device=device, channels_last=config.channels_last, workers=workers,
                     eval_batch_size=config.eval_batch, strict=config.strict_data,
                     device_decode=config.device_decode)  # fmt: skip


def _data(config: TrainConfig, data: Data | None, dist: D.DistInfo, device: torch.device,
          mean: torch.Tensor | None = None) -> ClassificationData:  # fmt: skip
    if data is None and config.streams:
        return _stream(config, dist, device)
    if isinstance(data, ClassificationData):
        if config.val_split or config.train_subset or config.test_subset:
            raise ConfigError("val_split and the subsets select images of an in-memory dataset; a custom "
                              "ClassificationData brings its own training and evaluation sets")  # fmt: skip
        return data
    if data is None:  # rank 0 first: it downloads or decodes, the other ranks read its cache
        data = D.main_first(lambda: load_data(config))
    recipe = config.recipe
    return in_memory(data, batch_size=recipe.batch_size, seed=config.seed, val_split=config.val_split,
                     augment=config.augment, alternate_flips=recipe.flip == "alternate", rank=dist.rank,
                     world=dist.world, device=device, channels_last=config.channels_last,
                     eval_batch_size=config.eval_batch, mean=mean)  # fmt: skip


def _place(
    model: nn.Module, config: TrainConfig, device: torch.device, dist: D.DistInfo
) -> tuple[nn.Module, nn.Module]:
    """The model on its device, and what the forward pass runs (DDP and ``torch.compile`` wrappers)."""
    if config.sync_bn:
        if not (dist.enabled and device.type == "cuda"):
            raise ConfigError("--sync-bn needs several CUDA processes (torchrun); PyTorch has no CPU SyncBatchNorm")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = model
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if config.compile:
        net = torch.compile(net, mode=config.compile_mode)
    return model, net


def _record(config: TrainConfig, trainer: Trainer) -> dict[str, Any]:
    """config.json: the config and the circumstances of the run (versions, commit, machine, date)."""
    meta = trainer.meta
    return {"config": config.to_dict(), "seed": config.seed, "iterations": trainer.total,
            "precision": trainer.precision, "device": str(trainer.device), "world_size": trainer.dist.world,
            "dataset": meta["dataset"], "data_label": meta["data_label"],
            "train_images": trainer.train_size, **run_info()}  # fmt: skip


def _finish(trainer: Trainer, rundir: RunDir, console: Console) -> dict[str, Any]:
    """The final evaluation and summary.json. ``wall_seconds`` is the training loop's wall-clock over all sessions,
    ``overhead_fraction`` its share outside training steps (evaluations, logging, checkpoints); data loading and
    the final evaluation are outside the loop (``final_eval_seconds``)."""
    t0 = time.perf_counter()
    console.log("training done; final evaluation")
    with autocast(trainer.precision, trainer.device):
        summary = trainer.task.final_evaluation(trainer.model)
    summary.update(iterations=trainer.total, train_seconds=trainer.train_seconds, wall_seconds=trainer.loop_seconds,
                   overhead_fraction=1 - trainer.train_seconds / max(trainer.loop_seconds, 1e-9),
                   final_eval_seconds=time.perf_counter() - t0, precision=trainer.precision,
                   device=str(trainer.device), world_size=trainer.dist.world)  # fmt: skip
    rundir.write_summary(summary)
    errors = {k: round(v, 2) for k, v in summary.items() if k.endswith("error") and isinstance(v, float)}
    console.log(f"done: {json.dumps(errors)}")
    return summary
