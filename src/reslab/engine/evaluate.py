"""``reslab eval``: a checkpoint on a dataset split, preprocessed exactly as its training was."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from reslab.data.dataset import holdout_split
from reslab.engine.precision import autocast, resolve_device, resolve_precision
from reslab.engine.run import load_data
from reslab.engine.rundir import load_model
from reslab.errors import ConfigError, DataError, ReslabError
from reslab.tasks.classification import EvalBatches, count_views, evaluate, views_label

SPLITS = ("test", "val", "train")


def evaluate_checkpoint(
    path: str,
    *,
    data: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    flip: bool = False,
    shift: int = 0,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int | None = None,
) -> dict[str, Any]:
    """Top-1/top-5 error, loss and per-class error of a checkpoint (a file or a run folder) on ``split``: "test",
    "val" (the run's held-out images; needs a run trained with a validation split) or "train" (the images it trained
    on). The training mean image and image size are reused; ``data`` defaults to the data it was trained on and
    ``batch_size`` to the run's evaluation batch size."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    count_views(flip, shift)
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    dev = resolve_device(device)
    loaded = load_model(path, dev)
    cfg = loaded.config
    if loaded.mean is None:
        raise ReslabError(f"{loaded.path} was trained on a custom batch source: it records no preprocessing to "
                          "evaluate with; evaluate it from Python")  # fmt: skip
    try:
        ds = load_data(replace(cfg, data=data or cfg.data, data_dir=data_dir if data_dir is not None else cfg.data_dir))
    except DataError as e:
        if data is None:
            raise DataError(f"{e}; this is the data {loaded.path} was trained on: pass --data to evaluate on a "
                            "copy of it elsewhere") from e  # fmt: skip
        raise
    if list(ds.classes) != loaded.classes:
        raise DataError(f"the data's classes {ds.classes[:4]}... differ from the checkpoint's {loaded.classes[:4]}...")
    if tuple(ds.test_images.shape[1:]) != tuple(loaded.mean.shape):
        raise DataError(f"the data's images are {list(ds.test_images.shape[1:])}, the checkpoint was trained on "
                        f"{list(loaded.mean.shape)}")  # fmt: skip
    if split == "val" and not cfg.val_split:
        raise ConfigError(f"{loaded.path} was trained without a validation split (--val-split): use test or train")
    held = holdout_split(ds, cfg.val_split) if cfg.val_split else ds  # the split training made, reproduced
    images, labels = {"test": (ds.test_images, ds.test_labels), "val": (held.test_images, held.test_labels),
                      "train": (held.train_images, held.train_labels)}[split]  # fmt: skip
    batches = EvalBatches(images, labels, loaded.mean, batch_size or cfg.eval_batch_size, str(dev))
    with autocast(resolve_precision(precision, dev), dev):
        result = evaluate(loaded.model, batches, len(loaded.classes), flip=flip, shift=shift, device=dev,
                          channels_last=cfg.channels_last)  # fmt: skip
    return {**result, "dataset": ds.name, "data_label": ds.label, "split": split, "views": views_label(flip, shift),
            "classes": loaded.classes, "iteration": loaded.iteration, "checkpoint": str(loaded.path)}  # fmt: skip
