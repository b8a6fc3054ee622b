"""In-memory training batches with batched augmentation (airbench-style): no per-image Python in the loop.

The stream is a pure function of ``(seed, epoch, batch index)``: each epoch's order is a permutation drawn from a
generator seeded by ``(seed, epoch)``, and each batch's crops and flips from one seeded by ``(seed, epoch, batch)``.
That makes two things exact and cheap:

* resume: the state is just ``(epoch, batch)``;
* data parallelism: every rank draws the same *global* batch and keeps its own contiguous slice, so K processes
  see exactly the batches one process would, and the recipe's batch size holds.

Preprocessing follows Sec. 4.2: per-pixel mean subtraction, 4-pixel zero padding of the mean-subtracted image
(so padding is "mean grey", as in the paper's Caffe-style pipeline), a random 32x32 crop and a horizontal flip.
Pixels are scaled by 1/255; a constant input scale does not change a network whose first conv is followed by BN.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from reslab.errors import ConfigError


def seeded_generator(*key: int) -> torch.Generator:
    """A generator seeded by a hash of ``key``: no overflow for any seed, no collisions between (epoch, batch)."""
    digest = hashlib.blake2b(",".join(map(str, key)).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def check_batch_size(batch_size: int, world: int, images: int) -> None:
    """A global batch must split evenly over the processes and fit in the training set (every stream drops the last
    partial batch of an epoch)."""
    if batch_size % world:
        raise ConfigError(f"batch size {batch_size} is not divisible by {world} processes")
    if batch_size > images:
        raise ConfigError(f"batch size {batch_size} exceeds the {images} training images")


def pixel_mean(images: torch.Tensor) -> torch.Tensor:
    """The per-pixel mean image [3, H, W] of uint8 images, in [0, 1] units (Sec. 4.2 "per-pixel mean subtracted")."""
    total = torch.zeros(images.shape[1:], dtype=torch.float64)
    for chunk in images.split(4096):  # chunked: a float copy of all of CIFAR would be 600 MB
        total += chunk.to(torch.float64).sum(0)
    return (total / (255.0 * len(images))).to(torch.float32)


def normalize(images_u8: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float, scaled to [0, 1], per-pixel mean subtracted."""
    return images_u8.float().div_(255.0).sub_(mean)


def draw_crops_flips(n: int, gen: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """The random numbers of `apply_crops_flips` for ``n`` images, drawn from ``gen`` on the CPU (so a GPU run draws
    the same ones): int64 [3, n] of (row offset, column offset, flip?)."""
    zeros = torch.zeros(n, dtype=torch.long)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen) if pad > 0 else zeros
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen) if pad > 0 else zeros
    mirror = (torch.rand(n, generator=gen) < 0.5).long() if flip else zeros
    return torch.stack([dy, dx, mirror])


def apply_crops_flips(x: torch.Tensor, params: torch.Tensor, pad: int = 4) -> torch.Tensor:
    """Pad ``x`` by ``pad`` zeros, take each image's HxW crop at its offsets and mirror those flagged: one gather."""
    n, c, h, w = x.shape
    dev = x.device
    dy, dx, mirror = params
    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]
        batch, chan = torch.arange(n, device=dev)[:, None, None, None], torch.arange(c, device=dev)[None, :, None, None]
        x = padded[batch, chan, rows, cols]
    return torch.where(mirror.bool()[:, None, None, None], x.flip(3), x)


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One small host-to-device copy that does not stall the GPU's queue (pinned memory, non-blocking)."""
    if device.type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def random_crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Pad by ``pad`` zeros, take one random HxW crop per image and flip half of them (Sec. 4.2)."""
    return apply_crops_flips(x, _to_device(draw_crops_flips(len(x), gen, pad, flip), x.device), pad)


class BatchStream:
    """An endless, resumable, rank-sharded stream of augmented training batches.

    Args:
        images: uint8 [N, 3, H, W] (kept on ``device``: on a GPU the whole of CIFAR-10 fits).
        labels: int64 [N].
        batch_size: the *global* batch size; each of ``world`` ranks gets ``batch_size // world`` images.
        mean: per-pixel mean [3, H, W] in [0, 1] units.
        seed: the run's seed.
        augment: pad-crop-flip (Sec. 4.2); off gives the plain images.
        alternate_flips: off (the paper), each image is mirrored with probability 1/2 in every epoch; on (not in the
            paper; Jordan 2024, "94% on CIFAR-10 in 3.29 seconds"), each image's mirroring is drawn once and
            inverted every epoch, so any two consecutive epochs show both orientations of every image.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        mean: torch.Tensor,
        *,
        seed: int = 0,
        augment: bool = True,
        alternate_flips: bool = False,
        rank: int = 0,
        world: int = 1,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
    ) -> None:
        check_batch_size(batch_size, world, len(images))
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.mean = mean.to(self.device)
        self.batch_size, self.seed, self.augment = batch_size, seed, augment
        # Each image's mirroring in even epochs (odd epochs invert it); key (seed, -1) is no (epoch, batch) key.
        self._base_flips = (
            (torch.rand(len(images), generator=seeded_generator(seed, -1)) < 0.5).long().to(self.device)
            if alternate_flips
            else None
        )
        self.rank, self.world = rank, world
        self.channels_last = channels_last
        self.epoch, self.batch = 0, 0
        # Drop the last partial batch: every step has the recipe's batch size.
        self.batches_per_epoch = len(images) // batch_size
        self._order: torch.Tensor | None = None

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])
        self._order = None

    def _epoch_order(self) -> torch.Tensor:
        if self._order is None:
            gen = seeded_generator(self.seed, self.epoch)
            self._order = torch.randperm(len(self.images), generator=gen).to(self.device)
        return self._order

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.batch >= self.batches_per_epoch:
            self.epoch, self.batch, self._order = self.epoch + 1, 0, None
        order = self._epoch_order()
        idx = order[self.batch * self.batch_size : (self.batch + 1) * self.batch_size]
        gen = seeded_generator(self.seed, self.epoch, self.batch)
        self.batch += 1
        # This rank's contiguous shard of the global batch; the random numbers are drawn for the whole batch, so
        # each image is cropped and flipped as it would be in a one-process run.
        shard = self.batch_size // self.world
        lo, hi = self.rank * shard, (self.rank + 1) * shard
        idx = idx[lo:hi]
        x = normalize(self.images[idx], self.mean)
        if self.augment:
            params = _to_device(draw_crops_flips(self.batch_size, gen)[:, lo:hi], self.device)
            if self._base_flips is not None:
                params[2] = self._base_flips[idx] ^ (self.epoch % 2)
            x = apply_crops_flips(x, params)
        y = self.labels[idx]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y


def eval_batches(
    images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, batch_size: int = 1000, device: str = "cpu"
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Un-augmented batches in order, for evaluation."""
    for lo in range(0, len(images), batch_size):
        x = normalize(images[lo : lo + batch_size].to(device), mean.to(device))
        yield x, labels[lo : lo + batch_size].to(device)
