"""ImageNet-sized training data: reslab's streaming pipeline against torchvision's usual one, in the same run.

    python benchmarks/imagenet_data.py --data ../shared/data/cifar10-jpeg.tar [--images 800] [--rounds 2]
        [--step] [--out docs/results/benchmarks/imagenet_data]

The images are ImageNet-sized JPEGs (shorter side 375, aspect 3/4-4/3, quality 90) made from the CIFAR-10 JPEG
copy by benchmarks/make_large_images.py. It prints images/s of:
  * decoders, one process: PIL, PIL's draft mode (libjpeg's DCT scaling, here at 1/2), torchvision.io.decode_jpeg,
    and simplejpeg (libjpeg-turbo, which reslab uses) at full scale and with DCT scaling at 6/8 and 4/8 (what a
    training crop of shorter side 256-480 from a 375-pixel image lets reslab use: none to 6/8);
  * pipelines, one process and one thread ("per core"), then with DataLoader workers on every core:
      reslab imagenet-paper: decode, shorter side random in [256, 480] and a 224 crop resized straight from its
        source region, flip, PCA lighting, per-pixel mean, uint8 until the batch is assembled;
      reslab imagenet-paper, uint8: the same up to the uint8 batch the workers hand over (on a GPU machine the
        normalisation and lighting run on the GPU; on a CPU they cost the main process the difference);
      reslab imagenet-torchvision: the same with RandomResizedCrop and per-channel normalisation;
      torchvision reference: ImageFolder + RandomResizedCrop(224) + RandomHorizontalFlip + ToTensor + Normalize;
    and the ratio of each reslab pipeline to the reference measured beside it;
  * with ``--step``: ResNet-50 training images/s on this machine (reslab's trainer: the streamed data and the step,
    autocast in the precision `reslab train` picks, channels_last), and the step alone on one repeated batch.
Every rate is the best of ``--rounds`` alternating measurements (this machine's speed drifts within minutes).
"""

from __future__ import annotations

import argparse
import io
import itertools
import os
import tempfile
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import simplejpeg
import torch
import torchvision
from make_large_images import make  # benchmarks/ is on the path when run as a script
from PIL import Image
from results import Results
from torchvision import transforms

from reslab import build_trainer
from reslab.data.large import open_large
from reslab.data.loader import StreamingBatches, channel_stats, default_workers
from reslab.data.views import preset
from reslab.engine.config import TrainConfig
from reslab.engine.recipes import get_recipe


def rate(batches: Iterable, images: int, skip: int = 2) -> float:
    """Images/s over ``images`` images of ``batches``, after ``skip`` batches (worker start-up)."""
    it = iter(batches)
    for _ in range(skip):
        next(it)
    n, t = 0, time.perf_counter()
    while n < images:
        batch = next(it)
        n += len(batch["labels"] if isinstance(batch, dict) else batch[0])
    return n / (time.perf_counter() - t)


def endless(loader: Iterable) -> Iterable:
    return itertools.chain.from_iterable(itertools.repeat(loader))


