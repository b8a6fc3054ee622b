"""The whole paper, one command: every experiment in dependency order, then a scorecard of the paper's claims.

``reslab reproduce all --data DATA --budget B --out DIR`` runs table1, degradation, depth, responses, construction,
signals, single-layer, highway, shortcuts and detection with one runner, so that a run two experiments share (Fig. 6's
ResNet-20 serves Table 6, Fig. 7, the highway and detection comparisons) is trained once, and a killed command picks
up where it stopped (finished runs are skipped, a partial one resumes). It ends with ``DIR/README.md``: one row per
claim of the paper, with the paper's figure, reslab's, the verdict (reproduced / not reproduced / not resolved at this
budget) and the noise margin that decided it, and a link to the experiment's report and figures. Each experiment
states its own claims (``claims`` in its results.json); this module only collects them.
"""

from __future__ import annotations

import importlib
import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

from reslab.engine.runinfo import run_info
from reslab.errors import ConfigError, TrainingInterrupted
from reslab.experiments import EXPERIMENTS, ONE_SEED, TRAINS_NOTHING, module_of
from reslab.experiments.report import markdown_table
from reslab.experiments.runner import Context, Runner, get_budget
from reslab.files import write_text

# Dependency order: experiments that reuse runs come after the one that names them first.
ORDER = ("table1", "degradation", "depth", "responses", "construction", "signals", "single-layer", "highway",
         "shortcuts", "detection")  # fmt: skip
assert set(ORDER) == set(EXPERIMENTS), "every experiment has its place in `reslab reproduce all`"


NOT_RUN = "not run"


def reproduce_all(runner: Runner, out: Path, seeds: int = 1, command: str = "") -> Path:
    """Every experiment under ``out`` (sharing ``runner``'s runs), then the scorecard; returns its path. Stopped by
    a signal, it writes the scorecard of the experiments reported so far (the others "not run") before it stops."""
    started = time.perf_counter()
    try:
        for name in ORDER:
            runner.say(f"experiment {ORDER.index(name) + 1}/{len(ORDER)}: {name}")
            ctx = Context(name, runner, out / name, seeds=1 if name in ONE_SEED else seeds)
            importlib.import_module(module_of(name)).run(ctx)
    except TrainingInterrupted:
        write_scorecard(out, runner.budget.name, command, time.perf_counter() - started)
        raise
    return write_scorecard(out, runner.budget.name, command, time.perf_counter() - started)


def collect(out: Path, budget: str) -> tuple[list[dict[str, Any]], str]:
    """The claims of every experiment's results.json under ``out``, in ORDER (a missing experiment says so), and the
    data they trained on as the first that trains anything names it."""
    rows, label = [], ""
    for name in ORDER:
        path = out / name / "results.json"
        if not path.is_file():
            rows.append({"claim": EXPERIMENTS[name], "paper": "", "reslab": "", "verdict": NOT_RUN, "margin": "",
                         "report": ""})  # fmt: skip
            continue
        doc = json.loads(path.read_text())
        if doc.get("budget") != budget:
            raise ConfigError(
                f"{path} is the {doc.get('budget')!r} budget's, not {budget!r}: another --budget or --out?"
            )
        if not label and name not in TRAINS_NOTHING:
            label = str(doc.get("data_label", ""))
        for c in doc.get("claims", []):
            rows.append({**c, "report": f"[{name}]({name}/report.md)"})
    return rows, label or "none reported yet"


def partial_note(missing: int) -> str:
    return (f"- Partial: {missing} experiments are not reported under this folder yet (`not run`); `reslab "
            "reproduce all` with this --out and --budget (without --scorecard-only) runs them, reusing every "
            "finished run")  # fmt: skip


def write_scorecard(out: Path, budget: str, command: str = "", seconds: float | None = None) -> Path:
    """``out/README.md`` (and scorecard.json) from the experiments reported under ``out``; trains nothing."""
    rows, data = collect(out, budget)
    counts = Counter(r["verdict"] for r in rows)
    info = run_info()
    summary = ", ".join(f"{n} {v}" for v, n in counts.most_common())
    described = get_budget(budget)
    lines = [
        f"# Scorecard: the paper's claims at the `{budget}` budget",
        "",
        "He, Zhang, Ren, Sun, *Deep Residual Learning for Image Recognition* (CVPR 2016), reproduced by reslab.",
        "",
        f"- Command: `{command}`" if command else "- Command: `reslab reproduce all`",
        f"- Data: {data}",
        f"- Budget: `{budget}`: {described.note}",
        f"- Machine: {info['machine']}; torch {info['torch']}; reslab {info['reslab']} ({info['git_commit']})",
        f"- Date: {info['date']}"
        + (f"; this command {seconds / 60:.1f} min (runs found finished cost nothing)" if seconds is not None else ""),
        f"- Verdicts: {summary}",
        *([partial_note(counts[NOT_RUN])] if counts[NOT_RUN] else []),
        "",
        "A verdict counts a gap only when it exceeds its noise margin (the `margin` column says which); `baseline` "
        "rows give a number without a comparison; `exact` is a computation, not a measurement. Every row links to "
        "the experiment's report with its figures and the runs behind it.",
        "",
        markdown_table(rows, ["claim", "paper", "reslab", "verdict", "margin", "report"]),
    ]
    path = out / "README.md"
    write_text(path, "\n".join(lines) + "\n")
    write_text(
        out / "scorecard.json",
        json.dumps({"budget": budget, "date": info["date"], "machine": info["machine"], "claims": rows}, indent=2)
        + "\n",
    )
    return path
