"""Batched augmentation and the resumable, sharded batch stream."""

import torch

from reslab.data import batches
from reslab.data.batches import BatchStream, normalize, pixel_mean, random_crop_flip


def images(n=16, size=8):
    gen = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen), torch.arange(n) % 10


def test_pixel_mean_is_per_pixel():
    x, _ = images()
    torch.testing.assert_close(pixel_mean(x), x.double().mean(0).float() / 255)


def test_crop_and_flip_are_exact_crops_of_the_zero_padded_image():
    x = torch.randn(64, 3, 8, 8)
    out = random_crop_flip(x, torch.Generator().manual_seed(1), pad=4)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    offsets, flipped = set(), 0
    for i in range(len(x)):
        crops = {(dy, dx): padded[i, :, dy : dy + 8, dx : dx + 8] for dy in range(9) for dx in range(9)}
        match = [(k, False) for k, c in crops.items() if torch.equal(out[i], c)]
        match += [(k, True) for k, c in crops.items() if torch.equal(out[i], c.flip(2))]
        assert match, f"image {i} is not a (mirrored) crop of its padded original"
        offsets.add(match[0][0])
        flipped += match[0][1]
    assert 10 < flipped < 54  # about half are mirrored
    assert len(offsets) > 20  # offsets are drawn per image, not per batch


def test_stream_is_deterministic_and_covers_each_epoch():
    x, y = images()
    mean = pixel_mean(x)
    a = BatchStream(x, y, 4, mean, seed=3, augment=False)
    b = BatchStream(x, y, 4, mean, seed=3, augment=False)
    seen = []
    for _ in range(a.batches_per_epoch):
        xa, ya = next(a)
        xb, yb = next(b)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        seen.extend(ya.tolist())
    assert sorted(seen) == sorted(y.tolist())  # one epoch = every image once
    other = BatchStream(x, y, 4, mean, seed=4, augment=False)
    assert not torch.equal(next(other)[1], next(BatchStream(x, y, 4, mean, seed=3, augment=False))[1])


def test_stream_resumes_exactly():
    x, y = images()
    mean = pixel_mean(x)
    straight = BatchStream(x, y, 4, mean, seed=1)
    expected = [next(straight) for _ in range(10)]
    first = BatchStream(x, y, 4, mean, seed=1)
    got = [next(first) for _ in range(5)]
    resumed = BatchStream(x, y, 4, mean, seed=1)
    resumed.load_state_dict(first.state_dict())
    got += [next(resumed) for _ in range(5)]
    for (xe, ye), (xg, yg) in zip(expected, got):
        assert torch.equal(xe, xg) and torch.equal(ye, yg)


def test_rank_shards_make_up_the_global_batch():
    x, y = images()
    mean = pixel_mean(x)
    whole = BatchStream(x, y, 8, mean, seed=2)
    ranks = [BatchStream(x, y, 8, mean, seed=2, rank=r, world=2) for r in range(2)]
    for _ in range(5):
        xw, yw = next(whole)
        parts = [next(s) for s in ranks]
        assert torch.equal(torch.cat([p[0] for p in parts]), xw)
        assert torch.equal(torch.cat([p[1] for p in parts]), yw)


def test_normalize_subtracts_the_mean_image():
    x, _ = images()
    mean = pixel_mean(x)
    assert normalize(x, mean).mean(0).abs().max() < 1e-5


def mirrored(stream, x, epochs):
    """Per epoch, which images (labelled by their index) the stream mirrored; needs crops fixed at the centre."""
    out = []
    for _ in range(epochs):
        flips = torch.zeros(len(x), dtype=torch.bool)
        for _ in range(stream.batches_per_epoch):
            xb, yb = next(stream)
            for img, i in zip(xb, yb.tolist()):
                flips[i] = not torch.allclose(img, normalize(x[i : i + 1], stream.mean)[0])
        out.append(flips)
    return out


def test_alternate_flip_inverts_every_image_each_epoch(monkeypatch):
    original = batches.draw_crops_flips

    def centred(n, gen, pad=4, flip=True):  # the same random draws, with the crop offsets fixed at the centre
        params = original(n, gen, pad, flip)
        params[:2] = pad
        return params

    monkeypatch.setattr(batches, "draw_crops_flips", centred)
    x, _ = images(n=32)
    y, mean = torch.arange(32), pixel_mean(x)
    alternate = mirrored(BatchStream(x, y, 8, mean, seed=5, alternate_flips=True), x, 3)
    assert 4 < int(alternate[0].sum()) < 28  # a random half to start with
    assert torch.equal(alternate[1], ~alternate[0]) and torch.equal(alternate[2], alternate[0])
    random = mirrored(BatchStream(x, y, 8, mean, seed=5), x, 3)
    assert not torch.equal(random[1], ~random[0])  # the paper's flips are drawn afresh each epoch
