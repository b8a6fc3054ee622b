"""Shared fixtures: the device the tests run on, and large-image datasets on disk in every layout
`reslab.data.large` reads, for the data, engine and CLI tests.

``RESLAB_TEST_DEVICE=cuda pytest tests/models tests/engine`` runs the model and engine tests on a GPU (CI has none;
see ../shared/GPU-CHECKS.md). There, deterministic algorithms are switched on, so that the bit-exact resume tests
test resuming and not cuDNN's choice of kernels: cuBLAS needs its workspace setting before CUDA starts.
"""

from __future__ import annotations

import csv
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

CLASSES = ("n01", "n02", "n03")
TEST_DEVICE = os.environ.get("RESLAB_TEST_DEVICE", "cpu")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # README's test command runs two pytest-xdist workers (most of the suite's time is processes starting and Python,
    # one core each). Each worker, and every process it starts, then computes on one thread: two workers with two
    # OpenMP threads each on two cores spin against each other and run 3-4x slower.
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

if TEST_DEVICE.startswith("cuda"):
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import torch

    if not torch.cuda.is_available():
        raise pytest.UsageError(f"RESLAB_TEST_DEVICE={TEST_DEVICE}, but torch sees no CUDA device")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def write_tiny_tar(path: Path, train: int = 8, test: int = 2) -> Path:
    """A tiny ImageFolder tar of 32x32 PNGs in two classes (cat, dog), ``train`` and ``test`` images of each: the
    one stand-in for a user's data folder in CLI and README tests."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for split, n in (("train", train), ("test", test)):
            for cls in ("cat", "dog"):
                for i in range(n):
                    _add(
                        tar,
                        f"{split}/{cls}/{i}.png",
                        _encode(Image.new("RGB", (32, 32), (15 * i % 256, 200 if cls == "cat" else 20, 90)), "PNG"),
                    )
    return path


@pytest.fixture(scope="session")
def tiny_tar_maker():
    """`write_tiny_tar`, for tests and fixtures of any scope."""
    return write_tiny_tar


@pytest.fixture
def device() -> str:
    """Where model and engine tests run: ``cpu`` unless ``RESLAB_TEST_DEVICE`` says otherwise."""
    return TEST_DEVICE


def _image(rng: np.random.Generator, label: int) -> Image.Image:
    """A photo-sized-ish image of random size and aspect whose class is readable from its colour."""
    w, h = int(rng.integers(48, 97)), int(rng.integers(40, 81))
    colour = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]][label], dtype=np.float64)
    pixels = colour + rng.normal(0, 30, (h, w, 3)) + np.linspace(-30, 30, w)[None, :, None]
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8))


def _encode(img: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def _samples(n_train: int, n_val: int, seed: int) -> dict[str, list[tuple[str, int, bytes]]]:
    """(name, label, bytes) per split; every seventh image a PNG, the rest JPEG."""
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {}
    for split, n in (("train", n_train), ("val", n_val)):
        items = []
        for k in range(n):
            label = k % len(CLASSES)
            fmt, ext = ("PNG", "png") if k % 7 == 3 else ("JPEG", "jpg")
            items.append((f"{split}_{k:04d}.{ext}", label, _encode(_image(rng, label), fmt)))
        out[split] = items
    return out


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def make_large(root: Path, layout: str = "folder", n_train: int = 24, n_val: int = 9, seed: int = 0) -> Path:
    """A dataset of 3 classes in ``layout``: "folder" (ImageFolder), "tar" (a tar of it), "shards" (WebDataset,
    3 train shards, 1 val shard, classes.txt) or "flat-val" (ImageFolder train/, flat val/ + LOC_val_solution.csv).
    Returns the path to pass as --data."""
    samples = _samples(n_train, n_val, seed)
    root.mkdir(parents=True, exist_ok=True)
    if layout in ("folder", "tar", "flat-val"):
        base = root / "imagefolder"
        for split, items in samples.items():
            for name, label, data in items:
                flat = layout == "flat-val" and split == "val"
                path = base / split / name if flat else base / split / CLASSES[label] / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(data)
        if layout == "flat-val":
            with open(base / "LOC_val_solution.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["ImageId", "PredictionString"])
                for name, label, _ in samples["val"]:
                    w.writerow([name.rsplit(".", 1)[0], f"{CLASSES[label]} 1 2 3 4"])
        if layout != "tar":
            return base
        dest = root / "imagefolder.tar"
        with tarfile.open(dest, "w") as tar:
            tar.add(base / "train", arcname="train")
            tar.add(base / "val", arcname="val")
        return dest
    assert layout == "shards", layout
    base = root / "shards"
    for split, items in samples.items():
        (base / split).mkdir(parents=True, exist_ok=True)
        per = -(-len(items) // (3 if split == "train" else 1))
        for s in range(0, len(items), per):
            with tarfile.open(base / split / f"shard-{s // per:06d}.tar", "w") as tar:
                for name, label, data in items[s : s + per]:
                    key, ext = name.rsplit(".", 1)
                    _add(tar, f"{key}.{ext}", data)
                    _add(tar, f"{key}.cls", str(label).encode())
    (base / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return base


@pytest.fixture
def large_data(tmp_path: Path):
    """``large_data(layout="folder", **kw)`` -> the path of a small large-image dataset (see `make_large`)."""

    def make(layout: str = "folder", **kw) -> Path:
        return make_large(tmp_path / f"large-{layout}", layout, **kw)

    return make


@pytest.fixture(scope="session")
def large_dataset_maker():
    """`make_large` itself, for session-scoped fixtures (which cannot use the function-scoped `large_data`)."""
    return make_large
