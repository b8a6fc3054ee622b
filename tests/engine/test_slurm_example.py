"""docs/slurm/train.sbatch runs as Slurm would run it, with ``srun`` and ``scontrol`` stand-ins on PATH (a one-node
allocation of two CPU processes): the job is sent SIGTERM mid-run, as at a preemption or its time limit, asks to be
requeued, and its second start continues with --resume to the weights of a job that was never stopped."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from reslab.weights.checkpoint import read_checkpoint

SCRIPT = Path(__file__).resolve().parents[2] / "docs" / "slurm" / "train.sbatch"
# Long enough that the stop lands mid-run: under torchrun the ranks compare their stop flags about every
# AGREE_SECONDS (5 s; each step here writes a checkpoint), so a run that ends sooner after the signal stops at its end.
ARGS = ["--iterations", "300", "--batch-size", "8", "--log-every", "10", "--eval-every", "300", "--precision", "fp32",
        "--quiet"]  # fmt: skip


def _slurm(tmp_path: Path, out: Path, args: list[str], python: str = sys.executable) -> subprocess.Popen:
    bin_ = tmp_path / "bin"
    if not bin_.exists():
        bin_.mkdir()
        (bin_ / "srun").write_text('#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\nexec "$@"\n')
        (bin_ / "scontrol").write_text(f'#!/bin/bash\nif [ "$1" = show ]; then echo 127.0.0.1; else echo "$*" >> '
                                       f'{tmp_path}/scontrol.log; fi\n')  # fmt: skip
        (bin_ / "python").write_text(f'#!/bin/bash\nexec {python} "$@"\n')
        for f in bin_.iterdir():
            f.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_}:{os.environ['PATH']}",
        "CUDA_VISIBLE_DEVICES": "",
        "SLURM_NNODES": "1",
        "SLURM_JOB_NODELIST": "node1",
        "SLURM_JOB_ID": "42",
        "GPUS": "2",
        "OUT": str(out),
        "DATA": "synthetic:64",
        "MODEL": "resnet20",
        "RECIPE": "paper",
        "RESLAB_DATA": str(tmp_path / "cache"),
        "PORT": str(_port()),
    }
    return subprocess.Popen(["bash", str(SCRIPT), *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)  # fmt: skip


def _port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_slurm_script_survives_a_preemption_exactly(tmp_path):
    straight = _slurm(tmp_path, tmp_path / "straight", ARGS)
    _, err = straight.communicate(timeout=240)
    assert straight.returncode == 0, err[-3000:]

    out = tmp_path / "preempted"
    job = _slurm(tmp_path, out, [*ARGS, "--checkpoint-every", "1"])
    metrics = out / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (metrics.exists() and metrics.stat().st_size):
        time.sleep(0.2)
    agent = int(subprocess.run(["pgrep", "-f", f"torch.distributed.run.*{out}"], capture_output=True,
                               text=True).stdout.split()[0])  # fmt: skip
    # The ranks are held while the signal travels, so that it reaches them mid-run however loaded the machine is
    # (unheld, a slow poll on a loaded machine could let the run get far before the signal).
    ranks = [int(p) for p in subprocess.run(["pgrep", "-P", str(agent)], capture_output=True, text=True).stdout.split()]
    assert len(ranks) == 2, ranks
    for rank in ranks:
        os.kill(rank, signal.SIGSTOP)
    os.kill(agent, signal.SIGTERM)  # what srun passes on at a preemption; torchrun passes it to every rank
    time.sleep(1)
    for rank in ranks:
        os.kill(rank, signal.SIGCONT)
    _, err = job.communicate(timeout=120)
    assert job.returncode != 0 and "reslab: SIGTERM: stopped at iteration" in err, err[-3000:]
    assert "requeue 42" in (tmp_path / "scontrol.log").read_text()
    stopped = read_checkpoint(out / "checkpoint.pt")["iteration"]
    assert 0 < stopped < 300 and not (out / "summary.json").exists(), stopped

    again = _slurm(tmp_path, out, [*ARGS, "--checkpoint-every", "1"])  # the requeued job: same script, same args
    _, err = again.communicate(timeout=240)
    assert again.returncode == 0, err[-3000:]
    a, b = read_checkpoint(out / "checkpoint.pt"), read_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    assert a["iteration"] == b["iteration"] == 300
    for name, tensor in b["model"].items():
        assert torch.equal(a["model"][name], tensor), name
