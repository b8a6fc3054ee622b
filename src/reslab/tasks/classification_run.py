"""A classification run's parts for the shared training engine (`reslab.engine.run.build_trainer`): the network
(with ``--init`` weights, frozen parts), the data (in memory, or streamed large images) and the task."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from reslab.choices import TORCHVISION
from reslab.data.dataset import ImageDataset
from reslab.data.large import LargeData, open_large, subset_index
from reslab.data.load import load_dataset
from reslab.data.loader import channel_stats, default_workers, estimate_pixel_mean
from reslab.data.views import LargeAugment, preset
from reslab.engine import distributed as D
from reslab.engine.config import TrainConfig
from reslab.engine.finetune import Init, freeze, read_init
from reslab.engine.finetune import load_init as load_init_weights
from reslab.engine.parts import TaskParts
from reslab.errors import ConfigError, DataError
from reslab.models import create_model, family_and_depth
from reslab.tasks.classification import ClassificationData, ClassificationTask, in_memory, streaming
from reslab.weights.torchvision import parse as parse_torchvision

Data = ImageDataset | ClassificationData


def classification_parts(config: TrainConfig, *, data: Data | None, model: nn.Module | None, device: torch.device,
                         dist: D.DistInfo, log: Callable[[str], None], load_init: bool, mean: torch.Tensor | None,
                         preprocess: dict[str, Any] | None = None) -> TaskParts:  # fmt: skip
    """The `TaskParts` of a classification run (`reslab.engine.parts.MakeParts`). Images held in memory are
    normalised with ``mean`` (a resumed run's), else with the ``init`` weights' own mean image where it has the
    data's shape (the features were trained on inputs minus that mean), else with the training images' mean (Sec.
    4.2); streamed images as their augmentation says (`_stream`)."""
    recipe = config.recipe
    if model is None:  # the model's keywords and frozen parts checked on the meta device, before any data is loaded
        with torch.device("meta"):
            freeze(create_model(config.model, num_classes=2, **config.model_kwargs), config.freeze, False)
    streamed = data is None and config.streams
    init = read_init(config.init) if config.init and load_init else None  # read once: its weights, mean, format
    if mean is None and init is not None and not streamed:
        pre = init.preprocessing
        if pre is not None and pre.std is not None:  # as torchvision's weights are refused here (TrainConfig)
            raise ConfigError(f"--init {config.init}: weights trained on large images normalised per channel; "
                              "fine-tune them on large images with --recipe imagenet-torchvision (a folder or .tar "
                              "with train/ and val/)")  # fmt: skip
        mean = None if pre is None else pre.mean
    if streamed:
        source = _stream(config, dist, device, log, init, mean, preprocess)
    else:
        source = _data(config, data, dist, device, mean)
    if mean is not None and source.mean is mean and init is not None:
        log(f"images normalised with the mean image of the --init weights ({config.init})")
    custom = model is not None
    torch.manual_seed(config.seed)  # the initial weights
    if model is None:
        model = create_model(config.model, num_classes=source.num_classes, **config.model_kwargs)
    if init is not None:
        # A model passed in is its caller's to describe: config.model may not name it.
        load_init_weights(model, init, log, None if custom else config.model, config.model_kwargs, fold=not streamed)
    freeze(model, config.freeze, config.freeze_bn)  # before DDP wraps the model: it registers the trainable ones

    def make_task(total: int) -> ClassificationTask:
        return ClassificationTask(source, label_smoothing=recipe.label_smoothing, low_res_size=recipe.low_res_size,
                                  low_res_until=int(recipe.low_res_fraction * total),
                                  views=(recipe.tta_flip, recipe.tta_shift), device=device,
                                  channels_last=config.channels_last, log=log)  # fmt: skip

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
        aug = parse_torchvision(config.init).fitted(aug)
    return large, aug


def _stream(config: TrainConfig, dist: D.DistInfo, device: torch.device, log: Callable[[str], None],
            init: Init | None, resumed_mean: torch.Tensor | None,
            resumed: dict[str, Any] | None) -> ClassificationData:  # fmt: skip
    """Streamed large images, normalised as the run's augmentation says, unless something fixes it otherwise: a
    resumed run keeps the statistics it recorded (``resumed_mean`` and ``resumed``: its checkpoint's ``mean`` and
    ``preprocess``); ``init`` weights (those being loaded) keep what they were trained with, since their features
    expect those inputs: another project's per-channel statistics (its weights loaded unfolded), or a reslab run's
    recorded mean and std (`_init_normalization`). torchvision's weights set their own through `open_stream`."""
    large, aug = open_stream(config)
    recorded = (resumed or {}).get("large") or {}
    fixed: tuple[torch.Tensor, torch.Tensor | None] | None = None  # (mean, std) that no estimate may replace
    if recorded and resumed_mean is not None:
        aug = replace(aug, normalization=recorded.get("normalization", aug.normalization))
        fixed = (resumed_mean, (resumed or {}).get("std"))
    elif init is not None and (foreign := init.foreign) is not None:
        aug = replace(aug, normalization="channel")
        fixed = tuple(torch.tensor(v, dtype=torch.float32)[:, None, None] for v in (foreign.mean, foreign.std))
        log(f"images normalised per channel as the --init weights were ({foreign.source}: mean {foreign.mean}, "
            f"std {foreign.std})")  # fmt: skip
    elif init is not None:  # torchvision's record none here: `open_stream` fitted the augmentation to them
        aug, fixed = _init_normalization(init, aug, log)
    # Every rank indexes the data itself; a rank that sees other files (a copy still syncing, another mount) would
    # read other images for its part of each batch: stop all ranks together instead.
    counts = [len(large.splits["train"]), len(large.splits["val"])]
    differs = D.all_reduce_max(torch.tensor([float(D.broadcast_from_main(counts) != counts)], device=device))
    if differs.item():
        raise DataError(f"the ranks index different data in {config.data} (this rank: {counts[0]} training and "
                        f"{counts[1]} validation images): every rank must see the same files")  # fmt: skip
    workers = default_workers() if config.workers is None else config.workers
    if fixed is not None:
        mean, std = fixed
    elif aug.normalization == "pixel":  # rank 0 estimates the mean image, every rank gets the same one
        mean, std = D.on_main(lambda: estimate_pixel_mean(large.splits["train"], aug, workers=workers)), None
    else:
        mean, std = channel_stats()
    return streaming(large, aug, mean, std, batch_size=config.recipe.batch_size, seed=config.seed, rank=dist.rank,
                     world=dist.world, device=device, channels_last=config.channels_last, workers=workers,
                     eval_batch_size=config.eval_batch, strict=config.strict_data,
                     device_decode=config.device_decode)  # fmt: skip


def _init_normalization(init: Init, aug: LargeAugment, log: Callable[[str], None]
                        ) -> tuple[LargeAugment, tuple[torch.Tensor, torch.Tensor | None] | None]:  # fmt: skip
    """The normalisation of a reslab ``--init`` (a run folder, checkpoint, safetensors file or shipped name) for
    streamed images: per channel with its recorded mean and std where it was trained so; its mean image where it was
    trained with one of the run's crop size; else (a mean image of another size) a mean image of the run's training
    images, as the weights' inputs had a mean image subtracted and were not divided by a std. Weights that record
    nothing leave the run's normalisation."""
    pre = init.preprocessing
    if pre is None or pre.mean is None:
        return aug, None
    if pre.std is not None:
        log(f"images normalised per channel as the --init weights were (mean {pre.mean.flatten().tolist()}, std "
            f"{pre.std.flatten().tolist()})")  # fmt: skip
        return replace(aug, normalization="channel"), (pre.mean, pre.std)
    if tuple(pre.mean.shape) == (3, aug.crop, aug.crop):
        log(f"images normalised with the mean image of the --init weights ({init.ref})")
        return replace(aug, normalization="pixel"), (pre.mean, None)
    log(f"the --init weights' mean image is {tuple(pre.mean.shape[1:])}, this run's crop {aug.crop} px: the images "
        "are normalised with their own mean image, as the weights' were")  # fmt: skip
    return replace(aug, normalization="pixel"), None


def _data(config: TrainConfig, data: Data | None, dist: D.DistInfo, device: torch.device,
          mean: torch.Tensor | None = None) -> ClassificationData:  # fmt: skip
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
