"""Every command README shows runs: each one in README's ``bash`` blocks is run here on tiny data (placeholders such
as DIR_OR_TAR and runs/r110 replaced by small stand-ins, training cut to two steps), or named below as run by
another test. A command added to README without either fails `test_every_readme_command_is_run_or_covered`."""

from __future__ import annotations

import glob
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from reslab.cli import main
from reslab.weights.torchvision import parse as parse_torchvision

README = Path(__file__).resolve().parents[1] / "README.md"

# README command -> the test that runs it (costly, or not a reslab command)
COVERED = {
    "python3 -m venv .venv && .venv/bin/pip install torch==2.14.1 torchvision==0.29.1 && .venv/bin/pip install -e "
    '".[dev]" && .venv/bin/python -m pytest -q -n 2 --dist loadfile': "CI itself (.ci/run)",
    "reslab train ... --resume": "tests/engine/test_cli_train_eval.py (resume of a run, exact) and test_trainer.py",
    "torchrun --nproc_per_node 4 -m reslab.cli train --model resnet56 --data cifar10": "tests/engine/"
    "test_distributed.py",
    "torchrun --nproc_per_node 8 -m reslab.cli train --model resnet50 --recipe imagenet-paper --data "
    "/path/to/imagenet": "tests/engine/test_distributed.py (the streamed path under torchrun)",
    "torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m reslab.cli train "
    "...": "tests/engine/test_multinode.py (two nodes on one machine)",
    "OUT=/shared/runs/r50 DATA=/shared/imagenet sbatch --nodes 4 docs/slurm/train.sbatch": "tests/engine/"
    "test_slurm_example.py (srun and scontrol stand-ins)",
    "reslab reproduce degradation --data DIR_OR_TAR --budget cpu --out results": "tests/experiments/"
    "test_reproduce_smoke.py (the same command at the smoke budget)",
    "reslab reproduce {depth,shortcuts,responses,highway,table1} ...": "tests/experiments/test_reproduce_smoke.py",
    "reslab reproduce {construction,signals,single-layer} ...": "tests/experiments/test_reproduce_smoke.py",
    "reslab reproduce detection --data DIR_OR_TAR --out results": "tests/experiments/test_reproduce_smoke.py",
    "reslab reproduce all --data DIR_OR_TAR --budget fast --out results": "tests/experiments/test_reproduce_smoke.py "
    "(the same command at the smoke budget)",
    "reslab reproduce all --data DIR_OR_TAR --budget fast --out results --device cuda --jobs 8": "tests/experiments/"
    "test_jobs.py and test_reproduce_smoke.py (--jobs 2 on the CPU; no GPU in CI)",
    "reslab reproduce all --budget fast --out results --scorecard-only": "tests/experiments/"
    "test_reproduce_smoke.py (the same command at the smoke budget, on the experiments reported before it; here the "
    "`reproduce all` above does not run, so there would be nothing to report)",
    "reslab eval resnet20.th --data DIR_OR_TAR": "tests/deploy/test_peers_golden.py (the peer's own files)",
    # A ResNet-50 trained two steps here makes the C4 detector's first loss NaN on the tiny canvases (to be looked
    # into); the same commands run with a ResNet-20 backbone there:
    "reslab detect train --backbone resnet50 --init runs/r50 --data COCO_DIR --out runs/det": "tests/detection/"
    "test_train.py",
    "reslab detect eval runs/det": "tests/detection/test_train.py",
    "reslab detect predict runs/det photos/ --out drawn": "tests/detection/test_train.py",
}  # fmt: skip


def readme_commands() -> list[str]:
    """The commands of README's bash blocks, comments cut, ``a; b`` split; the set-up line's last command."""
    text = README.read_text()
    out = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if not line:
                continue
            if line in COVERED:
                out.append(line)
            elif "&&" in line:
                out.append(line.split("&&")[-1].strip().removeprefix(".venv/bin/"))
            else:
                out.extend(part.strip() for part in line.split(";"))
    return out


def test_every_readme_command_is_run_or_covered():
    commands = readme_commands()
    assert set(COVERED) <= set(commands), sorted(set(COVERED) - set(commands))  # a stale entry: README changed
    for c in commands:
        assert c in COVERED or c.startswith("reslab "), c


TRAIN_TINY = (("--iterations", "2"), ("--batch-size", "8"), ("--log-every", "1"), ("--eval-batch-size", "8"))


