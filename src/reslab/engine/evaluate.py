"""``reslab eval``: a checkpoint on a dataset split, preprocessed exactly as its training was."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import torch

from reslab.choices import SPLITS
from reslab.data.dataset import holdout_split, resolve_spec
from reslab.data.loader import EVAL_MODES, EvalStream, default_workers
from reslab.data.spec import is_builtin
from reslab.data.views import LargeAugment
from reslab.engine.config import TrainConfig
from reslab.engine.precision import autocast, resolve_device, resolve_precision
from reslab.engine.recipes import IMAGENET_TORCHVISION, PAPER
from reslab.errors import ConfigError, DataError, ReslabError, class_mismatch
from reslab.models.trained import load_trained
from reslab.tasks.classification import EvalBatches, count_views, evaluate, views_label
from reslab.tasks.classification_run import load_data, open_stream
from reslab.weights.trained import TrainedModel


def evaluate_checkpoint(
    path: str | TrainedModel,
    *,
    data: str | None = None,
    data_dir: str | None = None,
    split: str = SPLITS[0],
    flip: bool = False,
    shift: int = 0,
    device: str = "auto",
    precision: str = "auto",
    batch_size: int | None = None,
    mode: str = EVAL_MODES[0],
    scales: tuple[int, ...] | None = None,
    workers: int | None = None,
) -> dict[str, Any]:
    """Top-1/top-5 error, loss and per-class error of a checkpoint (a file or a run folder) on ``split``: "test",
    "val" (the run's held-out images; needs a run trained with a validation split) or "train" (the images it trained
    on), or a model already loaded (`reslab.deploy.trained.load_trained`: shipped or torchvision weights too). The
    training mean image and image size are reused; ``data`` defaults to the data it was trained on and
    ``batch_size`` to the run's evaluation batch size.

    A run on streamed large images (``--recipe imagenet-*``) is tested on its data's val/ split ("test" means it
    too: ImageNet's test labels are not public, and the paper reports val) in ``mode``: "center" (resize 256, crop
    224, scaled to the run's crop size), "ten-crop", or "multi-scale" (Sec. 3.4's fully-convolutional testing at
    ``scales``, default {224, 256, 384, 480, 640} scaled; `reslab.data.views`)."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    count_views(flip, shift)
    if mode not in EVAL_MODES:
        raise ConfigError(f"unknown evaluation mode {mode!r}; choose one of {', '.join(EVAL_MODES)}")
    if mode != "center" and (flip or shift):
        raise ConfigError(f"{mode} testing brings its own mirrored views: drop --tta/--tta-shift")
    if scales is not None and (mode != "multi-scale" or not scales or min(scales) < 8):
        raise ConfigError("--scales are the shorter sides (each >= 8) of multi-scale testing (--multi-scale)")
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"batch size must be >= 1, got {batch_size}")
    if batch_size is not None and mode == "multi-scale":  # each image's scales are a batch of their own sizes
        raise ConfigError("--batch-size does not apply to --multi-scale: it tests one image at a time")
    dev = resolve_device(device)
    loaded = path if isinstance(path, TrainedModel) else load_trained(path, dev)
    loaded.model.to(dev)
    pre = loaded.preprocessing
    if pre.view and data is not None and is_builtin(data):
        raise DataError(f"{loaded.source} was trained on large images ({pre.view['crop']}-px crops): evaluate it on "
                        f"a folder or .tar of them with a val/ split, not on {data!r} (32x32 images)")  # fmt: skip
    if not loaded.config:  # weights trained elsewhere (torchvision's, another project's): on data not recorded here
        if data is None:
            raise ConfigError(f"{loaded.source} records no training data: pass --data (the data to evaluate on)")
        cfg = TrainConfig(model=loaded.arch.name, model_kwargs=dict(loaded.arch.kwargs), data=data,
                          recipe=IMAGENET_TORCHVISION if pre.view else PAPER)  # fmt: skip
    else:
        cfg = TrainConfig.from_dict(loaded.config)
    if pre.mean is None:
        raise ReslabError(f"{loaded.source} was trained on a custom batch source: it records no preprocessing to "
                          "evaluate with; evaluate it from Python")  # fmt: skip
    if cfg.streams and data_dir is not None:
        raise ConfigError("--data-dir is the download cache of in-memory data; large images are read where --data "
                          "says")  # fmt: skip
    if not cfg.streams and workers is not None:
        raise ConfigError("--workers sets the loading processes of streamed large images; "
                          f"{loaded.source} holds its images in memory")  # fmt: skip
    if cfg.streams:
        return _evaluate_large(loaded, cfg, data, split, flip, shift, mode, scales, dev, precision, batch_size, workers)
    if mode != "center":
        raise ConfigError(f"{mode} testing is for large images (a run trained with --recipe imagenet-*); "
                          f"{loaded.source} holds {list(pre.mean.shape[1:])} images in memory")  # fmt: skip
    try:
        ds = load_data(replace(cfg, data=data or cfg.data, data_dir=data_dir if data_dir is not None else cfg.data_dir))
    except DataError as e:
        if data is None:
            raise DataError(f"{e}; this is the data {loaded.source} was trained on: pass --data to evaluate on a "
                            "copy of it elsewhere") from e  # fmt: skip
        raise
    _check_classes(ds.classes, loaded)
    if tuple(ds.test_images.shape[1:]) != tuple(pre.mean.shape):
        raise DataError(f"the data's images are {list(ds.test_images.shape[1:])}, the checkpoint was trained on "
                        f"{list(pre.mean.shape)}")  # fmt: skip
    if split == "val" and not cfg.val_split:
        raise ConfigError(f"{loaded.source} was trained without a validation split (--val-split): use test or train")
    held = holdout_split(ds, cfg.val_split) if cfg.val_split else ds  # the split training made, reproduced
    images, labels = {"test": (ds.test_images, ds.test_labels), "val": (held.test_images, held.test_labels),
                      "train": (held.train_images, held.train_labels)}[split]  # fmt: skip
    batches = EvalBatches(images, labels, pre.mean, batch_size or cfg.eval_batch, str(dev))
    with autocast(resolve_precision(precision, dev), dev):
        result = evaluate(loaded.model, batches, len(loaded.classes), flip=flip, shift=shift, device=dev,
                          channels_last=cfg.channels_last)  # fmt: skip
    return {**result, "dataset": ds.name, "data_label": ds.label, "split": split, "views": views_label(flip, shift),
            "classes": loaded.classes, "iteration": loaded.iteration, "checkpoint": str(loaded.source)}  # fmt: skip


