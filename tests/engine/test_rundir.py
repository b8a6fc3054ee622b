"""The run folder under faults: a second process, a kill, a full disk, untrusted checkpoints, old configs."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from reslab.cli import main
from reslab.engine.config import TrainConfig
from reslab.engine.rundir import RunDir, RunInUse
from reslab.errors import ConfigError, ReslabError
from reslab.files import atomic_write
from reslab.weights.checkpoint import read_checkpoint

REPO = Path(__file__).resolve().parents[2]
TINY = ["train", "--model", "resnet20", "--data", "synthetic:256", "--iterations", "12", "--batch-size", "32",
        "--precision", "fp32", "--log-every", "4", "--eval-every", "6"]  # fmt: skip


def python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    """A Python process running ``code`` (the reslab CLI behind a few limits the test sets)."""
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)  # fmt: skip


def wait_for(condition, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("timed out")
        time.sleep(0.05)


def test_a_second_training_into_the_same_folder_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "reslab.cli", *TINY[:-6], "--iterations", "100000", "--out",
                              str(out), "--quiet"], stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_for(lambda: (out / "checkpoint.pt").exists())  # the one at iteration 0
        before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "metrics.jsonl"}
        for extra in ([], ["--resume"]):
            assert main([*TINY, "--out", str(out), *extra]) == 2
            err = capsys.readouterr().err.strip()
            assert err == (f"reslab: error: {out} is in use by another reslab process (pid {first.pid}); wait for it, "
                           "or choose another --out")  # fmt: skip
        assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "metrics.jsonl"} == before
    finally:
        first.kill()  # SIGKILL: no goodbye, yet the kernel releases the lock
        first.wait()
    with RunDir(out).lock():
        pass
    assert main([*TINY, "--out", str(out)]) == 2  # the killed run is still there: not silently replaced
    assert capsys.readouterr().err == (f"reslab: error: {out} already holds a run (unfinished: checkpoint at "
                                       "iteration 0 of 100000): pass --resume to continue it, or choose another "
                                       "--out\n")  # fmt: skip
    # a run killed at once can be continued: it wrote a checkpoint before its first step
    assert main([*TINY[:-6], "--iterations", "100000", "--out", str(out), "--resume", "--stop-at", "2"]) == 0


def test_a_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TINY, "--out", str(out), "--stop-at", "6"]) == 0
    capsys.readouterr()
    before = (out / "checkpoint.pt").read_bytes()
    # The resumed session may write files of at most 64 KiB, less than a checkpoint (2.2 MB): the checkpoint's
    # torch.save fails inside its C++ writer, the way a full disk makes it fail.
    proc = python(
        """
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (65536, 65536))
        from reslab.cli import main
        sys.exit(main(sys.argv[1:]))
    """,
        *TINY,
        "--out",
        str(out),
        "--resume",
        "--quiet",
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"reslab: error: cannot write {out / 'checkpoint.pt'}: ") and "MiB free there" in err
    assert err.rstrip().endswith("; any earlier version of the file is intact")
    assert (out / "checkpoint.pt").read_bytes() == before and read_checkpoint(out / "checkpoint.pt")["iteration"] == 6
    assert sorted(p.name for p in out.iterdir()) == [".lock", "checkpoint.pt", "config.json", "metrics.jsonl"]


def test_atomic_write_keeps_the_old_file_whatever_goes_wrong(tmp_path):
    path = tmp_path / "f"
    path.write_text("old")
    for failure in (OSError(28, "No space left on device"), RuntimeError("[enforce fail at inline_container.cc]"),
                    KeyboardInterrupt()):  # fmt: skip
        with pytest.raises((ReslabError, KeyboardInterrupt)) as err, atomic_write(path, "w") as f:
            f.write("partial")
            raise failure
        if not isinstance(failure, KeyboardInterrupt):
            assert str(err.value).startswith(f"cannot write {path}: ") and "earlier version" in str(err.value)
        assert path.read_text() == "old" and os.listdir(tmp_path) == ["f"]
    with pytest.raises(ValueError, match="a bug"), atomic_write(path, "w"):  # not an I/O failure: unchanged
        raise ValueError("a bug")


def test_checkpoint_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"model": Evil(), "config": {}}, path)
    with pytest.raises(ReslabError, match="not a valid reslab checkpoint"):
        read_checkpoint(path)


def test_checkpoint_without_required_entries_is_refused(tmp_path):
    torch.save({"model": {}, "config": {}, "iteration": 0, "classes": ["a"]}, tmp_path / "c.pt")
    with pytest.raises(ReslabError, match="no 'mean' entry"):
        read_checkpoint(tmp_path / "c.pt")


def test_unknown_config_fields_are_refused():
    d = TrainConfig().to_dict()
    assert TrainConfig.from_dict(d) == TrainConfig()
    d["recipe"]["lookahead"] = True
    with pytest.raises(ConfigError, match="unknown configuration field 'lookahead'"):
        TrainConfig.from_dict(d)


def test_configs_of_earlier_versions_are_read():
    """docs/results holds run folders written before the engine's reshaping: a recipe with both lengths set."""
    record = json.loads((REPO / "docs" / "results" / "resnet20-fast" / "config.json").read_text())
    assert record["config"]["recipe"]["iterations"] == 64000 and record["config"]["recipe"]["epochs"] == 28
    recipe = TrainConfig.from_dict(record["config"]).recipe
    assert recipe.iterations is None and recipe.epochs == 28 and recipe.resolve_iterations(50_000) == 5469


