"""Datasets: official CIFAR-10, ImageFolder folders/tars and a synthetic set, all as in-memory uint8 tensors."""

from reslab.data.cifar10 import (
    CIFAR10_MD5,
    CIFAR10_URL,
    download_cifar10,
    load_cifar10,
    parse_cifar10_archive,
)
from reslab.data.dataset import ImageDataset, default_cache_dir, holdout_split, load_dataset, make_synthetic
from reslab.data.folders import load_image_folder

__all__ = [
    "CIFAR10_MD5",
    "CIFAR10_URL",
    "ImageDataset",
    "default_cache_dir",
    "download_cifar10",
    "holdout_split",
    "load_cifar10",
    "load_dataset",
    "load_image_folder",
    "make_synthetic",
    "parse_cifar10_archive",
]