WNID = re.compile(r"n\d{8}")  # a WordNet id: ImageNet's class folders (n01440764, ...)


def _check_classes(classes: list[str], loaded: TrainedModel) -> None:
    """The data's class folders must name the model's classes in its logit order. Weights named elsewhere
    (torchvision's: their categories, "tench", ...) also accept ImageNet's own folders, WordNet ids sorted as
    torchvision's classes are, or folders numbered by logit ("0" ... "999"); any other names are refused, since
    their order says nothing of the model's."""
    classes = list(classes)
    if classes == loaded.classes:
        return
    n = len(loaded.classes)
    if loaded.preprocessing.source and len(classes) == n:
        if all(WNID.fullmatch(c) for c in classes) or classes == [str(i) for i in range(n)]:
            return  # ImageFolder sorts WordNet ids as ImageNet's class indices are; numbered folders are the indices
        raise DataError(f"the data's {n} class folders ({classes[0]!r}, ...) are not the class order of "
                        f"{loaded.source} ({loaded.classes[0]!r}, ...): name them by WordNet id (n01440764, ...) as "
                        f"ImageNet's, or by logit (0 ... {n - 1})")  # fmt: skip
    raise DataError(class_mismatch(classes, loaded.classes))


def _evaluate_large(loaded: TrainedModel, cfg: TrainConfig, data: str | None, split: str, flip: bool, shift: int,
                    mode: str, scales: tuple[int, ...] | None, dev: torch.device, precision: str,
                    batch_size: int | None, workers: int | None) -> dict[str, Any]:  # fmt: skip
    try:
        large, _ = open_stream(replace(cfg, data=resolve_spec(data) if data else cfg.data, test_subset=None,
                                       train_subset=None if data else cfg.train_subset))  # fmt: skip
    except DataError as e:
        if data is None:  # as for in-memory data (`evaluate_checkpoint`)
            raise DataError(f"{e}; this is the data {loaded.source} was trained on: pass --data to evaluate on a "
                            "copy of it elsewhere") from e  # fmt: skip
        raise
    _check_classes(large.classes, loaded)
    aug = LargeAugment(**loaded.preprocessing.view)
    index = large.splits["train" if split == "train" else "val"]
    stream = EvalStream(index, aug, loaded.preprocessing.mean, loaded.preprocessing.std, mode=mode, scales=scales,
                        batch_size=batch_size or cfg.eval_batch, device=dev,
                        workers=default_workers() if workers is None else workers)  # fmt: skip
    with autocast(resolve_precision(precision, dev), dev):
        result = evaluate(loaded.model, stream, len(loaded.classes), flip=flip, shift=shift, device=dev,
                          channels_last=cfg.channels_last)  # fmt: skip
    views = {"center": views_label(flip, shift) + f", centre {aug.crop} crop of shorter side {aug.test_short}",
             "ten-crop": f"10 crops ({aug.crop} px, of shorter side {aug.test_short}, and mirrored)",
             "multi-scale": f"fully convolutional, shorter sides {', '.join(map(str, scales or aug.scales()))}, and "
                            "mirrored"}[mode]  # fmt: skip
    return {**result, "dataset": large.name, "data_label": large.name, "split": "train" if split == "train" else "val",
            "views": views, "mode": mode, "skipped": stream.skips.count, "classes": loaded.classes,
            "iteration": loaded.iteration, "checkpoint": str(loaded.source)}  # fmt: skip
