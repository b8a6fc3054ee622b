"""Real photographs of ImageNet-like size, made from the CIFAR-10 JPEG copy (no ImageNet exists on our machines).

    python benchmarks/make_large_images.py --data ../shared/data/cifar10-jpeg.tar --out /tmp/cifar-large \
        [--short 96-128] [--train-per-class 500] [--val-per-class 100] [--quality 90] [--layout folder|shards]

Each CIFAR image (ImageFolder tar: train/<class>/*.jpg, test/<class>/*.jpg) is enlarged (bicubic) to a random shorter
side in ``--short`` and a random aspect ratio in [3/4, 4/3] (either orientation), given texture back (film-grain
noise and an unsharp mask, so the JPEG carries high-frequency content as a photo does and decodes at a photo's
cost), and saved as JPEG ``--quality``: train/<class>/ and val/<class>/ (CIFAR's test images), or WebDataset shards.
A tool for the benchmarks and the demonstration run, not part of reslab.
"""

from __future__ import annotations

import argparse
import io
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter


def enlarge(img: Image.Image, short: int, rng: np.random.Generator, quality: int) -> bytes:
    """``img`` at shorter side ``short`` with a random aspect ratio and texture, as JPEG bytes."""
    aspect = float(np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3))))
    w, h = (round(short * aspect), short) if aspect >= 1 else (short, round(short / aspect))
    big = img.convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
    big = big.filter(ImageFilter.UnsharpMask(radius=2, percent=80, threshold=2))
    grain = rng.normal(0, 6, (h, w, 1)) + rng.normal(0, 3, (h, w, 3))
    pixels = (np.asarray(big, dtype=np.float32) + grain).clip(0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def cifar_members(tar_path: Path) -> dict[str, dict[str, list[tarfile.TarInfo]]]:
    """split -> class -> members of the CIFAR ImageFolder tar, in name order."""
    out: dict[str, dict[str, list[tarfile.TarInfo]]] = {}
    with tarfile.open(tar_path) as tar:
        for m in tar.getmembers():
            parts = m.name.split("/")
            if m.isfile() and len(parts) >= 3 and parts[-3] in ("train", "test"):
                out.setdefault(parts[-3], {}).setdefault(parts[-2], []).append(m)
    return {s: {c: sorted(ms, key=lambda m: m.name) for c, ms in by.items()} for s, by in out.items()}


def make(data: Path, out: Path, short: tuple[int, int], per_class: dict[str, int], quality: int = 90,
         layout: str = "folder", seed: int = 0) -> Path:  # fmt: skip
    """Write the dataset (see the module doc) and return ``out``."""
    rng = np.random.default_rng(seed)
    members = cifar_members(data)
    classes = sorted(members["train"])
    with tarfile.open(data) as src:
        for split, dest in (("train", "train"), ("test", "val")):
            items = []
            for label, name in enumerate(classes):
                for m in members[split][name][: per_class[dest]]:
                    img = Image.open(io.BytesIO(src.extractfile(m).read()))
                    side = int(rng.integers(short[0], short[1] + 1))
                    items.append((name, label, Path(m.name).stem, enlarge(img, side, rng, quality)))
            _write(out / dest, items, layout, rng)
    if layout == "shards":
        (out / "classes.txt").write_text("\n".join(classes) + "\n")
    return out


def _write(folder: Path, items: list[tuple[str, int, str, bytes]], layout: str, rng: np.random.Generator) -> None:
    if layout == "folder":
        for name, _, stem, data in items:
            (folder / name).mkdir(parents=True, exist_ok=True)
            (folder / name / f"{stem}.jpg").write_bytes(data)
        return
    folder.mkdir(parents=True, exist_ok=True)
    order = rng.permutation(len(items))  # shards hold the classes mixed, as ImageNet's shards do
    per = 1000
    for s in range(0, len(items), per):
        with tarfile.open(folder / f"shard-{s // per:06d}.tar", "w") as tar:
            for k in order[s : s + per]:
                name, label, stem, data = items[k]
                for ext, payload in (("jpg", data), ("cls", str(label).encode())):
                    info = tarfile.TarInfo(f"{name}_{stem}.{ext}")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the CIFAR-10 ImageFolder tar")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--short", default="96-128", help="range of the shorter side, e.g. 96-128 or 375-375")
    p.add_argument("--train-per-class", type=int, default=500)
    p.add_argument("--val-per-class", type=int, default=100)
    p.add_argument("--quality", type=int, default=90)
    p.add_argument("--layout", choices=("folder", "shards"), default="folder")
    a = p.parse_args()
    lo, _, hi = a.short.partition("-")
    out = make(a.data, a.out, (int(lo), int(hi or lo)), {"train": a.train_per_class, "val": a.val_per_class},
               a.quality, a.layout)  # fmt: skip
    print(f"written: {out}")


if __name__ == "__main__":
    main()
