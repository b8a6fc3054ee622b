"""ImageFolder-layout data (a directory or a .tar/.tar.gz/.tgz) decoded once into cached uint8 tensors.

Layout: ``train/<class>/<image>`` and ``test/<class>/<image>`` (``val/`` is used when there is no ``test/``),
optionally inside one wrapping top-level folder. Classes are the sorted folder names under ``train/``; images within
a class are taken in sorted path order, so the result is deterministic.

Sizes: without `image_size` every image must have the same size. With `image_size=S` each image is resized so its
shorter side is S (bilinear, antialiased) and then center-cropped to SxS.

The decoded arrays are cached in ``<cache_dir>/folders/<key>.pt``, keyed by the source's content (the tar's bytes,
or every image's relative path and bytes in a directory) plus `image_size`: later runs hash the source (seconds for
CIFAR-10) and skip decoding entirely, and an edited image is never served stale from the cache.
"""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
import warnings
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from reslab.data.dataset import ImageDataset
from reslab.errors import DataError, ReslabError
from reslab.files import atomic_write

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".ppm", ".tif", ".tiff"})
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
# Bump when the decoding or cache layout changes, so stale caches are not reused.
CACHE_FORMAT = "reslab-folders-v4"  # v2: encodings cached; v3: 16-bit greys, skip reasons; v4: huge images reduced
_CHUNK = 1 << 20

Rel = tuple[str, ...]  # a path relative to the dataset root, as components
Source = bytes | Path  # an image's bytes (from a tar) or its file (in a directory)


def load_image_folder(
    path: str | Path, cache_dir: str | Path, *, strict: bool = False, image_size: int | None = None
) -> ImageDataset:
    """Load an ImageFolder directory or tar into memory, decoding it only on the first call (see module doc).

    Unreadable images are skipped with one warning at the end, or raise `DataError` when `strict`.
    """
    path = Path(path)
    if image_size is not None and image_size < 1:
        raise DataError(f"image size must be positive, got {image_size}")
    is_tar = _is_tar(path)
    listing = None if is_tar else scan_directory(path)
    key = _cache_key(path, listing, image_size)
    cache_file = Path(cache_dir).expanduser() / "folders" / f"{key}.pt"
    arrays = _read_cache(cache_file)
    if arrays is None:
        dirs, files = _read_tar(path) if is_tar else listing
        arrays = _decode_all(path, dirs, files, image_size, strict)
        _write_cache(cache_file, arrays)
    _report_skipped(path, [tuple(s) for s in arrays["skipped"]], strict)
    return ImageDataset(
        train_images=arrays["train_images"],
        train_labels=arrays["train_labels"],
        test_images=arrays["test_images"],
        test_labels=arrays["test_labels"],
        classes=list(arrays["classes"]),
        name=f"{path.resolve().name} (ImageFolder)",
        encoding=describe_encodings(arrays["encodings"]),
    )


def _is_tar(path: Path) -> bool:
    """True for a tar, False for a folder; anything else is one line."""
    if path.is_dir():
        return False
    if path.is_file() and path.name.lower().endswith(TAR_SUFFIXES):
        return True
    raise DataError(f"unsupported data path {path}: expected a folder or a .tar/.tar.gz/.tgz file")


