"""Datasets: official CIFAR-10, ImageFolder folders/tars and a synthetic set, all as in-memory uint8 tensors.

The names below are imported on first use, so that the light modules of this package (`reslab.data.spec`) can be
read without loading torch.
"""

import importlib

_WHERE = {
    "CIFAR10_MD5": "cifar10", "CIFAR10_URL": "cifar10", "download_cifar10": "cifar10", "load_cifar10": "cifar10",
    "parse_cifar10_archive": "cifar10", "ImageDataset": "dataset", "default_cache_dir": "dataset",
    "holdout_split": "dataset", "load_dataset": "dataset", "make_synthetic": "dataset",
    "load_image_folder": "folders",
}  # fmt: skip


def __getattr__(name: str) -> object:
    if name in _WHERE:
        return getattr(importlib.import_module(f"reslab.data.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'reslab.data' has no attribute {name!r}")


__all__ = sorted(_WHERE)
