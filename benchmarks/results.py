"""Where a benchmark's output goes: the printed table and a JSON of its rows, with machine, date and commit.

    Results(name, out).print(line) ... .row({...}) ... .save()
writes OUT.md (the command, the machine, the date, the commit and the printed lines) and OUT.json (the same facts
and the rows), by default under docs/results/benchmarks/, so that README cites a file, not a memory.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import Any

from reslab.engine.runinfo import run_info
from reslab.files import write_text

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "docs" / "results" / "benchmarks"


class Results:
    def __init__(self, name: str, out: str | None = None) -> None:
        self.path = Path(out) if out else DEFAULT_DIR / name
        self.info = {"benchmark": name, "command": shlex.join(["python", *sys.argv]), **run_info()}
        self.lines: list[str] = []
        self.rows: list[dict[str, Any]] = []

    def print(self, line: str = "") -> None:
        print(line, flush=True)
        self.lines.append(line)

    def row(self, row: dict[str, Any]) -> None:
        self.rows.append(row)

    def save(self) -> None:
        i = self.info
        head = [f"# {i['benchmark']}", "", f"- Command: `{i['command']}`", f"- Machine: {i['machine']}; torch "
                f"{i['torch']}, {i['torch_threads']} threads", f"- Date: {i['date']}", f"- Commit: {i['git_commit']}",
                "", "```text", *self.lines, "```", ""]  # fmt: skip
        write_text(self.path.with_suffix(".md"), "\n".join(head))
        write_text(self.path.with_suffix(".json"), json.dumps({**i, "rows": self.rows}, indent=2) + "\n")
        print(f"written: {self.path.with_suffix('.md')}, {self.path.with_suffix('.json')}")