def list_folder(path: str | Path) -> tuple[list[str], dict[str, list[tuple[str, Source, int]]]]:
    """An ImageFolder folder or tar, listed without decoding: its classes and, for ``train`` and ``test`` (a ``val/``
    folder stands for test/), the ``(name, bytes or file, label)`` of every image, in the order `load_image_folder`
    decodes them. For readers that take the images one by one at their own size (`reslab detect make-dataset`)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data not found: {path} (expected a folder with train/ and test/, or a .tar of one)")
    classes, splits = _layout(path, *(_read_tar(path) if _is_tar(path) else scan_directory(path)))
    return classes, dict(zip(("train", "test"), splits.values(), strict=True))


def split_rel(name: str) -> Rel | None:
    """Components of a member name; None for anything that must be ignored (parent refs, hidden/metadata files)."""
    parts = tuple(p for p in name.replace("\\", "/").split("/") if p not in ("", "."))
    # Hidden entries are skipped because macOS tars carry "._x.jpg" resource forks that are not images.
    if not parts or any(p == ".." or p.startswith(".") for p in parts):
        return None
    return parts


def is_image(rel: Rel) -> bool:
    return os.path.splitext(rel[-1])[1].lower() in IMAGE_EXTENSIONS


def scan_directory(root: Path) -> tuple[set[Rel], dict[Rel, Source]]:
    dirs: set[Rel] = set()
    files: dict[Rel, Source] = {}
    seen: set[tuple[int, int]] = set()  # (device, inode) of every folder walked: a symlink loop is walked once
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames.clear()
            continue
        seen.add((st.st_dev, st.st_ino))
        base = Path(dirpath)
        for d in dirnames:
            rel = split_rel((base / d).relative_to(root).as_posix())
            if rel:
                dirs.add(rel)
        for f in filenames:
            rel = split_rel((base / f).relative_to(root).as_posix())
            if rel and is_image(rel):
                files[rel] = base / f
    return dirs, files


def _read_tar(path: Path) -> tuple[set[Rel], dict[Rel, Source]]:
    """Read every image member's bytes in one sequential pass (random access into a tar.gz is slow)."""
    dirs: set[Rel] = set()
    files: dict[Rel, Source] = {}
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                rel = split_rel(member.name)
                if rel is None:
                    continue
                if member.isdir():
                    dirs.add(rel)
                elif member.isfile() and is_image(rel):
                    files[rel] = tar.extractfile(member).read()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise DataError(f"cannot read tar {path}: {exc}") from exc
    return dirs, files


def _cache_key(path: Path, listing: tuple[set[Rel], dict[Rel, Source]] | None, image_size: int | None) -> str:
    digest = hashlib.sha256(f"{CACHE_FORMAT}\0size={image_size}\0".encode())
    if listing is None:
        digest.update(b"tar\0")
        try:
            with path.open("rb") as f:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
        except OSError as exc:
            raise DataError(f"cannot read {path}: {exc.strerror or exc}") from exc
    else:
        digest.update(b"dir\0")
        for rel, file in sorted(listing[1].items()):
            try:
                data = file.read_bytes()
            except OSError as exc:
                raise DataError(f"cannot read {file}: {exc.strerror or exc}") from exc
            # File names are bytes to the OS; a name that is not valid UTF-8 arrives with surrogate escapes.
            digest.update(f"{'/'.join(rel)}\0{len(data)}\0".encode("utf-8", "surrogateescape"))
            digest.update(data)
    return digest.hexdigest()


_CACHE_FIELDS = ("train_images", "train_labels", "test_images", "test_labels")


def _read_cache(cache_file: Path) -> dict | None:
    """The cached arrays, or None when absent; an unreadable cache is reported and treated as absent."""
    if not cache_file.exists():
        return None
    try:
        arrays = torch.load(cache_file, map_location="cpu", weights_only=True)
        if not isinstance(arrays, dict) or arrays.get("format") != CACHE_FORMAT:
            raise ValueError("unexpected contents")
        if not all(isinstance(arrays.get(f), torch.Tensor) for f in _CACHE_FIELDS):
            raise ValueError("missing tensors")
        # Build the dataset once here so a structurally broken cache is caught now, not later in training.
        ImageDataset(**{f: arrays[f] for f in _CACHE_FIELDS}, classes=list(arrays["classes"]), name="cache")
        if not all(len(s) == 2 for s in arrays["skipped"]):
            raise ValueError("bad skip list")
        if not all(isinstance(k, str) and isinstance(v, int) for k, v in dict(arrays["encodings"]).items()):
            raise ValueError("bad encodings")
    except Exception as exc:  # any failure at all just means "rebuild"
        warnings.warn(f"ignoring unreadable data cache {cache_file} ({exc}); rebuilding it", stacklevel=3)
        return None
    return arrays