def adapt(argv: list[str], root: Path, stand_ins: dict[str, str]) -> list[str]:
    """README's argv with its placeholders replaced and training cut short."""
    out = []
    for i, a in enumerate(argv):
        prev = argv[i - 1] if i else ""
        if prev == "--iterations":
            a = "2"
        elif prev == "--val-split":
            a = "4"
        elif prev == "--budget":
            a = "smoke"
        elif prev == "--epochs":
            a = "none"  # the length: TRAIN_TINY's --iterations
        elif prev == "--batch-size":
            a = "8"
        out.append(stand_ins.get(a, a))
    if out[:2] == ["reslab", "train"] and "--help" not in out:
        if "--data" not in out:
            out += ["--data", stand_ins["DIR_OR_TAR"]]
        if "--out" not in out:
            out += ["--out", str(root / "runs" / f"default-{len(list((root / 'runs').glob('default-*')))}")]
        for flag, value in TRAIN_TINY:
            if flag not in out:
                out += [flag, value]
        out += [] if "--quiet" in out else ["--quiet"]
        if "imagenet-paper" in out or "imagenet-torchvision" in out:
            # 64-pixel crops: at 32 the last stage's maps are 1x1 and its BN statistics (frozen by the detector that
            # starts from this run) are those of single pixels
            out += ["--image-size", "64", "--workers", "0", "--eval-batch-size", "4"]
    if out[:3] == ["reslab", "detect", "train"]:
        out += ["--iterations", "2", "--batch-size", "2", "--min-size", "64", "--max-size", "64", "--quiet"]
    if out[:3] == ["reslab", "detect", "make-dataset"]:
        out += ["--train", "6", "--test", "3", "--size", "64", "--scale", "16,32"]
    if out[:2] == ["reslab", "runs"]:
        out = out[:2] + sorted(glob.glob(out[2]))
    return out[1:]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, large_dataset_maker, tiny_tar_maker):
    root = tmp_path_factory.mktemp("readme")
    (root / "runs").mkdir()
    tiny = tiny_tar_maker(root / "tiny.tar", train=12, test=4)
    rng = np.random.default_rng(0)
    (root / "my_folder").mkdir()
    (root / "photos").mkdir()
    for path in (root / "photo.jpg", root / "my_folder" / "a.png", root / "photos" / "p.png"):
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(path)
    stand_ins = {
        "DIR_OR_TAR": str(tiny), "MY_FOLDER": str(tiny), "cifar10": str(tiny),
        "../shared/data/cifar10-jpeg.tar": str(tiny),
        "/path/to/imagenet": str(large_dataset_maker(root / "imagenet", "folder")),
        "MY_PHOTOS": str(large_dataset_maker(root / "my_photos", "folder")),
        "photo.jpg": str(root / "photo.jpg"), "my_folder/": str(root / "my_folder"), "photos/": str(root / "photos"),
        "COCO_DIR": str(root / "canvases"), "canvases": str(root / "canvases"), "drawn": str(root / "drawn"),
        "results": str(root / "results"), "runs/*": str(root / "runs" / "*"),
        **{f"runs/{n}": str(root / "runs" / n) for n in ("r110", "r50", "det", "resnet20-fast", "ft50", "r50gpu")},
    }  # fmt: skip
    return root, stand_ins


def ordered(commands: list[str]) -> list[str]:
    """README's order, except that the detection set is made before the detector that trains on it."""
    run = [c for c in commands if c not in COVERED]
    make = [c for c in run if c.startswith("reslab detect make-dataset")]
    return make + [c for c in run if c not in make]


def test_readme_commands_run(workspace, monkeypatch, capsys):
    root, stand_ins = workspace
    monkeypatch.chdir(root)
    monkeypatch.setenv("TORCH_HOME", str(root / "torch-home"))  # torchvision's cache, holding random weights
    tv = parse_torchvision("torchvision:resnet50")
    tv.file.parent.mkdir(parents=True, exist_ok=True)
    torch.save(torchvision.models.resnet50().state_dict(), tv.file)
    for command in ordered(readme_commands()):
        argv = adapt(shlex.split(command), root, stand_ins)
        try:
            code = main(argv)
        except SystemExit as e:  # --help
            code = e.code
        err = capsys.readouterr().err
        assert code == 0, f"{command}\n  ran as: reslab {shlex.join(argv)}\n  {err[-2000:]}"


def test_readmes_scorecard_is_the_one_in_docs_results():
    """README's fast-budget scorecard is docs/results/fast/scorecard.md's table, row for row (links made relative to
    the repository root): a rerun of the scorecard that README does not follow fails here."""
    card = (README.parent / "docs" / "results" / "fast" / "scorecard.md").read_text()
    rows = [line.replace("](", "](docs/results/fast/") for line in card.splitlines() if line.startswith("|")]
    readme = README.read_text().splitlines()
    assert len(rows) > 10 and rows[0] in readme
    start = readme.index(rows[0])
    assert readme[start : start + len(rows)] == rows
