"""torchrun: 2 CPU processes (gloo) train exactly what one process computes on the same global batches, stop and
resume together, and a dead rank ends the job with its error. Everything goes through the public API.
These are CPU tests on any machine: the ranks see no GPU (two NCCL ranks cannot share one), and the one-process
references run on the CPU."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

import pytest
import torch
from torch import nn

from reslab import create_model
from reslab.engine.config import TrainConfig
from reslab.engine.recipes import get_recipe
from reslab.engine.run import train
from reslab.engine.rundir import RunDir
from reslab.weights.checkpoint import read_checkpoint

ITERS, BATCH = 4, 16
CPU_ONLY = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}


def torchrun(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(_torchrun(*args), capture_output=True, text=True, timeout=timeout, env=CPU_ONLY)


def _torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]


def failure(proc: subprocess.CompletedProcess) -> str:
    """What the ranks printed: the start says why a rank failed, the end what torchrun made of it."""
    err = proc.stderr
    return err if len(err) < 6000 else f"{err[:4000]}\n[...]\n{err[-2000:]}"


class SplitHalves(nn.Module):
    """One process doing what DDP over 2 ranks does: each half of the global batch through the net on its own (BN
    statistics are per process under DDP); the mean loss over the batch is then the mean of the halves' means, and
    its gradient the average that DDP's all-reduce computes."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.net(half) for half in x.chunk(2)])


def assert_matches_one_process(ddp: dict, cfg: TrainConfig, build: Callable[[], nn.Module]) -> None:
    """A DDP run's weights equal those of one process training `SplitHalves` of the same net on the same config."""
    torch.manual_seed(cfg.seed)  # the initial weights `reslab train` draws
    reference = SplitHalves(build())
    # torchrun gives each worker one thread, and oneDNN's fp32 convolutions round differently with two.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train(cfg, model=reference)
    finally:
        torch.set_num_threads(threads)
    params = dict(reference.net.named_parameters())
    assert params.keys() <= ddp["model"].keys()
    for name, p in params.items():
        torch.testing.assert_close(ddp["model"][name], p.detach(), rtol=1e-5, atol=1e-6, msg=name)


def test_two_processes_match_one_process_on_the_same_global_batches(tmp_path):
    out = tmp_path / "ddp"
    proc = torchrun("-m", "reslab.cli", "train", "--model", "resnet20", "--data", "synthetic:256", "--precision",
                    "fp32", "--iterations", str(ITERS), "--batch-size", str(BATCH), "--log-every", "2",
                    "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, failure(proc)
    ddp = read_checkpoint(out / "checkpoint.pt")
    assert ddp["iteration"] == ITERS

    cfg = TrainConfig(model="resnet20", data="synthetic:256", precision="fp32", device="cpu",
                      out=str(tmp_path / "ref"), recipe=get_recipe("paper", iterations=ITERS, batch_size=BATCH),
                      progress=False)  # fmt: skip
    assert_matches_one_process(ddp, cfg, lambda: create_model("resnet20"))


def test_a_dead_rank_ends_the_job_with_its_error(tmp_path):
    script = tmp_path / "die.py"
    script.write_text(
        textwrap.dedent(f"""
        import os
        from torch import nn
        from reslab import create_model
        from reslab.engine.config import TrainConfig
        from reslab.engine.recipes import get_recipe
        from reslab.engine.run import train

        class Dying(nn.Module):  # rank 1 crashes in its 4th training step, without any goodbye to rank 0
            def __init__(self):
                super().__init__()
                self.net, self.calls = create_model("resnet20"), 0

            def forward(self, x):
                self.calls += self.training
                if os.environ["RANK"] == "1" and self.calls == 4:
                    os._exit(3)
                return self.net(x)

        cfg = TrainConfig(model="resnet20", data="synthetic:256", precision="fp32", out={str(tmp_path / "run")!r},
                          recipe=get_recipe("paper", iterations=50, batch_size=16), progress=False)
        train(cfg, model=Dying())
    """)
    )
    proc = torchrun(str(script), timeout=180)
    assert proc.returncode != 0
    # torchrun's report names the rank that failed and its own exit code
    assert re.search(r"rank\s*:\s*1 \(local_rank: 1\)\s*\n\s*exitcode\s*:\s*3 ", proc.stderr), failure(proc)


def test_two_process_stop_and_resume_matches_straight(tmp_path):
    """Exact resume under DDP too: the checkpoint carries the interval statistics summed over ranks."""
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent("""
        import sys
        from reslab.engine.config import TrainConfig
        from reslab.engine.recipes import get_recipe
        from reslab.engine.run import train
        from reslab.engine.rundir import RunDir

        out, stop = sys.argv[1], int(sys.argv[2]) or None
        cfg = TrainConfig(model="resnet20", data="synthetic:256", precision="fp32", out=out, stop_at=stop,
                          recipe=get_recipe("paper", iterations=4, batch_size=16), log_every=3, progress=False)
        train(cfg, resume=RunDir(out).status().iteration is not None)
    """)
    )
    for out, stop in (("straight", 0), ("split", 2), ("split", 0)):
        proc = torchrun(str(script), str(tmp_path / out), str(stop))
        assert proc.returncode == 0, failure(proc)
    straight = read_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    split = read_checkpoint(tmp_path / "split" / "checkpoint.pt")
    for k, v in straight["model"].items():
        assert torch.equal(v, split["model"][k]), k
    logged = [[json.loads(x)["train_error"] for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()
               if "train_error" in x] for d in ("straight", "split")]  # fmt: skip
    assert logged[0] == logged[1]  # the interval 1-3 spans the stop at 2


