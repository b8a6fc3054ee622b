"""The CIFAR-canvas detection set: COCO files the reader accepts, boxes where the objects were pasted, seeded."""

import json

import numpy as np
import pytest

from reslab.detection.canvas import make_canvases
from reslab.detection.coco import load_coco
from reslab.errors import ConfigError, DataError

COLOURS = {"blue": (20, 20, 220), "green": (20, 220, 20), "red": (220, 20, 20)}  # as conftest.py writes them


def test_canvases_are_a_coco_set_with_the_pasted_boxes(tiny_tar, tmp_path):
    out = make_canvases(tiny_tar, tmp_path / "set", {"train": 6, "test": 3}, size=96, scale=(24, 40), quality=95)
    data = load_coco(out / "train" / "images", out / "train" / "instances.json")
    assert len(data) == 6 and data.classes == ["blue", "green", "red"]
    checked = 0
    for i in range(len(data)):
        image, target = data[i]
        assert image.shape == (3, 96, 96) and 1 <= len(target["labels"]) <= 6
        boxes = target["boxes"].int().tolist()
        for k, (box, label) in enumerate(zip(boxes, target["labels"].tolist(), strict=True)):
            x1, y1, x2, y2 = box
            assert 24 <= x2 - x1 <= 40 and x2 - x1 == y2 - y1 and x1 >= 0 and x2 <= 96
            later = boxes[k + 1 :]  # pasted after this one: may cover it, but leave half of it in sight
            seen = np.ones((y2 - y1, x2 - x1), bool)
            for b in later:
                seen[max(b[1] - y1, 0) : max(b[3] - y1, 0), max(b[0] - x1, 0) : max(b[2] - x1, 0)] = False
            assert seen.mean() >= 0.5
            m = 4  # JPEG's chroma subsampling blurs colours across an edge: look 4 pixels inside
            inside = [(y, x) for y in range(y1 + m, y2 - m, 3) for x in range(x1 + m, x2 - m, 3)
                      if not any(b[0] - m <= x < b[2] + m and b[1] - m <= y < b[3] + m for b in later)]  # fmt: skip
            colour = np.array(COLOURS[data.classes[label - 1]])  # (a box wholly covered by later ones has none)
            assert all(np.abs(image[:, y, x].numpy() - colour).max() < 40 for y, x in inside)
            checked += bool(inside)
    assert checked >= 6
    assert len(load_coco(out / "test" / "images", out / "test" / "instances.json")) == 3
    again = make_canvases(tiny_tar, tmp_path / "again", {"train": 6, "test": 3}, size=96, scale=(24, 40), quality=95)
    read = lambda root: json.loads((root / "train" / "instances.json").read_text())["annotations"]  # noqa: E731
    assert read(again) == read(out)  # the same seed, the same set


def test_bad_settings_are_one_line(tiny_tar, tmp_path):
    with pytest.raises(DataError, match="bad canvas settings"):
        make_canvases(tiny_tar, tmp_path / "x", {"train": 1}, size=64, scale=(32, 128))
    with pytest.raises(DataError, match="has no val images"):
        make_canvases(tiny_tar, tmp_path / "x", {"val": 1}, size=96, scale=(24, 40))
    with pytest.raises(DataError, match=r"data not found: .*missing\.tar"):
        make_canvases(tmp_path / "missing.tar", tmp_path / "x", {"train": 1})
    (tmp_path / "photo.png").write_bytes(b"not a tar")
    with pytest.raises(DataError, match=r"photo\.png: expected a folder or a \.tar"):
        make_canvases(tmp_path / "photo.png", tmp_path / "x", {"train": 1})
    (tmp_path / "fake.tar").write_bytes(b"not a tar")
    with pytest.raises(DataError, match=r"^cannot read tar .*fake\.tar: [^\n]*$"):
        make_canvases(tmp_path / "fake.tar", tmp_path / "x", {"train": 1})
    with pytest.raises(DataError, match="no train/ folder in"):
        make_canvases(tmp_path, tmp_path / "x", {"train": 1})
    with pytest.raises(ConfigError, match="cannot write to --out"):
        make_canvases(tiny_tar, tmp_path / "photo.png", {"train": 1}, size=96, scale=(24, 40))