def _write_cache(cache_file: Path, arrays: dict) -> None:
    """Save atomically so a crash never leaves a truncated cache under the real name."""
    try:
        with atomic_write(cache_file, durable=False) as f:
            torch.save(arrays, f)
    except ReslabError as exc:
        # The data itself is fine; only the next run will be slower.
        warnings.warn(f"could not write data cache: {exc}", stacklevel=3)


def find_root(rels: Iterable[Rel], where: Path) -> Rel:
    """The prefix holding train/: the top level, or a single folder wrapping everything."""
    rels = list(rels)
    if any(r[0] == "train" for r in rels):
        return ()
    tops = {r[0] for r in rels}
    if len(tops) == 1 and any(len(r) > 1 and r[1] == "train" for r in rels):
        return (tops.pop(),)
    raise DataError(f"no train/ folder in {where} (expected train/<class>/... and test/<class>/...)")


def classes_of(split: str, dirs: set[Rel], files: dict[Rel, Source]) -> dict[str, list[Rel]]:
    """Class name -> sorted image paths for one split (paths relative to the root)."""
    by_class: dict[str, list[Rel]] = {d[1]: [] for d in dirs if len(d) == 2 and d[0] == split}
    for rel in files:
        if len(rel) >= 3 and rel[0] == split:
            by_class.setdefault(rel[1], []).append(rel)
    return {name: sorted(rels) for name, rels in by_class.items()}


# The IJG (libjpeg) luminance quantisation table, natural order: JPEG quality q scales it (jpeg_quality_scaling).
_IJG_LUMA = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
             14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
             49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)  # fmt: skip


