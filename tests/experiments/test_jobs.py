"""``reslab reproduce --jobs K``: runs trained K at a time in processes of their own are the runs trained one at a time,
and a Ctrl-C stops every running job with its checkpoint and says how to go on."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from reslab.engine.rundir import RunDir
from reslab.errors import ReslabError
from reslab.experiments.jobs import threads_per_job
from reslab.experiments.runner import Runner, RunSpec, get_budget
from reslab.weights.checkpoint import read_checkpoint

DATA = "synthetic:256"


def test_jobs_train_the_runs_one_at_a_time_would(tmp_path: Path, capfd) -> None:
    budget = get_budget("smoke")
    specs = [RunSpec("resnet20", seed) for seed in (0, 1)]
    runner = Runner(DATA, tmp_path / "jobs", budget, jobs=2)
    runner.run_all(specs)
    err = capfd.readouterr().err
    assert "run 1/2: resnet20-s0 started (job 1 of 2)" in err and "run 2/2: resnet20-s1 started (job 2 of 2)" in err
    # The same run, trained in this process: the same config, iterations and weights.
    alone = Runner(DATA, tmp_path / "alone", budget, progress=False)
    threads = torch.get_num_threads()
    torch.set_num_threads(threads_per_job(2))  # as each job had: the kernels then sum in the same order
    try:
        alone.run_all(specs[:1])
    finally:
        torch.set_num_threads(threads)
    a, b = RunDir(tmp_path / "jobs" / "runs" / "resnet20-s0"), RunDir(alone.run_dir(specs[0]))
    assert a.config().differences(b.config()) == [] and a.summary()["iterations"] == b.summary()["iterations"] == 6
    wa, wb = (read_checkpoint(r.path / "checkpoint.pt")["model"] for r in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    # A rerun finds both finished and trains nothing; a job that cannot train fails alone and is named.
    runner.run_all(specs)
    assert capfd.readouterr().err.count("already done (summary.json), skipped") == 2
    (tmp_path / "bad" / "runs" / "resnet20-s1").mkdir(parents=True)
    (tmp_path / "bad" / "runs" / "resnet20-s1" / "checkpoint.pt").write_text("not a checkpoint")
    with pytest.raises(ReslabError, match=r"^1 of 2 runs failed: run 2/2: resnet20-s1 \(exit 2\)"):
        Runner(DATA, tmp_path / "bad", budget, jobs=2).run_all(specs)
    assert RunDir(tmp_path / "bad" / "runs" / "resnet20-s0").status().finished  # the other job went on
    assert "reslab: error:" in capfd.readouterr().err


def test_ctrl_c_stops_every_running_job_with_its_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "out"
    # The smoke budget made long enough to be stopped part-way (the jobs read their configs, not this module).
    code = textwrap.dedent("""
        import dataclasses, sys
        from reslab.experiments import budgets
        budgets.BUDGETS["smoke"] = dataclasses.replace(budgets.BUDGETS["smoke"], iterations=400, log_every=2)
        from reslab.cli import main
        sys.exit(main(sys.argv[1:]))
    """)
    argv = ["reproduce", "depth", "--data", DATA, "--out", str(out), "--budget", "smoke", "--jobs", "2"]
    proc = subprocess.Popen([sys.executable, "-c", code, *argv], stderr=subprocess.PIPE, text=True)
    runs = [out / "runs" / f"resnet{d}-val-s0" for d in (20, 32, 44)]
    end = time.monotonic() + 120
    while not all(RunDir(r).metrics() for r in runs[:2]):
        assert time.monotonic() < end and proc.poll() is None, proc.communicate(timeout=60)[1]
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)  # to this process only: the jobs run in sessions of their own
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert err.rstrip().splitlines()[-1] == (
        "reslab: SIGINT: the running jobs stopped, each with a checkpoint in its run folder; run the same "
        "`reslab reproduce` command again to continue"
    )
    assert "Traceback" not in err
    for run in runs[:2]:
        status = RunDir(run).status()
        assert not status.finished and 0 < read_checkpoint(run / "checkpoint.pt")["iteration"] < 400
    assert not runs[2].exists()  # not started: nothing written
