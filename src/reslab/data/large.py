"""Large-image datasets (ImageNet and the like): an index of where every image is, read one image at a time.

Nothing is loaded whole: `open_large` lists the images (a directory walk, or a pass over each tar's headers) and
`ImageIndex.read` fetches one image's bytes on demand, from its file or with one seek into its tar. That makes the
data a map from index to image, so an epoch is a permutation, a rank reads its own part of it, and resume is exact.

Layouts of ``--data PATH``:

* ImageFolder: ``PATH/train/<class>/<image>`` and ``PATH/val/<class>/<image>`` (``test/`` where there is no
  ``val/``: ImageNet's own test/ has no labels), a folder or an uncompressed ``.tar`` of one (a ``.tar.gz`` has no
  random access: decompress it first).
* WebDataset shards: ``PATH/train/*.tar`` and ``PATH/val/*.tar``, each shard holding ``<key>.jpg`` (or .jpeg, .png,
  .webp) with ``<key>.cls`` (the class index as text), as written by ``webdataset.ShardWriter``. Class names come
  from ``PATH/classes.txt`` (one per line, in index order) when it exists, else the indices.
* ImageNet's flat validation folder: ``PATH/val/<image>`` with its labels in ``LOC_val_solution.csv`` (Kaggle's form:
  ``ImageId,PredictionString``, the synset first) in ``PATH`` or ``PATH/val``; or a ``val_labels.txt`` of
  ``<file name> <class name or index>`` lines. The devkit's ``ILSVRC2012_validation_ground_truth.txt`` holds ILSVRC
  ids, not synsets: convert it (see `DEVKIT_HINT`).
"""

from __future__ import annotations

import csv
import os
import tarfile
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from reslab.data.folders import IMAGE_EXTENSIONS, classes_of, find_root, is_image, scan_directory, split_rel
from reslab.errors import DataError

SHARD_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
LABEL_FILES = ("LOC_val_solution.csv", "val_labels.txt")
DEVKIT_HINT = ("the devkit's ILSVRC2012_validation_ground_truth.txt numbers classes by ILSVRC id, not synset: use "
               "Kaggle's LOC_val_solution.csv, or move each image into val/<synset>/ (e.g. with the widely used "
               "valprep.sh) and pass the folder again")  # fmt: skip


MAX_OPEN_TARS = 64  # per process: 1024 shards (ImageNet's usual count) would exceed a common limit of open files


@dataclass
class ImageIndex:
    """Where each image of one split is: ``containers[k]`` is a file, or a tar read at ``offsets``/``sizes``.

    An image stored as its own file has offset -1. ``labels`` index the classes; `name` says which image ``i`` is,
    for messages. Paths and names are kept as numpy byte strings, not Python objects: DataLoader workers share the
    parent's pages of an index of 1.28M images instead of copying them as reference counts change.
    """

    containers: np.ndarray  # bytes [K]: file-system paths (os.fsencode)
    container: np.ndarray  # int32 [N]: which container
    offsets: np.ndarray  # int64 [N]: byte offset in a tar, -1 for a plain file
    sizes: np.ndarray  # int64 [N]
    labels: np.ndarray  # int64 [N]
    names: np.ndarray  # bytes [N], UTF-8 (os.fsencode)
    _handles: OrderedDict = field(default_factory=OrderedDict, repr=False)
    _pid: int = field(default=-1, repr=False)

    def __len__(self) -> int:
        return len(self.labels)

    def name(self, i: int) -> str:
        return os.fsdecode(self.names[i])

    def read(self, i: int) -> bytes:
        """Image ``i``'s encoded bytes (raises OSError if its file cannot be read)."""
        c, offset = int(self.container[i]), int(self.offsets[i])
        if offset < 0:
            with open(self.containers[c], "rb") as f:
                return f.read()
        # Open tars are kept per process, the least recently used closed beyond MAX_OPEN_TARS; a DataLoader worker
        # forked with its parent's handles must not share their file position, so those are dropped.
        if self._pid != os.getpid():
            self._handles, self._pid = OrderedDict(), os.getpid()
        f = self._handles.pop(c, None)
        if f is None:
            if len(self._handles) >= MAX_OPEN_TARS:
                self._handles.popitem(last=False)[1].close()
            f = open(self.containers[c], "rb")  # noqa: SIM115 (kept open for the next read)
        self._handles[c] = f
        return os.pread(f.fileno(), int(self.sizes[i]), offset)

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_handles": OrderedDict(), "_pid": -1}  # handles do not travel to workers

    def take(self, idx: np.ndarray) -> ImageIndex:
        """The images at ``idx``, in that order."""
        return ImageIndex(self.containers, self.container[idx], self.offsets[idx], self.sizes[idx], self.labels[idx],
                          self.names[idx])  # fmt: skip


