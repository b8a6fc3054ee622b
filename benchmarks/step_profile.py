"""Where a training step's time goes: convolutions against the memory-bound rest, per model, on this machine.

    python benchmarks/step_profile.py [--models resnet20,resnet56] [--batch 128] [--precision auto]
        [--out docs/results/benchmarks/NAME]

Runs reslab's training loop (`reslab.build_trainer`: batch, model, loss, backward and SGD step, on synthetic data in
memory) under ``torch.profiler`` and prints, per model, ms per iteration and the share of each group of operators:
convolutions (forward and backward), batch norm (forward and backward), ReLU (forward and backward), the residual
additions and other element-wise work (the batch's crop and flip included), the optimizer, and the rest. The
convolutions' rate is compared with the bf16 (or fp32) GEMM peak measured in the same run: how far the step is from
the ceiling, and which part keeps it there. The table and a JSON of the rows go to ``--out`` (.md, .json).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import torch
from results import Results  # benchmarks/ is on the path when run as a script
from torch.profiler import ProfilerActivity, profile
from train_throughput import gemm_peak  # the sibling benchmark's GEMM ceiling

from reslab import build_trainer, complexity, create_model
from reslab.engine.config import TrainConfig
from reslab.engine.precision import resolve_precision
from reslab.engine.recipes import get_recipe

# Operator name fragments -> group; the first match wins, so the more specific names come first.
GROUPS = (
    ("conv", ("convolution",)),
    ("batch norm", ("batch_norm",)),
    ("relu", ("threshold_backward", "relu", "clamp_min")),
    ("add / element-wise", ("aten::add", "aten::mul", "aten::copy_", "aten::fill_", "aten::where")),
    ("optimizer", ("foreach", "sgd", "lerp")),
)


def group_of(name: str) -> str:
    lowered = name.lower()
    for group, fragments in GROUPS:
        if any(f in lowered for f in fragments):
            return group
    return "other"


def profile_model(name: str, batch: int, steps: int, precision: str) -> tuple[float, dict[str, float]]:
    cfg = TrainConfig(model=name, data=f"synthetic:{batch * 4}", recipe=get_recipe("paper", batch_size=batch),
                      precision=precision, device="cpu", checkpoint_minutes=0, progress=False)  # fmt: skip
    trainer = build_trainer(cfg)
    trainer.run(5)
    t = time.perf_counter()  # timed without the profiler, whose bookkeeping costs time of its own
    trainer.run(5 + steps)
    per_step = (time.perf_counter() - t) / steps
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        trainer.run(5 + 2 * steps)
    shares: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        shares[group_of(event.key)] += event.self_cpu_time_total
    total = sum(shares.values())
    return per_step, {k: v / total for k, v in shares.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet20,resnet56")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--out", default=None, help="output path without suffix (default docs/results/benchmarks/"
                    "step_profile)")  # fmt: skip
    args = ap.parse_args()
    if args.steps < 1 or args.batch < 1:
        ap.error("--steps and --batch must be >= 1")
    precision = resolve_precision(args.precision, torch.device("cpu"))
    peak = gemm_peak(torch.bfloat16 if precision == "bf16" else torch.float32)
    out = Results("step_profile", args.out)
    out.print(f"machine: {out.info['machine']}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"{precision}")  # fmt: skip
    out.print(f"{precision} GEMM peak measured now: {2 * peak / 1e9:.0f} GFLOP/s")
    names = [g for g, _ in GROUPS] + ["other"]
    header = " ".join(f"{n:>18}" for n in names)
    out.print(f"{'model':>10} {'ms/step':>8} {'img/s':>6} {header} {'conv of peak':>13}")
    for name in args.models.split(","):
        per_step, shares = profile_model(name, args.batch, args.steps, args.precision)
        macs = complexity(create_model(name), (3, 32, 32))["macs"]
        conv_seconds = shares.get("conv", 0.0) * per_step
        conv_of_peak = 3 * macs * args.batch / max(conv_seconds, 1e-12) / peak
        cells = " ".join(f"{shares.get(n, 0.0):>18.1%}" for n in names)
        out.print(f"{name:>10} {per_step * 1e3:>8.1f} {args.batch / per_step:>6.0f} {cells} {conv_of_peak:>13.1%}")
        out.row({"model": name, "batch": args.batch, "precision": precision, "ms_per_step": per_step * 1e3,
                 "shares": {n: shares.get(n, 0.0) for n in names}, "conv_of_peak": conv_of_peak})  # fmt: skip
    out.save()


if __name__ == "__main__":
    main()
