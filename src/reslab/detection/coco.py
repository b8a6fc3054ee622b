"""COCO-format detection data (an images folder and an instances JSON) and COCO's evaluation.

The usual traps of real COCO-format files, and what happens to each:

* category ids that are not 1..K (COCO's own skip numbers): mapped in sorted order to the contiguous labels 1..K the
  model predicts (0 is the background), and mapped back when results are written or evaluated;
* an annotation without ``area`` gets its (clipped) box's area, one without ``iscrowd`` is not a crowd, one
  without ``id`` gets one after the largest given;
* crowd annotations (``iscrowd: 1``) are not training targets (as in torchvision's reference scripts); COCOeval
  uses them to ignore detections on crowds;
* images without annotations are kept (the detector learns background from them);
* boxes partly outside the image are clipped to it; boxes with no area left (zero or negative width or height)
  are dropped, counted, and reported in one warning line. Evaluation reads the same boxes as training (as
  torchvision's reference scripts do): the clipped ones, and a dropped one marked ``iscrowd`` so that COCOeval
  ignores it rather than count an object no detector inside the image could find;
* a file that is not COCO JSON, a record with a missing or malformed field, an annotation naming an unknown image
  or category, or a missing image file: one line naming it (`DataError`).
"""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from reslab.errors import DataError

STATS = ("mAP", "mAP50", "mAP75", "mAP_small", "mAP_medium", "mAP_large", "AR1", "AR10", "AR100", "AR_small",
         "AR_medium", "AR_large")  # fmt: skip  # COCOeval.stats, in its order
AREAS = {"all": (0, 1e5**2), "small": (0, 32**2), "medium": (32**2, 96**2), "large": (96**2, 1e5**2)}  # its areaRng


@dataclass
class CocoDetection(torch.utils.data.Dataset):
    """Images and targets of one split: ``dataset[i]`` is (uint8 image [3, H, W], target) where target has
    ``boxes`` (float [N, 4], x1 y1 x2 y2 in pixels), ``labels`` (int64 [N], 1..K) and ``image_id``."""

    root: Path
    images: list[dict[str, Any]]
    targets: list[dict[str, torch.Tensor]]
    classes: list[str]  # label k is classes[k - 1]
    category_ids: list[int]  # label k is COCO category category_ids[k - 1]
    gt: dict[str, Any]  # the JSON as read (with the defaults filled in), for COCOeval

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        path = self.root / self.images[i]["file_name"]
        try:
            with Image.open(path) as img:
                pixels = np.array(img.convert("RGB"))
        except (OSError, ValueError) as e:
            raise DataError(f"cannot read image {path}: {type(e).__name__}") from e
        return torch.from_numpy(pixels).permute(2, 0, 1), self.targets[i]


def load_coco(images: str | Path, annotations: str | Path) -> CocoDetection:
    """The split whose images are under ``images`` and whose instances JSON is ``annotations``."""
    root, ann_path = Path(images), Path(annotations)
    if not root.is_dir():
        raise DataError(f"images folder not found: {root}")
    try:
        gt = json.loads(ann_path.read_text())
        image_list, anns, cats = gt["images"], gt.get("annotations", []), gt["categories"]
    except FileNotFoundError:
        raise DataError(f"annotations file not found: {ann_path}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{ann_path} is not a COCO instances file ({type(e).__name__}: {e})") from None
    record: Any = None
    try:  # every record's fields, read once: a missing key or a malformed value is one line naming the record
        names: dict[int, str] = {}
        # Ids are made ints in the records themselves: COCOeval reads these records, and "1" is not 1 there.
        for record in cats:
            record["id"] = int(record["id"])
            names[record["id"]] = str(record.get("name", record["id"]))
        index: dict[int, int] = {}
        for k, record in enumerate(image_list):
            record["id"] = int(record["id"])
            index[record["id"]] = k
            record["width"], record["height"] = float(record["width"]), float(record["height"])
            if not isinstance(record["file_name"], str):
                raise TypeError("file_name is not a string")
        category_ids = sorted(names)
        label_of = {cid: k + 1 for k, cid in enumerate(category_ids)}
        boxes: list[list[list[float]]] = [[] for _ in image_list]
        labels: list[list[int]] = [[] for _ in image_list]
        dropped = 0
        for record in anns:
            record["image_id"], record["category_id"] = int(record["image_id"]), int(record["category_id"])
            if "id" in record:
                record["id"] = int(record["id"])
            dropped += _add(record, image_list, index, label_of, boxes, labels, ann_path)
        next_id = max((int(record["id"]) for record in anns if "id" in record), default=0) + 1
    except (KeyError, TypeError, ValueError) as e:
        raise DataError(f"{ann_path}: malformed record ({type(e).__name__}: {e}): {json.dumps(record)[:200]}") from None
    for a in anns:  # COCOeval needs an id on every annotation: new ones after the largest given
        if "id" not in a:
            a["id"], next_id = next_id, next_id + 1
    if dropped:
        warnings.warn(f"{ann_path}: {dropped} boxes with no area inside their image were dropped", stacklevel=2)
    targets = [{"boxes": torch.tensor(b, dtype=torch.float32).reshape(-1, 4), "labels": torch.tensor(lab,
                dtype=torch.int64), "image_id": torch.tensor(int(im["id"]))}
               for b, lab, im in zip(boxes, labels, image_list, strict=True)]  # fmt: skip
    return CocoDetection(root, list(image_list), targets, [names[c] for c in category_ids], category_ids, gt)


