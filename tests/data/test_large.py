"""The large-image path: layouts, streaming with exact resume and sharding, unreadable images, the test views."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF
from PIL import Image
from torch import nn

from reslab.data.large import open_large, subset_index
from reslab.data.loader import EvalStream, StreamingBatches, estimate_pixel_mean
from reslab.data.views import (
    LargeAugment,
    _rrc_box,
    center_view,
    crop_view,
    decode,
    decode_jpegs,
    preset,
    resize_short,
    train_plan,
    train_view,
)
from reslab.errors import ConfigError, DataError
from reslab.tasks.classification import evaluate

AUG = preset("imagenet-paper", crop=32)


def _content(split) -> list[tuple[int, str]]:
    return sorted((int(split.labels[i]), hashlib.sha1(split.read(i)).hexdigest()) for i in range(len(split)))


def test_every_layout_reads_the_same_images(large_data):
    ref = open_large(large_data("folder"))
    assert ref.classes == ["n01", "n02", "n03"] and len(ref.splits["train"]) == 24 and len(ref.splits["val"]) == 9
    for layout in ("tar", "shards", "flat-val"):
        other = open_large(large_data(layout))
        assert other.classes == ref.classes, layout
        for split in ("train", "val"):
            assert _content(other.splits[split]) == _content(ref.splits[split]), (layout, split)


def test_layout_errors_are_one_line(large_data, tmp_path):
    folder = large_data("folder")
    gz = tmp_path / "data.tar.gz"
    with tarfile.open(gz, "w:gz") as tar:
        tar.add(folder / "train", arcname="train")
    with pytest.raises(DataError, match=r"compressed.*decompress"):
        open_large(gz)
    flat = large_data("flat-val")
    flat_tar = tmp_path / "flat.tar"
    with tarfile.open(flat_tar, "w") as tar:
        tar.add(flat, arcname="imagenet")
    with pytest.raises(DataError, match=r"has a flat val/ .* read from a folder, not a tar: extract it"):
        open_large(flat_tar)
    (flat / "LOC_val_solution.csv").rename(flat / "ILSVRC2012_validation_ground_truth.txt")
    with pytest.raises(DataError, match="ILSVRC id, not synset"):
        open_large(flat)
    (flat / "ILSVRC2012_validation_ground_truth.txt").unlink()
    with pytest.raises(DataError, match="no labels file"):
        open_large(flat)
    shards = large_data("shards")
    with tarfile.open(shards / "val" / "shard-000001.tar", "w") as tar:
        info = tarfile.TarInfo("lonely.jpg")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    with pytest.raises(DataError, match=r"'lonely' has an image but no \.cls"):
        open_large(shards)
    with pytest.raises(DataError, match="data not found"):
        open_large(tmp_path / "nowhere")


def test_subset_is_sorted_and_seed_independent(large_data):
    train = open_large(large_data("folder")).splits["train"]
    a, b = subset_index(train, 10), subset_index(train, 10)
    names = [a.name(i) for i in range(len(a))]
    assert list(a.names) == list(b.names) and len(a) == 10 and names == sorted(names)


def test_val_is_preferred_to_an_unlabelled_test_folder(large_data):
    # Kaggle's ILSVRC layout: train/<class>/, a flat val/ with LOC_val_solution.csv, and a flat, unlabelled test/.
    root = large_data("flat-val")
    (root / "test").mkdir()
    (root / "test" / "ILSVRC2012_test_00000001.JPEG").write_bytes((root / "val" / "val_0000.jpg").read_bytes())
    (root / "val" / ".ipynb_checkpoints").mkdir()  # a hidden folder does not make val/ a folder of classes
    assert len(open_large(root).splits["val"]) == 9


def test_many_shards_keep_few_files_open(large_data, monkeypatch):
    import reslab.data.large as large

    monkeypatch.setattr(large, "MAX_OPEN_TARS", 2)
    train = open_large(large_data("shards")).splits["train"]  # 3 shards
    assert len(train.containers) == 3
    order = [0, 23, 12, 1, 22, 13] * 3
    assert [hashlib.sha1(train.read(i)).hexdigest() for i in order] == [
        hashlib.sha1(train.read(i)).hexdigest() for i in order]  # fmt: skip
    assert len(train._handles) == 2


def _stream(index, **kw) -> StreamingBatches:
    mean = torch.zeros(3, 1, 1)
    return StreamingBatches(index, AUG, 4, mean, torch.ones(3, 1, 1), seed=3, with_ids=True, channels_last=False, **kw)


def _take(stream, n):
    it = iter(stream)
    return [next(it) for _ in range(n)]


def test_mid_epoch_resume_reads_the_rest_of_the_epoch_exactly(large_data):
    train = open_large(large_data("shards")).splits["train"]  # 24 images: 6 batches of 4 per epoch
    straight = _take(_stream(train), 9)  # one epoch and a half
    first = _stream(train, workers=2)
    head = _take(first, 2)
    resumed = _stream(train, workers=2)
    resumed.load_state_dict(first.state_dict())
    tail = _take(resumed, 7)
    for (x, y, ids), (x2, y2, ids2) in zip(straight, head + tail, strict=True):
        assert torch.equal(ids, ids2) and torch.equal(y, y2) and torch.equal(x, x2)  # workers change nothing
    epoch = torch.cat([ids for _, _, ids in straight[:6]])
    assert sorted(epoch.tolist()) == list(range(24))  # each image once per epoch, none twice, none skipped
    assert torch.cat([ids for _, _, ids in straight[6:]]).tolist() != epoch[:12].tolist()  # a new order


def test_ranks_read_disjoint_halves_of_each_global_batch(large_data):
    train = open_large(large_data("folder")).splits["train"]
    one = _take(_stream(train), 6)
    ranks = [_take(_stream(train, rank=r, world=2), 6) for r in (0, 1)]
    for b in range(6):
        both = torch.cat([ranks[0][b][2], ranks[1][b][2]])
        assert torch.equal(both, one[b][2])
        assert torch.equal(torch.cat([ranks[0][b][0], ranks[1][b][0]]), one[b][0])


def test_unreadable_images_are_replaced_counted_or_refused_with_strict(large_data):
    root = large_data("folder")
    bad = sorted((root / "train" / "n02").iterdir())[0]
    bad.write_bytes(b"not an image")
    train = open_large(root).splits["train"]
    k = [train.name(i) for i in range(len(train))].index(f"train/n02/{bad.name}")
    stream = _stream(train)
    with pytest.warns(UserWarning, match=f"skipped unreadable image train/n02/{bad.name}"):
        batches = _take(stream, 6)
    ids = torch.cat([i for _, _, i in batches]).tolist()
    # every batch keeps its size; the unreadable image's place goes to the next one in index order
    assert all(len(y) == 4 for _, y, _ in batches) and stream.skips.count == 1
    assert k not in ids and ids.count(k + 1) == 2
    with pytest.raises(DataError, match=f"unreadable image train/n02/{bad.name}"):
        _take(_stream(train, strict=True), 6)


def test_a_broken_dataset_stops_instead_of_looping(large_data):
    root = large_data("folder")
    for f in (root / "train").rglob("*.*"):
        f.write_bytes(b"broken")
    with pytest.raises(DataError, match="16 training images in a row are unreadable"), pytest.warns(UserWarning):
        _take(_stream(open_large(root).splits["train"]), 1)


def test_train_view_matches_the_paper_recipe_in_size_and_is_deterministic(large_data):
    train = open_large(large_data("folder")).splits["train"]
    data = train.read(0)
    a = train_view(data, AUG, np.random.default_rng([1, 2, 3]))
    b = train_view(data, AUG, np.random.default_rng([1, 2, 3]))
    assert a[0].shape == (3, 32, 32) and torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert AUG.short_min == round(256 / 7) and AUG.short_max == round(480 / 7) and AUG.scales()[-1] == round(640 / 7)
    for w, h in ((1000, 300), (2000, 100), (100, 2000), (300, 300)):  # the fallback too stays inside the image
        for seed in range(200):
            x0, y0, x1, y1 = _rrc_box(w, h, np.random.default_rng(seed))
            assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h, (w, h, seed)
            assert 3 / 4 - 0.02 <= (x1 - x0) / (y1 - y0) <= 4 / 3 + 0.02 or (w, h) == (300, 300)
    rrc = preset("imagenet-torchvision", 32)
    assert rrc.style == "rrc" and rrc.lighting == 0 and train_view(data, rrc, np.random.default_rng(0))[0].shape == (
        3, 32, 32)  # fmt: skip
    with pytest.raises(ConfigError, match="unknown large-image augmentation"):
        preset("imagenet-fancy")


def test_jpeg_is_decoded_at_reduced_scale_only_when_allowed():
    buf = io.BytesIO()
    Image.fromarray(np.full((400, 600, 3), 128, np.uint8)).save(buf, "JPEG")
    assert decode(buf.getvalue(), 1.0).shape == (3, 400, 600)
    assert decode(buf.getvalue(), 0.3).shape == (3, 200, 300)  # 1/2 is the largest reduction that keeps >= 30%
    assert decode(buf.getvalue(), 0.7).shape == (3, 400, 600)  # 6/8 would do, but is slower than a full decode
    assert decode(buf.getvalue(), 0.1).shape == (3, 50, 75)  # 1/8


def _tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)).eval()


def _by_hand(index, views_of) -> float:
    """The mean NLL of the softmax averaged over the views ``views_of(image bytes)`` makes (float [1,3,h,w])."""
    model, losses = _tiny_model(), []
    with torch.no_grad():
        for i in range(len(index)):
            views = views_of(index.read(i))
            probs = torch.stack([model((v - 0.5) / 0.25).softmax(1) for v in views]).mean(0)
            losses.append(-probs[0, int(index.labels[i])].log())
    return float(torch.stack(losses).mean())


def _resized(data: bytes, short: int) -> torch.Tensor:
    """The whole image at shorter side ``short`` (reslab's decode and resize: what is under test is the views)."""
    return resize_short(data, short)[None].float() / 255


def _reslab(index, mode, scales=None) -> float:
    stream = EvalStream(index, AUG, torch.full((3, 1, 1), 0.5), torch.full((3, 1, 1), 0.25), mode=mode, scales=scales,
                        batch_size=4)  # fmt: skip
    return evaluate(_tiny_model(), stream, 3)["loss"]


def test_ten_crop_is_the_mean_over_alexnets_ten_explicit_crops(large_data):
    val = open_large(large_data("folder")).splits["val"]  # JPEGs and PNGs
    square = lambda data: TF.center_crop(_resized(data, AUG.test_short), [AUG.test_short] * 2)  # noqa: E731
    hand = _by_hand(val, lambda data: TF.ten_crop(square(data), [AUG.crop, AUG.crop]))
    assert _reslab(val, "ten-crop") == pytest.approx(hand, abs=1e-5)
    centre = _by_hand(val, lambda img: [TF.center_crop(_resized(img, AUG.test_short), [AUG.crop, AUG.crop])])
    assert _reslab(val, "center") == pytest.approx(centre, abs=1e-5)


def test_multi_scale_is_the_mean_over_scales_and_mirrors(large_data):
    val = open_large(large_data("folder")).splits["val"]
    scales = (24, 40, 56)
    hand = _by_hand(val, lambda img: [v for s in scales for x in [_resized(img, s)] for v in (x, x.flip(3))])
    assert _reslab(val, "multi-scale", scales) == pytest.approx(hand, abs=1e-5)


def test_pixel_mean_is_the_mean_of_centre_views(large_data):
    val = open_large(large_data("folder")).splits["val"]
    mean = estimate_pixel_mean(val, AUG, samples=1000, batch_size=4)  # more samples than images: all of them
    views = torch.stack([center_view(val.read(i), AUG) for i in range(len(val))]).double()
    expected = (views.mean(0) / 255).float()
    assert mean.shape == (3, 32, 32) and torch.allclose(mean, expected, atol=1e-6)
    with pytest.raises(ConfigError, match="bad sizes"):
        LargeAugment(crop=300)


# -- decoding on the device (--device-decode), tested on the CPU ---------------------------------------------------
def test_device_decoding_gives_the_cpu_workers_views(large_data):
    """The same crop boxes, mirrors and lighting (one plan for both paths), pixels within decoder rounding: here no
    view allows a reduced decode, so both paths decode at full size (PNGs are decoded by the workers either way)."""
    index = open_large(large_data("folder")).splits["train"]
    cpu = _take(_stream(index), 3)
    dev = _take(_stream(index, device_decode=True), 3)
    for (x, y, ids), (x2, y2, ids2) in zip(cpu, dev, strict=True):
        assert torch.equal(ids, ids2) and torch.equal(y, y2)
        assert (x - x2).abs().max() <= 2 / 255 + 1e-6  # two grey levels (this stream's std is 1)


def test_device_decoding_keeps_the_boxes_where_the_cpu_path_decodes_reduced(tmp_path):
    """A large photo whose crop lets the CPU path decode at 1/4 scale: the device decodes at full size, from the same
    box, so the views differ only by the reduced decode's smoothing."""
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 255, 1200)[None, :, None] * np.ones((900, 1, 3))
    img = (ramp + rng.normal(0, 4, ramp.shape)).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=90)
    data = buf.getvalue()
    aug = preset("imagenet-paper", 64)

    for seed in range(4):
        plan = train_plan(1200, 900, aug, np.random.default_rng(seed))
        cpu, _ = train_view(data, aug, np.random.default_rng(seed))
        assert plan.need <= 0.25  # the CPU path decoded at 1/4 scale or less
        full = decode_jpegs([torch.frombuffer(bytearray(data), dtype=torch.uint8)], "cpu", ["photo"])[0]
        dev = crop_view(full, plan, 1200, 64)
        assert dev.shape == cpu.shape == (3, 64, 64)
        assert (dev.float() - cpu.float()).abs().mean() < 3  # the same region of a ramp: the same levels


def test_device_decoding_names_a_jpeg_nothing_can_decode(large_data):
    """A header that reads but pixels that do not: the batch is retried image by image, then on the CPU, and what
    nothing decodes is named (a file whose header does not read is replaced by the workers, as on the CPU path)."""
    root = large_data("folder", n_train=6, n_val=3)
    good = sorted((root / "train").rglob("*.jpg"))[0].read_bytes()
    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in (good, b"\xff\xd8\xff\xe0" + bytes(300))]
    assert len(decode_jpegs(tensors[:1] * 2, "cpu", ["a", "b"])) == 2
    with pytest.raises(DataError, match=r"broken\.jpg: cannot be decoded"):
        decode_jpegs(tensors, "cpu", ["good.jpg", "broken.jpg"])
