"""ImageFolder directories and tars: layout, pixels, errors, resizing and the decode cache."""

from __future__ import annotations

import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from reslab.data import folders, load_dataset
from reslab.data.folders import load_image_folder
from reslab.errors import DataError

REPO_ROOT = Path(__file__).resolve().parents[2]
REAL_TAR = REPO_ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar"


def assert_matches(ds, expected: dict) -> None:
    assert ds.classes == expected["classes"]
    for field in ("train_images", "train_labels", "test_images", "test_labels"):
        assert torch.equal(getattr(ds, field), torch.from_numpy(expected[field])), field
    assert ds.train_images.is_contiguous() and ds.test_images.is_contiguous()


def test_directory_exact_pixels_labels_and_class_order(image_tree, tmp_path):
    root, expected = image_tree
    ds = load_image_folder(root, tmp_path / "cache")
    assert ds.train_images.shape == (9, 3, 8, 8) and ds.train_images.dtype == torch.uint8
    assert ds.train_labels.tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert ds.name == "tree (ImageFolder)" and ds.num_classes == 3
    assert_matches(ds, expected)


def test_symlink_loop_is_walked_once(image_tree, tmp_path):
    root, expected = image_tree
    os.symlink(root / "train", root / "train" / "cat" / "loop")  # train/cat/loop -> train: a cycle
    assert_matches(load_image_folder(root, tmp_path / "cache"), expected)


@pytest.mark.parametrize(("suffix", "wrap"), [(".tar", None), (".tar", "cifar"), (".tar.gz", None), (".tgz", "top")])
def test_tar_variants_match_directory(image_tree, tmp_path, helpers, suffix, wrap):
    root, expected = image_tree
    tar = helpers.make_tar(root, tmp_path / f"data{suffix}", wrap)
    ds = load_dataset(str(tar), tmp_path / "cache")
    assert ds.name == f"data{suffix} (ImageFolder)"
    assert_matches(ds, expected)


def test_val_folder_used_when_no_test(image_tree, tmp_path):
    root, expected = image_tree
    (root / "test").rename(root / "val")
    assert_matches(load_image_folder(root, tmp_path / "cache"), expected)


def test_extensions_hidden_files_and_jpeg(tmp_path, helpers):
    root = tmp_path / "mixed"
    colour = np.full((8, 8, 3), (200, 40, 90), dtype=np.uint8)
    helpers.write_image(root / "train" / "a" / "x.JPG", colour)
    helpers.write_image(root / "train" / "a" / "y.bmp", colour)
    helpers.write_image(root / "train" / "b" / "z.webp", colour)
    helpers.write_image(root / "test" / "b" / "w.ppm", colour)
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    (root / "train" / "a" / "._x.JPG").write_bytes(b"macOS resource fork")  # would be "corrupt" if read
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = load_image_folder(root, tmp_path / "cache")
    assert ds.train_labels.tolist() == [0, 0, 1] and ds.test_labels.tolist() == [1]
    # JPEG is lossy: flat colour comes back within a few levels; BMP/PPM are exact.
    assert (ds.train_images[0].int() - torch.tensor([200, 40, 90])[:, None, None]).abs().max() <= 4
    assert torch.equal(ds.train_images[1], torch.from_numpy(colour.transpose(2, 0, 1)))
    assert torch.equal(ds.test_images[0], torch.from_numpy(colour.transpose(2, 0, 1)))


