"""One training run from a `TrainConfig`: processes and device, data, model, run folder, the loop, the summary.

This module wires the pieces and owns no mechanism of its own: the loop is `trainer.Trainer`, the run folder
`rundir.RunDir`, the model, data and task the parts that ``reslab.tasks.TASKS[config.task]`` makes, the recipe's
numbers `recipes`.

    train(config)          -> summary dict   (what ``reslab train`` runs; writes the run folder)
    build_trainer(config)  -> Trainer        (the same run's loop without a folder: benchmarks, custom loops)
"""

from __future__ import annotations

import contextlib
import gc
import json
import math
import time
from typing import Any

import torch
from torch import nn

from reslab.engine import distributed as D
from reslab.engine.config import TrainConfig
from reslab.engine.finetune import head_parameters
from reslab.engine.precision import autocast, resolve_device, resolve_precision
from reslab.engine.progress import Console
from reslab.engine.recipes import LRSchedule, build_optimizer
from reslab.engine.rundir import FINAL_EVALUATION, RunDir
from reslab.engine.runinfo import run_info
from reslab.engine.trainer import Trainer, stop_at_once
from reslab.errors import ConfigError
from reslab.tasks import TASKS
from reslab.tasks.classification_run import Data


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
                changed = config.changed_from(D.on_main(rundir.config))
                if changed:
                    raise ConfigError(f"--resume: {rundir} holds a finished run with {changed}")
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
            if config.stop_at is not None and config.stop_at > trainer.total:  # it would finish the run instead
                raise ConfigError(f"--stop-at {config.stop_at} is beyond the run's last iteration ({trainer.total})")
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
    checkpoint, so the file need not exist any more); ``mean`` and ``preprocess`` are a resumed run's preprocessing.
    The task's parts come from ``TASKS[config.task]`` (`reslab.engine.parts.MakeParts`)."""
    device = device or resolve_device(config.device)
    dist = dist or D.DistInfo()
    console = console or Console(enabled=False)
    recipe = config.recipe
    precision = resolve_precision(config.precision, device)
    parts = TASKS[config.task](config, data=data, model=model, device=device, dist=dist, log=console.log,
                               load_init=load_init, mean=mean, preprocess=preprocess)  # fmt: skip
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
    mistakes = summary.pop("mistakes", None)
    rundir.write_summary(summary, mistakes and {"source": FINAL_EVALUATION, "precision": trainer.precision,
                                                "device": str(trainer.device), "splits": mistakes})  # fmt: skip
    errors = {k: round(v, 2) for k, v in summary.items() if k.endswith("error") and isinstance(v, float)}
    console.log(f"done: {json.dumps(errors)}")
    return summary
