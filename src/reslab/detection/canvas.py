"""A real-image detection set made from an image-classification folder (the CIFAR-10 copy): CIFAR objects pasted
onto canvases, written in COCO format.

No COCO or VOC copy exists on our machines, so the paper's detection comparison is run on this instead. Each canvas
(``size`` x ``size``) has a background made from another image of the same split, enlarged and blurred so that it
holds colour and texture but no object; then 1 to 6 images of the split are pasted at random sizes (``scale``) and
positions, each one's box being the pasted square and its label the image's class. A square is placed only where it
leaves every object pasted before it at least ``min_visible`` of its area in sight (so no box in the ground truth
holds an object hidden under later ones; a square that finds no such place in 20 tries is left out). Train canvases
use the training images only, test canvases the test images only, so the detector is tested on objects it never
saw. The same ``seed`` gives the same files.

    out/train/images/000000.jpg ... out/train/instances.json
    out/test/images/000000.jpg  ... out/test/instances.json
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter

from reslab.choices import CANVAS_SCALE, CANVAS_SIZE
from reslab.data.dataset import ImageDataset
from reslab.data.folders import Source, list_folder
from reslab.errors import ConfigError, DataError
from reslab.files import write_text

MIN_VISIBLE = 0.5  # of each pasted object's area, after every later paste


class _Split:
    """One split's images, by index: ``(image, class name)``."""

    def __init__(self, get: Callable[[int], tuple[Image.Image, str]], n: int) -> None:
        self.get, self.n = get, n


def _folder_splits(data: str | Path) -> tuple[dict[str, _Split], list[str]]:
    """An ImageFolder folder or tar's splits (read as `reslab.data.folders` lists them) and its classes."""
    classes, items = list_folder(data)

    def split(entries: list[tuple[str, Source, int]]) -> _Split:
        def get(k: int) -> tuple[Image.Image, str]:
            name, source, label = entries[k]
            try:
                with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
                    return image.convert("RGB"), classes[label]
            except (OSError, ValueError) as e:  # PIL's UnidentifiedImageError is an OSError
                raise DataError(f"cannot read {name} in {data} as an image ({type(e).__name__})") from None

        return _Split(get, len(entries))

    return {name: split(entries) for name, entries in items.items()}, classes


def _dataset_splits(ds: ImageDataset) -> dict[str, _Split]:
    def split(images: torch.Tensor, labels: torch.Tensor) -> _Split:
        def get(k: int) -> tuple[Image.Image, str]:
            return Image.fromarray(images[k].permute(1, 2, 0).numpy()), ds.classes[int(labels[k])]

        return _Split(get, len(images))

    return {"train": split(ds.train_images, ds.train_labels), "test": split(ds.test_images, ds.test_labels)}


def make_canvases(data: str | Path | ImageDataset, out: str | Path, counts: dict[str, int], *, size: int = CANVAS_SIZE,
                  objects: tuple[int, int] = (1, 6), scale: tuple[int, int] = CANVAS_SCALE,
                  min_visible: float = MIN_VISIBLE, quality: int = 90, seed: int = 0) -> Path:  # fmt: skip
    """Write ``counts[split]`` canvases per split (``train`` from the data's training images, ``test`` from its test
    images). ``data``: an ImageFolder folder or tar (``train/<class>/``, ``test/<class>/`` or ``val/<class>/``, as
    `--data` reads them) or a loaded `ImageDataset` (what ``reslab reproduce`` holds: any data reslab reads). The
    same seed gives the same canvases from the same input."""
    if not (0 < scale[0] <= scale[1] <= size and 1 <= objects[0] <= objects[1] and 0 <= min_visible <= 1):
        raise DataError(
            f"bad canvas settings: scale {scale} must lie in (0, {size}], objects {objects} >= 1, "
            f"min_visible {min_visible} in [0, 1]"
        )
    if isinstance(data, ImageDataset):
        _write(_dataset_splits(data), sorted(data.classes), Path(out), counts, f"{data.label} ({data.name})",
               size=size, objects=objects, scale=scale, min_visible=min_visible, quality=quality,
               seed=seed)  # fmt: skip
        return Path(out)
    splits, classes = _folder_splits(data)
    _write(splits, classes, Path(out), counts, Path(data).name, size=size, objects=objects, scale=scale,
           min_visible=min_visible, quality=quality, seed=seed)  # fmt: skip
    return Path(out)


def _write(splits: dict[str, _Split], classes: list[str], out: Path, counts: dict[str, int], source: str, *,
           size: int, objects: tuple[int, int], scale: tuple[int, int], min_visible: float, quality: int,
           seed: int) -> None:  # fmt: skip
    for split in counts:
        if split not in splits or splits[split].n == 0:
            raise DataError(
                f"{source} has no {split} images (an ImageFolder folder or tar: train/<class>/, test/<class>/)"
            )
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        items = splits[split]
        folder = out / split / "images"
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"cannot write to --out {out}: {e.strerror or e}") from None
        gt_images, annotations = [], []
        for n in range(count):
            background, _ = items.get(int(rng.integers(items.n)))
            canvas = background.resize((size, size), Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(8))
            owner = np.full((size, size), -1)  # which pasted object each pixel shows (-1: background)
            areas: list[int] = []
            for _ in range(int(rng.integers(objects[0], objects[1] + 1))):
                s = int(rng.integers(scale[0], scale[1] + 1))
                shown = np.bincount(owner.ravel() + 1, minlength=len(areas) + 1)  # pixels in sight, per object
                for _attempt in range(20):
                    x, y = (int(v) for v in rng.integers(0, size - s + 1, 2))
                    left = shown - np.bincount(owner[y : y + s, x : x + s].ravel() + 1, minlength=len(areas) + 1)
                    if all(left[k + 1] >= min_visible * a for k, a in enumerate(areas)):
                        break
                else:
                    continue  # no room left for this one
                owner[y : y + s, x : x + s] = len(areas)
                areas.append(s * s)
                obj, cls = items.get(int(rng.integers(items.n)))
                canvas.paste(obj.resize((s, s), Image.Resampling.BICUBIC), (x, y))
                annotations.append({"id": len(annotations) + 1, "image_id": n, "category_id":
                                    classes.index(cls) + 1, "bbox": [x, y, s, s], "area": s * s,
                                    "iscrowd": 0})  # fmt: skip
            name = f"{n:06d}.jpg"
            canvas.save(folder / name, "JPEG", quality=quality)
            gt_images.append({"id": n, "file_name": name, "width": size, "height": size})
        gt = {"images": gt_images, "annotations": annotations,
              "categories": [{"id": k + 1, "name": c} for k, c in enumerate(classes)],
              "info": {"description": f"objects of {source} on {size}x{size} canvases, reslab.detection.canvas, "
                       f"seed {seed}, from {source}"}}  # fmt: skip
        write_text(out / split / "instances.json", json.dumps(gt) + "\n")
