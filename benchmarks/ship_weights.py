"""Train the models whose weights ship inside reslab, and write their files and manifest entries.

    python benchmarks/ship_weights.py --data ../shared/data/cifar10-jpeg.tar --work /work/reslab-runs/ship \
        [--models resnet20,resnet56,plain20,plain56] [--recipe fast] [--epochs N]

For each model: `reslab train` with the recipe on the data (resumed if its run folder in ``--work`` has a
checkpoint: rerun the same command after an interruption), then the finished run is written as a reslab
safetensors file into ``src/reslab/weights/files/`` (or ``--weights-dir``) and entered in its ``manifest.json``:
file, sha256, recipe, data label, test error with 1 view and with the run's TTA views, iterations, commit, machine
and date, all read from the run folder. The run's config.json, metrics.jsonl and summary.json are copied to
``docs/results/shipped/<model>/`` so that every number in the manifest has its source beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

from reslab.engine.config import TrainConfig
from reslab.engine.recipes import get_recipe
from reslab.engine.run import train
from reslab.engine.rundir import RunDir
from reslab.files import write_json
from reslab.models.trained import load_trained
from reslab.weights.tensorfile import write_tensorfile

ROOT = Path(__file__).resolve().parents[1]


def ship(name: str, a: argparse.Namespace) -> dict[str, object]:
    run = Path(a.work) / name
    overrides = {"epochs": a.epochs} if a.epochs else {}
    if a.iterations:
        overrides = {"iterations": a.iterations, "epochs": None}
    cfg = TrainConfig(model=name, data=a.data, recipe=get_recipe(a.recipe, **overrides), out=str(run), seed=a.seed,
                      progress=not a.quiet)  # fmt: skip
    status = RunDir(run).status()
    summary = train(cfg, resume=status.iteration is not None and not status.finished) if not status.finished else {}
    summary = summary or json.loads((run / "summary.json").read_text())
    config = json.loads((run / "config.json").read_text())
    out = Path(a.weights_dir) / f"{name}.safetensors"
    write_tensorfile(load_trained(run), out)
    docs = Path(a.docs) / name
    docs.mkdir(parents=True, exist_ok=True)
    for f in ("config.json", "metrics.jsonl", "summary.json"):
        shutil.copy2(run / f, docs / f)
    return {"file": out.name, "sha256": hashlib.sha256(out.read_bytes()).hexdigest(), "recipe": a.recipe,
            "data": summary.get("data_label", summary.get("dataset")), "test_error": summary["test_error"],
            "test_error_tta": summary.get("reported_test_error"), "tta_views": summary.get("reported_views"),
            "iterations": summary["iterations"], "train_seconds": round(summary["train_seconds"]),
            "commit": config.get("git_commit"), "machine": config.get("machine"), "date": config.get("date"),
            "results": str(docs.relative_to(ROOT)) if docs.is_relative_to(ROOT) else str(docs)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="the training data (the CIFAR-10 JPEG copy's tar)")
    p.add_argument("--work", required=True, help="folder for the run folders (outside the repository)")
    p.add_argument("--models", default="resnet20,resnet56,plain20,plain56")
    p.add_argument("--recipe", default="fast")
    p.add_argument("--epochs", type=float, default=None, help="the recipe's length in epochs (default: its own)")
    p.add_argument("--iterations", type=int, default=None, help="instead of --epochs (for a quick check)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--weights-dir", default=str(ROOT / "src" / "reslab" / "weights" / "files"))
    p.add_argument("--docs", default=str(ROOT / "docs" / "results" / "shipped"), help="where the runs' files go")
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args()
    manifest_path = Path(a.weights_dir) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {"models": {}}
    for name in a.models.split(","):
        manifest["models"][name] = ship(name, a)
        write_json(manifest_path, manifest)  # after each model: an interruption keeps the ones already shipped
        print(f"shipped {name}: {manifest['models'][name]['test_error']:.2f}% test error (1 view)")


if __name__ == "__main__":
    main()