def test_an_unreadable_image_in_the_tar_is_one_line(tmp_path):
    import io
    import tarfile

    path = tmp_path / "broken.tar"
    with tarfile.open(path, "w") as tar:
        for split in ("train", "test"):
            info = tarfile.TarInfo(f"{split}/cat/bad.png")
            info.size = 4
            tar.addfile(info, io.BytesIO(b"junk"))
    with pytest.raises(DataError, match=r"cannot read train/cat/bad\.png in .*broken\.tar as an image"):
        make_canvases(path, tmp_path / "x", {"train": 1}, size=96, scale=(24, 40))


def test_a_folder_gives_the_canvases_of_its_tar(tiny_tar, tmp_path):
    """A folder is read as `--data` reads one (train/ and test/ under it, or under one folder wrapping them), and
    lists its images in the tar's order: the same seed gives the same set."""
    import tarfile

    with tarfile.open(tiny_tar) as tar:
        tar.extractall(tmp_path / "wrapped" / "cifar", filter="data")
    a = make_canvases(tiny_tar, tmp_path / "a", {"train": 4, "test": 2}, size=96, scale=(24, 40))
    b = make_canvases(tmp_path / "wrapped", tmp_path / "b", {"train": 4, "test": 2}, size=96, scale=(24, 40))
    for split in ("train", "test"):
        boxes = [json.loads((root / split / "instances.json").read_text())["annotations"] for root in (a, b)]
        assert boxes[0] == boxes[1] and len(boxes[0]) >= 2
        first = [(root / split / "images" / "000000.jpg").read_bytes() for root in (a, b)]
        assert first[0] == first[1]


def test_make_dataset_from_the_command_line(tiny_tar, tmp_path, capsys):
    from reslab.cli import main

    out = tmp_path / "set"
    assert main(["detect", "make-dataset", "--data", str(tiny_tar), "--out", str(out), "--train", "2", "--test", "1",
                 "--size", "96", "--scale", "24,40"]) == 0  # fmt: skip
    assert "wrote 2 training and 1 test canvases" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["detect", "make-dataset", "--data", str(tiny_tar), "--out", str(out), "--seed", "-1"])
    assert "must be an integer >= 0, got '-1'" in capsys.readouterr().err
    assert len(load_coco(out / "test" / "images", out / "test" / "instances.json")) == 1
    assert main(["detect", "make-dataset", "--data", str(tiny_tar), "--out", str(out), "--scale", "big"]) == 2
    assert "--scale expects two sizes" in capsys.readouterr().err


def test_canvases_from_a_loaded_dataset(tmp_path):
    """``reslab reproduce detection`` makes its set from the data it holds in memory, whatever it was read from."""
    import torch

    from reslab.data.dataset import ImageDataset

    colours = torch.tensor(list(COLOURS.values()), dtype=torch.uint8)
    labels = torch.arange(6) % 3
    images = colours[labels][:, :, None, None].expand(6, 3, 32, 32).contiguous()
    ds = ImageDataset(images, labels, images[:3].clone(), labels[:3].clone(), list(COLOURS), "in memory")
    out = make_canvases(ds, tmp_path / "set", {"train": 3, "test": 2}, size=96, scale=(24, 40), quality=95)
    data = load_coco(out / "train" / "images", out / "train" / "instances.json")
    assert len(data) == 3 and data.classes == list(COLOURS)
    image, target = data[0]
    x1, y1, x2, y2 = target["boxes"][-1].int().tolist()  # the last pasted: nothing covers it
    colour = np.array(COLOURS[data.classes[int(target["labels"][-1]) - 1]])
    assert np.abs(image[:, (y1 + y2) // 2, (x1 + x2) // 2].numpy() - colour).max() < 40
    with pytest.raises(DataError, match="has no val images"):
        make_canvases(ds, tmp_path / "x", {"val": 1}, size=96, scale=(24, 40))
