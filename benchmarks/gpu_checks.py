"""The measurements of ../shared/GPU-CHECKS.md, for a lent GPU machine: one subcommand per item.

    python benchmarks/gpu_checks.py curves --data TAR [--out DIR]      # 1: ResNet-20's loss, CUDA against the CPU
    python benchmarks/gpu_checks.py cifar --data TAR [--out DIR]       # 2: CIFAR training images/s
    python benchmarks/gpu_checks.py concurrent --data TAR [--out DIR]  # 3: K runs sharing one GPU
    python benchmarks/gpu_checks.py resnet50 --data TAR [--out DIR]    # 4: ResNet-50 training and inference images/s

TAR is a CIFAR-10 ImageFolder tar (the JPEG q75 copy, or a subset of it: the machine is sent at most 64 MiB).
The rest of item 1 is the test suite (``RESLAB_TEST_DEVICE=cuda pytest tests/models tests/engine tests/tasks``) and
item 5 is ``torchrun --nproc_per_node 1 -m reslab.cli train ...``; docs/results/gpu/README.md has the commands.
Each subcommand writes NAME.md and NAME.json (command, machine, GPU, driver, date, commit, rows) under ``--out``.
Every rate is timed between two host syncs after a warm-up, so compilation, CUDA graph capture and start-up stay out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from results import Results  # benchmarks/ is on the path when run as a script
from train_throughput import extract, reslab_rate, tutorial_rate

from reslab import build_trainer, complexity, create_model, train
from reslab.data import load_dataset
from reslab.engine.config import TrainConfig
from reslab.engine.recipes import get_recipe
from reslab.experiments.jobs import threads_per_job

PAPER_ITERATIONS, PAPER_BATCH = 64_000, 128  # Sec. 4.2, for the wall-clock extrapolation
LOOPS = {"bf16 eager": ("bf16", None), "bf16 compile": ("bf16", "default"),
         "bf16 compile+CUDA graphs": ("bf16", "reduce-overhead"), "fp32 eager": ("fp32", None)}  # fmt: skip


def driver() -> str:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=30)  # fmt: skip
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def results(name: str, out: str | None) -> Results:
    res = Results(name, str(Path(out) / name) if out else None)
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    res.info.update(gpu=gpu, driver=driver(), cuda=torch.version.cuda)
    res.print(f"{gpu}, driver {res.info['driver']}, CUDA {torch.version.cuda}, torch {torch.__version__}; "
              f"{res.info['machine']}")  # fmt: skip
    return res


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def bf16_peak(dev: torch.device, n: int = 8192, reps: int = 20) -> float:
    """The matrix units' bf16 rate in FLOP/s, measured now on random data (median-free: best of three trials)."""
    if dev.type != "cuda":
        n, reps = 1024, 3
    a = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=dev, dtype=torch.bfloat16)
    best = 0.0
    for _ in range(3):
        a @ b
        sync(dev)
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        sync(dev)
        best = max(best, 2 * reps * n**3 / (time.perf_counter() - t))
    return best


# -- item 1: the loss falls on CUDA as it does on the CPU ---------------------------------------------------------


