"""The official CIFAR-10 "python version" archive: download, MD5 check and a safe parse.

The archive holds Python-2 pickles. Unpickling can run arbitrary code, so the batches are read with a restricted
unpickler that only resolves the few globals the official files need (numpy array reconstruction).
"""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import pickle
import tarfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from reslab.data.dataset import ImageDataset
from reslab.errors import DataError
from reslab.files import atomic_write

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"
CIFAR10_FILENAME = "cifar-10-python.tar.gz"
DOWNLOAD_TIMEOUT_S = 30

_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_TEST_BATCH = "test_batch"
_META = "batches.meta"
_PIXELS = 3 * 32 * 32
_CHUNK = 1 << 20

log = logging.getLogger(__name__)

# (module, name) pairs the official pickles reference. numpy moved `core` to `_core` in 2.0 and pickles written by
# either version name their own; `_codecs.encode` is how Python 3 writes bytes in protocol-2 pickles (re-pickled
# copies), and only encodes a string.
_ALLOWED_GLOBALS = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }
)


def load_cifar10(cache_dir: str | Path, download: bool = True) -> ImageDataset:
    """Return official CIFAR-10 from `cache_dir`, downloading it first if needed (and allowed)."""
    return parse_cifar10_archive(download_cifar10(cache_dir, download=download))


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _by_hand_hint(directory: Path) -> str:
    return f"put {CIFAR10_FILENAME} (md5 {CIFAR10_MD5}) in {directory} by hand, or pass a folder/tar with --data"


def download_cifar10(cache_dir: str | Path, download: bool = True) -> Path:
    """Return the path of the verified archive in `cache_dir`, downloading it if absent and `download` is true.

    The download goes to a temporary file in the same directory and is renamed only after its MD5 matches, so an
    interrupted or corrupted transfer never sits under the final name.
    """
    directory = Path(cache_dir).expanduser()
    target = directory / CIFAR10_FILENAME
    if target.exists():
        actual = _md5(target)
        if actual != CIFAR10_MD5:
            raise DataError(f"CIFAR-10 archive {target} has md5 {actual}, expected {CIFAR10_MD5}: delete it and retry")
        return target
    if not download:
        raise DataError(
            f"CIFAR-10 archive not found in {directory} and downloading is disabled; {_by_hand_hint(directory)}"
        )
    log.info("downloading CIFAR-10 from %s to %s", CIFAR10_URL, target)
    # The archive appears under its name only once complete and MD5-checked: a failed check inside the block
    # discards the temporary file.
    with atomic_write(target) as out:
        actual = _fetch(out, directory)
        if actual != CIFAR10_MD5:
            raise DataError(f"downloaded CIFAR-10 has md5 {actual}, expected {CIFAR10_MD5}; {_by_hand_hint(directory)}")
    return target


def _fetch(out: io.BufferedWriter, directory: Path) -> str:
    """Stream CIFAR10_URL into `out`, returning the MD5 of what was written."""
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with urllib.request.urlopen(CIFAR10_URL, timeout=DOWNLOAD_TIMEOUT_S) as response:
            while chunk := response.read(_CHUNK):
                digest.update(chunk)
                out.write(chunk)
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DataError(
            f"could not download CIFAR-10 from {CIFAR10_URL} ({reason}); {_by_hand_hint(directory)}"
        ) from exc
    return digest.hexdigest()


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global outside `_ALLOWED_GLOBALS` (so no code can run while loading)."""

    def __init__(self, file: io.BytesIO, where: str) -> None:
        # encoding="bytes": the official files are Python-2 pickles whose str keys and pixel buffers must stay bytes.
        super().__init__(file, encoding="bytes")
        self._where = where

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise DataError(f"refusing to unpickle {module}.{name} from {self._where}: not a CIFAR-10 batch")
        return super().find_class(module, name)


def _unpickle(raw: bytes, where: str) -> dict:
    try:
        obj = _RestrictedUnpickler(io.BytesIO(raw), where).load()
    except DataError:
        raise
    except Exception as exc:  # a malformed pickle can raise almost anything (UnpicklingError, EOFError, ValueError...)
        raise DataError(f"cannot unpickle {where}: {type(exc).__name__}: {exc}") from exc
    if not isinstance(obj, dict):
        raise DataError(f"{where} is not a CIFAR-10 batch (expected a dict, got {type(obj).__name__})")
    return obj


def _batch_arrays(batch: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Validate one batch dict and return (images [N,3,32,32] uint8, labels [N] int64)."""
    data, labels = batch.get(b"data"), batch.get(b"labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != _PIXELS:
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{where}: 'data' must be a uint8 array of shape [N, {_PIXELS}], got {got}")
    if not isinstance(labels, list) or len(labels) != data.shape[0] or not all(type(x) is int for x in labels):
        raise DataError(f"{where}: 'labels' must be a list of {data.shape[0]} ints")
    label_array = np.asarray(labels, dtype=np.int64)
    if label_array.size and (label_array.min() < 0 or label_array.max() > 9):
        raise DataError(f"{where}: labels must be in 0..9")
    # Each row is the red plane, then green, then blue, each 32x32 row-major: that is exactly C, H, W order.
    return data.reshape(-1, 3, 32, 32), label_array


def _read_members(path: Path) -> dict[str, bytes]:
    """Read the needed members (matched by file name, whatever folder wraps them) in one sequential pass."""
    wanted = {*_TRAIN_BATCHES, _TEST_BATCH, _META}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted and base not in found:
                    found[base] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read CIFAR-10 archive {path}: {exc}") from exc
    missing = sorted(wanted - found.keys())
    if missing:
        raise DataError(f"CIFAR-10 archive {path} lacks {', '.join(missing)}")
    return found


def parse_cifar10_archive(path: str | Path) -> ImageDataset:
    """Parse the official `cifar-10-python.tar.gz` into an `ImageDataset` (50,000 train / 10,000 test)."""
    path = Path(path)
    members = _read_members(path)
    meta = _unpickle(members[_META], f"{path}:{_META}")
    names = meta.get(b"label_names")
    if not isinstance(names, list) or len(names) != 10 or not all(isinstance(n, bytes | str) for n in names):
        raise DataError(f"{path}:{_META}: 'label_names' must be a list of 10 names")
    classes = [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]

    def split(batch_names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        parts = [_batch_arrays(_unpickle(members[b], f"{path}:{b}"), f"{path}:{b}") for b in batch_names]
        # concatenate copies, which also detaches the result from the (possibly read-only) unpickled buffers.
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        return torch.from_numpy(images), torch.from_numpy(labels)

    train_images, train_labels = split(_TRAIN_BATCHES)
    test_images, test_labels = split((_TEST_BATCH,))
    return ImageDataset(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        classes=classes,
        name="CIFAR-10 (official)",
        encoding="raw",
    )
