"""Training throughput: reslab's loop (data + step) against the usual tutorial pipeline, same model, same run.

    python benchmarks/train_throughput.py --data ../shared/data/cifar10-jpeg.tar [--models resnet20,resnet56,resnet110]
        [--batches 128,256] [--precisions auto,fp32] [--bound] [--out docs/results/benchmarks/NAME]

For each model, batch size and precision it prints images/s of
  * reslab: `reslab.build_trainer` on the data in memory as uint8, batched crop/flip, autocast in the given precision
    (auto: bf16 where the CPU has it natively), channels_last, fused SGD: the loop `reslab train` runs;
  * tutorial: torchvision ImageFolder + DataLoader(num_workers=2) + RandomCrop/Flip/ToTensor/Normalize, fp32 eager,
    the same model and batch size;
the ratio between them, and the fraction of the GEMM ceiling: the peak matmul rate measured in this run (bf16, or
fp32 for an fp32 loop) divided by the model's training multiply-adds per image (3x the forward).

``--compile`` adds rows for the same loop with ``torch.compile`` (as ``reslab train --compile``), measured in the
same run as the eager ones. ``--bound`` adds reslab's loop with every BatchNorm and ReLU replaced by the identity
(timing only, the network is no longer the paper's): an upper bound on what fusing or speeding up those
memory-bound layers could give.
Every rate is the best of ``--rounds`` alternating measurements (the tutorial's too, so the ratios stay fair): this
machine's speed drifts within minutes. The table and a JSON of the rows go to ``--out`` (.md, .json).
"""

from __future__ import annotations

import argparse
import tarfile
import tempfile
import time
from pathlib import Path

import torch
import torchvision
from results import Results  # benchmarks/ is on the path when run as a script
from torch import nn
from torchvision import transforms

from reslab import build_trainer, complexity, create_model
from reslab.data import load_dataset
from reslab.data.dataset import ImageDataset
from reslab.engine.config import TrainConfig
from reslab.engine.precision import resolve_precision
from reslab.engine.recipes import get_recipe


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


def reslab_rate(model: str, data: ImageDataset, batch: int, steps: int, warmup: int, precision: str, *,
                channels_last: bool = True, compile: bool = False, strip_bn_relu: bool = False, device: str = "cpu",
                compile_mode: str | None = None) -> float:  # fmt: skip
    """Images/s of `reslab train`'s loop: the trainer `reslab train` builds, run for ``steps`` after ``warmup``.
    ``compile_mode`` wraps the network in ``torch.compile(mode=compile_mode)`` instead (e.g. "reduce-overhead":
    CUDA graphs).

    Without BN a deep net's activations overflow and the loop stops on the NaN: the bound's runs shrink every conv's
    weights (each unit then stays close to the identity) and take a learning rate too small to move them. The work
    per step is the same."""
    lr = 1e-9 if strip_bn_relu else 0.1
    cfg = TrainConfig(model=model, recipe=get_recipe("paper", batch_size=batch, iterations=10**6, lr=lr),
                      precision=precision,
                      channels_last=channels_last, device=device, compile=compile, checkpoint_minutes=0,
                      progress=False)  # fmt: skip
    trainer = build_trainer(cfg, data=data)
    if compile_mode:
        trainer.net = torch.compile(trainer.net, mode=compile_mode)
    if strip_bn_relu:
        strip(trainer.model, (nn.BatchNorm2d, nn.ReLU))
        with torch.no_grad():
            for m in trainer.model.modules():
                if isinstance(m, nn.Conv2d):
                    m.weight.mul_(0.1)
    trainer.run(warmup)
    t = time.perf_counter()
    trainer.run(warmup + steps)  # ends with the loop's host sync
    return steps * batch / (time.perf_counter() - t)


def strip(model: nn.Module, kinds: tuple[type[nn.Module], ...]) -> None:
    """Replace every submodule of the given kinds by the identity, in place."""
    for name, child in model.named_children():
        if isinstance(child, kinds):
            setattr(model, name, nn.Identity())
        else:
            strip(child, kinds)


def extract(tar: str) -> Path:
    """The ImageFolder tar unpacked to a temporary folder (the tutorial reads files): the folder above train/."""
    tmp = tempfile.mkdtemp()
    with tarfile.open(tar) as f:
        f.extractall(tmp, filter="data")
    return next(p.parent for p in Path(tmp).rglob("train") if p.is_dir())


