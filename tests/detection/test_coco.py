"""The COCO reader's traps and COCO evaluation on a tiny set with known answers."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reslab.detection.coco import STATS, coco_eval, format_stats, load_coco, to_coco_results
from reslab.errors import DataError


def _write(root: Path, annotations: list[dict], categories=None) -> tuple[Path, Path]:
    """Three 64x48 images (the third without annotations) and an instances file."""
    (root / "images").mkdir(parents=True)
    for i in (1, 2, 3):
        Image.fromarray(np.full((48, 64, 3), 40 * i, dtype=np.uint8)).save(root / "images" / f"{i}.png")
    gt = {"images": [{"id": i, "file_name": f"{i}.png", "width": 64, "height": 48} for i in (1, 2, 3)],
          "annotations": annotations,
          "categories": categories or [{"id": 3, "name": "cat"}, {"id": 17, "name": "dog"}]}  # fmt: skip
    (root / "instances.json").write_text(json.dumps(gt))
    return root / "images", root / "instances.json"


ANNS = [
    {"id": 1, "image_id": 1, "category_id": 17, "bbox": [4, 4, 20, 20]},  # no area, no iscrowd
    {"id": 2, "image_id": 1, "category_id": 3, "bbox": [50, 30, 30, 30], "area": 900, "iscrowd": 0},  # sticks out
    {"id": 3, "image_id": 2, "category_id": 3, "bbox": [10, 10, 0, 15]},  # zero width: dropped
    {"id": 4, "image_id": 2, "category_id": 17, "bbox": [0, 0, 64, 48], "iscrowd": 1},  # crowd: not a target
    {"id": 5, "image_id": 2, "category_id": 3, "bbox": [30, 5, 25, 30]},
    {"image_id": 3, "category_id": 17, "bbox": [2, 2, 10, 10]},  # no id
]


def test_the_usual_traps(tmp_path):
    images, ann = _write(tmp_path, [dict(a) for a in ANNS])
    with pytest.warns(UserWarning, match="1 boxes with no area"):
        data = load_coco(images, ann)
    assert data.classes == ["cat", "dog"] and data.category_ids == [3, 17]  # ids 3, 17 -> labels 1, 2
    t1, t2, t3 = data.targets
    assert t1["labels"].tolist() == [2, 1]
    assert t1["boxes"].tolist() == [[4, 4, 24, 24], [50, 30, 64, 48]]  # the second clipped to the image
    assert t2["labels"].tolist() == [1] and t2["boxes"].tolist() == [[30, 5, 55, 35]]  # zero-size and crowd gone
    assert t3["boxes"].tolist() == [[2, 2, 12, 12]] and len(data) == 3
    image, target = data[0]
    assert image.shape == (3, 48, 64) and image.dtype == torch.uint8 and target is t1
    gt = data.gt["annotations"]  # what COCOeval reads: the same boxes as training
    assert gt[0]["area"] == 400 and gt[0]["iscrowd"] == 0
    assert gt[1]["bbox"] == [50, 30, 14, 18] and gt[1]["area"] == 900  # clipped; a given area is kept
    assert gt[2]["iscrowd"] == 1  # dropped from training: ignored by COCOeval, not an object to find
    assert [a["id"] for a in gt] == [1, 2, 3, 4, 5, 6]  # the missing id after the largest given


def test_images_without_annotations_are_kept(tmp_path):
    data = load_coco(*_write(tmp_path, [dict(a) for a in ANNS[:1]]))
    assert [len(t["boxes"]) for t in data.targets] == [1, 0, 0]


def _perfect(data):
    """Predictions equal to the ground truth, score 1."""
    return [{"boxes": t["boxes"], "labels": t["labels"], "scores": torch.ones(len(t["labels"]))} for t in data.targets]


def test_a_perfect_prediction_scores_1_and_an_empty_one_0(tmp_path):
    with pytest.warns(UserWarning, match="1 boxes with no area"):  # every trap: clipped, dropped, crowd, no id
        data = load_coco(*_write(tmp_path, [dict(a) for a in ANNS]))
    results = to_coco_results(data, _perfect(data))
    assert {r["category_id"] for r in results} == {3, 17}  # contiguous labels mapped back to COCO's ids
    stats = coco_eval(data, results)
    assert stats["mAP"] == pytest.approx(1.0) and stats["mAP50"] == pytest.approx(1.0)
    assert stats["mAP_large"] == -1  # no large objects in the ground truth: no score, not 0
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}] * 3
    nothing = coco_eval(data, to_coco_results(data, empty))
    assert nothing == {k: -1.0 if k.endswith(("medium", "large")) else 0.0 for k in STATS}  # as COCOeval has it
    wrong = _perfect(data)
    wrong[0] = {**wrong[0], "labels": 3 - wrong[0]["labels"]}  # swap cat and dog on image 1
    assert 0 < coco_eval(data, to_coco_results(data, wrong))["mAP"] < 1
    assert "| mAP | mAP50 |" in format_stats(stats) and "n/a" in format_stats(stats)


def test_ids_written_as_strings_are_read_and_evaluated_as_numbers(tmp_path):
    """ "1" and 1 are the same id to the reader; COCOeval reads the records, so they become numbers there too (else a
    perfect prediction would score 0, or COCOeval would refuse the results)."""
    anns = [{**a, "category_id": str(a["category_id"]), "image_id": str(a["image_id"])} for a in ANNS]
    cats = [{"id": "3", "name": "cat"}, {"id": "17", "name": "dog"}]
    with pytest.warns(UserWarning):
        data = load_coco(*_write(tmp_path, anns, cats))
    assert coco_eval(data, to_coco_results(data, _perfect(data)))["mAP"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda gt: gt.pop("categories"), "not a COCO instances file"),
        (
            lambda gt: gt["annotations"].append({"id": 9, "image_id": 99, "category_id": 3, "bbox": [0, 0, 1, 1]}),
            "names image 99, which is not listed",
        ),
        (
            lambda gt: gt["annotations"].append({"id": 9, "image_id": 1, "category_id": 5, "bbox": [0, 0, 1, 1]}),
            "names category 5",
        ),
        (lambda gt: gt["annotations"].append({"id": 9, "image_id": 1, "category_id": 3}), "malformed record .*bbox"),
        (
            lambda gt: gt["annotations"].append({"id": 9, "image_id": 1, "category_id": 3, "bbox": [1, 2]}),
            "malformed record .*ValueError",
        ),
        (lambda gt: gt["images"][0].pop("file_name"), "malformed record .*file_name"),
        (lambda gt: gt["categories"].append({"name": "no id"}), "malformed record"),
    ],
)
def test_broken_files_are_one_line(tmp_path, mutate, message):
    images, ann = _write(tmp_path, [dict(a) for a in ANNS[:1]])
    gt = json.loads(ann.read_text())
    listed = [dict(im) for im in gt["images"]]
    mutate(gt)
    ann.write_text(json.dumps(gt))
    with pytest.raises(DataError, match=message):
        load_coco(images, ann)
    with pytest.raises(DataError, match="annotations file not found"):
        load_coco(images, tmp_path / "none.json")
    (images / "1.png").write_bytes(b"junk")
    ann.write_text(json.dumps({"images": listed, "annotations": [], "categories": [{"id": 1}]}))
    with pytest.raises(DataError, match="cannot read image"):
        load_coco(images, ann)[0]
