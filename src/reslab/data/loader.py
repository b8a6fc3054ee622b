"""Large images through ``torch.utils.data.DataLoader`` workers: decoded and cropped in worker processes, kept uint8
until the batch is on the device, normalised (and colour-augmented) there.

The training stream has the in-memory stream's two properties (`reslab.data.batches`):

* exact resume: epoch ``e``'s order is a permutation seeded by ``(seed, e)`` and each image's view by
  ``(seed, e, image)``, so the state is ``(epoch, batch)``: a resumed run reads the rest of the epoch, no image
  twice and none skipped;
* data parallelism: every rank computes the same global batch of image indices and reads only its contiguous part,
  so each rank decodes ``1/world`` of every epoch.

An unreadable training image is replaced by the next readable one (so batches keep their size and ranks their
places), counted, and reported in a warning naming it and why (once per image), never a crash hours into a run;
``strict`` makes it an error instead. An unreadable test image is left out of the errors and counted.
"""

from __future__ import annotations

import errno
import os
import signal
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from reslab.choices import EVAL_MODES
from reslab.data.batches import check_batch_size, seeded_generator
from reslab.data.large import ImageIndex
from reslab.data.presets import IMAGENET_MEAN, IMAGENET_STD
from reslab.data.views import (
    PCA_EIGVAL,
    PCA_EIGVEC,
    LargeAugment,
    center_view,
    crop_view,
    decode_jpegs,
    image_size,
    is_jpeg,
    multi_scale_views,
    ten_crop_views,
    train_plan,
    train_view,
)
from reslab.errors import ConfigError, DataError


def default_workers() -> int:
    """Data-loading processes per training process: the cores this process may use, less one for the main
    process's own work, spread over the processes of this machine (torchrun's LOCAL_WORLD_SIZE)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, cores // local - 1)


# -- normalisation on the device -------------------------------------------------------------------------------------
class Normalizer:
    """uint8 NCHW images -> float, scaled to [0, 1], PCA lighting added, mean subtracted (and divided by std).

    ``mean`` is [3, H, W] (the per-pixel mean, "pixel") or [3, 1, 1] (with ``std``, "channel"). Whole images (multi-
    scale testing, ``per_pixel=False``) have no pixel grid in common with the crops: their per-channel average is
    subtracted from every scale alike.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor | None, device: torch.device,
                 per_pixel: bool = True) -> None:  # fmt: skip
        self.mean, self.std = mean[None].to(device), None if std is None else std[None].to(device)
        self.per_pixel = per_pixel
        self.mean_cl = self.mean.contiguous(memory_format=torch.channels_last)  # the layout of the batches
        self.channel_mean = self.mean.mean((2, 3), keepdim=True)
        self.eigvec = torch.tensor(PCA_EIGVEC, device=device)
        self.eigval = torch.tensor(PCA_EIGVAL, device=device)

    def __call__(self, x: torch.Tensor, alphas: torch.Tensor | None = None) -> torch.Tensor:
        # In place on one float copy, the mean in the batch's memory layout: a mismatched layout costs 2x on a CPU.
        y = x.float().mul_(1 / 255)
        if alphas is not None:  # AlexNet's lighting: a per-image RGB shift along the principal components
            y.add_((self.eigvec @ (alphas * self.eigval).T).T[:, :, None, None])
        if self.per_pixel and self.mean.shape[2:] == y.shape[2:]:
            y.sub_(self.mean_cl if y.is_contiguous(memory_format=torch.channels_last) else self.mean)
        else:
            y.sub_(self.channel_mean)  # a per-channel mean, or the per-pixel one's average (multi-scale testing)
        return y if self.std is None else y.div_(self.std)


def channel_stats() -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's ImageNet per-channel mean and std, [3, 1, 1] in [0, 1] units."""
    return torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]


# -- the datasets the workers index ----------------------------------------------------------------------------------
# An item is {"views", "alphas", "label", "id", "skipped"}: "views" None when the image (and, in training, every
# substitute tried) was unreadable; "skipped" lists (image, why) of the unreadable images met on the way.
SUBSTITUTES = 16  # unreadable training images in a row before the data is called broken


