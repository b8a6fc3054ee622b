"""torchrun: 2 CPU processes (gloo) train exactly what one process computes on the same global batches."""

import json
import subprocess
import sys
import textwrap

import torch

from reslab.engine.checkpoint import load_checkpoint
from reslab.engine.config import TrainConfig
from reslab.engine.recipes import get_recipe
from reslab.engine.trainer import Trainer

ITERS, BATCH = 4, 16


def torchrun(*args: str, timeout: int = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def failure(proc: subprocess.CompletedProcess) -> str:
    """What the ranks printed: the start says why a rank failed, the end what torchrun made of it."""
    err = proc.stderr
    return err if len(err) < 6000 else f"{err[:4000]}\n[...]\n{err[-2000:]}"


def test_two_processes_match_one_process_on_the_same_global_batches(tmp_path):
    out = tmp_path / "ddp"
    proc = torchrun("-m", "reslab.cli", "train", "--model", "resnet20", "--data", "synthetic:256", "--precision",
                    "fp32", "--iterations", str(ITERS), "--batch-size", str(BATCH), "--log-every", "2",
                    "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, failure(proc)
    ddp = load_checkpoint(out / "checkpoint.pt")
    assert ddp["iteration"] == ITERS

    # Reference: one process, the same global batches, each half through the net separately (BN statistics are
    # per process under DDP), gradients averaged as DDP's all-reduce does.
    cfg = TrainConfig(model="resnet20", data="synthetic:256", precision="fp32", out=str(tmp_path / "ref"),
                      recipe=get_recipe("paper", iterations=ITERS, batch_size=BATCH), progress=False)  # fmt: skip
    # torchrun gives each worker one thread, and oneDNN's fp32 convolutions round differently with two.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = reference_run(cfg)
    finally:
        torch.set_num_threads(threads)
    params = dict(ref.model.named_parameters())
    assert params.keys() <= ddp["model"].keys()
    for name, p in params.items():
        torch.testing.assert_close(ddp["model"][name], p.detach(), rtol=1e-5, atol=1e-6, msg=name)


def reference_run(cfg: TrainConfig) -> Trainer:
    ref = Trainer(cfg)
    ref.model.train()
    for _ in range(ITERS):
        ref._set_lr()
        x, y = next(ref.stream)
        half = BATCH // 2
        loss = sum(ref.criterion(ref.model(x[i : i + half]), y[i : i + half]) for i in (0, half)) / 2
        ref.optimizer.zero_grad()
        loss.backward()
        ref.optimizer.step()
        ref.iteration += 1
    return ref


def test_a_dead_rank_ends_the_job_with_an_error(tmp_path):
    script = tmp_path / "die.py"
    script.write_text(
        textwrap.dedent(f"""
        import os
        from reslab.engine.config import TrainConfig
        from reslab.engine.recipes import get_recipe
        from reslab.engine.trainer import Trainer

        cfg = TrainConfig(model="resnet20", data="synthetic:256", precision="fp32", out={str(tmp_path / "run")!r},
                          recipe=get_recipe("paper", iterations=50, batch_size=16), progress=False)
        t = Trainer(cfg)
        if os.environ["RANK"] == "1":
            real = t._step
            def dying(x, y, stats):
                if t.iteration == 3:
                    os._exit(3)  # a crash without any goodbye to the other rank
                real(x, y, stats)
            t._step = dying
        t.fit()
    """)
    )
    proc = torchrun(str(script), timeout=180)
    assert proc.returncode != 0


def test_two_process_stop_and_resume_matches_straight(tmp_path):
    """Exact resume under DDP too: the checkpoint carries the interval statistics summed over ranks."""
    script = tmp_path / "run.py"
    script.write_text(
        textwrap.dedent("""
        import sys
        from reslab.engine.config import TrainConfig
        from reslab.engine.recipes import get_recipe
        from reslab.engine.trainer import train

        out, stop = sys.argv[1], int(sys.argv[2]) or None
        cfg = TrainConfig(model="resnet20", data="synthetic:256", precision="fp32", out=out, stop_at=stop,
                          recipe=get_recipe("paper", iterations=4, batch_size=16), log_every=3, progress=False)
        train(cfg, resume=True)
    """)
    )
    for out, stop in (("straight", 0), ("split", 2), ("split", 0)):
        proc = torchrun(str(script), str(tmp_path / out), str(stop))
        assert proc.returncode == 0, failure(proc)
    straight = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    split = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    for k, v in straight["model"].items():
        assert torch.equal(v, split["model"][k]), k
    logged = [
        [
            json.loads(x)["train_error"]
            for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()
            if "train_error" in x
        ]
        for d in ("straight", "split")
    ]
    assert logged[0] == logged[1]  # the interval 1-3 spans the stop at 2