def test_corrupt_images_skipped_with_one_warning(image_tree, tmp_path, helpers):
    root, expected = image_tree
    for name in ("zz_bad1.png", "zz_bad2.jpg", "zz_bad3.png", "zz_bad4.png"):
        (root / "train" / "dog" / name).write_bytes(b"\x89PNG definitely not an image")
    png = (root / "train" / "cat" / "00.png").read_bytes()
    (root / "train" / "cat" / "01_truncated.png").write_bytes(png[: len(png) // 2])
    with pytest.warns(UserWarning, match=r"skipped 5 image\(s\) in .*: 5 unreadable \(") as record:
        ds = load_image_folder(root, tmp_path / "cache")
    assert len(record) == 1
    assert "01_truncated.png" in str(record[0].message) and "zz_bad1.png" in str(record[0].message)
    assert_matches(ds, expected)
    # The cache remembers the skipped files: warned again (not silently forgotten), and strict still refuses.
    with pytest.warns(UserWarning, match="skipped 5"):
        load_image_folder(root, tmp_path / "cache")
    with pytest.raises(DataError, match="unreadable image"):
        load_image_folder(root, tmp_path / "cache", strict=True)


def test_a_file_name_that_is_not_utf8_loads(image_tree, tmp_path):
    """File and folder names are bytes to the OS; names that are not UTF-8 arrive surrogate-escaped."""
    root, _ = image_tree
    bad_name = os.fsdecode(b"caf\xe9")  # Latin-1 bytes: not valid UTF-8
    (root / "train" / bad_name).mkdir()
    png = (root / "train" / "cat" / "00.png").read_bytes()
    (root / "train" / bad_name / os.fsdecode(b"\xff\xfe.png")).write_bytes(png)
    (root / "test" / bad_name).mkdir()
    (root / "test" / bad_name / "0.png").write_bytes(png)
    ds = load_image_folder(root, tmp_path / "cache")
    assert bad_name in ds.classes and len(ds.train_labels) == 10
    again = load_image_folder(root, tmp_path / "cache")  # the cache key and the cached class names work too
    assert again.classes == ds.classes and torch.equal(again.train_images, ds.train_images)


def _png(width: int, height: int, bit_depth: int, colour_type: int, rows: np.ndarray) -> bytes:
    """A PNG written by hand, so that the test controls the bit depth (Pillow writes 16-bit greys only)."""
    import struct
    import zlib

    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_16_bit_images_are_scaled_not_clipped(image_tree, tmp_path):
    """A 16-bit grey PNG keeps its high byte (as Pillow does for 16-bit RGB), instead of clipping to white."""
    root, _ = image_tree
    grey = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1000).astype(">u2")  # 0 .. 63000
    (root / "train" / "cat" / "16bit.png").write_bytes(_png(8, 8, 16, 0, grey))
    rgb = np.random.default_rng(0).integers(0, 65536, (8, 8, 3)).astype(">u2")
    (root / "train" / "cat" / "16bit_rgb.png").write_bytes(_png(8, 8, 16, 2, rgb))
    ds = load_image_folder(root, tmp_path / "cache")
    i = ds.train_labels.tolist().index(ds.classes.index("cat")) + 2  # after 00.png and 01.png, by name
    expected = torch.from_numpy((grey.astype(np.uint16) >> 8).astype(np.uint8))
    assert torch.equal(ds.train_images[i], expected.expand(3, 8, 8))
    assert torch.equal(ds.train_images[i + 1], torch.from_numpy((rgb.astype(np.uint16) >> 8).astype(np.uint8))
                       .permute(2, 0, 1))  # fmt: skip


def test_images_without_a_known_range_are_refused_with_a_count(image_tree, tmp_path):
    root, expected = image_tree
    from PIL import Image

    for i in range(2):  # 32-bit integer pixels: 0..255? 0..65535? 0..2**31? reslab does not guess
        Image.fromarray(np.full((8, 8), 70000 * (i + 1), np.int32), "I").save(root / "train" / "dog" / f"z{i}.tif")
    counted = r"skipped 2 image\(s\) .*2 unsupported: 32-bit integer pixels \(train/dog/z0"
    with pytest.warns(UserWarning, match=counted):
        assert_matches(load_image_folder(root, tmp_path / "cache"), expected)
    with pytest.raises(DataError, match=r"unsupported: 32-bit integer pixels image train/dog/z0\.tif"):
        load_image_folder(root, tmp_path / "cache2", strict=True)


def test_strict_fails_on_first_corrupt_image(image_tree, tmp_path):
    root, _ = image_tree
    bad = root / "train" / "ant" / "99.png"
    bad.write_bytes(b"garbage")
    with pytest.raises(DataError, match=f"unreadable image train/ant/99.png in {root}: "):
        load_image_folder(root, tmp_path / "cache", strict=True)
    assert not (tmp_path / "cache" / "folders").exists() or not any((tmp_path / "cache" / "folders").iterdir())


def test_layout_errors(image_tree, tmp_path, helpers):
    root, _ = image_tree
    cache = tmp_path / "cache"
    (root / "train" / "empty").mkdir()
    with pytest.raises(DataError, match=r"class folder .*train/empty has no images"):
        load_image_folder(root, cache)
    (root / "train" / "empty").rmdir()

    helpers.write_image(root / "test" / "zebra" / "0.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(DataError, match="classes not in train/: zebra"):
        load_image_folder(root, cache)
    shutil.rmtree(root / "test")
    with pytest.raises(DataError, match="no test/ or val/"):
        load_image_folder(root, cache)

    only_test = tmp_path / "only_test"
    helpers.make_tree(only_test, {"a": 1}, "test")
    with pytest.raises(DataError, match=f"no train/ folder in {only_test}"):
        load_image_folder(only_test, cache)
    with pytest.raises(DataError, match="no train/ folder"):
        load_image_folder(helpers.make_tar(only_test, tmp_path / "t.tar"), cache)


def test_all_unreadable_class_or_split(tmp_path, helpers):
    root = tmp_path / "d"
    helpers.make_tree(root, {"a": 2}, "train")
    helpers.make_tree(root, {"a": 1}, "test")
    (root / "train" / "b").mkdir()
    (root / "train" / "b" / "0.png").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"train/b in .* has no readable images"):
        load_image_folder(root, tmp_path / "cache")
    shutil.rmtree(root / "train" / "b")
    (root / "test" / "a" / "00.png").write_bytes(b"nope")
    with pytest.raises(DataError, match=r"no readable images in test/ of "):
        load_image_folder(root, tmp_path / "cache")


def test_unsupported_or_missing_path(tmp_path):
    (tmp_path / "data.zip").write_bytes(b"PK")
    with pytest.raises(DataError, match="unsupported data path"):
        load_dataset(str(tmp_path / "data.zip"), tmp_path)
    (tmp_path / "bad.tar").write_bytes(b"not a tar at all" * 100)
    with pytest.raises(DataError, match="cannot read tar"):
        load_dataset(str(tmp_path / "bad.tar"), tmp_path)
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        load_dataset(str(missing), tmp_path)
    assert str(err.value) == (
        f"data not found: {missing} (expected 'cifar10', 'synthetic[:N]', a folder with train/ and test/, or a .tar "
        "of one)"
    )


def test_mixed_sizes_need_image_size(image_tree, tmp_path, helpers):
    root, expected = image_tree
    helpers.write_image(root / "test" / "cat" / "big.png", np.zeros((16, 12, 3), np.uint8))
    with pytest.raises(DataError, match=r"is 12x16 but earlier images are 8x8.*--image-size S"):
        load_image_folder(root, tmp_path / "cache")
    ds = load_image_folder(root, tmp_path / "cache", image_size=4)
    assert ds.train_images.shape == (9, 3, 4, 4) and ds.test_images.shape == (5, 3, 4, 4)
    # Resizing to the size an image already has leaves it untouched.
    (root / "test" / "cat" / "big.png").unlink()
    assert_matches(load_image_folder(root, tmp_path / "cache", image_size=8), expected)


def test_resize_is_shorter_side_then_center_crop(tmp_path, helpers):
    # 8 high x 24 wide: red | green | blue thirds. Shorter side 8 -> 4 makes it 4x12; the center 4x4 is green.
    pixels = np.zeros((8, 24, 3), np.uint8)
    pixels[:, :8, 0] = pixels[:, 8:16, 1] = pixels[:, 16:, 2] = 255
    root = tmp_path / "r"
    for split in ("train", "test"):
        helpers.write_image(root / split / "a" / "0.png", pixels)
    img = load_image_folder(root, tmp_path / "cache", image_size=4).train_images[0].int()
    assert img.shape == (3, 4, 4)
    assert (img[1] > img[0]).all() and (img[1] > img[2]).all()
    assert (img[1, :, 1:3] == 255).all() and (img[0, :, 1:3] == 0).all() and (img[2, :, 1:3] == 0).all()


def test_cache_hit_does_not_decode(image_tree, tmp_path, helpers, monkeypatch):
    root, expected = image_tree
    tar = helpers.make_tar(root, tmp_path / "d.tar.gz")
    cache = tmp_path / "cache"
    for source in (root, tar):
        load_image_folder(source, cache)
    assert len(list((cache / "folders").glob("*.pt"))) == 2

    def no_decode(*args, **kwargs):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(folders, "decode_image", no_decode)
    for source in (root, tar):
        assert_matches(load_image_folder(source, cache), expected)
    assert sorted(p.name for p in (cache / "folders").iterdir()) == sorted(
        p.name for p in (cache / "folders").glob("*.pt")
    )  # no temp files left


def test_cache_key_follows_content_and_image_size(image_tree, tmp_path, helpers, monkeypatch):
    root, _ = image_tree
    cache = tmp_path / "cache"
    load_image_folder(root, cache)
    calls = []
    real = folders.decode_image
    monkeypatch.setattr(folders, "decode_image", lambda *a: calls.append(1) or real(*a))

    new = np.full((8, 8, 3), 7, np.uint8)
    target = root / "train" / "cat" / "00.png"
    st = target.stat()
    helpers.write_image(target, new)
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime, as `cp -p` or `rsync -a` would leave it
    ds = load_image_folder(root, cache)
    assert calls and torch.equal(ds.train_images[3], torch.from_numpy(new.transpose(2, 0, 1)))

    calls.clear()
    load_image_folder(root, cache, image_size=8)
    assert calls, "a different image_size must not reuse the cache"

    tar = helpers.make_tar(root, tmp_path / "d.tar")
    load_image_folder(tar, cache)
    helpers.write_image(target, new + 1)
    helpers.make_tar(root, tar)
    calls.clear()
    ds = load_image_folder(tar, cache)
    assert calls and ds.train_images[3].max().item() == 8
    assert len(list((cache / "folders").glob("*.pt"))) == 5


@pytest.mark.parametrize("garbage", [b"", b"not a torch file", None])
def test_corrupt_cache_is_rebuilt_with_warning(image_tree, tmp_path, garbage):
    root, expected = image_tree
    cache = tmp_path / "cache"
    load_image_folder(root, cache)
    (cache_file,) = (cache / "folders").glob("*.pt")
    if garbage is None:  # a readable file with the wrong contents
        torch.save({"format": "something else"}, cache_file)
    else:
        cache_file.write_bytes(garbage)
    with pytest.warns(UserWarning, match="rebuilding"):
        assert_matches(load_image_folder(root, cache), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert_matches(load_image_folder(root, cache), expected)


@pytest.mark.slow
@pytest.mark.skipif(not REAL_TAR.exists(), reason="shared/data/cifar10-jpeg.tar not present")
def test_real_cifar10_jpeg_tar(tmp_path, monkeypatch):
    ds = load_dataset(str(REAL_TAR), tmp_path)
    assert ds.train_images.shape == (50000, 3, 32, 32) and ds.test_images.shape == (10000, 3, 32, 32)
    assert ds.classes[0] == "airplane" and ds.classes[-1] == "truck" and ds.num_classes == 10
    assert torch.bincount(ds.train_labels).tolist() == [5000] * 10
    assert torch.bincount(ds.test_labels).tolist() == [1000] * 10
    assert ds.encoding == "JPEG q75" and ds.label == "CIFAR-10 (JPEG q75 copy)"  # read from the files, not the name
    real = folders.decode_image
    calls = []
    monkeypatch.setattr(folders, "decode_image", lambda *a: calls.append(1) or real(*a))
    again = load_dataset(str(REAL_TAR), tmp_path)  # the second load reads the cache: nothing is decoded
    assert calls == [] and torch.equal(again.test_images, ds.test_images)
    assert torch.equal(again.test_images, ds.test_images)


@pytest.mark.parametrize("quality", [75, 90, 30])
def test_jpeg_quality_is_read_from_the_quantisation_tables(tmp_path, quality):
    from PIL import Image

    rng = np.random.default_rng(quality)
    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    for split in ("train", "test"):
        for name in classes:
            img = Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
            (tmp_path / "d" / split / name).mkdir(parents=True)
            img.save(tmp_path / "d" / split / name / "0.jpg", quality=quality)
    ds = load_image_folder(tmp_path / "d", tmp_path / "cache")
    assert ds.encoding == f"JPEG q{quality}"
    assert ds.label == f"CIFAR-10 (JPEG q{quality} copy)"  # whatever the folder is called
    cached = load_image_folder(tmp_path / "d", tmp_path / "cache")
    assert cached.encoding == ds.encoding


def test_png_tree_is_labelled_by_its_name(image_tree, tmp_path):
    root, _ = image_tree
    ds = load_image_folder(root, tmp_path / "cache")
    assert ds.encoding == "PNG" and ds.label == ds.name
    assert folders.describe_encodings({"PNG": 3, "JPEG q75": 5}) == "mixed: JPEG q75 (5), PNG (3)"


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_far_larger_images_are_decoded_reduced_to_what_the_view_needs(fmt, monkeypatch):
    """A JPEG many times the target size is decoded through libjpeg's DCT scaling (never whole); any format is
    resized through an integer reduction first. The view stays within a few grey levels of the full-size path."""
    import io as _io

    from PIL import Image, JpegImagePlugin

    from reslab.data.folders import decode_image

    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).resize((2000, 1600))
    buf = _io.BytesIO()
    big.save(buf, fmt)
    drafts = []
    jpeg = JpegImagePlugin.JpegImageFile
    original = jpeg.draft
    monkeypatch.setattr(jpeg, "draft", lambda img, mode, size: drafts.append(size) or original(img, mode, size))
    view, _ = decode_image(buf.getvalue(), 64)
    assert bool(drafts) == (fmt == "JPEG") and all(min(s) >= 128 for s in drafts)
    with Image.open(_io.BytesIO(buf.getvalue())) as img:
        full = img.convert("RGB").resize((80, 64), Image.Resampling.BILINEAR).crop((8, 0, 72, 64))
    diff = np.abs(view.astype(int) - np.asarray(full).astype(int))
    assert view.shape == (64, 64, 3) and diff.mean() < 2.0
