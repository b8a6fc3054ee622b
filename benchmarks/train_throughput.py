"""Training throughput: reslab's loop (data + step) against the usual tutorial pipeline, same model, same run.

    python benchmarks/train_throughput.py --data ../shared/data/cifar10-jpeg.tar [--models resnet20,resnet56,resnet110]

For each model it prints images/s of
  * reslab: in-memory uint8 data, batched crop/flip, bf16 autocast (where the CPU has it), channels_last;
  * tutorial: torchvision ImageFolder + DataLoader(num_workers=2) + RandomCrop/Flip/ToTensor/Normalize, fp32 eager;
the ratio between them, and the fraction of the GEMM ceiling: the peak matmul rate measured in this run (bf16, or
fp32 if reslab trains in fp32) divided by the model's training multiply-adds per image (3x the forward: forward,
input grad, weight grad).

``--bound`` adds reslab's loop with every BatchNorm and ReLU replaced by the identity (timing only, the network is no
longer the paper's): an upper bound on what fusing or speeding up those memory-bound layers could give, and its ratio
to the tutorial pipeline.
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision import transforms

from reslab import complexity, create_model
from reslab.engine.config import TrainConfig
from reslab.engine.precision import resolve_precision
from reslab.engine.recipes import get_recipe
from reslab.engine.runinfo import machine
from reslab.engine.trainer import Trainer


def gemm_peak(dtype: torch.dtype, n: int = 2048, reps: int = 10, trials: int = 3) -> float:
    """Peak matmul rate in multiply-adds per second (best of a few trials: the clock ramps up)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    best = 0.0
    for _ in range(trials):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = max(best, reps * n**3 / (time.perf_counter() - t))
    return best


def reslab_rate(
    model: str,
    data: str,
    batch: int,
    steps: int,
    warmup: int,
    precision: str,
    channels_last: bool = True,
    compile: bool = False,
    strip_bn_relu: bool = False,
) -> float:
    cfg = TrainConfig(model=model, data=data, recipe=get_recipe("paper", batch_size=batch, iterations=10**6),
                      precision=precision, channels_last=channels_last, device="cpu", compile=compile,
                      out=tempfile.mkdtemp(), progress=False)  # fmt: skip
    tr = Trainer(cfg)
    if strip_bn_relu:
        strip(tr.model, (nn.BatchNorm2d, nn.ReLU))
    stats = torch.zeros(3)
    tr.net.train()
    for i in range(warmup + steps):
        if i == warmup:
            t = time.perf_counter()
        tr._set_lr()
        tr._step(*tr._next_batch(), stats)
        tr.iteration += 1
    stats.tolist()  # the loop's host sync, once
    return steps * batch / (time.perf_counter() - t)


def strip(model: nn.Module, kinds: tuple[type[nn.Module], ...]) -> None:
    """Replace every submodule of the given kinds by the identity, in place."""
    for name, child in model.named_children():
        if isinstance(child, kinds):
            setattr(model, name, nn.Identity())
        else:
            strip(child, kinds)


def tutorial_rate(model_name: str, root: Path, batch: int, steps: int, warmup: int) -> float:
    tf = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ])  # fmt: skip
    folder = torchvision.datasets.ImageFolder(root / "train", tf)
    loader = torch.utils.data.DataLoader(
        folder, batch_size=batch, shuffle=True, num_workers=2, drop_last=True, persistent_workers=True
    )
    model = create_model(model_name)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    crit = nn.CrossEntropyLoss()
    done = 0
    while done < warmup + steps:
        for x, y in loader:
            if done == warmup:
                t = time.perf_counter()
            loss = crit(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == warmup + steps:
                break
    return steps * batch / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="ImageFolder .tar (e.g. ../shared/data/cifar10-jpeg.tar)")
    ap.add_argument("--models", default="resnet20,resnet56,resnet110")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--skip-tutorial", action="store_true")
    ap.add_argument("--bound", action="store_true", help="also time the loop with BN and ReLU removed (upper bound)")
    ap.add_argument("--channels-last", choices=["true", "false"], default="true", help="reslab's memory format")
    ap.add_argument("--compile", action="store_true", help="torch.compile reslab's model (as `reslab train --compile`)")
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.batch < 1:
        ap.error("--steps and --batch must be >= 1 and --warmup >= 0")
    if not Path(args.data).is_file():
        ap.error(f"--data {args.data}: not a file (an ImageFolder .tar, e.g. ../shared/data/cifar10-jpeg.tar)")

    precision = resolve_precision(args.precision, torch.device("cpu"))
    bf16, fp32 = gemm_peak(torch.bfloat16), gemm_peak(torch.float32)
    peak = bf16 if precision == "bf16" else fp32  # the ceiling of the precision reslab trains in
    print(f"machine: {machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; reslab in {precision}")
    print(f"GEMM peak measured now: bf16 {2 * bf16 / 1e9:.0f} GFLOP/s, fp32 {2 * fp32 / 1e9:.0f} GFLOP/s")
    root = None
    if not args.skip_tutorial:
        tmp = tempfile.mkdtemp()
        with tarfile.open(args.data) as tar:
            tar.extractall(tmp, filter="data")
        root = next(p.parent for p in Path(tmp).rglob("train") if p.is_dir())
    heads = ("model", "reslab img/s", "tutorial img/s", "ratio", "ceiling img/s", "of ceiling")
    heads += ("no BN/ReLU img/s", "its ratio") if args.bound else ()
    print(" ".join(f"{h:>16}" for h in heads))
    for name in args.models.split(","):
        macs = complexity(create_model(name), (3, 32, 32))["macs"]
        ceiling = peak / (3 * macs)

        def rate(strip_bn_relu: bool = False, name: str = name) -> float:
            return reslab_rate(name, args.data, args.batch, args.steps, args.warmup, args.precision,
                               channels_last=args.channels_last == "true", compile=args.compile,
                               strip_bn_relu=strip_bn_relu)  # fmt: skip

        # With --bound every rate is the best of two alternating measurements (the tutorial's too, so the ratios stay
        # fair): this machine's speed drifts within minutes, and the bound is only useful next to its own full loop.
        rounds = 2 if args.bound else 1
        ours = bound = 0.0
        theirs = float("nan") if root is None else 0.0
        for _ in range(rounds):
            ours = max(ours, rate())
            bound = max(bound, rate(True)) if args.bound else bound
            if root is not None:
                theirs = max(theirs, tutorial_rate(name, root, args.batch, args.steps, args.warmup))
        row = (name, f"{ours:.0f}", f"{theirs:.0f}", f"{ours / theirs:.2f}", f"{ceiling:.0f}", f"{ours / ceiling:.1%}")
        row += (f"{bound:.0f}", f"{bound / theirs:.2f}") if args.bound else ()
        print(" ".join(f"{v:>16}" for v in row))


if __name__ == "__main__":
    main()