def curves(a: argparse.Namespace) -> None:
    res = results("curves", a.out)
    cases = [("cpu", "fp32")] + [("cuda", p) for p in ("fp32", "bf16", "fp16")] * (device().type == "cuda")
    curve: dict[str, dict[int, float]] = {}
    final: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dev, precision in cases:
            key = f"{dev} {precision}"
            cfg = TrainConfig(model="resnet20", data=a.data, recipe=get_recipe("paper", iterations=a.iterations),
                              precision=precision, device=dev, out=f"{tmp}/{dev}-{precision}", log_every=20,
                              eval_every=0, progress=False, seed=0)  # fmt: skip
            t = time.perf_counter()
            final[key] = train(cfg)
            seconds = time.perf_counter() - t
            lines = Path(cfg.out, "metrics.jsonl").read_text().splitlines()
            curve[key] = {r["iter"]: r["train_loss"] for r in map(json.loads, lines) if "train_loss" in r}
            res.print(f"{key}: {a.iterations} iterations in {seconds:.1f} s")
    its = sorted(curve["cpu fp32"])
    res.print(f"ResNet-20, paper recipe scaled to {a.iterations} iterations, batch 128, seed 0; training loss "
              "of each 20-iteration window:")  # fmt: skip
    res.print(f"{'iteration':>10}" + "".join(f"{k:>12}" for k in curve))
    for it in its:
        res.print(f"{it:>10}" + "".join(f"{curve[k].get(it, float('nan')):>12.4f}" for k in curve))
    tail = its[-3:]
    ref = sum(curve["cpu fp32"][i] for i in tail) / len(tail)
    res.print(f"mean of the last three windows, and its difference from the CPU's ({ref:.4f}); "
              "test error after the run:")  # fmt: skip
    for key, c in curve.items():
        last = sum(c[i] for i in tail) / len(tail)
        err = final[key].get("test_error", float("nan"))
        res.print(f"  {key:12s} {last:.4f}  {last - ref:+.4f}  test error {err:.2f}%")
        res.row({"case": key, "curve": c, "last_windows_loss": last, "difference": last - ref, "test_error": err})
    res.save()


# -- item 2: CIFAR training speed ---------------------------------------------------------------------------------


def cifar(a: argparse.Namespace) -> None:
    res = results("cifar", a.out)
    dev = device()
    peak = bf16_peak(dev)
    res.print(f"bf16 matrix product measured now: {peak / 1e12:.0f} TFLOP/s")
    data = load_dataset(a.data)
    root = extract(a.data)
    variants = {k: v for k, v in LOOPS.items() if k in a.loops.split(",")}
    heads = ("model", "loop", "img/s", "tutorial img/s", "ratio", "of bf16 peak", "paper recipe")
    res.print(f"reslab's loop: data on the GPU as uint8, batched crop/flip there, channels_last, fused SGD, batch "
              f"{a.batch}; tutorial: ImageFolder + DataLoader({a.workers} workers, pinned) + fp32 eager")  # fmt: skip
    res.print(" ".join(f"{h:>24}" for h in heads))
    for name in a.models.split(","):
        macs = complexity(create_model(name), (3, 32, 32))["macs"]
        theirs = tutorial_rate(name, root, a.batch, a.steps, a.warmup, device=dev, workers=a.workers)
        for label, (precision, mode) in variants.items():
            try:
                ours = reslab_rate(name, data, a.batch, a.steps, a.warmup, precision, device=str(dev),
                                   compile_mode=mode)  # fmt: skip
            except Exception as e:  # a compiler failure is a row of the table, not the end of the run
                res.print(f"{name:>24} {label:>24}   failed: {type(e).__name__}: {str(e).splitlines()[0][:80]}")
                continue
            of_peak = ours * 3 * 2 * macs / peak
            hours = PAPER_ITERATIONS * PAPER_BATCH / ours / 3600
            cells = [name, label, f"{ours:.0f}", f"{theirs:.0f}", f"{ours / theirs:.2f}", f"{of_peak:.1%}",
                     f"{hours * 60:.1f} min"]  # fmt: skip
            res.print(" ".join(f"{c:>24}" for c in cells))
            res.row({"model": name, "loop": label, "img_per_s": ours, "tutorial_img_per_s": theirs,
                     "ratio": ours / theirs, "of_bf16_peak": of_peak, "paper_recipe_hours": hours,
                     "batch": a.batch})  # fmt: skip
        res.save()  # after each model: a run cut short keeps what it measured


# -- item 3: several runs on one GPU ------------------------------------------------------------------------------


def one(a: argparse.Namespace) -> None:
    """One of the concurrent runs: warm up, say ready, wait for the go file, then train for --seconds."""
    cfg = TrainConfig(model=a.model, recipe=get_recipe("paper", batch_size=a.batch, iterations=10**7),
                      precision="bf16", device=str(device()), checkpoint_minutes=0, progress=False)  # fmt: skip
    trainer = build_trainer(cfg, data=load_dataset(a.data))
    trainer.run(20)
    Path(a.ready).touch()
    while not Path(a.go).exists():
        time.sleep(0.01)
    t, steps = time.perf_counter(), 0
    while time.perf_counter() - t < a.seconds:
        trainer.run(trainer.iteration + 20)
        steps += 20
    print(json.dumps({"img_per_s": steps * a.batch / (time.perf_counter() - t)}))