def test_ctrl_c_under_torchrun_stops_every_rank_at_one_checkpoint(tmp_path):
    """torchrun forwards the signal; the ranks agree on the iteration to stop at and rank 0 writes the checkpoint."""
    out = tmp_path / "run"
    args = ["-m", "reslab.cli", "train", "--model", "resnet20", "--data", "synthetic:256", "--precision", "fp32",
            "--iterations", "2000", "--batch-size", "16", "--log-every", "5", "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(_torchrun(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=CPU_ONLY)
    end = time.monotonic() + 120
    while len(RunDir(out).metrics()) < 2 and time.monotonic() < end:
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    state = read_checkpoint(out / "checkpoint.pt")
    assert f"reslab: SIGINT: stopped at iteration {state['iteration']} of 2000; checkpoint written" in err, err[-3000:]
    # rank 0 said it once; rank 1 stopped at the same agreed iteration without a word, and neither was cut short
    assert err.count("reslab: SIGINT: stopped at iteration") == 1 and "reslab: interrupted" not in err


def test_streamed_large_images_under_torchrun_match_one_process(tmp_path, large_data):
    """Each rank reads its half of every global batch of streamed images, and the plateau rule's decisions (taken
    from rank 0's evaluations) reach every rank: the weights equal one process's on the same global batches."""
    data, out = large_data("shards"), tmp_path / "ddp"
    recipe = [
        "--recipe",
        "imagenet-paper",
        "--iterations",
        "6",
        "--batch-size",
        "8",
        "--plateau-patience",
        "1",
        "--plateau-threshold",
        "100",
    ]  # every evaluation after the first is a plateau: lr / 10 at 4 and 6
    proc = torchrun("-m", "reslab.cli", "train", "--model", "resnet18", "--data", str(data), "--image-size", "32",
                    "--workers", "0", "--precision", "fp32", "--eval-every", "2", "--log-every", "2", *recipe,
                    "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, failure(proc)
    ddp = read_checkpoint(out / "checkpoint.pt")
    lrs = [r["lr"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines()) if "lr" in r]
    assert lrs == pytest.approx([0.1, 0.1, 0.01]) and ddp["schedule"]["plateau"]["drops"] == 2

    cfg = TrainConfig(model="resnet18", data=str(data), image_size=32, workers=0, precision="fp32", device="cpu",
                      eval_every=2, log_every=2, out=str(tmp_path / "ref"), progress=False,
                      recipe=get_recipe("imagenet-paper", iterations=6, batch_size=8, plateau_patience=1,
                                        plateau_threshold=100.0))  # fmt: skip
    assert_matches_one_process(ddp, cfg, lambda: create_model("resnet18", num_classes=3))