def _add(
    a: dict[str, Any],
    image_list: list[dict[str, Any]],
    index: dict[int, int],
    label_of: dict[int, int],
    boxes: list[list[list[float]]],
    labels: list[list[int]],
    ann_path: Path,
) -> int:
    """One annotation into its image's training targets, its defaults filled in and its box clipped to the image in
    ``a`` itself (what COCOeval then reads); 1 if it was dropped (no area inside the image), else 0."""
    if int(a["image_id"]) not in index:
        raise DataError(f"{ann_path}: annotation {a.get('id')} names image {a['image_id']}, which is not listed")
    if int(a["category_id"]) not in label_of:
        raise DataError(f"{ann_path}: annotation {a.get('id')} names category {a['category_id']}, which is not "
                        "listed")  # fmt: skip
    x, y, w, h = (float(v) for v in a["bbox"])
    a.setdefault("iscrowd", 0)
    im = image_list[index[int(a["image_id"])]]
    x1, y1 = min(max(x, 0.0), im["width"]), min(max(y, 0.0), im["height"])
    x2, y2 = min(max(x + w, 0.0), im["width"]), min(max(y + h, 0.0), im["height"])
    a["bbox"] = [x1, y1, x2 - x1, y2 - y1]
    a.setdefault("area", max(x2 - x1, 0.0) * max(y2 - y1, 0.0))
    if a["iscrowd"]:
        return 0
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        a["iscrowd"] = 1  # COCOeval ignores it: nothing inside the image to find
        return 1
    boxes[index[int(a["image_id"])]].append([x1, y1, x2, y2])
    labels[index[int(a["image_id"])]].append(label_of[int(a["category_id"])])
    return 0


def to_coco_results(data: CocoDetection, outputs: list[dict[str, torch.Tensor]]) -> list[dict[str, Any]]:
    """The detector's outputs for ``data``'s images, in order, as COCO result records (category ids restored)."""
    records = []
    for im, out in zip(data.images, outputs, strict=True):
        for box, label, score in zip(out["boxes"].tolist(), out["labels"].tolist(), out["scores"].tolist(),
                                     strict=True):  # fmt: skip
            x1, y1, x2, y2 = box
            records.append({"image_id": int(im["id"]), "category_id": data.category_ids[int(label) - 1],
                            "bbox": [x1, y1, x2 - x1, y2 - y1], "score": float(score)})  # fmt: skip
    return records


def coco_eval(data: CocoDetection, results: list[dict[str, Any]]) -> dict[str, float]:
    """COCOeval's twelve box statistics (AP at IoU .50:.95, .50, .75, by size; AR), as fractions in [0, 1].

    With no detections at all (pycocotools cannot load an empty result list) each statistic is what COCOeval would
    give: 0 where the ground truth has objects of its size, -1 where it has none."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        raise DataError('COCO evaluation needs pycocotools: pip install "reslab[detection]"') from None
    if not results:
        areas = [a["area"] for a in data.gt.get("annotations", []) if not a.get("iscrowd")]
        ranges = {name: AREAS.get(name.rpartition("_")[2], AREAS["all"]) for name in STATS}
        return {name: 0.0 if any(lo <= x <= hi for x in areas) else -1.0 for name, (lo, hi) in ranges.items()}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
        gt = COCO()
        gt.dataset = data.gt
        gt.createIndex()
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    # COCOeval reports -1 where a statistic has no ground truth (e.g. no large objects): kept, it is not a score.
    return {name: float(v) for name, v in zip(STATS, ev.stats, strict=True)}


def format_stats(stats: dict[str, float]) -> str:
    """The statistics as a short markdown table, in percent (-1: no ground truth of that size)."""
    head = "| " + " | ".join(STATS) + " |"
    cells = "| " + " | ".join("n/a" if v < 0 else f"{100 * v:.1f}" for v in stats.values()) + " |"
    return "\n".join([head, "|" + "---:|" * len(STATS), cells])


def open_coco(root: str | Path, splits: tuple[str, ...] = ("train", "test")) -> tuple[CocoDetection, ...]:
    """The named splits (``train``, ``test``) of a COCO-format folder: ``train/`` and ``test/`` (or ``val/``), each
    with ``images/`` and ``instances.json`` (`reslab detect make-dataset`'s layout), or COCO's own ``train2017/``,
    ``val2017/`` and ``annotations/instances_{train,val}2017.json``. Only the splits asked for are read (COCO's
    training annotations alone are 450 MB)."""
    root = Path(root)
    ann = root / "annotations"
    layouts = [
        {
            "train": (root / "train" / "images", root / "train" / "instances.json"),
            "test": (root / test / "images", root / test / "instances.json"),
        }
        for test in ("test", "val")
    ]
    layouts.append({"train": (root / "train2017", ann / "instances_train2017.json"),
                    "test": (root / "val2017", ann / "instances_val2017.json")})  # fmt: skip
    for layout in layouts:
        if all(layout[s][1].is_file() for s in splits):
            return tuple(load_coco(*layout[s]) for s in splits)
    raise DataError(f"{root} is not a COCO-format folder with {' and '.join(splits)} splits: expected train/ and "
                    "test/ (or val/) with images/ and instances.json each, or COCO's train2017/, val2017/ and "
                    "annotations/instances_*2017.json")  # fmt: skip


def subset(data: CocoDetection, n: int | None) -> CocoDetection:
    """The first ``n`` images (all if None), with the ground truth COCOeval reads cut to match."""
    if n is None or n >= len(data):
        return data
    keep = {int(im["id"]) for im in data.images[:n]}
    gt = {**data.gt, "images": data.images[:n], "annotations": [a for a in data.gt.get("annotations", [])
                                                                if int(a["image_id"]) in keep]}  # fmt: skip
    return CocoDetection(data.root, data.images[:n], data.targets[:n], data.classes, data.category_ids, gt)