def concurrent(a: argparse.Namespace) -> None:
    res = results("concurrent", a.out)
    res.print(f"K separate processes on one {device().type.upper()} device, each reslab's loop (bf16, channels_last, "
              f"batch {a.batch}, {os.cpu_count()} CPU cores shared out as `reslab reproduce --jobs K` does), timed "
              f"together for {a.seconds:.0f} s after each has warmed up")  # fmt: skip
    res.print(f"{'model':>10} {'K':>3} {'total img/s':>12} {'per run':>10} {'vs K=1':>8}")
    for name in a.models.split(","):
        single = None
        for k in map(int, a.k.split(",")):
            with tempfile.TemporaryDirectory() as tmp:
                args = [sys.executable, __file__, "one", "--data", a.data, "--model", name, "--batch", str(a.batch),
                        "--seconds", str(a.seconds), "--go", f"{tmp}/go"]  # fmt: skip
                # as `reslab reproduce --jobs K` starts its runs: the CPU cores shared out among them
                env = {**os.environ, "OMP_NUM_THREADS": str(threads_per_job(k))}
                procs = [subprocess.Popen([*args, "--ready", f"{tmp}/ready{i}"], stdout=subprocess.PIPE, text=True,
                                          env=env) for i in range(k)]  # fmt: skip
                while not all(Path(f"{tmp}/ready{i}").exists() for i in range(k)):
                    if any(p.poll() not in (None, 0) for p in procs):
                        raise SystemExit(f"a run of {name} failed to start")
                    time.sleep(0.05)
                Path(f"{tmp}/go").touch()
                rates = [json.loads(p.communicate()[0].strip().splitlines()[-1])["img_per_s"] for p in procs]
            total = sum(rates)
            single = single or total
            res.print(f"{name:>10} {k:>3} {total:>12.0f} {total / k:>10.0f} {total / single:>7.2f}x")
            res.row({"model": name, "k": k, "total_img_per_s": total, "rates": rates, "vs_one": total / single})
    res.save()


# -- item 4: ResNet-50 ---------------------------------------------------------------------------------------------