def decoder_rates(files: list[Path]) -> dict[str, float]:
    blobs = [f.read_bytes() for f in files]

    def pil(data: bytes) -> None:
        Image.open(io.BytesIO(data)).convert("RGB").load()

    def draft(data: bytes) -> None:
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", (img.size[0] // 2, img.size[1] // 2))
        img.convert("RGB").load()

    def scaled(data: bytes, k: int) -> None:
        h, w = simplejpeg.decode_jpeg_header(data)[:2]
        simplejpeg.decode_jpeg(data, colorspace="RGB", min_height=h * k // 8, min_width=w * k // 8)

    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
    warnings.filterwarnings("ignore", category=DeprecationWarning)  # torchvision 0.29 deprecates its decoders
    cases = {"PIL": lambda i: pil(blobs[i]), "PIL draft 1/2": lambda i: draft(blobs[i]),
             "torchvision.io.decode_jpeg": lambda i: torchvision.io.decode_jpeg(tensors[i]),
             "simplejpeg (reslab's)": lambda i: scaled(blobs[i], 8),
             "simplejpeg at 6/8 scale": lambda i: scaled(blobs[i], 6),
             "simplejpeg at 4/8 scale": lambda i: scaled(blobs[i], 4)}  # fmt: skip
    out = {}
    for name, fn in cases.items():
        t = time.perf_counter()
        for i in range(len(blobs)):
            fn(i)
        out[name] = len(blobs) / (time.perf_counter() - t)
    return out


def reslab_batches(root: Path, augmentation: str, workers: int, batch: int) -> StreamingBatches:
    train = open_large(root).splits["train"]
    aug = preset(augmentation)
    mean, std = (torch.full((3, 224, 224), 0.45), None) if aug.normalization == "pixel" else channel_stats()
    return StreamingBatches(train, aug, batch, mean, std, workers=workers, channels_last=True)


def reference_batches(root: Path, workers: int, batch: int) -> Iterable:
    tf = transforms.Compose(
        [
            transforms.RandomResizedCrop(224),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ]
    )
    ds = torchvision.datasets.ImageFolder(str(root / "train"), transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers, drop_last=True,
                                         persistent_workers=workers > 0)  # fmt: skip
    return endless(loader)


def step_rates(root: Path, batch: int, seconds: float, workers: int,
               device_decode: bool = False) -> tuple[float, float, str]:  # fmt: skip
    config = TrainConfig(model="resnet50", data=str(root), recipe=get_recipe("imagenet-paper", batch_size=batch),
                         workers=workers, progress=False, device_decode=device_decode)  # fmt: skip
    trainer = build_trainer(config)
    trainer.total = 10**9

    def timed(feed) -> float:
        trainer.net.train()
        for _ in range(2):  # warm-up: allocator, kernels, workers
            trainer._step(trainer.task.prepare(feed(), 0))
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds:
            trainer._step(trainer.task.prepare(feed(), 0))
            n += batch
        return n / (time.perf_counter() - t)

    stream = iter(trainer.batches)
    fixed = next(stream)
    return timed(lambda: next(stream)), timed(lambda: fixed), trainer.precision


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the CIFAR-10 ImageFolder tar")
    p.add_argument("--images", type=int, default=800, help="training images to generate (and per measurement)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--step", action="store_true", help="also ResNet-50 training images/s")
    p.add_argument("--step-batch", type=int, default=32)
    p.add_argument("--step-seconds", type=float, default=30.0)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    res = Results("imagenet_data", a.out)
    cores = len(os.sched_getaffinity(0))
    workers = default_workers() + 1  # all cores: the main process only collects batches here
    with tempfile.TemporaryDirectory() as tmp:
        root = make(a.data, Path(tmp) / "large", (375, 375), {"train": a.images // 10, "val": 2})
        files = sorted((root / "train").rglob("*.jpg"))
        sizes = [Image.open(f).size for f in files[:200]]
        kb = sum(f.stat().st_size for f in files) / len(files) / 1e3
        res.print(f"{len(files)} training JPEGs, quality 90, mean size {np.mean([s[0] for s in sizes]):.0f}x"
                  f"{np.mean([s[1] for s in sizes]):.0f}, {kb:.0f} kB on average; {cores} cores")  # fmt: skip
        res.print()
        torch.set_num_threads(1)
        res.print("decoders, one process (images/s):")
        for name, r in decoder_rates(files).items():
            res.print(f"  {name:28s} {r:8.1f}")
            res.row({"kind": "decoder", "name": name, "img_per_s": r})
        res.print()
        pipelines = {
            "reslab imagenet-paper": lambda w: reslab_batches(root, "imagenet-paper", w, a.batch),
            "reslab imagenet-paper, uint8": lambda w: endless(
                reslab_batches(root, "imagenet-paper", w, a.batch).loader
            ),
            "reslab imagenet-torchvision": lambda w: reslab_batches(root, "imagenet-torchvision", w, a.batch),
            "torchvision reference": lambda w: reference_batches(root, w, a.batch),
        }
        for label, w in (("one process, one thread", 0), (f"{workers} DataLoader workers", workers)):
            best = dict.fromkeys(pipelines, 0.0)
            for _ in range(a.rounds):
                for name, build in pipelines.items():
                    best[name] = max(best[name], rate(build(w), a.images))
            ref = best["torchvision reference"]
            res.print(f"training pipelines, {label} (images/s; ratio to the reference):")
            for name, r in best.items():
                res.print(f"  {name:28s} {r:8.1f}   {r / ref:5.2f}x")
                res.row({"kind": "pipeline", "name": name, "workers": w, "img_per_s": r, "ratio": r / ref})
            res.print()
        if a.step:
            torch.set_num_threads(cores)
            data_step, step, precision = step_rates(root, a.step_batch, a.step_seconds, max(1, cores - 1))
            res.print(f"ResNet-50 training, batch {a.step_batch}, {precision} autocast, channels_last (images/s):")
            res.print(f"  streamed data + step ({max(1, cores - 1)} workers) {data_step:8.2f}")
            res.print(f"  step alone (one repeated batch)       {step:8.2f}")
            res.row({"kind": "resnet50", "data_and_step": data_step, "step": step, "batch": a.step_batch,
                     "precision": precision})  # fmt: skip
    res.save()


if __name__ == "__main__":
    main()