@dataclass
class LargeData:
    """A large-image dataset: its classes and the index of each split ("train", "val")."""

    classes: list[str]
    splits: dict[str, ImageIndex]
    name: str
    layout: str

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={len(v)}" for k, v in self.splits.items())
        return f"LargeData({self.name!r}, {self.layout}, {sizes}, classes={len(self.classes)})"


def open_large(path: str | Path) -> LargeData:
    """Index the dataset at ``path`` (see the module doc for the layouts); raises `DataError` naming what is wrong."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data not found: {path} (expected a folder with train/ and val/, or a .tar of one)")
    if path.is_file():
        if path.name.lower().endswith((".tar.gz", ".tgz")):
            raise DataError(f"{path} is compressed: streaming needs random access, which a .tar.gz does not have; "
                            f"decompress it (gunzip) or extract it into a folder")  # fmt: skip
        if not path.name.lower().endswith(".tar"):
            raise DataError(f"unsupported data path {path}: expected a folder or a .tar file")
        return _folder_in_tar(path)
    train = path / "train"
    # Shards: tars and no class folders (ILSVRC's per-class tars left beside the folders they were extracted to are
    # not shards).
    if train.is_dir() and _shards(train) and not any(p.is_dir() for p in train.iterdir()):
        return _webdataset(path)
    dirs, files = scan_directory(path)
    root = find_root([*dirs, *files], path)
    val_name = "val" if (path.joinpath(*root) / "val").is_dir() else "test"
    val_dir = path.joinpath(*root, val_name)
    flat = val_dir.is_dir() and not any(p.is_dir() and not p.name.startswith(".") for p in val_dir.iterdir())
    if flat:
        files = {rel: p for rel, p in files.items() if rel[len(root) : len(root) + 1] != (val_name,)}
    return _from_listing(path, dirs, {rel: (str(p), -1, -1) for rel, p in files.items()}, "ImageFolder",
                         val_dir if flat else None)  # fmt: skip


def subset_index(index: ImageIndex, n: int | None, seed: int = 0) -> ImageIndex:
    """A random subset of ``n`` images (None: all), kept in their order; the same for every training seed (as
    `reslab.data.dataset.subset`)."""
    if n is None or n >= len(index):
        return index
    rng = np.random.default_rng(seed)
    return index.take(np.sort(rng.permutation(len(index))[:n]))


# -- ImageFolder, in a folder or a tar -------------------------------------------------------------------------------
Where = tuple[str, int, int]  # (file, offset, size); offset -1: the whole file


def _from_listing(path: Path, dirs: set, files: dict, layout: str, flat_val: Path | None = None) -> LargeData:
    """The splits of an ImageFolder listing; with ``flat_val`` the validation images come from that folder and its
    labels file instead of class folders."""
    root = find_root([*dirs, *files], path)
    dirs = {d[len(root) :] for d in dirs if d[: len(root)] == root and len(d) > len(root)}
    files = {f[len(root) :]: w for f, w in files.items() if f[: len(root)] == root}
    # val/ is the evaluation split; test/ only where there is no val/ (ImageNet's test/ has no labels).
    val_name = "val" if any(r[0] == "val" for r in (*dirs, *files)) else "test"
    train, val = classes_of("train", dirs, files), classes_of(val_name, dirs, files)
    classes = sorted(train)
    _check_classes(path, classes, train, val if flat_val is None else None, val_name)
    splits = {}
    for split, by_class in (("train", train), ("val", val)):
        items = [
            (files[rel], label, "/".join(rel)) for label, name in enumerate(classes) for rel in by_class.get(name, [])
        ]
        splits[split] = _index(items)
    if flat_val is not None:
        splits["val"] = _flat_val(path, flat_val, classes)
        layout += ", flat val/ with a labels file"
    return LargeData(classes, splits, f"{path.name} ({layout})", layout)


def _check_classes(path: Path, classes: list[str], train: dict, val: dict | None, val_name: str) -> None:
    if not classes:
        raise DataError(f"no class folders with images in {path}/train")
    empty = [c for c in classes if not train[c]]
    if empty:
        raise DataError(f"class folder {path}/train/{empty[0]} has no images")
    if val is None:  # a flat folder: checked against its labels file
        return
    if not any(val.values()):
        raise DataError(f"no images in {path}/{val_name}/<class>/ (a flat {val_name}/ folder needs a labels file: "
                        f"{' or '.join(LABEL_FILES)})")  # fmt: skip
    unknown = sorted(set(val) - set(classes))
    if unknown:
        raise DataError(f"{path}/{val_name} has classes not in train/: {', '.join(unknown[:5])}")


def _index(items: list[tuple[Where, int, str]]) -> ImageIndex:
    containers: dict[str, int] = {}
    cont = np.empty(len(items), np.int32)
    offsets, sizes, labels = (np.empty(len(items), np.int64) for _ in range(3))
    for n, ((file, offset, size), label, _) in enumerate(items):
        cont[n] = containers.setdefault(file, len(containers))
        offsets[n], sizes[n], labels[n] = offset, size, label
    paths = np.array([os.fsencode(c) for c in containers], dtype=bytes)
    names = np.array([os.fsencode(name) for *_, name in items], dtype=bytes)
    return ImageIndex(paths if len(paths) else np.empty(0, "S1"), cont, offsets, sizes, labels,
                      names if len(names) else np.empty(0, "S1"))  # fmt: skip


def _tar_members(path: Path) -> list[tarfile.TarInfo]:
    try:
        with tarfile.open(path, mode="r:") as tar:
            return tar.getmembers()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"cannot read tar {path}: {exc}") from exc


def _folder_in_tar(path: Path) -> LargeData:
    dirs, files = set(), {}
    for m in _tar_members(path):
        rel = split_rel(m.name)
        if rel is None:
            continue
        if m.isdir():
            dirs.add(rel)
        elif m.isfile() and is_image(rel):
            files[rel] = (str(path), m.offset_data, m.size)
            dirs.update(rel[:k] for k in range(1, len(rel)))  # tars need not list their folders
    root = find_root([*dirs, *files], path)
    if any(len(rel) == len(root) + 2 and rel[len(root)] == "val" for rel in files):  # val/<image>, no class folder
        raise DataError(f"{path} has a flat val/ (images without class folders): that layout, with its labels file, "
                        "is read from a folder, not a tar: extract it and pass the folder")  # fmt: skip
    return _from_listing(path, dirs, files, "ImageFolder tar")


# -- WebDataset shards -----------------------------------------------------------------------------------------------
def _shards(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(".tar"))


def _shard_items(shard: Path) -> list[tuple[Where, int, str]]:
    """(where, label, key) of each sample of a shard: an image member and its ``.cls`` member with the same key."""
    images: dict[str, Where] = {}
    labels: dict[str, int] = {}
    with open(shard, "rb") as f:
        for m in _tar_members(shard):
            if not m.isfile():
                continue
            base = m.name.rsplit("/", 1)[-1]
            key, _, ext = base.partition(".")
            key = m.name[: len(m.name) - len(base)] + key  # WebDataset: the key is the path up to the first dot
            if "." + ext.lower() in SHARD_IMAGE_EXTENSIONS:
                images[key] = (str(shard), m.offset_data, m.size)
            elif ext.lower() == "cls":
                f.seek(m.offset_data)
                text = f.read(m.size).decode("ascii", "replace").strip()
                if not text.isdigit():
                    raise DataError(f"{shard}: {m.name} holds {text[:20]!r}, not a class index")
                labels[key] = int(text)
    missing = sorted(set(images) - set(labels))
    if missing:
        raise DataError(f"{shard}: sample {missing[0]!r} has an image but no .cls label ({len(missing)} such)")
    return [(images[k], labels[k], f"{shard.name}:{k}") for k in sorted(images)]


def _webdataset(path: Path) -> LargeData:
    val_dir = path / ("val" if (path / "val").is_dir() else "test")
    splits = {}
    for split, folder in (("train", path / "train"), ("val", val_dir)):
        shards = _shards(folder) if folder.is_dir() else []
        if not shards:
            raise DataError(f"no .tar shards in {folder} (train/ holds shards, so {folder.name}/ must too)")
        splits[split] = _index([item for s in shards for item in _shard_items(s)])
    if not len(splits["train"]):
        raise DataError(f"no images in the shards of {path}/train")
    top = max(int(s.labels.max()) for s in splits.values() if len(s)) + 1
    names_file = path / "classes.txt"
    if names_file.is_file():
        classes = [line.strip() for line in names_file.read_text(encoding="utf-8").splitlines() if line.strip()]
        if len(classes) < top:
            raise DataError(f"{names_file} names {len(classes)} classes but the shards use class index {top - 1}")
    else:
        classes = [str(k) for k in range(top)]
    return LargeData(classes, splits, f"{path.name} (WebDataset shards)", "WebDataset shards")


# -- ImageNet's flat validation folder -------------------------------------------------------------------------------
def _flat_val(path: Path, val_dir: Path, classes: list[str]) -> ImageIndex:
    labels = _flat_labels(path, val_dir, classes)
    items = []
    for p in sorted(val_dir.iterdir()):
        if p.suffix.lower() not in IMAGE_EXTENSIONS or p.name.startswith("."):
            continue
        label = labels.get(p.name, labels.get(p.stem))
        if label is None:
            raise DataError(f"{p.name} in {val_dir} has no entry in the labels file")
        items.append(((str(p), -1, -1), label, f"{val_dir.name}/{p.name}"))
    if not items:
        raise DataError(f"no images in {val_dir}")
    return _index(items)


def _flat_labels(path: Path, val_dir: Path, classes: list[str]) -> dict[str, int]:
    """File name (or stem) -> class index, from the first labels file found in ``val_dir`` or ``path``."""
    for folder in (val_dir, path):
        for name in LABEL_FILES:
            f = folder / name
            if f.is_file():
                return _read_labels(f, classes)
    if any((folder / "ILSVRC2012_validation_ground_truth.txt").is_file() for folder in (val_dir, path)):
        raise DataError(f"{val_dir}: {DEVKIT_HINT}")
    raise DataError(f"{val_dir} holds images but no class folders, and no labels file ({' or '.join(LABEL_FILES)}) "
                    f"was found in {path} or {val_dir}")  # fmt: skip


def _read_labels(f: Path, classes: list[str]) -> dict[str, int]:
    lookup = {c: k for k, c in enumerate(classes)}
    out: dict[str, int] = {}
    with open(f, encoding="utf-8", newline="") as fh:
        if f.suffix == ".csv":
            rows = [(r.get("ImageId", ""), (r.get("PredictionString") or "").split()[:1]) for r in csv.DictReader(fh)]
            pairs = [(img, p[0] if p else "") for img, p in rows]
        else:
            pairs = [tuple(line.split(maxsplit=1)) for line in fh if line.strip()]
    for n, pair in enumerate(pairs, 1):
        if len(pair) != 2 or not pair[0]:
            raise DataError(f"{f}, entry {n}: expected an image name and its class, got {pair!r}")
        name, cls = pair[0], pair[1].strip()
        if cls in lookup:
            out[name] = lookup[cls]
        elif cls.isdigit() and int(cls) < len(classes):
            out[name] = int(cls)
        else:
            raise DataError(f"{f}, entry {n}: class {cls!r} is not one of train/'s {len(classes)} classes")
    return out