def _ijg_table(q: int) -> tuple[int, ...]:
    scale = 5000 // q if q < 50 else 200 - 2 * q
    return tuple(min(max((v * scale + 50) // 100, 1), 255) for v in _IJG_LUMA)


# Table -> quality, built once: decoding looks up one table per image (the 100 tables are all different).
_IJG_QUALITY = {_ijg_table(q): q for q in range(1, 101)}


def jpeg_quality(luma_table: Sequence[int]) -> int | None:
    """The IJG quality (1-100) whose scaled table is ``luma_table``, or None for a non-IJG table."""
    return _IJG_QUALITY.get(tuple(luma_table))


def _encoding(img: Image.Image) -> str:
    """How a file stored its pixels: "JPEG q75" for a standard-table JPEG, else the format's name."""
    if img.format == "JPEG":
        tables = getattr(img, "quantization", None) or {}
        q = jpeg_quality(tables[0]) if 0 in tables else None
        return f"JPEG q{q}" if q is not None else "JPEG"
    return img.format or "unknown"


class _Unsupported(Exception):
    """A readable image whose pixels reslab will not guess at."""


# 16-bit greys (PNG, TIFF): Pillow's convert("RGB") clips them to 255 (a white image); keep the high byte instead, as
# Pillow itself does for 16-bit RGB. 32-bit integer and float pixels have no known range: refused, with a count.
_GREY16 = frozenset({"I;16", "I;16B", "I;16L", "I;16N"})
_NO_RANGE = {"I": "32-bit integer pixels", "F": "32-bit float pixels"}


def to_rgb(img: Image.Image) -> Image.Image:
    # PNG has no 32-bit greys, and older Pillow versions open its 16-bit greys as mode "I".
    if img.mode in _GREY16 or (img.mode == "I" and img.format == "PNG"):
        return Image.fromarray((np.asarray(img).astype(np.uint32) >> 8).astype(np.uint8), "L").convert("RGB")
    if img.mode in _NO_RANGE:
        raise _Unsupported(_NO_RANGE[img.mode])
    return img.convert("RGB")


REDUCE_FROM = 4  # an image whose shorter side is this many times the size it is resized to is decoded reduced


def _reduced(img: Image.Image, image_size: int) -> Image.Image:
    """An image many times larger than ``image_size`` decoded at a fraction of its size, still at least twice
    ``image_size`` on its shorter side, so that the resize that follows sees enough pixels: a JPEG through libjpeg's
    DCT scaling (``draft``: never decoded whole). Other formats are decoded whole (PNG has no reduced decoding) and
    then resized in two steps (`decode_image`: an integer box reduction, then the filter)."""
    short = min(img.size)
    if short < REDUCE_FROM * image_size:
        return img
    if img.format == "JPEG" and img.mode in ("RGB", "L", "YCbCr"):
        w, h = img.size
        k = short / (2 * image_size)
        img.draft(img.mode, (int(w / k), int(h / k)))  # the smallest DCT scale still at least this size
        return img
    return img


def decode_image(data: bytes, image_size: int | None) -> tuple[np.ndarray, str]:
    """Decode one image to an RGB uint8 [H, W, 3] array, resized+center-cropped to `image_size` if given, and say
    how it was encoded."""
    with Image.open(io.BytesIO(data)) as img:
        encoding = _encoding(img)
        if image_size is not None:
            img = _reduced(img, image_size)
        img = to_rgb(img)
    if image_size is not None:
        w, h = img.size
        scale = image_size / min(w, h)
        nw, nh = max(image_size, round(w * scale)), max(image_size, round(h * scale))
        # Far larger images: a box reduction by an integer factor first (Pillow's reducing_gap), much faster than
        # filtering every source pixel, and within a grey level or two of it.
        gap = 3.0 if min(w, h) >= REDUCE_FROM * image_size else None
        img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=gap)
        left, top = (nw - image_size) // 2, (nh - image_size) // 2
        img = img.crop((left, top, left + image_size, top + image_size))
    return np.asarray(img), encoding


class _Decoder:
    """Decodes splits into preallocated arrays, enforcing one image size and collecting unreadable files."""

    def __init__(self, where: Path, image_size: int | None, strict: bool) -> None:
        self.where, self.image_size, self.strict = where, image_size, strict
        self.hw: tuple[int, int] | None = (image_size, image_size) if image_size else None
        self.skipped: list[tuple[str, str]] = []  # (file, why)
        self.encodings: Counter[str] = Counter()

    def _one(self, name: str, source: Source) -> np.ndarray | None:
        try:
            data = source.read_bytes() if isinstance(source, Path) else source
            array, encoding = decode_image(data, self.image_size)
        except Exception as exc:
            # A corrupt file can fail deep inside any of PIL's parsers (OSError, SyntaxError, struct.error, ...), so
            # every failure to read or decode one file counts as "unreadable".
            why = f"unsupported: {exc}" if isinstance(exc, _Unsupported) else "unreadable"
            if self.strict:
                raise DataError(f"{why} image {name} in {self.where}: {exc}") from exc
            self.skipped.append((name, why))
            return None
        self.encodings[encoding] += 1
        if self.hw is None:
            self.hw = array.shape[:2]
        elif array.shape[:2] != self.hw:
            raise DataError(
                f"image {name} in {self.where} is {array.shape[1]}x{array.shape[0]} but earlier images are"
                f" {self.hw[1]}x{self.hw[0]};"
                " pass --image-size S to resize every image (shorter side S, centre crop SxS)"
            )
        return array

    def split(self, items: list[tuple[str, Source, int]]) -> tuple[np.ndarray, np.ndarray]:
        images: np.ndarray | None = None
        labels = np.empty(len(items), dtype=np.int64)
        n = 0
        for name, source, label in items:
            array = self._one(name, source)
            if array is None:
                continue
            if images is None:
                images = np.empty((len(items), 3, *array.shape[:2]), dtype=np.uint8)
            images[n] = array.transpose(2, 0, 1)
            labels[n] = label
            n += 1
        if images is None:
            return np.empty((0, 3, 1, 1), dtype=np.uint8), labels[:0]
        # Copy when images were skipped: torch.save would otherwise store the whole preallocated buffer.
        return (images, labels) if n == len(items) else (images[:n].copy(), labels[:n].copy())


def _layout(path: Path, dirs: set[Rel], files: dict[Rel, Source]) -> tuple[list[str], dict[str, list]]:
    """Check the folder structure; return the classes and, per split, the (name, source, label) items in order."""
    root = find_root([*dirs, *files], path)
    dirs = {d[len(root) :] for d in dirs if d[: len(root)] == root and len(d) > len(root)}
    files = {f[len(root) :]: s for f, s in files.items() if f[: len(root)] == root}
    prefix = "/".join((str(path), *root))
    test_split = "test" if any(r[0] == "test" for r in (*dirs, *files)) else "val"
    train, test = classes_of("train", dirs, files), classes_of(test_split, dirs, files)
    classes = sorted(train)
    if not classes:
        raise DataError(f"no class folders with images in {prefix}/train")
    if not test:
        raise DataError(f"no test/ or val/ class folders in {prefix}")
    for name in classes:
        if not train[name]:
            raise DataError(f"class folder {prefix}/train/{name} has no images")
    unknown = sorted(set(test) - set(classes))
    if unknown:
        raise DataError(f"{prefix}/{test_split} has classes not in train/: {', '.join(unknown[:5])}")
    # Item names are relative to `path` so that cached names stay right if the data is moved.
    splits = {
        split: [
            ("/".join((*root, *rel)), files[rel], label)
            for label, name in enumerate(classes)
            for rel in by_class.get(name, [])
        ]
        for split, by_class in (("train", train), (test_split, test))
    }
    return classes, splits


def _decode_all(path: Path, dirs: set[Rel], files: dict[Rel, Source], image_size: int | None, strict: bool) -> dict:
    """Decode both splits into the dict that is cached (tensors, classes, skipped file names)."""
    classes, splits = _layout(path, dirs, files)
    decoder = _Decoder(path, image_size, strict)
    out: dict = {"format": CACHE_FORMAT, "classes": classes}
    for field, (split, items) in zip(("train", "test"), splits.items(), strict=True):
        images, labels = decoder.split(items)
        if len(labels) == 0:
            raise DataError(f"no readable images in {split}/ of {path}")
        counts = np.bincount(labels, minlength=len(classes))
        if field == "train" and not counts.all():
            empty = classes[int(np.argmin(counts))]
            raise DataError(f"class folder train/{empty} in {path} has no readable images")
        out[f"{field}_images"], out[f"{field}_labels"] = torch.from_numpy(images), torch.from_numpy(labels)
    out["skipped"] = decoder.skipped
    out["encodings"] = dict(decoder.encodings)
    return out


def describe_encodings(counts: dict[str, int]) -> str:
    """``{"JPEG q75": 60000}`` -> ``"JPEG q75"``; several kinds are listed with their counts, most common first."""
    if len(counts) == 1:
        return next(iter(counts))
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    return "mixed: " + ", ".join(f"{k} ({v})" for k, v in ranked[:3]) + (", ..." if len(ranked) > 3 else "")


def _report_skipped(path: Path, skipped: list[tuple[str, str]], strict: bool) -> None:
    """One warning for all skipped images, counted by reason (repeated on cache hits, so never silently forgotten)."""
    if not skipped:
        return
    if strict:
        name, why = skipped[0]
        raise DataError(f"{why} image {name} in {path} (and {len(skipped) - 1} more)")
    by_reason: dict[str, list[str]] = {}
    for name, why in skipped:
        by_reason.setdefault(why, []).append(name)
    parts = [f"{len(names)} {why} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})"
             for why, names in by_reason.items()]  # fmt: skip
    warnings.warn(f"skipped {len(skipped)} image(s) in {path}: {'; '.join(parts)}", stacklevel=3)
