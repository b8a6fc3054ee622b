"""Datasets: official CIFAR-10, ImageFolder folders/tars and a synthetic set, all as in-memory uint8 tensors.

The names below are imported on first use, so that the light modules of this package (`reslab.data.spec`) can be
read without loading torch.
"""

from reslab.lazy import lazy_names

_WHERE = {
    "CIFAR10_MD5": "cifar10", "CIFAR10_URL": "cifar10", "download_cifar10": "cifar10", "load_cifar10": "cifar10",
    "parse_cifar10_archive": "cifar10", "ImageDataset": "dataset", "default_cache_dir": "dataset",
    "holdout_split": "dataset", "load_dataset": "load", "make_synthetic": "dataset",
    "load_image_folder": "folders",
}  # fmt: skip


__getattr__ = lazy_names("reslab.data", {k: f"reslab.data.{v}" for k, v in _WHERE.items()})

__all__ = sorted(_WHERE)