def resnet50(a: argparse.Namespace) -> None:
    from imagenet_data import step_rates
    from make_large_images import make

    res = results("resnet50", a.out)
    dev = device()
    peak = bf16_peak(dev)
    macs = complexity(create_model("resnet50"), (3, 224, 224))["macs"]
    res.print(f"bf16 matrix product measured now: {peak / 1e12:.0f} TFLOP/s; ResNet-50 {macs / 1e9:.2f} GMACs")
    cores = len(os.sched_getaffinity(0))
    workers = max(1, cores - 1)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        root = make(Path(a.data), Path(tmp) / "large", (375, 375), {"train": a.images // 10, "val": 2})
        res.print(f"{a.images} ImageNet-sized training JPEGs (shorter side 375, q90) made in "
                  f"{time.perf_counter() - t:.0f} s")  # fmt: skip
        data_step, step, precision = step_rates(root, a.batch, a.seconds, workers)
        # --device-decode: the workers draw the crops, the GPU decodes the batch (nvJPEG) and crops it
        gpu_decoded, _, _ = step_rates(root, a.batch, a.seconds, workers, device_decode=True)
    rows = ((f"streamed JPEGs + step ({workers} workers)", data_step),
            (f"streamed JPEGs decoded on the GPU + step ({workers} workers, --device-decode)", gpu_decoded),
            ("step alone", step))  # fmt: skip
    for label, rate in rows:
        res.print(f"training, batch {a.batch}, {precision} autocast, channels_last, eager: {label}: {rate:.0f} "
                  f"img/s, {rate * 3 * 2 * macs / peak:.1%} of the bf16 peak")  # fmt: skip
        res.row({"kind": "train", "what": label, "batch": a.batch, "img_per_s": rate, "precision": precision,
                 "of_bf16_peak": rate * 3 * 2 * macs / peak})  # fmt: skip
    step = compiled_step_rate(a.batch, a.seconds, dev)
    res.print(f"training step alone, torch.compile: {step:.0f} img/s, {step * 6 * macs / peak:.1%} of the bf16 peak")
    res.row({"kind": "train", "what": "step alone, compiled", "batch": a.batch, "img_per_s": step,
             "of_bf16_peak": step * 6 * macs / peak})  # fmt: skip
    for mode in (None, "reduce-overhead"):
        for batch in (1, 64):
            rate = inference_rate(batch, a.seconds / 2, dev, mode)
            label = "eager" if mode is None else "compile+CUDA graphs"
            res.print(f"inference, batch {batch:>3}, bf16, channels_last, {label:>20}: {rate:8.0f} img/s, "
                      f"{1e3 * batch / rate:6.2f} ms per batch")  # fmt: skip
            res.row({"kind": "inference", "batch": batch, "mode": label, "img_per_s": rate})
    res.save()


def compiled_step_rate(batch: int, seconds: float, dev: torch.device) -> float:
    """The same step as `reslab train`'s (bf16 autocast, channels_last, fused SGD) on one random batch, compiled."""
    model = create_model("resnet50").to(dev, memory_format=torch.channels_last)
    net = torch.compile(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4, fused=dev.type == "cuda")
    x = torch.randn(batch, 3, 224, 224, device=dev).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=dev)

    def step() -> None:
        with torch.autocast(dev.type, torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return timed(step, batch, seconds, dev)


def inference_rate(batch: int, seconds: float, dev: torch.device, mode: str | None) -> float:
    model = create_model("resnet50").to(dev, memory_format=torch.channels_last).eval()
    net = torch.compile(model, mode=mode) if mode else model
    x = torch.randn(batch, 3, 224, 224, device=dev).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with torch.inference_mode(), torch.autocast(dev.type, torch.bfloat16):
            net(x)

    return timed(step, batch, seconds, dev)


def timed(step, batch: int, seconds: float, dev: torch.device, warmup: int = 5) -> float:
    for _ in range(warmup):
        step()
    sync(dev)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        for _ in range(10):
            step()
        sync(dev)
        n += 10 * batch
    return n / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    cmds = {"curves": curves, "cifar": cifar, "concurrent": concurrent, "resnet50": resnet50, "one": one}
    subs = {name: sub.add_parser(name) for name in cmds}
    for s in subs.values():
        s.add_argument("--data", required=True, help="CIFAR-10 ImageFolder tar")
        s.add_argument("--out", default=None, help="folder for NAME.md and NAME.json (default docs/results/gpu)")
    subs["curves"].add_argument("--iterations", type=int, default=200)
    for name in ("cifar", "concurrent", "one"):
        subs[name].add_argument("--batch", type=int, default=128)
    subs["cifar"].add_argument("--models", default="resnet20,resnet56,resnet110")
    subs["cifar"].add_argument("--steps", type=int, default=300)
    subs["cifar"].add_argument("--loops", default=",".join(LOOPS), help="which of reslab's loops to time")
    subs["cifar"].add_argument("--warmup", type=int, default=30)
    subs["cifar"].add_argument("--workers", type=int, default=8, help="the tutorial's DataLoader workers")
    subs["concurrent"].add_argument("--models", default="resnet20,resnet56")
    subs["concurrent"].add_argument("--k", default="1,2,4,8")
    subs["concurrent"].add_argument("--seconds", type=float, default=10.0)
    subs["one"].add_argument("--model", required=True)
    subs["one"].add_argument("--seconds", type=float, required=True)
    subs["one"].add_argument("--ready", required=True)
    subs["one"].add_argument("--go", required=True)
    subs["resnet50"].add_argument("--images", type=int, default=1500)
    subs["resnet50"].add_argument("--batch", type=int, default=256)
    subs["resnet50"].add_argument("--seconds", type=float, default=15.0)
    a = p.parse_args()
    if a.out is None and a.cmd != "one":
        a.out = str(Path(__file__).resolve().parents[1] / "docs" / "results" / "gpu")
    cmds[a.cmd](a)


if __name__ == "__main__":
    main()