def _unreadable(e: Exception) -> str:
    if isinstance(e, OSError) and e.errno in (errno.EMFILE, errno.ENFILE, errno.ENOMEM):
        raise e  # the machine, not the image: never hide it as a skipped image
    return f"{type(e).__name__}: {e}"  # any decoder failure is "unreadable" (see folders._Decoder)


class _TrainImages(Dataset):
    """Keys are ``(epoch, image)``. An unreadable image is replaced by the next readable one in index order (its
    view drawn with its own key), so every batch keeps the recipe's size and every rank its place in the global
    batch; the replaced image is reported."""

    def __init__(self, index: ImageIndex, aug: LargeAugment, seed: int, device_decode: bool = False) -> None:
        self.index, self.aug, self.seed, self.device_decode = index, aug, seed, device_decode

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, i = key
        skipped = []
        for j in (int(i + k) % len(self.index) for k in range(SUBSTITUTES)):
            try:
                rng = np.random.default_rng([self.seed, epoch, j])
                data = self.index.read(j)
                item = {"label": int(self.index.labels[j]), "id": j, "skipped": skipped}
                if self.device_decode and is_jpeg(data):  # the plan only: the device decodes the batch
                    w, h = image_size(data)  # reads the header: a file that is no JPEG fails here, and is replaced
                    plan = train_plan(w, h, self.aug, rng)
                    encoded = torch.frombuffer(bytearray(data), dtype=torch.uint8)
                    return {**item, "views": (encoded, plan, w, j), "alphas": plan.alphas}
                view, alphas = train_view(data, self.aug, rng)
                return {**item, "views": view, "alphas": alphas}
            except Exception as e:
                skipped.append((j, _unreadable(e)))
        return {"views": None, "label": -1, "id": i, "skipped": skipped}


class _EvalImages(Dataset):
    """An unreadable test image is left out (and reported): errors are over the readable ones."""

    def __init__(self, index: ImageIndex, aug: LargeAugment, mode: str, scales: tuple[int, ...]) -> None:
        self.index, self.aug, self.mode, self.scales = index, aug, mode, scales

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict[str, Any]:
        label = int(self.index.labels[i])
        try:
            data = self.index.read(i)
            if self.mode == "center":
                views = [center_view(data, self.aug)]
            elif self.mode == "ten-crop":
                views = ten_crop_views(data, self.aug)
            else:
                views = multi_scale_views(data, self.scales)
        except Exception as e:
            return {"views": None, "label": label, "id": i, "skipped": [(i, _unreadable(e))]}
        return {"views": views, "label": label, "id": i, "skipped": []}


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack the readable items' views as uint8 NCHW tensors in channels-last memory (the models' layout)."""
    good = [it for it in items if it["views"] is not None]
    out: dict[str, Any] = {"skipped": [s for it in items for s in it["skipped"]], "failed": len(items) - len(good),
                           "labels": torch.tensor([it["label"] for it in good], dtype=torch.long),
                           "ids": torch.tensor([it["id"] for it in good], dtype=torch.long)}  # fmt: skip
    if not good:
        out["views"] = []
        return out

    def stack(views: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack([v.permute(1, 2, 0) for v in views]).permute(0, 3, 1, 2)  # NHWC memory

    if isinstance(good[0]["views"], list):  # evaluation: one tensor per view
        out["views"] = [stack([it["views"][v] for it in good]) for v in range(len(good[0]["views"]))]
    elif any(isinstance(it["views"], tuple) for it in good):  # device decoding: JPEGs still encoded, with their plans
        out["parts"] = [it["views"] for it in good]
        out["alphas"] = torch.from_numpy(np.stack([it["alphas"] for it in good]))
    else:
        out["views"] = stack([it["views"] for it in good])
        out["alphas"] = torch.from_numpy(np.stack([it["alphas"] for it in good]))
    return out


class _Skips:
    """Unreadable images: one warning per image the first time, a count for the run."""

    def __init__(self, index: ImageIndex, strict: bool) -> None:
        self.index, self.strict, self.count, self.seen, self.last = index, strict, 0, set(), ""

    def add(self, skipped: list[tuple[int, str]]) -> None:
        for i, why in skipped:
            self.last = f"{self.index.name(i)}, {why}"
            if self.strict:
                raise DataError(f"unreadable image {self.index.name(i)}: {why}")
            self.count += 1
            if i not in self.seen:
                self.seen.add(i)
                warnings.warn(f"skipped unreadable image {self.index.name(i)} ({why}); {len(self.seen)} so far",
                              stacklevel=2)  # fmt: skip


def _worker_init(_worker_id: int) -> None:
    # Ctrl-C in a terminal and a scheduler's SIGTERM (SLURM signals every process of a job) reach the workers too.
    # A worker that died of one would make the main process raise at once, before its checkpoint; the main process
    # alone decides (it finishes its step, checkpoints, and shuts its workers down).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def close_loader(loader: DataLoader) -> None:
    """Stop a DataLoader's persistent workers now, through their queues. They ignore SIGINT and SIGTERM
    (`_worker_init`), so the SIGTERM that multiprocessing sends daemonic children at interpreter exit does not stop
    them: a process that exits while its loader is still referenced (an uncaught exception's traceback holds the
    frames) would wait for them forever. Calling this first makes such an exit clean."""
    iterator = getattr(loader, "_iterator", None)  # persistent workers live in the loader's kept iterator
    if iterator is not None:
        iterator._shutdown_workers()
        loader._iterator = None


def _loader(dataset: Dataset, workers: int, device: torch.device, **kw: Any) -> DataLoader:
    return DataLoader(dataset, num_workers=workers, collate_fn=_collate, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                      worker_init_fn=_worker_init if workers else None, **kw)  # fmt: skip


# -- training --------------------------------------------------------------------------------------------------------
class _EpochBatches(Sampler):
    """This rank's part of each global batch of one epoch, from batch ``start``: lists of ``(epoch, image)`` keys."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int, world: int) -> None:
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch, self.start = 0, 0
        self.per_epoch = n // batch_size  # the last partial batch is dropped: every step has the recipe's batch

    def __len__(self) -> int:
        return self.per_epoch - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = torch.randperm(self.n, generator=seeded_generator(self.seed, self.epoch)).tolist()
        shard = self.batch_size // self.world
        for b in range(self.start, self.per_epoch):
            lo = b * self.batch_size + self.rank * shard
            yield [(self.epoch, i) for i in order[lo : lo + shard]]


