"""The dataset type, the --data dispatcher, the synthetic set, the cache location and the validation hold-out."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from reslab.data import ImageDataset, default_cache_dir, holdout_split, load_dataset
from reslab.errors import DataError


def test_synthetic_shapes_determinism_and_balance():
    ds = load_dataset("synthetic")
    assert ds.train_images.shape == (512, 3, 32, 32) and ds.test_images.shape == (128, 3, 32, 32)
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64
    assert ds.num_classes == 10 and ds.train_images.is_contiguous()
    assert torch.bincount(ds.train_labels, minlength=10).min() >= 51
    again = load_dataset("synthetic")
    assert torch.equal(ds.train_images, again.train_images) and torch.equal(ds.test_labels, again.test_labels)
    small = load_dataset("synthetic:40")
    assert len(small.train_labels) == 40 and len(small.test_labels) == 10
    assert "synthetic" in small.name and "ImageDataset('synthetic" in repr(small)


def test_synthetic_is_learnable():
    # Nearest class-mean colour, fitted on train, must classify test almost perfectly.
    ds = load_dataset("synthetic")
    train_feat = ds.train_images.float().mean((2, 3))
    centroids = torch.stack([train_feat[ds.train_labels == k].mean(0) for k in range(10)])
    pred = torch.cdist(ds.test_images.float().mean((2, 3)), centroids).argmin(1)
    assert (pred == ds.test_labels).float().mean() > 0.95


@pytest.mark.parametrize("spec", ["synthetic:", "synthetic:3", "synthetic:abc", "synthetic:-5"])
def test_bad_synthetic_spec(spec):
    with pytest.raises(DataError, match="synthetic:N"):
        load_dataset(spec)


def test_image_size_only_for_folders(tmp_path):
    assert load_dataset("synthetic:8", image_size=32).train_images.shape[-1] == 32
    for spec in ("synthetic", "cifar10"):
        with pytest.raises(DataError, match="is 32x32"):
            load_dataset(spec, tmp_path, image_size=64)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("RESLAB_DATA", str(tmp_path / "data"))
    assert default_cache_dir() == tmp_path / "data"
    monkeypatch.delenv("RESLAB_DATA")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "reslab"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert default_cache_dir() == Path.home() / ".cache" / "reslab"


def _indexed(n: int) -> ImageDataset:
    """Image i carries its own index in two pixels, so a split can be traced back."""
    images = torch.zeros(n, 3, 2, 2, dtype=torch.uint8)
    images[:, 0, 0, 0] = torch.arange(n) % 256
    images[:, 1, 0, 0] = torch.arange(n) // 256
    labels = torch.arange(n) % 3
    test = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    return ImageDataset(images, labels, test, torch.zeros(1, dtype=torch.int64), ["a", "b", "c"], "toy")


def _ids(images: torch.Tensor) -> list[int]:
    return (images[:, 0, 0, 0].long() + 256 * images[:, 1, 0, 0].long()).tolist()


def test_holdout_split_partitions_train_deterministically():
    ds = _indexed(600)
    split = holdout_split(ds, 100)
    train_ids, val_ids = _ids(split.train_images), _ids(split.test_images)
    assert len(train_ids) == 500 and len(val_ids) == 100
    assert sorted(train_ids + val_ids) == list(range(600))
    assert train_ids == sorted(train_ids) and val_ids == sorted(val_ids)  # original order kept
    assert split.train_labels.tolist() == [i % 3 for i in train_ids]
    assert split.test_labels.tolist() == [i % 3 for i in val_ids]
    assert split.name == "toy (train 500/val 100)" and split.classes == ["a", "b", "c"]
    assert _ids(holdout_split(ds, 100).test_images) == val_ids
    assert _ids(holdout_split(ds, 100, seed=1).test_images) != val_ids
    torch.manual_seed(123)  # the global RNG (training seed) must not matter
    assert _ids(holdout_split(ds, 100).test_images) == val_ids


@pytest.mark.parametrize("val_size", [0, -1, 600, 601])
def test_holdout_split_bad_size(val_size):
    with pytest.raises(DataError, match="validation size"):
        holdout_split(_indexed(600), val_size)


def test_dataset_rejects_malformed_tensors():
    good = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    labels = torch.zeros(2, dtype=torch.int64)
    with pytest.raises(ValueError, match="uint8"):
        ImageDataset(good.float(), labels, good, labels, ["a"], "x")
    with pytest.raises(ValueError, match="int64"):
        ImageDataset(good, labels[:1], good, labels, ["a"], "x")
    with pytest.raises(ValueError, match="out of range"):
        ImageDataset(good, labels + 1, good, labels, ["a"], "x")
