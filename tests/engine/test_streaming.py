"""The ImageNet recipes (Sec. 3.4) and training/testing on streamed large images, through the public API and CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from reslab.cli import main
from reslab.engine.config import TrainConfig
from reslab.engine.recipes import Plateau, get_recipe
from reslab.engine.run import train
from reslab.engine.rundir import RunDir
from reslab.errors import ConfigError
from reslab.weights.checkpoint import read_checkpoint


def wait_for(condition, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def test_imagenet_recipes_are_sec_3_4_and_torchvisions():
    p = get_recipe("imagenet-paper")
    assert (p.batch_size, p.lr, p.momentum, p.weight_decay, p.iterations, p.schedule, p.gamma) == (
        256, 0.1, 0.9, 1e-4, 600_000, "plateau", 0.1)  # fmt: skip
    assert p.augmentation == "imagenet-paper" and p.label_smoothing == 0
    t = get_recipe("imagenet-torchvision")
    assert (t.batch_size, t.lr, t.epochs, t.schedule, t.augmentation) == (256, 0.1, 90, "step", "imagenet-torchvision")
    assert [round(m * 90) for m in t.milestones] == [30, 60]
    with pytest.raises(ConfigError, match="unknown augmentation"):
        get_recipe("paper", augmentation="imagenet-fancy")


def test_plateau_divides_the_lr_after_patience_evaluations_without_improvement():
    rule = Plateau(get_recipe("imagenet-paper", plateau_patience=2, plateau_threshold=0.5))
    for error in (60.0, 50.0, 49.8, 49.7):  # improving, then two evaluations within 0.5 points of the best
        rule.observe(error)
    assert rule.drops == 1 and rule.factor() == pytest.approx(0.1) and rule.best == 50.0
    rule.observe(40.0)
    rule.observe(39.9)
    assert rule.drops == 1 and rule.stalled == 1  # the count restarted after the drop and after the improvement
    slow = Plateau(get_recipe("imagenet-paper"))  # patience 5, threshold 0.1
    for k in range(20):
        slow.observe(40.0 - 0.09 * k)  # small steps that add up: an improvement every other evaluation
    assert slow.drops == 0
    flat = Plateau(get_recipe("imagenet-paper", plateau_threshold=0.0))
    for _ in range(10):
        flat.observe(30.0)
    assert flat.drops == 1  # an unchanged error is no improvement, even with a threshold of 0
    again = Plateau(get_recipe("imagenet-paper"))
    again.load_state_dict(rule.state_dict())
    assert again.state_dict() == rule.state_dict()
    inactive = Plateau(get_recipe("paper"))
    inactive.observe(10.0)
    inactive.observe(10.0)
    assert inactive.factor() == 1.0


def _config(data, tmp_path, name, **kw) -> TrainConfig:
    recipe = get_recipe("imagenet-paper", iterations=8, batch_size=8, plateau_patience=1, plateau_threshold=100.0)
    base = dict(model="resnet18", data=str(data), image_size=32, recipe=recipe, precision="fp32", workers=0,
                out=str(tmp_path / name), log_every=2, eval_every=2, progress=False, eval_batch_size=4)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def _records(path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k != "img_per_s"} for line in path.read_text().splitlines()]


def test_a_streamed_run_stops_and_resumes_exactly_with_its_plateaus(large_data, tmp_path):
    data = large_data("shards")  # 24 training images: 3 batches of 8 per epoch, so the stop falls mid-epoch
    straight = train(_config(data, tmp_path, "straight"))
    assert straight["reported_split"] == "val" and "val_error" in straight
    assert train(_config(data, tmp_path, "split", stop_at=5)) == {}
    train(_config(data, tmp_path, "split"), resume=True)
    a, b = (read_checkpoint(tmp_path / n / "checkpoint.pt") for n in ("straight", "split"))
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    records = _records(tmp_path / "straight" / "metrics.jsonl")
    assert records == _records(tmp_path / "split" / "metrics.jsonl")
    # Any error is a plateau with threshold 100: evaluations at 2, 4 and 6 divide the lr after 4 and after 6.
    lrs = {r["iter"]: r["lr"] for r in records if "lr" in r}
    assert lrs[2] == lrs[4] == pytest.approx(0.1) and lrs[6] == pytest.approx(0.01) and lrs[8] == pytest.approx(0.001)
    assert a["preprocess"]["large"]["crop"] == 32 and a["mean"].shape == (3, 32, 32)


def test_train_and_test_as_the_paper_did_from_the_command_line(large_data, tmp_path, capsys):
    data, out = large_data("flat-val"), tmp_path / "run"
    args = ["train", "--model", "resnet18", "--recipe", "imagenet-torchvision", "--data", str(data), "--image-size",
            "32", "--epochs", "1", "--batch-size", "8", "--workers", "1", "--precision", "fp32", "--out", str(out),
            "--quiet"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["iterations"] == 3 and summary["reported_split"] == "val"
    errors = {}
    for mode in ("", "--ten-crop", "--multi-scale"):
        assert main(["eval", str(out), "--json", "--workers", "0", *([mode] if mode else [])]) == 0
        r = json.loads(capsys.readouterr().out)
        assert r["n"] == 9 and r["split"] == "val" and r["skipped"] == 0
        errors[mode] = r["error"]
    assert errors[""] == pytest.approx(summary["val_error"])
    assert r["views"] == "fully convolutional, shorter sides 32, 37, 55, 69, 91, and mirrored"
    assert main(["eval", str(out), "--multi-scale", "--scales", "32,48", "--workers", "0"]) == 0
    assert "shorter sides 32, 48, and mirrored" in capsys.readouterr().out
    assert main(["eval", str(out), "--multi-scale", "--batch-size", "4"]) == 2  # one image at a time: not ignored
    assert "--batch-size does not apply to --multi-scale" in capsys.readouterr().err
    assert main(["runs", str(out)]) == 0
    assert f"| {summary['val_error']:.2f} (val) |" in capsys.readouterr().out
    assert main(["eval", str(out), "--data", "synthetic:64"]) == 2  # one line that fits eval (it has no --recipe)
    err = capsys.readouterr().err.strip()
    assert "trained on large images (32-px crops): evaluate it on a folder or .tar" in err and "\n" not in err
    assert main(["eval", str(out), "--data-dir", str(tmp_path)]) == 2
    assert "--data-dir is the download cache of in-memory data" in capsys.readouterr().err
    data.rename(data.with_name(data.name + "-moved"))  # the data moved: eval says how to point at it
    assert main(["eval", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "data not found" in err and "pass --data to evaluate on a copy of it elsewhere" in err and "\n" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--data", "synthetic:64"], "is a 32x32 in-memory dataset: use --recipe paper or fast"),
        (["--val-split", "4"], "validated on its own val/ split"),
        (["--workers", "-1"], "workers must be >= 0"),
        (["--flip", "alternate"], "--flip alternate is for in-memory data"),
        (["--model", None], "trains a network for large images: name it with --model"),
    ],
)
def test_streamed_configuration_errors_are_one_line(large_data, tmp_path, capsys, extra, message):
    args = ["train", "--model", "resnet18", "--recipe", "imagenet-paper", "--data", str(large_data("folder")),
            "--out", str(tmp_path / "run"), *extra]  # fmt: skip
    if extra == ["--model", None]:  # no --model at all: the default is a CIFAR net
        args = args[:1] + args[3:-2]
    assert main(args) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_ten_crop_of_an_in_memory_run_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "resnet20", "--data", "synthetic:64", "--iterations", "1", "--batch-size", "16",
                 "--out", str(out), "--quiet"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["eval", str(out), "--ten-crop"]) != 0
    assert "ten-crop testing is for large images" in capsys.readouterr().err
    assert main(["eval", str(out), "--workers", "2"]) == 2
    assert "--workers sets the loading processes of streamed large images" in capsys.readouterr().err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_the_whole_process_group_stops_a_streamed_run_with_a_checkpoint(large_data, tmp_path, sig):
    """Ctrl-C in a terminal (SIGINT) and a batch scheduler's stop (SIGTERM, e.g. SLURM's) reach the DataLoader
    workers too: they must leave the stop to the main process, which checkpoints and exits with 128 + signal."""
    out = tmp_path / "run"
    args = ["train", "--model", "resnet18", "--recipe", "imagenet-paper", "--data", str(large_data("folder")),
            "--image-size", "32", "--iterations", "3000", "--batch-size", "8", "--workers", "2", "--precision",
            "fp32", "--log-every", "2", "--eval-every", "100000", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "reslab.cli", *args], stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # fmt: skip
    wait_for(lambda: len(RunDir(out).metrics()) >= 2)
    os.killpg(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err[-3000:]
    state = read_checkpoint(out / "checkpoint.pt")
    assert f"stopped at iteration {state['iteration']} of 3000" in err and "Traceback" not in err, err[-3000:]


def test_a_script_whose_streamed_run_is_interrupted_exits(large_data, tmp_path):
    """From Python, an interrupted run raises TrainingInterrupted; left uncaught, the script must still exit. The
    workers ignore SIGINT and SIGTERM (so they cannot kill a run before its checkpoint), which makes the SIGTERM
    multiprocessing sends them at interpreter exit a no-op: train() stops them itself."""
    out = tmp_path / "run"
    script = tmp_path / "script.py"
    script.write_text(
        textwrap.dedent(f"""
        from reslab import TrainConfig, get_recipe, train
        recipe = get_recipe("imagenet-paper", iterations=3000, batch_size=8)
        train(TrainConfig(model="resnet18", data={str(large_data("folder"))!r}, image_size=32, recipe=recipe,
                          workers=2, precision="fp32", log_every=2, eval_every=100000, out={str(out)!r},
                          progress=False))
    """)
    )
    proc = subprocess.Popen([sys.executable, str(script)], stderr=subprocess.PIPE, text=True, start_new_session=True)
    wait_for(lambda: len(RunDir(out).metrics()) >= 2)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)  # before the fix: waited for the workers forever
    assert proc.returncode == 1 and "TrainingInterrupted" in err, err[-3000:]
    assert read_checkpoint(out / "checkpoint.pt")["iteration"] > 0
