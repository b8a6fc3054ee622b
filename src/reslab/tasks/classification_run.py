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
from reslab.engine.finetune import freeze, init_foreign, init_mean
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
    if mean is None and config.init and load_init and not streamed:
        mean = init_mean(config.init)
    if streamed:
        source = _stream(config, dist, device, log, load_init, mean, preprocess)
    else:
        source = _data(config, data, dist, device, mean)
    if mean is not None and source.mean is mean and load_init:
        log(f"images normalised with the mean image of the --init weights ({config.init})")
    custom = model is not None
    torch.manual_seed(config.seed)  # the initial weights
    if model is None:
        model = create_model(config.model, num_classes=source.num_classes, **config.model_kwargs)
    if config.init and load_init:
        # A model passed in is its caller's to describe: config.model may not name it.
        load_init_weights(
            model, config.init, log, None if custom else config.model, config.model_kwargs, fold=not streamed
        )
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


def _stream(config: TrainConfig, dist: D.DistInfo, device: torch.device, log: Callable[[str], None], load_init: bool,
            resumed_mean: torch.Tensor | None, resumed: dict[str, Any] | None) -> ClassificationData:  # fmt: skip
    """Streamed large images, normalised as the run's augmentation says; per channel with another project's statistics
    where ``--init`` is in that project's format and ``load_init`` loads it (its weights saw such inputs, and are
    loaded unfolded), and with the statistics a resumed run recorded (``resumed_mean`` and ``resumed``: its
    checkpoint's ``mean`` and ``preprocess``)."""
    large, aug = open_stream(config)
    recorded = (resumed or {}).get("large") or {}
    foreign = init_foreign(config.init) if config.init and load_init else None
    channel = recorded.get("normalization") == "channel" and resumed_mean is not None and resumed.get("std") is not None
    if foreign is not None or channel:
        aug = replace(aug, normalization="channel")
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
    elif foreign is not None:
        mean, std = (torch.tensor(v, dtype=torch.float32)[:, None, None] for v in (foreign.mean, foreign.std))
        log(f"images normalised per channel as the --init weights were ({foreign.source}: mean {foreign.mean}, "
            f"std {foreign.std})")  # fmt: skip
    elif channel:
        mean, std = resumed_mean, resumed["std"]
    else:
        mean, std = channel_stats()
    return streaming(large, aug, mean, std, batch_size=config.recipe.batch_size, seed=config.seed, rank=dist.rank,
                     world=dist.world, device=device, channels_last=config.channels_last, workers=workers,
                     eval_batch_size=config.eval_batch, strict=config.strict_data,
                     device_decode=config.device_decode)  # fmt: skip


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
