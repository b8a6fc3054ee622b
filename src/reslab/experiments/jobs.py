"""``reslab reproduce --jobs K``: K of an experiment's runs at once on one device, each in its own process.

Why: one CIFAR run keeps a large GPU mostly idle (../shared/GPU-CHECKS.md: 8 concurrent ResNet-20 runs gave 3.9x the
throughput of one on an H100). Why processes and not threads: each run keeps its own CUDA context, RNG streams and
signal handling, and one run's failure leaves the others running. A job trains exactly what `Runner.train_one` would
(the same config, folder and resume), so a run trained here is the same run as one trained alone.

Signals: the jobs run in sessions of their own, so a Ctrl-C at the terminal (or a SIGTERM to this process) reaches
them once, through this process: each running job finishes its step, writes its checkpoint and exits, runs not yet
started stay untouched, and the command stops with `TrainingInterrupted` as a single run does. A second signal is
passed on too: the jobs then stop without a new checkpoint, as a single run does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from reslab.errors import ReslabError, TrainingInterrupted

Job = tuple[str, Any, bool]  # (progress head, TrainConfig, resume)


def threads_per_job(jobs: int) -> int:
    """CPU threads for each of ``jobs`` processes: the cores (or fewer, where OMP_NUM_THREADS asks for fewer) shared
    out, each at least one."""
    cores = os.cpu_count() or 1
    asked = os.environ.get("OMP_NUM_THREADS", "")
    if asked.isdigit() and int(asked) > 0:
        cores = min(cores, int(asked))
    return max(1, cores // jobs)


def train_in_parallel(runs: Sequence[Job], jobs: int, say: Callable[[str], None]) -> None:
    """Train ``runs`` with at most ``jobs`` at once; returns when all finished, raises if any failed or a signal
    stopped them (after every running job has written its checkpoint)."""
    waiting, live = list(runs), {}
    stop: list[int] = []
    failed: list[str] = []
    threads = threads_per_job(jobs)

    def handle(signum: int, frame: object) -> None:
        if not stop:
            say(f"{signal.Signals(signum).name} received: each running job finishes its step and writes a checkpoint")
        stop.append(signum)
        for p in live:
            p.send_signal(signum)

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while live or (waiting and not stop):
            while waiting and len(live) < jobs and not stop:
                head, config, resume = waiting.pop(0)
                say(f"{head} {'resumed' if resume else 'started'} (job {len(live) + 1} of {jobs})")
                live[_start(config, resume, threads)] = (head, time.perf_counter())
            time.sleep(0.2)
            for p in [p for p in live if p.poll() is not None]:
                head, t0 = live.pop(p)
                if p.returncode == 0:
                    say(f"{head} finished in {time.perf_counter() - t0:.0f} s")
                elif not stop:
                    failed.append(f"{head} (exit {p.returncode})")
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for p in live:  # only when this loop itself failed: leave no job running unwatched
            p.terminate()
            p.wait()
    if stop:
        where = ("the running jobs stopped, each with a checkpoint in its run folder" if len(stop) == 1 else
                 "the running jobs stopped at once (a second signal), each with its last checkpoint")  # fmt: skip
        raise TrainingInterrupted(signal.Signals(stop[0]).name, stop[0], where)
    if failed:
        raise ReslabError(f"{len(failed)} of {len(runs)} runs failed: {', '.join(failed)}; their messages are above")


def _start(config: Any, resume: bool, threads: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    p = subprocess.Popen([sys.executable, "-m", "reslab.experiments.jobs"], stdin=subprocess.PIPE, env=env,
                         start_new_session=True)  # fmt: skip
    assert p.stdin is not None
    p.stdin.write(json.dumps({"config": config.to_dict(), "resume": resume, "threads": threads}).encode())
    p.stdin.close()
    return p


def _job() -> int:
    """One job: read its config from stdin and train it; 0 when finished, 128 + signal when stopped."""
    try:
        import torch

        from reslab.engine.config import TrainConfig
        from reslab.engine.run import train
        from reslab.tasks.classification_run import load_data

        job = json.loads(sys.stdin.read())
        torch.set_num_threads(job["threads"])
        config = TrainConfig.from_dict(job["config"])
        train(config, data=load_data(config), resume=job["resume"])
        return 0
    except TrainingInterrupted as e:
        return e.exit_code
    except KeyboardInterrupt:  # stopped while starting, before training's own handler: nothing was written
        return 130
    except ReslabError as e:
        print(f"reslab: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(_job())
