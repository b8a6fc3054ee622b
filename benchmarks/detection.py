"""Detection speed on this machine: reslab's Faster R-CNN C4 and FPN against torchvision's, in one run.

    python benchmarks/detection.py [--backbone resnet50] [--size 256] [--batch 2] [--seconds 20]
        [--out docs/results/benchmarks/detection]

Images/s of a training step (forward with targets, backward, SGD) and of inference (300 proposals, as the paper
tested), on random canvases of ``--size`` pixels with 3 boxes each, for
  * reslab C4: ``create_detector("fasterrcnn_<backbone>_c4")`` (conv5_x run per RoI, Sec. 4.3 / Appendix A);
  * reslab FPN: ``create_detector("fasterrcnn_<backbone>_fpn")``;
  * reference: torchvision's ``fasterrcnn_resnet50_fpn`` with random weights and the same image size and
    proposal numbers;
each with ``--precision`` (auto: bf16 autocast where the CPU has native bf16), and its ratio to the reference.
Random weights: the speed does not depend on them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
from results import Results  # benchmarks/ is on the path when run as a script
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from reslab.detection import create_detector
from reslab.engine.precision import autocast, resolve_precision


def batch(n: int, size: int, gen: torch.Generator) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    images = [torch.rand(3, size, size, generator=gen) for _ in range(n)]
    targets = []
    for _ in range(n):
        xy = torch.randint(0, size // 2, (3, 2), generator=gen).float()
        wh = torch.randint(size // 8, size // 2, (3, 2), generator=gen).float()
        targets.append({"boxes": torch.cat([xy, xy + wh], 1), "labels": torch.randint(1, 11, (3,), generator=gen)})
    return images, targets


def timed(step: Callable[[], None], images: int, seconds: float) -> float:
    step()  # warm-up (allocations, first-call work)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        step()
        n += images
    return n / (time.perf_counter() - t)


def rates(model: torch.nn.Module, n: int, size: int, seconds: float, precision: str) -> tuple[float, float]:
    gen = torch.Generator().manual_seed(0)
    images, targets = batch(n, size, gen)
    model = model.to(memory_format=torch.channels_last)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-4, momentum=0.9)
    device = torch.device("cpu")

    def train_step() -> None:
        model.train()
        with autocast(precision, device):
            loss = sum(model(images, targets).values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def infer() -> None:
        model.eval()
        with torch.inference_mode(), autocast(precision, device):
            model(images)

    return timed(train_step, n, seconds), timed(infer, n, seconds)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--size", type=int, default=256, help="canvas side (the CIFAR-canvas set's default)")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--precision", default="auto")
    p.add_argument("--out", default=None)
    a = p.parse_args()
    res = Results("detection", a.out)
    precision = resolve_precision(a.precision, torch.device("cpu"))
    res.print(f"machine: {res.info['machine']}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
              f"{a.size}x{a.size} images, batch {a.batch}, {precision}, channels_last, random weights")  # fmt: skip
    sizes = dict(min_size=a.size, max_size=a.size)
    models = {
        "torchvision fasterrcnn_resnet50_fpn (reference)": lambda: fasterrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=11, rpn_post_nms_top_n_test=300,
            box_batch_size_per_image=128, **sizes),
        f"reslab fasterrcnn_{a.backbone}_c4": lambda: create_detector(f"fasterrcnn_{a.backbone}_c4", 10, **sizes),
        f"reslab fasterrcnn_{a.backbone}_fpn": lambda: create_detector(f"fasterrcnn_{a.backbone}_fpn", 10, **sizes),
    }  # fmt: skip
    ref = None
    for label, build in models.items():
        torch.manual_seed(0)
        train_rate, infer_rate = rates(build(), a.batch, a.size, a.seconds, precision)
        ref = ref or (train_rate, infer_rate)
        res.print(f"{label:52s} train {train_rate:7.2f} img/s ({train_rate / ref[0]:.2f}x)   "
                  f"inference {infer_rate:7.2f} img/s ({infer_rate / ref[1]:.2f}x)")  # fmt: skip
        res.row({"model": label, "train_img_per_s": train_rate, "inference_img_per_s": infer_rate,
                 "train_ratio": train_rate / ref[0], "inference_ratio": infer_rate / ref[1], "size": a.size,
                 "batch": a.batch, "precision": precision})  # fmt: skip
    res.save()


if __name__ == "__main__":
    main()
