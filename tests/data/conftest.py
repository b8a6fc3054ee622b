"""Builders for small on-disk datasets in the official CIFAR-10 format and in ImageFolder layout."""

from __future__ import annotations

import io
import pickle
import struct
import tarfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


class _Py2Pickler(pickle._Pickler):
    """Pickles the way Python 2 wrote the official files: every string is a byte string (BINSTRING opcodes) and
    numpy's array reconstructor is referenced as numpy.core.multiarray."""

    dispatch = pickle._Pickler.dispatch.copy()

    def _save_str8(self, obj: str | bytes) -> None:
        data = obj.encode("latin-1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[bytes] = _save_str8
    dispatch[str] = _save_str8

    def save_global(self, obj, name=None) -> None:
        name = name or obj.__qualname__
        module = pickle.whichmodule(obj, name).replace("numpy._core", "numpy.core")
        self.write(pickle.GLOBAL + f"{module}\n{name}\n".encode())
        self.memoize(obj)


def dumps(obj: object, style: str = "py2") -> bytes:
    """Protocol-2 pickle, Python-2 style (like the official files) or as Python 3 writes it."""
    if style == "py3":
        return pickle.dumps(obj, protocol=2)
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def cifar_batch(images: np.ndarray, labels: np.ndarray, label: str, style: str = "py2") -> bytes:
    """One batch laid out like the official files: bytes keys, [N, 3072] uint8 rows, a list of int labels."""
    batch = {
        b"batch_label": label.encode(),
        b"labels": [int(x) for x in labels],
        b"data": images.reshape(len(images), -1),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }
    return dumps(batch, style)


def write_cifar_archive(
    path: Path,
    per_batch: int = 20,
    n_test: int = 10,
    seed: int = 0,
    replace: dict[str, bytes] | None = None,
    style: str = "py2",
) -> dict[str, np.ndarray]:
    """Write a small archive in the official layout; returns the expected arrays. `replace` overrides members."""
    rng = np.random.default_rng(seed)
    n_train = 5 * per_batch
    expected = {
        "train_images": rng.integers(0, 256, (n_train, 3, 32, 32), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train).astype(np.int64),
        "test_images": rng.integers(0, 256, (n_test, 3, 32, 32), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test).astype(np.int64),
    }
    members = {
        "batches.meta": dumps(
            {b"label_names": [c.encode() for c in CIFAR_CLASSES], b"num_cases_per_batch": per_batch, b"num_vis": 3072},
            style,
        ),
        "test_batch": cifar_batch(expected["test_images"], expected["test_labels"], "testing batch 1 of 1", style),
    }
    for b in range(5):
        sl = slice(b * per_batch, (b + 1) * per_batch)
        members[f"data_batch_{b + 1}"] = cifar_batch(
            expected["train_images"][sl], expected["train_labels"][sl], f"training batch {b + 1} of 5", style
        )
    members.update(replace or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            _add_bytes(tar, f"cifar-10-batches-py/{name}", data)
    return expected


def write_image(path: Path, pixels: np.ndarray) -> None:
    """Save an [H, W, 3] uint8 array; the format follows the file extension."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def make_tree(root: Path, classes: dict[str, int], split: str = "train", seed: int = 0, hw: int = 8) -> list:
    """PNG images `split/<class>/NN.png` with random pixels; returns [(class, pixels)] in load order."""
    rng = np.random.default_rng(seed)
    out = []
    for name in sorted(classes):
        for i in range(classes[name]):
            pixels = rng.integers(0, 256, (hw, hw, 3), dtype=np.uint8)
            write_image(root / split / name / f"{i:02d}.png", pixels)
            out.append((name, pixels))
    return out


def make_tar(src: Path, dest: Path, wrap: str | None = None) -> Path:
    """Tar `src`'s contents (optionally under one top folder); gzip if `dest` ends in .gz/.tgz."""
    mode = "w:gz" if dest.name.endswith((".gz", ".tgz")) else "w"
    with tarfile.open(dest, mode) as tar:
        for child in sorted(src.iterdir()):
            tar.add(child, arcname=f"{wrap}/{child.name}" if wrap else child.name)
    return dest


@pytest.fixture
def image_tree(tmp_path: Path) -> tuple[Path, dict]:
    """A folder with train/ (ant 3, cat 2, dog 4) and test/ (ant 1, cat 2, dog 1) 8x8 PNGs, and the expected data."""
    root = tmp_path / "tree"
    train = make_tree(root, {"cat": 2, "dog": 4, "ant": 3}, "train", seed=1)
    test = make_tree(root, {"cat": 2, "dog": 1, "ant": 1}, "test", seed=2)
    classes = ["ant", "cat", "dog"]

    def arrays(items: list) -> tuple[np.ndarray, np.ndarray]:
        images = np.stack([p.transpose(2, 0, 1) for _, p in items])
        return images, np.array([classes.index(c) for c, _ in items], dtype=np.int64)

    expected = {"classes": classes}
    expected["train_images"], expected["train_labels"] = arrays(train)
    expected["test_images"], expected["test_labels"] = arrays(test)
    return root, expected


@pytest.fixture
def helpers() -> SimpleNamespace:
    """The builders above, as a fixture (test modules are not importable packages here)."""
    return SimpleNamespace(
        write_cifar_archive=write_cifar_archive, write_image=write_image, make_tree=make_tree, make_tar=make_tar
    )