def test_status_describes_what_a_folder_holds(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.status().describe() == "no run"
    assert main([*TINY, "--out", str(run.path), "--stop-at", "6", "--quiet"]) == 0
    assert run.status().describe() == "unfinished: checkpoint at iteration 6 of 12"
    assert main([*TINY, "--out", str(run.path), "--resume", "--quiet"]) == 0
    assert run.status().finished and run.status().describe() == "finished"


def test_a_finished_run_records_its_final_models_mistakes(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.mistakes("test") is None  # no record: a caller evaluates the model itself
    assert main([*TINY, "--out", str(run.path), "--quiet"]) == 0
    misses, how = run.mistakes("test")
    assert how == {"source": "final evaluation", "precision": "fp32", "device": "cpu", "views": 1}
    assert 100 * sum(misses) / len(misses) == pytest.approx(run.summary()["test_error"], abs=1e-9)
    assert "mistakes" not in run.summary() and run.mistakes("val") is None
    record = json.loads(run.file("mistakes.json").read_text())
    run.file("mistakes.json").write_text(json.dumps({**record, "splits": {"test": "01x"}}))
    with pytest.raises(ConfigError, match="its 'test' entry is not a string of 0s and 1s"):
        run.mistakes("test")


def test_the_lock_is_held_while_training(tmp_path):
    run = RunDir(tmp_path / "run")
    with run.lock(), pytest.raises(RunInUse, match=f"pid {os.getpid()}"), RunDir(run.path).lock():
        pass
    assert not run.path.exists()  # created for the lock, left empty: removed again


def test_sigterm_stops_with_a_checkpoint_that_resumes(tmp_path, capsys):
    """SIGINT and SIGTERM finish the current step, write a checkpoint, say where, and exit with 128 + signal."""
    out = tmp_path / "run"
    args = [*TINY[:-6], "--iterations", "120", "--log-every", "5", "--eval-every", "1000", "--out", str(out)]
    for sig in (signal.SIGINT, signal.SIGTERM):
        logged = len(RunDir(out).metrics())
        proc = subprocess.Popen([sys.executable, "-m", "reslab.cli", *args, *(["--resume"] if logged else [])],
                                stderr=subprocess.PIPE, text=True)  # fmt: skip
        wait_for(lambda n=logged: len(RunDir(out).metrics()) >= n + 2)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 128 + sig, err
        state = read_checkpoint(out / "checkpoint.pt")
        line = (f"reslab: {signal.Signals(sig).name}: stopped at iteration {state['iteration']} of 120; checkpoint "
                f"written to {out / 'checkpoint.pt'}; continue with --resume")  # fmt: skip
        assert err.rstrip().splitlines()[-1] == line and "Traceback" not in err
    assert main([*args, "--resume", "--quiet"]) == 0
    iters = [r["iter"] for r in RunDir(out).metrics() if "train_error" in r]
    assert iters == list(range(5, 121, 5))  # every interval once: no record lost or repeated over two interruptions


def test_a_second_signal_stops_at_once(tmp_path):
    out = tmp_path / "run"
    # Steps of a second or so (batch 512 of ResNet-56), so that the second signal comes during the first one's step.
    args = ["train", "--model", "resnet56", "--data", "synthetic:512", "--batch-size", "512", "--iterations", "1000",
            "--precision", "fp32", "--log-every", "1", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "reslab.cli", *args], stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(RunDir(out).metrics()) >= 1)
    proc.send_signal(signal.SIGINT)
    lines = []
    while not any("SIGINT received" in line for line in lines):
        lines.append(proc.stderr.readline())
    proc.send_signal(signal.SIGINT)  # while the step the first one lets finish is still running
    err = "".join(lines) + proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, err
    assert err.rstrip().splitlines()[-1] == "reslab: interrupted (SIGINT again: stopped without a new checkpoint)"
    assert read_checkpoint(out / "checkpoint.pt")["iteration"] == 0  # the checkpoint before the first step, intact


def test_check_start_says_what_to_do(tmp_path):
    run = RunDir(tmp_path / "run")
    with pytest.raises(ConfigError, match=r"no checkpoint in .*run \(check --out, or leave out --resume"):
        run.check_start(resume=True)
    run.path.mkdir()
    (run.path / "config.json").write_text("{}")  # a start that died before its first checkpoint was written
    with pytest.raises(ConfigError, match=r"\(it never started: leave out --resume\)"):
        run.check_start(resume=True)
    assert not run.check_start(resume=False).started  # ... and may be started over
    (run.path / "metrics.jsonl").write_text("{}\n")
    with pytest.raises(ConfigError, match=r"already holds a run \(stopped before its first checkpoint\): delete it"):
        run.check_start(resume=False)


def test_a_recorded_in_memory_run_with_workers_still_reads():
    """Earlier versions accepted --workers for in-memory data (where it never applied); their configs still load."""
    d = TrainConfig().to_dict()
    d["workers"] = 2
    assert TrainConfig.from_dict(d) == TrainConfig()
    with pytest.raises(ConfigError, match="--workers sets the data-loading processes"):
        TrainConfig(workers=2)


def test_recorded_detection_runs_with_fields_they_never_read_still_load():
    """Earlier versions accepted `detect train --strict --image-size ...` and min_size above max_size; those runs
    load (eval, predict, resume) with the fields reset, which is what they computed."""
    from reslab.engine.recipes import get_recipe

    base = TrainConfig(model="fasterrcnn_resnet20_c4", data="/data/coco", recipe=get_recipe("detection"),
                       init="resnet20", model_kwargs={"min_size": 96, "max_size": 96})  # fmt: skip
    d = base.to_dict()
    d.update(strict_data=True, image_size=48, data_dir="/cache", model_kwargs={"min_size": 128, "max_size": 96})
    d["recipe"].update(label_smoothing=0.1, tta_flip=True, flip="alternate", paper_warmup_min_depth=20)
    d["sync_bn"] = True
    assert TrainConfig.from_dict(d) == base
    with pytest.raises(ConfigError, match="detection runs do not use --strict"):
        dataclasses.replace(base, strict_data=True)


def test_recipe_fields_the_schedule_does_not_read_are_no_difference():
    """A run recorded with --gamma on a cosine schedule (accepted before such flags were refused) resumes without it;
    a field the schedule reads still counts."""
    from reslab.engine.recipes import get_recipe

    cosine = TrainConfig(recipe=get_recipe("paper", schedule="cosine"))
    recorded = dataclasses.replace(cosine, recipe=dataclasses.replace(cosine.recipe, gamma=0.5, milestones=(0.3,)))
    assert cosine.differences(recorded) == []
    floor = get_recipe("paper", schedule="cosine", final_lr_fraction=0.1)
    assert cosine.differences(dataclasses.replace(cosine, recipe=floor)) == ["recipe.final_lr_fraction"]
    step = TrainConfig()
    assert step.differences(dataclasses.replace(step, recipe=dataclasses.replace(step.recipe, gamma=0.5))) == [
        "recipe.gamma"
    ]
