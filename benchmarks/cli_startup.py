"""How long the `reslab` command takes to answer before it does any work: help, a mistyped command, a bad flag.

    python benchmarks/cli_startup.py [--repeat 5] [--out docs/results/benchmarks/cli_startup.md]

Each command runs in a fresh interpreter, ``--repeat`` times; the median wall-clock is printed beside the reference
run, a bare ``python -c pass`` on the same machine, as a ratio. None of these imports torch: the declarations the
parsers read live in light modules (tests/test_cli.py checks that torch stays unloaded; this times it).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

COMMANDS = {
    "python -c pass (reference)": [sys.executable, "-c", "pass"],
    "reslab --help": [sys.executable, "-m", "reslab.cli", "--help"],
    "reslab nope": [sys.executable, "-m", "reslab.cli", "nope"],
    "reslab train --bad-flag": [sys.executable, "-m", "reslab.cli", "train", "--bad-flag"],
    "reslab train --help": [sys.executable, "-m", "reslab.cli", "train", "--help"],
}


def median_seconds(argv: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=False)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--out", default=None, help="also write the table here (markdown)")
    a = p.parse_args()
    from reslab.engine.runinfo import run_info

    info = run_info()
    rows = {name: median_seconds(argv, a.repeat) for name, argv in COMMANDS.items()}
    ref = rows["python -c pass (reference)"]
    lines = [
        f"CLI start-up, median of {a.repeat} (s); {info['machine']}; {info['date']}; reslab {info['git_commit']}",
        "",
        "| command | seconds | x reference |",
        "|---|---:|---:|",
    ]
    lines += [f"| `{name}` | {sec:.3f} | {sec / ref:.1f} |" for name, sec in rows.items()]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)


if __name__ == "__main__":
    main()
