"""Two torchrun "nodes" on one machine (``--nnodes 2 --nproc-per-node 1``, c10d rendezvous on 127.0.0.1): each
node has its own copy of the data and its own cache folder, as nodes that share no disk do. Training equals one
process on the same global batches, for the in-memory path and the streamed large-image path; a node whose
processes die ends the other within a bounded time, with one line."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from reslab import create_model
from reslab.engine.config import TrainConfig
from reslab.engine.recipes import get_recipe
from reslab.weights.checkpoint import read_checkpoint
from tests.engine.test_distributed import assert_matches_one_process


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _node(root: Path, port: int, args: list[str], host: bool) -> subprocess.Popen:
    """One node's torchrun agent, in its own session (so that the node can be killed whole), with its own cache.
    ``host``: this node holds the rendezvous store, as the first node of a real job does. Said, not guessed: on one
    machine both agents would take the store if its port were free, and the node killed below must not be its host
    (losing the store's host is torchrun's own case)."""
    # One thread, as the one-process reference (torchrun sets it only for several processes per node)
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "RESLAB_DATA": str(root / "cache"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc-per-node", "1",
           "--rdzv-backend", "c10d", "--rdzv-endpoint", f"127.0.0.1:{port}", "--rdzv-id", "reslab-test",
           "--rdzv-conf", f"is_host={int(host)}",
           "-m", "reslab.cli", "train", *[a.replace("{node}", str(root)) for a in args]]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)  # fmt: skip


def _two_nodes(tmp_path: Path, data: Path, args: list[str], timeout: int = 240) -> list[Path]:
    """Run ``reslab train ARGS`` on two nodes, each with its own copy of ``data`` ({node} in ARGS: its folder)."""
    port, roots = _port(), [tmp_path / "node0", tmp_path / "node1"]
    for root in roots:
        root.mkdir()
        (shutil.copytree if data.is_dir() else shutil.copy)(data, root / data.name)
    procs = [_node(root, port, args, host=i == 0) for i, root in enumerate(roots)]
    for proc in procs:
        _, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err[-4000:]
    return roots


def test_two_nodes_in_memory_match_one_process_each_with_its_own_cache(tmp_path, tiny_tar_maker):
    data = tiny_tar_maker(tmp_path / "tiny.tar", train=16, test=4)
    args = [
        "--model",
        "resnet20",
        "--data",
        f"{{node}}/{data.name}",
        "--precision",
        "fp32",
        "--iterations",
        "4",
        "--batch-size",
        "8",
        "--log-every",
        "2",
        "--out",
        "{node}/run",
        "--quiet",
    ]
    node0, node1 = _two_nodes(tmp_path, data, args)
    assert list((node0 / "cache" / "folders").glob("*.pt")) and list((node1 / "cache" / "folders").glob("*.pt"))
    assert not (node1 / "run").exists()  # rank 0 alone writes the run folder
    ddp = read_checkpoint(node0 / "run" / "checkpoint.pt")
    cfg = TrainConfig(model="resnet20", data=str(data), precision="fp32", device="cpu", out=str(tmp_path / "ref"),
                      data_dir=str(tmp_path / "ref-cache"), recipe=get_recipe("paper", iterations=4, batch_size=8),
                      progress=False)  # fmt: skip
    assert_matches_one_process(ddp, cfg, lambda: create_model("resnet20", num_classes=2))


def test_two_nodes_streaming_large_images_match_one_process(tmp_path, large_data):
    data = large_data("folder", n_train=16, n_val=4)
    args = ["--model", "resnet18", "--data", f"{{node}}/{data.name}", "--recipe", "imagenet-paper", "--image-size",
            "32", "--workers", "0", "--precision", "fp32", "--iterations", "2", "--batch-size", "8", "--eval-every",
            "2", "--log-every", "1", "--out", "{node}/run", "--quiet"]  # fmt: skip
    node0, _ = _two_nodes(tmp_path, data, args)
    ddp = read_checkpoint(node0 / "run" / "checkpoint.pt")
    cfg = TrainConfig(model="resnet18", data=str(data), image_size=32, workers=0, precision="fp32", device="cpu",
                      eval_every=2, log_every=1, out=str(tmp_path / "ref"), progress=False,
                      recipe=get_recipe("imagenet-paper", iterations=2, batch_size=8))  # fmt: skip
    assert_matches_one_process(ddp, cfg, lambda: create_model("resnet18", num_classes=3))


def test_a_lost_node_ends_the_other_with_one_line(tmp_path):
    port, roots = _port(), [tmp_path / "node0", tmp_path / "node1"]
    args = [
        "--model",
        "resnet20",
        "--data",
        "synthetic:64",
        "--iterations",
        "100000",
        "--batch-size",
        "8",
        "--log-every",
        "1",
        "--out",
        "{node}/run",
        "--quiet",
    ]
    for root in roots:
        root.mkdir()
    survivor, lost = (_node(root, port, args, host=i == 0) for i, root in enumerate(roots))
    metrics = roots[0] / "run" / "metrics.jsonl"
    deadline = time.monotonic() + 180
    while not (metrics.exists() and metrics.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert metrics.exists(), survivor.communicate(timeout=5)[1][-3000:]
    # The node is gone: its agent and its training process (torchrun starts workers in sessions of their own)
    workers = subprocess.run(["pgrep", "-f", f"{roots[1]}/run"], capture_output=True, text=True).stdout.split()
    os.killpg(lost.pid, signal.SIGKILL)
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGKILL)
    lost.communicate(timeout=30)
    start = time.monotonic()
    _, err = survivor.communicate(timeout=120)
    assert time.monotonic() - start < 90
    assert survivor.returncode != 0
    ours = [line for line in err.splitlines() if line.startswith("reslab: error: rank 0 stopped")]
    assert len(ours) == 1 and "another process of the job died" in ours[0] and "--resume" in ours[0], err[-3000:]
    assert "Traceback" not in err.split("reslab: error: rank 0")[0]  # no trace from the training process
