"""The in-memory dataset type every loader returns, the synthetic set and the train/validation hold-out (the `--data`
dispatcher is `reslab.data.load`).

Images are kept as uint8 tensors ([N, 3, H, W]) rather than floats: CIFAR-10 is 184 MB that way instead of 737 MB,
and normalisation/augmentation happen on the fly (on the GPU when there is one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from reslab.data.spec import SYNTHETIC_DEFAULT_SIZE, resolve_spec
from reslab.errors import DataError

__all__ = ["resolve_spec"]  # the --data parser lives in reslab.data.spec; dataset keeps its old name for it

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
_SYNTHETIC_CLASSES = 10
SYNTHETIC_HW = 32


@dataclass(repr=False)
class ImageDataset:
    """A labelled image classification dataset held entirely in memory.

    `train_images`/`test_images` are contiguous uint8 tensors of shape [N, 3, H, W]; labels are int64 in
    `[0, len(classes))`. `name` names the source (a file or folder); `encoding` says how its pixels were stored,
    read from the files themselves (e.g. ``"JPEG q75"``, ``"PNG"``, ``"raw"`` for the official CIFAR-10 archive;
    empty if unknown). `label` is what reports call the data.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    classes: list[str]
    name: str
    encoding: str = ""

    def __post_init__(self) -> None:
        # A malformed dataset here is a loader bug, not a user error, hence ValueError rather than DataError.
        for split in ("train", "test"):
            images, labels = getattr(self, f"{split}_images"), getattr(self, f"{split}_labels")
            if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
                raise ValueError(f"{split}_images must be uint8 [N, 3, H, W], got {images.dtype} {list(images.shape)}")
            if labels.dtype != torch.int64 or labels.shape != images.shape[:1]:
                raise ValueError(
                    f"{split}_labels must be int64 [{images.shape[0]}], got {labels.dtype} {list(labels.shape)}"
                )
            if labels.numel() and (labels.min() < 0 or labels.max() >= len(self.classes)):
                raise ValueError(f"{split}_labels out of range for {len(self.classes)} classes")

    @property
    def label(self) -> str:
        """The data's name in reports: "CIFAR-10" only for the official pixels; a re-encoded copy says so."""
        if list(self.classes) == CIFAR10_CLASSES and tuple(self.train_images.shape[2:]) == (32, 32):
            return "CIFAR-10" if self.encoding == "raw" else f"CIFAR-10 ({self.encoding or 'unknown encoding'} copy)"
        return self.name

    @property
    def num_classes(self) -> int:
        """Number of classes (the classifier's output width)."""
        return len(self.classes)

    def __repr__(self) -> str:
        # The default dataclass repr would print every pixel.
        shape = "x".join(str(s) for s in self.train_images.shape[1:])
        return (
            f"ImageDataset({self.name!r}, train={len(self.train_labels)}, test={len(self.test_labels)}, "
            f"classes={self.num_classes}, image={shape})"
        )


def default_cache_dir() -> Path:
    """Where downloads and decoded caches go: $RESLAB_DATA, else $XDG_CACHE_HOME/reslab, else ~/.cache/reslab."""
    if os.environ.get("RESLAB_DATA"):
        return Path(os.environ["RESLAB_DATA"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "reslab"


def make_synthetic(num_train: int = SYNTHETIC_DEFAULT_SIZE, seed: int = 0) -> ImageDataset:
    """A tiny deterministic dataset: `num_train` train and `num_train // 4` test 32x32 images in 10 classes.

    Each class has its own mean colour and pixels are that colour plus Gaussian noise, so a network can learn it
    quickly (the class is readable from the per-channel average) while single pixels are noisy.
    """
    gen = torch.Generator().manual_seed(seed)
    means = torch.rand(_SYNTHETIC_CLASSES, 3, generator=gen) * 160 + 48

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        labels = (torch.arange(n) % _SYNTHETIC_CLASSES)[torch.randperm(n, generator=gen)]
        noise = torch.randn(n, 3, SYNTHETIC_HW, SYNTHETIC_HW, generator=gen) * 32
        images = (means[labels][:, :, None, None] + noise).round().clamp(0, 255).to(torch.uint8)
        return images.contiguous(), labels.to(torch.int64)

    train_images, train_labels = split(num_train)
    test_images, test_labels = split(num_train // 4)
    return ImageDataset(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        classes=[f"class{i}" for i in range(_SYNTHETIC_CLASSES)],
        name=f"synthetic ({num_train} train / {num_train // 4} test)",
        encoding="synthetic",
    )


def holdout_split(ds: ImageDataset, val_size: int, seed: int = 0) -> ImageDataset:
    """Hold out `val_size` training images as a validation set (the paper's 45k/5k split).

    Returns one dataset whose train_* are the remaining training images and whose test_* are the held-out ones, so
    the usual "evaluate on test" code evaluates on validation. The choice depends only on `seed` (its own generator,
    independent of the training seed); both parts keep the original order.
    """
    n = ds.train_images.shape[0]
    if not 0 < val_size < n:
        raise DataError(f"validation size {val_size} is invalid: must be between 1 and {n - 1} for {ds.name}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    val_idx = perm[:val_size].sort().values
    train_idx = perm[val_size:].sort().values
    return ImageDataset(
        train_images=ds.train_images[train_idx].contiguous(),
        train_labels=ds.train_labels[train_idx],
        test_images=ds.train_images[val_idx].contiguous(),
        test_labels=ds.train_labels[val_idx],
        classes=list(ds.classes),
        name=f"{ds.name} (train {n - val_size}/val {val_size})",
        encoding=ds.encoding,
    )


def subset(ds: ImageDataset, n_train: int | None, n_test: int | None, seed: int = 0) -> ImageDataset:
    """A random subset of ``n_train`` training and ``n_test`` test images (None: all), the same for every seed of
    training: its own generator, and the images kept in their order (folder datasets are sorted by class, so a prefix
    would be one class)."""
    if n_train is None and n_test is None:
        return ds
    gen = torch.Generator().manual_seed(seed)

    def pick(images: torch.Tensor, labels: torch.Tensor, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        if n is None or n >= len(labels):
            return images, labels
        idx = torch.randperm(len(labels), generator=gen)[:n].sort().values
        return images[idx].contiguous(), labels[idx]

    train_images, train_labels = pick(ds.train_images, ds.train_labels, n_train)
    test_images, test_labels = pick(ds.test_images, ds.test_labels, n_test)
    return ImageDataset(train_images, train_labels, test_images, test_labels, list(ds.classes),
                        f"{ds.name}, subset {len(train_labels)} train / {len(test_labels)} test",
                        encoding=ds.encoding)  # fmt: skip