def tutorial_rate(model_name: str, root: Path, batch: int, steps: int, warmup: int, *,
                  device: torch.device | str = "cpu", workers: int = 2) -> float:  # fmt: skip
    """The usual tutorial's loop; on a GPU with pinned memory, as the tutorials write it."""
    device = torch.device(device)
    tf = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    ])  # fmt: skip
    folder = torchvision.datasets.ImageFolder(root / "train", tf)
    loader = torch.utils.data.DataLoader(
        folder,
        batch_size=batch,
        shuffle=True,
        num_workers=workers,
        drop_last=True,
        persistent_workers=True,
        pin_memory=device.type == "cuda",
    )
    model = create_model(model_name).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    crit = nn.CrossEntropyLoss()
    done = 0
    while done < warmup + steps:
        for x, y in loader:
            if done == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                t = time.perf_counter()
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            loss = crit(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == warmup + steps:
                break
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return steps * batch / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="ImageFolder .tar (e.g. ../shared/data/cifar10-jpeg.tar)")
    ap.add_argument("--models", default="resnet20,resnet56,resnet110")
    ap.add_argument("--batches", default="128", help="comma-separated batch sizes")
    ap.add_argument("--precisions", default="auto", help="comma-separated: auto, bf16, fp32")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2, help="best of this many alternating measurements")
    ap.add_argument("--skip-tutorial", action="store_true")
    ap.add_argument("--bound", action="store_true", help="also time the loop with BN and ReLU removed (upper bound)")
    ap.add_argument("--channels-last", choices=["true", "false"], default="true", help="reslab's memory format")
    ap.add_argument("--compile", action="store_true", help="also rows with torch.compile (as `reslab train --compile`)")
    ap.add_argument("--out", default=None, help="output path without suffix (default docs/results/benchmarks/"
                    "train_throughput)")  # fmt: skip
    args = ap.parse_args()
    if args.steps < 1 or args.warmup < 0 or args.rounds < 1:
        ap.error("--steps and --rounds must be >= 1 and --warmup >= 0")
    if not Path(args.data).is_file():
        ap.error(f"--data {args.data}: not a file (an ImageFolder .tar, e.g. ../shared/data/cifar10-jpeg.tar)")
    batches = [int(b) for b in args.batches.split(",")]
    precisions = [resolve_precision(p, torch.device("cpu")) for p in args.precisions.split(",")]

    out = Results("train_throughput", args.out)
    peaks = {"bf16": gemm_peak(torch.bfloat16), "fp32": gemm_peak(torch.float32)}
    out.print(f"machine: {out.info['machine']}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    out.print(f"GEMM peak measured now: bf16 {2 * peaks['bf16'] / 1e9:.0f} GFLOP/s, fp32 "
              f"{2 * peaks['fp32'] / 1e9:.0f} GFLOP/s")  # fmt: skip
    data = load_dataset(args.data)
    root = None if args.skip_tutorial else extract(args.data)
    variants = [False, True] if args.compile else [False]
    heads = (
        "model",
        "batch",
        "precision",
        "compiled",
        "reslab img/s",
        "tutorial img/s",
        "ratio",
        "ceiling img/s",
        "of ceiling",
    )
    heads += ("no BN/ReLU img/s", "its ratio") if args.bound else ()
    out.print(" ".join(f"{h:>16}" for h in heads))
    for name in args.models.split(","):
        macs = complexity(create_model(name), (3, 32, 32))["macs"]
        for batch in batches:
            rates: dict[tuple[str, bool], float] = {}
            bounds: dict[tuple[str, bool], float] = {}
            theirs = float("nan") if root is None else 0.0
            for _ in range(args.rounds):
                for key in [(p, c) for c in variants for p in precisions]:
                    kw = dict(channels_last=args.channels_last == "true", compile=key[1])
                    rate = reslab_rate(name, data, batch, args.steps, args.warmup, key[0], **kw)
                    rates[key] = max(rates.get(key, 0.0), rate)
                    if args.bound:
                        rate = reslab_rate(name, data, batch, args.steps, args.warmup, key[0], strip_bn_relu=True,
                                           **kw)  # fmt: skip
                        bounds[key] = max(bounds.get(key, 0.0), rate)
                if root is not None:
                    theirs = max(theirs, tutorial_rate(name, root, batch, args.steps, args.warmup))
            for (precision, compiled), ours in rates.items():
                ceiling = peaks[precision] / (3 * macs)
                row = {"model": name, "batch": batch, "precision": precision, "compiled": compiled,
                       "reslab_img_per_s": ours, "tutorial_img_per_s": theirs, "ratio": ours / theirs,
                       "ceiling_img_per_s": ceiling, "of_ceiling": ours / ceiling}  # fmt: skip
                cells = [name, str(batch), precision, "yes" if compiled else "no", f"{ours:.0f}", f"{theirs:.0f}",
                         f"{ours / theirs:.2f}", f"{ceiling:.0f}", f"{ours / ceiling:.1%}"]  # fmt: skip
                if args.bound:
                    bound = bounds[precision, compiled]
                    row.update(bound_img_per_s=bound, bound_ratio=bound / theirs)
                    cells += [f"{bound:.0f}", f"{bound / theirs:.2f}"]
                out.row(row)
                out.print(" ".join(f"{v:>16}" for v in cells))
    out.save()


if __name__ == "__main__":
    main()
