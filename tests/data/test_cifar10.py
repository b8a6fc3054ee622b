"""Official CIFAR-10 archive: parsing, MD5 checks, download (with a fake network) and the safe unpickler."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from reslab.data import cifar10, load_dataset
from reslab.errors import DataError


@pytest.fixture
def archive(tmp_path: Path, helpers) -> tuple[Path, dict]:
    path = tmp_path / "src" / cifar10.CIFAR10_FILENAME
    path.parent.mkdir()
    return path, helpers.write_cifar_archive(path)


@pytest.mark.parametrize("style", ["py2", "py3"])
def test_parse_shapes_labels_and_pixel_layout(tmp_path, helpers, style):
    # py2: byte strings and numpy.core, as in the official files; py3: the same data re-pickled by Python 3.
    path = tmp_path / "cifar.tar.gz"
    expected = helpers.write_cifar_archive(path, style=style)
    ds = cifar10.parse_cifar10_archive(path)
    assert ds.name == "CIFAR-10 (official)" and ds.label == "CIFAR-10" and ds.encoding == "raw"
    assert ds.classes[:3] == ["airplane", "automobile", "bird"] and ds.num_classes == 10
    assert ds.train_images.shape == (100, 3, 32, 32) and ds.test_images.shape == (10, 3, 32, 32)
    assert ds.train_images.dtype == torch.uint8 and ds.train_labels.dtype == torch.int64
    assert ds.train_images.is_contiguous() and ds.test_images.is_contiguous()
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(ds, field), torch.from_numpy(expected[field])), field
    # The official row layout, independently of reshape: 1024 red, then 1024 green, then 1024 blue, row-major.
    rows = expected["train_images"].reshape(100, 3072)
    for i, c, y, x in [(0, 0, 0, 0), (37, 1, 5, 30), (99, 2, 31, 31), (60, 2, 17, 3)]:
        assert ds.train_images[i, c, y, x].item() == rows[i, c * 1024 + y * 32 + x]


def test_existing_archive_with_wrong_md5_is_refused(archive, monkeypatch):
    path, _ = archive
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    with pytest.raises(DataError, match=r"md5 .*delete it") as err:
        cifar10.download_cifar10(path.parent)
    assert str(path) in str(err.value)


def test_existing_archive_with_right_md5_is_used_without_network(archive, monkeypatch):
    path, expected = archive
    monkeypatch.setattr(cifar10, "CIFAR10_MD5", _md5(path))
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    ds = load_dataset("cifar10", path.parent)
    assert torch.equal(ds.test_labels, torch.from_numpy(expected["test_labels"]))


def _no_network(*args, **kwargs):
    raise urllib.error.URLError("Temporary failure in name resolution")


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_offline_download_gives_one_line_error_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    cache = tmp_path / "cache"
    with pytest.raises(DataError) as err:
        load_dataset("cifar10", cache)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"could not download CIFAR-10 from {cifar10.CIFAR10_URL} (Temporary failure")
    assert f"put cifar-10-python.tar.gz (md5 {cifar10.CIFAR10_MD5}) in {cache} by hand" in msg
    assert list(cache.iterdir()) == []


def test_download_disabled_and_absent(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    with pytest.raises(DataError, match=r"not found in .*downloading is disabled.*by hand"):
        load_dataset("cifar10", tmp_path, download=False)


def test_download_via_urlopen_then_reuse(archive, tmp_path, monkeypatch):
    path, expected = archive
    payload = path.read_bytes()
    calls = []

    def fake_urlopen(url, timeout=None):
        calls.append((url, timeout))
        return io.BytesIO(payload)

    monkeypatch.setattr(cifar10, "CIFAR10_MD5", _md5(path))
    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    cache = tmp_path / "cache"
    ds = load_dataset("cifar10", cache)
    assert calls == [(cifar10.CIFAR10_URL, cifar10.DOWNLOAD_TIMEOUT_S)]
    assert sorted(p.name for p in cache.iterdir()) == [cifar10.CIFAR10_FILENAME]  # no temp file left behind
    assert (cache / cifar10.CIFAR10_FILENAME).read_bytes() == payload
    assert torch.equal(ds.train_images, torch.from_numpy(expected["train_images"]))
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    load_dataset("cifar10", cache)  # second time: from the cache, no network


def test_download_with_wrong_md5_keeps_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(b"truncated"))
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="downloaded CIFAR-10 has md5"):
        cifar10.download_cifar10(cache)
    assert list(cache.iterdir()) == []


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickle_with_disallowed_global_is_refused_and_not_run(tmp_path, helpers):
    marker = tmp_path / "pwned"
    evil = pickle.dumps({b"data": _Evil(marker), b"labels": []}, protocol=2)
    path = tmp_path / "evil.tar.gz"
    helpers.write_cifar_archive(path, replace={"data_batch_1": evil})
    with pytest.raises(DataError, match=r"refusing to unpickle .*system from .*data_batch_1"):
        cifar10.parse_cifar10_archive(path)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("member", "payload", "message"),
    [
        ("test_batch", pickle.dumps({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}), "shape"),
        ("test_batch", pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}), "list of 2 ints"),
        ("test_batch", pickle.dumps({b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]}), "0..9"),
        ("data_batch_3", pickle.dumps([1, 2, 3]), "expected a dict"),
        ("data_batch_3", b"\x80\x02garbage", "cannot unpickle"),
        ("batches.meta", pickle.dumps({b"label_names": [b"a"]}), "label_names"),
    ],
)
def test_malformed_batches(tmp_path, helpers, member, payload, message):
    path = tmp_path / "bad.tar.gz"
    helpers.write_cifar_archive(path, replace={member: payload})
    with pytest.raises(DataError, match=message):
        cifar10.parse_cifar10_archive(path)


def test_missing_member_and_unreadable_archive(tmp_path, helpers):
    path = tmp_path / "partial.tar.gz"
    helpers.write_cifar_archive(path)
    # Rebuild without data_batch_4.
    with tarfile.open(path) as src, tarfile.open(tmp_path / "missing.tar.gz", "w:gz") as dst:
        for m in src.getmembers():
            if not m.name.endswith("data_batch_4"):
                dst.addfile(m, src.extractfile(m))
    with pytest.raises(DataError, match="lacks data_batch_4"):
        cifar10.parse_cifar10_archive(tmp_path / "missing.tar.gz")
    (tmp_path / "junk.tar.gz").write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DataError, match="cannot read CIFAR-10 archive"):
        cifar10.parse_cifar10_archive(tmp_path / "junk.tar.gz")
