"""Train the models whose weights ship inside reslab, and write their files and manifest entries.

    python benchmarks/ship_weights.py --data ../shared/data/cifar10-jpeg.tar --work /work/reslab-runs/ship \
        [--models resnet20,resnet56,plain20,plain56] [--recipe fast] [--epochs N]

For each model: `reslab train` with the recipe on the data (resumed if its run folder in ``--work`` has a
checkpoint: rerun the same command after an interruption), then the finished run is written as a reslab
safetensors file into ``src/reslab/weights/files/`` (or ``--weights-dir``) and entered in its ``manifest.json``:
file, sha256, recipe, data label, test error with 1 view and with the run's TTA views, iterations, commit, machine
and date, all read from the run folder. The run's config.json, metrics.jsonl and summary.json (and mistakes.json,
where the run has one) are copied to ``docs/results/shipped/<model>/`` so that every number in the manifest has its
source beside it.

Before a model is entered, the written file is loaded back by name's path (`reslab.load_trained`) and evaluated in
fp32 on the whole test set: a file that does not make its run's test error (within 0.3 points: bf16 training-time
evaluation against fp32) is not shipped. The same pass records the error on every ``CHECK_STRIDE``-th test image as
``check``; the golden test (tests/deploy/test_predict.py) repeats that cheaper evaluation for every shipped model.

    python benchmarks/ship_weights.py --data ../shared/data/cifar10-jpeg.tar --reproduce-out /work/reslab-runs/fast \
        --models resnet32,resnet44

ships finished runs of a `reslab reproduce` results folder (``DIR/runs/<model>-s<seed>``) without training, and
``--check-only`` fills in ``check`` for models already shipped (their files are not rewritten).
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import shutil
from pathlib import Path

import torch

from reslab.data.dataset import ImageDataset
from reslab.data.load import load_dataset
from reslab.deploy.predict import Predictor
from reslab.engine.config import TrainConfig
from reslab.engine.recipes import get_recipe
from reslab.engine.run import train
from reslab.engine.rundir import RunDir
from reslab.errors import ReslabError
from reslab.files import write_json
from reslab.models.trained import load_trained
from reslab.weights.tensorfile import write_tensorfile

ROOT = Path(__file__).resolve().parents[1]
CHECK_STRIDE = 5  # the golden test's share: every 5th test image (the copy's test set is sorted by class)


@functools.cache
def dataset(data: str) -> ImageDataset:
    return load_dataset(data)


def errors(weights: Path, data: str) -> tuple[float, dict[str, object]]:
    """``weights``' fp32 test error (%) on the whole test set, and the ``check`` entry (every CHECK_STRIDE-th)."""
    ds = dataset(data)
    predictor = Predictor(load_trained(str(weights)), device="cpu", batch_size=1000, precision="fp32")
    picked = torch.zeros(len(ds.test_labels), dtype=torch.bool)
    picked[::CHECK_STRIDE] = True
    wrong = predictor.count_wrong(ds.test_images[picked], ds.test_labels[picked])
    rest = predictor.count_wrong(ds.test_images[~picked], ds.test_labels[~picked])
    n = int(picked.sum())
    check = {"test_stride": CHECK_STRIDE, "images": n, "precision": "fp32", "wrong": wrong,
             "test_error": round(100 * wrong / n, 2)}  # fmt: skip
    return 100 * (wrong + rest) / len(ds.test_labels), check