class StreamingBatches:
    """An endless, resumable, rank-sharded stream of model-ready training batches read by DataLoader workers.

    Args:
        index: the training images; aug: their augmentation; batch_size: the *global* batch size.
        mean, std: the normalisation (`Normalizer`); workers: loader processes (0: in this process).
        strict: an unreadable image stops the run instead of being skipped.
        with_ids: batches are ``(images, labels, image indices)`` (for tests of what an epoch read).
    """

    def __init__(
        self,
        index: ImageIndex,
        aug: LargeAugment,
        batch_size: int,
        mean: torch.Tensor,
        std: torch.Tensor | None = None,
        *,
        seed: int = 0,
        rank: int = 0,
        world: int = 1,
        workers: int = 0,
        device: torch.device | str = "cpu",
        channels_last: bool = True,
        strict: bool = False,
        with_ids: bool = False,
        device_decode: bool = False,
    ) -> None:
        check_batch_size(batch_size, world, len(index))
        self.device = torch.device(device)
        self.sampler = _EpochBatches(len(index), batch_size, seed, rank, world)
        images = _TrainImages(index, aug, seed, device_decode)
        self.loader = _loader(images, workers, self.device, batch_sampler=self.sampler)
        self.index, self.crop = index, aug.crop
        self.normalize = Normalizer(mean, std, self.device)
        self.lighting = aug.lighting > 0
        self.channels_last, self.with_ids = channels_last, with_ids
        self.skips = _Skips(index, strict)
        self.epoch, self.batch = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        return self.sampler.per_epoch

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])

    def close(self) -> None:
        close_loader(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        while True:
            if self.batch >= self.sampler.per_epoch:
                self.epoch, self.batch = self.epoch + 1, 0
            self.sampler.epoch, self.sampler.start = self.epoch, self.batch
            for raw in self.loader:
                self.batch += 1  # counted when handed out: a checkpoint after this batch resumes with the next one
                self.skips.add(raw["skipped"])
                if raw["failed"]:
                    raise DataError(f"{SUBSTITUTES} training images in a row are unreadable (the last: "
                                    f"{self.skips.last}): the data looks broken")  # fmt: skip
                x = self._decoded(raw["parts"]) if "parts" in raw else raw["views"].to(self.device, non_blocking=True)
                alphas = raw["alphas"].to(self.device, non_blocking=True) if self.lighting else None
                x = self.normalize(x, alphas)
                if self.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                y = raw["labels"].to(self.device, non_blocking=True)
                yield (x, y, raw["ids"]) if self.with_ids else (x, y)
            self.epoch, self.batch = self.epoch + 1, 0

    def _decoded(self, parts: list[Any]) -> torch.Tensor:
        """uint8 NCHW views on the device from a batch of encoded JPEGs and their plans (and any images a worker
        decoded itself: other formats), in batch order."""
        jpegs = [p for p in parts if isinstance(p, tuple)]
        decoded = iter(decode_jpegs([p[0] for p in jpegs], self.device, [self.index.name(p[3]) for p in jpegs]))
        views = [crop_view(next(decoded), p[1], p[2], self.crop) if isinstance(p, tuple) else p.to(self.device)
                 for p in parts]  # fmt: skip
        return torch.stack(views)


# -- evaluation ------------------------------------------------------------------------------------------------------
class EvalStream:
    """Model-ready evaluation batches of one split, in order, re-iterable: ``(images, labels)`` for the centre crop,
    ``([view, ...], labels)`` for 10-crop and multi-scale (one image per batch there: its views differ in size).
    """

    def __init__(
        self,
        index: ImageIndex,
        aug: LargeAugment,
        mean: torch.Tensor,
        std: torch.Tensor | None = None,
        *,
        mode: str = EVAL_MODES[0],
        scales: tuple[int, ...] | None = None,
        batch_size: int = 100,
        workers: int = 0,
        device: torch.device | str = "cpu",
        strict: bool = False,
    ) -> None:
        if mode not in EVAL_MODES:
            raise ConfigError(f"unknown evaluation mode {mode!r}; choose one of {', '.join(EVAL_MODES)}")
        self.device, self.mode = torch.device(device), mode
        batch = 1 if mode == "multi-scale" else batch_size
        dataset = _EvalImages(index, aug, mode, scales or aug.scales())
        self.loader = _loader(dataset, workers, self.device, batch_size=batch, shuffle=False)
        self.normalize = Normalizer(mean, std, self.device, per_pixel=mode != "multi-scale")
        self.skips = _Skips(index, strict)
        self.n = len(index)

    def __len__(self) -> int:
        return self.n

    def close(self) -> None:
        close_loader(self.loader)

    def __iter__(self) -> Iterator[tuple[Any, torch.Tensor]]:
        for raw in self.loader:
            self.skips.add(raw["skipped"])
            if not len(raw["labels"]):
                continue
            views = [self.normalize(v.to(self.device, non_blocking=True)) for v in raw["views"]]
            y = raw["labels"].to(self.device, non_blocking=True)
            yield (views[0] if self.mode == "center" else views), y


def estimate_pixel_mean(
    index: ImageIndex, aug: LargeAugment, samples: int = 5000, workers: int = 0, batch_size: int = 100
) -> torch.Tensor:
    """The paper's per-pixel mean, [3, crop, crop] in [0, 1] units: the mean of the centre views of ``samples``
    training images spread evenly over the set (a random crop at a random scale is centred anywhere, so the mean
    of the centre views stands for the mean image of the crops)."""
    n = len(index)
    picked = index.take(np.linspace(0, n - 1, min(samples, n)).round().astype(np.int64))
    total, count = torch.zeros(3, aug.crop, aug.crop, dtype=torch.float64), 0
    for raw in _loader(_EvalImages(picked, aug, "center", ()), workers, torch.device("cpu"), batch_size=batch_size):
        if len(raw["labels"]):
            total += raw["views"][0].to(torch.float64).sum(0)
            count += len(raw["labels"])
    if count == 0:
        raise DataError("no readable training images to compute the pixel mean from")
    return (total / (255.0 * count)).float()
