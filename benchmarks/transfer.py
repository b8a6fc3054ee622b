"""Does pre-training transfer? Fine-tuning against training from scratch on a few images of unseen classes.

    python benchmarks/transfer.py --data ../shared/data/cifar10-jpeg.tar --work /work/reslab-runs/transfer \
        [--model resnet56] [--held-out cat,dog] [--per-class 10,50,250] [--pretrain-epochs 30] [--epochs 30]

1. Pre-train ``--model`` with the fast recipe on the CIFAR copy's other classes (the held-out classes are removed
   from pre-training altogether, so the fine-tuned net has never seen them).
2. For each ``--per-class`` count N: a training set of N images of each held-out class (the first N of each class
   in the copy's order), tested on all the copy's test images of those classes. Two runs, the same recipe, epochs,
   seed and images: ``--init`` the pre-trained run (`reslab train --init`: the classifier is replaced for the new
   classes) and from scratch.
3. A table of test error and wall-clock per N, written to ``--out`` (.md and .json) with the machine and date.

Every run is a `reslab train` run folder under ``--work``; rerunning the command resumes or reuses them.
"""

from __future__ import annotations

import argparse
import json
import tarfile
import time
from pathlib import Path

from results import Results  # benchmarks/ is on the path when run as a script

from reslab.engine.config import TrainConfig
from reslab.engine.recipes import get_recipe
from reslab.engine.run import train
from reslab.engine.rundir import RunDir


def subset(tar_path: Path, out: Path, classes: set[str], per_class: int | None) -> Path:
    """An ImageFolder folder (train/, test/) of ``classes`` from the copy's tar: the first ``per_class`` training
    images of each (all if None) and all their test images. The JPEG bytes are copied, not re-encoded."""
    done = out / ".complete"
    if done.exists():
        return out
    counts: dict[str, int] = {}
    with tarfile.open(tar_path) as tar:
        for m in tar:
            parts = m.name.split("/")
            if not m.isfile() or len(parts) != 3 or parts[1] not in classes:
                continue
            split, cls, name = parts
            if split == "train" and per_class is not None:
                if counts.get(cls, 0) >= per_class:
                    continue
                counts[cls] = counts.get(cls, 0) + 1
            dest = out / split / cls / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(tar.extractfile(m).read())
    done.touch()
    return out


def run(cfg: TrainConfig) -> tuple[dict, float]:
    """Train (or resume, or reuse) the run ``cfg`` describes; its summary and its training seconds."""
    status = RunDir(cfg.out).status()
    if not status.finished:
        train(cfg, resume=status.iteration is not None)
    summary = json.loads((Path(cfg.out) / "summary.json").read_text())
    return summary, summary["train_seconds"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the CIFAR-10 JPEG copy's tar")
    p.add_argument("--work", type=Path, required=True, help="folder for the data subsets and run folders")
    p.add_argument("--model", default="resnet56")
    p.add_argument("--held-out", default="cat,dog", help="classes kept out of pre-training: the new task")
    p.add_argument("--per-class", default="10,50,250", help="training images per held-out class")
    p.add_argument("--pretrain-epochs", type=float, default=30)
    p.add_argument("--epochs", type=float, default=30, help="epochs of each small-set run (at least 20 steps)")
    p.add_argument("--batch-size", type=int, default=64, help="of the small-set runs")
    p.add_argument("--head-lr-scale", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output path without suffix (default docs/results/benchmarks/transfer)")
    a = p.parse_args()
    res = Results("transfer", a.out)
    held = set(a.held_out.split(","))
    with tarfile.open(a.data) as tar:
        every = sorted({m.name.split("/")[1] for m in tar if m.name.count("/") == 2})
    if not held < set(every):
        p.error(f"--held-out {a.held_out}: not among the data's classes ({', '.join(every)})")
    t = time.perf_counter()
    pre_data = subset(a.data, a.work / "data-pretrain", set(every) - held, None)
    pre_cfg = TrainConfig(model=a.model, data=str(pre_data), recipe=get_recipe("fast", epochs=a.pretrain_epochs),
                          out=str(a.work / f"pretrain-{a.model}"), seed=a.seed, progress=False)  # fmt: skip
    pre, pre_seconds = run(pre_cfg)
    res.print(f"pre-trained {a.model} on {len(every) - len(held)} classes ({', '.join(sorted(set(every) - held))}), "
              f"fast recipe, {a.pretrain_epochs:g} epochs: {pre['test_error']:.2f}% test error on them, "
              f"{pre_seconds / 60:.1f} min")  # fmt: skip
    res.print(f"new task: {', '.join(sorted(held))}; both runs: fast recipe, {a.epochs:g} epochs (at least 20 steps), "
              f"batch {a.batch_size}, seed {a.seed}; test: every test image of those classes")  # fmt: skip
    res.print("| images per class | fine-tuned test error | from scratch test error | fine-tuned min | scratch min |")
    res.print("|---:|---:|---:|---:|---:|")
    for n in map(int, a.per_class.split(",")):
        data = subset(a.data, a.work / f"data-{n}", held, n)
        images = n * len(held)
        batch = min(a.batch_size, images)
        iterations = max(20, round(a.epochs * images / batch))
        recipe = get_recipe("fast", batch_size=batch, iterations=iterations, epochs=None)
        out: dict[str, tuple[dict, float]] = {}
        for kind, init in (("fine-tuned", str(a.work / f"pretrain-{a.model}")), ("scratch", None)):
            cfg = TrainConfig(model=a.model, data=str(data), recipe=recipe, init=init, seed=a.seed, progress=False,
                              head_lr_scale=a.head_lr_scale if init else 1.0,
                              out=str(a.work / f"{kind}-{a.model}-{n}"))  # fmt: skip
            out[kind] = run(cfg)
        (ft, ft_s), (sc, sc_s) = out["fine-tuned"], out["scratch"]
        res.print(f"| {n} | {ft['test_error']:.2f}% | {sc['test_error']:.2f}% | {ft_s / 60:.1f} | {sc_s / 60:.1f} |")
        res.row({"per_class": n, "iterations": iterations, "batch": batch, "fine_tuned_error": ft["test_error"],
                 "scratch_error": sc["test_error"], "fine_tuned_seconds": ft_s, "scratch_seconds": sc_s,
                 "test_images": ft.get("test_images")})  # fmt: skip
    res.print(f"(whole command: {(time.perf_counter() - t) / 60:.1f} min; data: CIFAR-10 (JPEG q75 copy))")
    res.save()


if __name__ == "__main__":
    main()
