"""The `--data` dispatcher: a spec (`reslab.data.spec`) to an in-memory `ImageDataset`, from the official CIFAR-10
archive, the synthetic set or an ImageFolder folder or tar."""

from __future__ import annotations

from pathlib import Path

from reslab.data.cifar10 import load_cifar10
from reslab.data.dataset import SYNTHETIC_HW, ImageDataset, default_cache_dir, make_synthetic, subset
from reslab.data.folders import load_image_folder
from reslab.data.spec import is_builtin, parse_synthetic_size
from reslab.errors import DataError


def load_dataset(
    spec: str,
    cache_dir: str | Path | None = None,
    *,
    strict: bool = False,
    image_size: int | None = None,
    download: bool = True,
    train_subset: int | None = None,
    test_subset: int | None = None,
) -> ImageDataset:
    """Load the dataset named by `spec` (the `--data` value).

    - ``"cifar10"``: the official CIFAR-10 python archive, downloaded into `cache_dir` if absent (and `download`),
      MD5-checked and parsed.
    - ``"synthetic"`` / ``"synthetic:N"``: a small deterministic learnable dataset generated in memory (for tests and
      smoke runs).
    - anything else: a directory or .tar/.tar.gz/.tgz in ImageFolder layout (see `reslab.data.folders`).

    `strict` and `image_size` only apply to image folders; the built-in datasets are 32x32 and `image_size` may only
    be left unset or be 32 for them. `train_subset` and `test_subset` keep a random subset of each split (`subset`).
    """
    return subset(_load(spec, cache_dir, strict, image_size, download), train_subset, test_subset)


def _load(
    spec: str, cache_dir: str | Path | None, strict: bool, image_size: int | None, download: bool
) -> ImageDataset:
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    if is_builtin(spec):
        if image_size not in (None, SYNTHETIC_HW):
            raise DataError(
                f"image size {image_size} not supported for {spec!r}: it is 32x32 (resizing is for folders)"
            )
        if spec == "cifar10":
            return load_cifar10(cache, download=download)
        return make_synthetic(parse_synthetic_size(spec))
    path = Path(spec).expanduser()
    if not path.exists():
        raise DataError(f"data not found: {path} (expected 'cifar10', 'synthetic[:N]', a folder with train/ and "
                        "test/, or a .tar of one)")  # fmt: skip
    return load_image_folder(path, cache, strict=strict, image_size=image_size)