def ship(name: str, a: argparse.Namespace) -> dict[str, object]:
    overrides = {"epochs": a.epochs} if a.epochs else {}
    if a.iterations:
        overrides = {"iterations": a.iterations, "epochs": None}
    run = Path(a.reproduce_out) / "runs" / f"{name}-s{a.seed}" if a.reproduce_out else Path(a.work) / name
    status = RunDir(run).status()
    if a.reproduce_out and not status.finished:
        raise SystemExit(f"ship_weights: {run} is not a finished run (no summary.json); finish it first")
    if not a.reproduce_out:
        cfg = TrainConfig(model=name, data=a.data, recipe=get_recipe(a.recipe, **overrides), out=str(run),
                          seed=a.seed, progress=not a.quiet)  # fmt: skip
        if status.iteration is not None:  # a run found in --work is continued or shipped only if it is this one
            diff = cfg.differences(RunDir(run).config())
            if diff:
                raise SystemExit(f"ship_weights: {run} was trained with another {diff[0]!r}; use another --work")
        if not status.finished:
            train(cfg, resume=status.iteration is not None)
    summary = json.loads((run / "summary.json").read_text())
    config = json.loads((run / "config.json").read_text())
    out = Path(a.weights_dir) / f"{name}.safetensors"
    write_tensorfile(load_trained(run), out)
    full, check = errors(out, a.data)
    if abs(full - summary["test_error"]) >= 0.3:
        out.unlink()
        raise SystemExit(f"ship_weights: {out.name} reloaded makes {full:.2f}% test error in fp32, its run "
                         f"{summary['test_error']:.2f}%; not shipped")  # fmt: skip
    docs = Path(a.docs) / name
    docs.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "metrics.jsonl", "summary.json", "mistakes.json"):
        if f != "mistakes.json" or (run / f).is_file():  # runs older than their final evaluation's record have none
            shutil.copy2(run / f, docs / f)
    return {"file": out.name, "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
            "recipe": config["config"]["recipe"]["name"],
            "data": summary.get("data_label", summary.get("dataset")), "test_error": summary["test_error"],
            "test_error_tta": summary.get("reported_test_error"), "tta_views": summary.get("reported_views"),
            "check": check, "iterations": summary["iterations"], "train_seconds": round(summary["train_seconds"]),
            "commit": config.get("git_commit"), "machine": config.get("machine"), "date": config.get("date"),
            "results": str(docs.relative_to(ROOT)) if docs.is_relative_to(ROOT) else str(docs)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="the training data (the CIFAR-10 JPEG copy's tar)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--work", help="folder for the run folders <model>/ (outside the repository)")
    where.add_argument("--reproduce-out", help="a `reslab reproduce` results folder: ship its finished runs")
    where.add_argument("--check-only", action="store_true", help="only (re)measure the shipped files' `check`")
    p.add_argument("--models", default="resnet20,resnet56,plain20,plain56")
    p.add_argument("--recipe", default="fast")
    p.add_argument("--epochs", type=float, default=None, help="the recipe's length in epochs (default: its own)")
    p.add_argument("--iterations", type=int, default=None, help="instead of --epochs (for a quick check)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights-dir", default=str(ROOT / "src" / "reslab" / "weights" / "files"))
    p.add_argument("--docs", default=str(ROOT / "docs" / "results" / "shipped"), help="where the runs' files go")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args()
    training = {"--recipe": a.recipe != "fast", "--epochs": a.epochs is not None,
                "--iterations": a.iterations is not None, "--quiet": a.quiet}  # fmt: skip
    if not a.work and any(training.values()):  # --reproduce-out and --check-only train nothing
        p.error(f"{next(f for f, on in training.items() if on)} goes with --work (the others train nothing)")
    if a.epochs is not None and a.iterations is not None:
        p.error("--epochs or --iterations, not both")
    if (a.epochs is not None and a.epochs <= 0) or (a.iterations is not None and a.iterations <= 0):
        p.error("--epochs and --iterations must be positive")
    try:
        ship_all(a)
    except ReslabError as e:
        p.exit(2, f"ship_weights: {e}\n")


def ship_all(a: argparse.Namespace) -> None:
    manifest_path = Path(a.weights_dir) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"models": {}}
    for name in a.models.split(","):
        if a.check_only:
            if name not in manifest["models"]:
                raise ReslabError(f"{name} is not shipped (no manifest entry); ship it first")
            entry = manifest["models"][name]
            full, entry["check"] = errors(Path(a.weights_dir) / entry["file"], a.data)
            write_json(manifest_path, manifest)
            print(f"checked {name}: {full:.2f}% on the whole test set in fp32 (run: {entry['test_error']:.2f}%), "
                  f"{entry['check']['test_error']:.2f}% on every {CHECK_STRIDE}th image")  # fmt: skip
            continue
        manifest["models"][name] = ship(name, a)
        write_json(manifest_path, manifest)  # after each model: an interruption keeps the ones already shipped
        print(f"shipped {name}: {manifest['models'][name]['test_error']:.2f}% test error (1 view)")


if __name__ == "__main__":
    main()
