"""Put the shipped weights' runs into a `reslab reproduce` results folder, so that the experiments reuse them.

    python benchmarks/adopt_shipped.py --out /work/reslab-runs/fast [--budget fast] [--data ../shared/data/...]

The shipped weights (src/reslab/weights/files) were trained with the `fast` recipe on the whole training set, and their
run files (config.json, metrics.jsonl, summary.json; mistakes.json where the run has one) are in
docs/results/shipped/<model>/. Where such a run is exactly the run that ``reslab reproduce --budget B`` would train (the
same config in every field that computes something: model, recipe, data, seed, precision, ...), this writes
``OUT/runs/<model>-s<seed>/`` from them: the run files as recorded, plus a checkpoint rebuilt from the safetensors file
(weights, config, classes, mean image; no optimizer state, so it can be evaluated and read but not resumed, which a
finished run never is). A run that differs in any field is left to be trained, and an existing run folder is never
touched. ``adopted.json`` in each folder says where it came from.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from reslab.engine.config import TrainConfig
from reslab.experiments.budgets import BUDGETS
from reslab.experiments.runner import Runner, RunSpec, get_budget
from reslab.files import write_json
from reslab.weights.checkpoint import write_checkpoint
from reslab.weights.shipped import WEIGHTS, manifest
from reslab.weights.tensorfile import read_tensorfile

ROOT = Path(__file__).resolve().parents[1]


def adopt(name: str, runner: Runner, docs: Path) -> str:
    found = read_tensorfile(WEIGHTS / manifest()[name]["file"])
    config = TrainConfig.from_dict(found.config)
    spec = RunSpec(name, config.seed)
    wanted = runner.config(spec)
    diff = wanted.differences(config)
    if diff:
        return f"{name}: not the same run as the budget's (differs in {diff[0]!r}), left to train"
    run = runner.run_dir(spec)
    if run.exists():
        return f"{name}: {run} exists, left as it is"
    run.mkdir(parents=True)
    state = {"model": found.state, "config": config.to_dict(), "iteration": found.iteration, "classes": found.classes,
             **found.preprocessing.to_checkpoint()}  # fmt: skip
    write_checkpoint(run / "checkpoint.pt", state)
    shutil.copy2(docs / name / "metrics.jsonl", run / "metrics.jsonl")
    shutil.copy2(docs / name / "config.json", run / "config.json")
    entry = manifest()[name]
    write_json(
        run / "adopted.json",
        {
            "from": f"shipped weights {entry['file']}",
            "sha256": entry["sha256"],
            "run_files": f"docs/results/shipped/{name}",
        },
    )
    if (docs / name / "mistakes.json").is_file():  # else `reslab reproduce` evaluates the model again, once
        shutil.copy2(docs / name / "mistakes.json", run / "mistakes.json")
    shutil.copy2(docs / name / "summary.json", run / "summary.json")  # last: the run counts as finished from here
    return f"{name}: adopted as {run}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="the `reslab reproduce --out` folder")
    p.add_argument("--budget", default="fast", choices=list(BUDGETS))
    p.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar"))
    p.add_argument("--docs", default=str(ROOT / "docs" / "results" / "shipped"))
    a = p.parse_args()
    runner = Runner(a.data, a.out, get_budget(a.budget), progress=False)
    for name in manifest():
        if not (Path(a.docs) / name / "summary.json").is_file():
            print(f"{name}: no run files in {a.docs}, skipped", file=sys.stderr)
            continue
        print(adopt(name, runner, Path(a.docs)))


if __name__ == "__main__":
    main()
