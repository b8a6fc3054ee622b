"""The ImageNet path end to end on real images: ResNet-18 trained by streaming enlarged CIFAR-10 photographs.

    python benchmarks/imagenet_demo.py --data ../shared/data/cifar10-jpeg.tar --work /work/reslab-runs/imagenet-demo \
        [--iterations 4000] [--crop 64] [--out docs/results/imagenet-demo]

No ImageNet exists on our machines. This makes an ImageFolder of the CIFAR-10 JPEG copy's images enlarged to shorter
sides of 96-128 pixels with varied aspect ratios and photographic texture (benchmarks/make_large_images.py: 1000
training images per class, the 1000 test images of each class as val/), trains ResNet-18 (the ImageNet network,
7x7 stem and all) on it with ``reslab train --recipe imagenet-paper`` (Sec. 3.4's augmentation scaled to a
``--crop`` crop: shorter side random in [crop*256/224, crop*480/224], PCA lighting, per-pixel mean; batch 128 and a
plateau patience of 3 evaluations instead of 256 and 5, for a run of minutes), then tests it as the paper does:
centre crop, 10-crop and multi-scale (fully convolutional, 5 scales and their mirrors). Writes report.md, the
curve and results.json to ``--out``. Rerunning continues an interrupted run (the run folder is under ``--work``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from make_large_images import make  # benchmarks/ is on the path when run as a script
from matplotlib.figure import Figure

from reslab.engine.config import TrainConfig
from reslab.engine.evaluate import evaluate_checkpoint
from reslab.engine.recipes import get_recipe
from reslab.engine.run import train
from reslab.engine.rundir import RunDir
from reslab.engine.runinfo import run_info
from reslab.files import write_json, write_text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the CIFAR-10 ImageFolder tar")
    p.add_argument("--work", type=Path, required=True, help="where the images and the run folder go")
    p.add_argument("--iterations", type=int, default=4000)
    p.add_argument("--crop", type=int, default=64)
    p.add_argument("--per-class", type=int, nargs=2, default=(1000, 1000), metavar=("TRAIN", "VAL"))
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "docs/results/imagenet-demo")
    a = p.parse_args()
    images = a.work / "images"
    if not (images / "val").is_dir():
        make(a.data, images, (96, 128), {"train": a.per_class[0], "val": a.per_class[1]})
    run = RunDir(a.work / "run")
    recipe = get_recipe("imagenet-paper", batch_size=128, iterations=a.iterations, plateau_patience=3)
    config = TrainConfig(model="resnet18", data=str(images), image_size=a.crop, recipe=recipe, out=str(run.path))
    train(config, resume=run.checkpoint_path.exists())
    results = {mode: evaluate_checkpoint(str(run.path), mode=mode) for mode in ("center", "ten-crop", "multi-scale")}
    a.out.mkdir(parents=True, exist_ok=True)
    figure(run, a.out / "curve.png")
    info, summary = run_info(), run.summary()
    rows = [f"| {r['views']} | {r['error']:.2f} | {r['top5_error']:.2f} |" for r in results.values()]
    lines = [
        "# The ImageNet path on enlarged CIFAR-10 photographs (ResNet-18)", "",
        f"- Command: `python benchmarks/imagenet_demo.py --data {a.data} --work {a.work} --iterations {a.iterations} "
        f"--crop {a.crop} --per-class {a.per_class[0]} {a.per_class[1]}`",
        f"- Data: CIFAR-10 (JPEG q75 copy), enlarged to shorter sides 96-128 (JPEG q90; {config.data}): "
        f"{10 * a.per_class[0]} training images, {10 * a.per_class[1]} val (from CIFAR's test set); 10 classes, so "
        "chance is 90% top-1 error",
        f"- Training: `reslab train --model resnet18 --recipe imagenet-paper --image-size {a.crop} --batch-size 128 "
        f"--iterations {a.iterations} --plateau-patience 3`; {summary['wall_seconds'] / 60:.1f} min of training loop",
        f"- Machine: {info['machine']}; torch {info['torch']}; date {info['date']}; commit {info['git_commit']}", "",
        "| test | top-1 error (%) | top-5 error (%) |", "|---|---:|---:|", *rows, "",
        "![curve](curve.png)", "",
    ]  # fmt: skip
    write_text(a.out / "report.md", "\n".join(lines))
    write_json(a.out / "results.json", {"info": info, "summary": summary, "tests": results})
    print("\n".join(lines))


def figure(run: RunDir, path: Path) -> None:
    records = run.metrics()
    train = [(r["iter"], r["train_error"]) for r in records if "train_error" in r]
    val = [(r["iter"], r["error"]) for r in records if r.get("split") == "val"]
    lrs = [(r["iter"], r["lr"]) for r in records if "lr" in r]
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.subplots()
    ax.plot(*zip(*train, strict=True), linewidth=1, label="training error (augmented batches)")
    ax.plot(*zip(*val, strict=True), linewidth=2, marker=".", label="val error (centre crop)")
    ax.set(xlabel="iterations", ylabel="top-1 error (%)", title="ResNet-18, streamed, imagenet-paper recipe")
    ax.grid(alpha=0.3)
    lr = ax.twinx()
    lr.plot(*zip(*lrs, strict=True), color="gray", linestyle=":", label="lr")
    lr.set(ylabel="lr", yscale="log")
    ax.legend(loc="upper right", fontsize=8)
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
