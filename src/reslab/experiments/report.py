"""Report writing for ``reslab reproduce``: PNG figures (matplotlib, no display), markdown tables, results files.

Every report states the data, the budget, the machine, the date and the wall-clock, and puts the paper's numbers
beside ours; results.json and results.csv hold the same rows for machines.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure  # the object API renders with Agg and never opens a window

from reslab.engine.runinfo import run_info
from reslab.experiments import TRAINS_NOTHING
from reslab.experiments.runner import AGAIN_IMAGES, AGAIN_POINTS, OTHER_PRECISION_POINTS, Context, RunResult
from reslab.files import write_text

PAPER_REF = "He, Zhang, Ren, Sun, *Deep Residual Learning for Image Recognition*, CVPR 2016 (arXiv:1512.03385)"


@dataclass
class Curve:
    """One net's error curves: training error (thin dashed) and test error (bold), as in Fig. 6."""

    label: str
    train: tuple[Sequence[float], Sequence[float]]
    test: tuple[Sequence[float], Sequence[float]]

    @classmethod
    def of(cls, label: str, result: RunResult) -> Curve:
        return cls(label, result.train_curve(), result.test_curve())


def fmt(value: float | None, digits: int = 2) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def best_mean_std(values: Sequence[float]) -> str:
    """Table 6's "best (mean±std)" over seeds; a single run is just its value."""
    if len(values) == 1:
        return fmt(values[0])
    mean, std = mean_std(values)
    return f"{fmt(min(values))} ({fmt(mean)}±{fmt(std)})"


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], digits: int = 2) -> str:
    """A GitHub markdown table: first column left-aligned, the rest right-aligned; floats to ``digits`` places."""
    cells = [[fmt(v, digits) if isinstance(v := r.get(c), float) else str(v if v is not None else "") for c in columns]
             for r in rows]  # fmt: skip
    head = "| " + " | ".join(columns) + " |"
    sep = "|" + "|".join(":---" if i == 0 else "---:" for i in range(len(columns))) + "|"
    return "\n".join([head, sep, *("| " + " | ".join(row) + " |" for row in cells)])


def curves_figure(
    path: Path, panels: Sequence[tuple[str, Sequence[Curve]]], xlabel: str = "iterations", data: str = ""
) -> Path:
    """Side-by-side panels like Fig. 6: per net a thin dashed training-error line and a bold test-error line;
    ``data`` (the data's label) titles the figure."""
    fig = Figure(figsize=(5.5 * len(panels), 4.2), layout="constrained")
    if data:
        fig.suptitle(data)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, curves) in zip(axes, panels, strict=True):
        for i, c in enumerate(curves):
            color = f"C{i}"
            ax.plot(*c.train, linestyle="--", linewidth=0.8, color=color)
            ax.plot(*c.test, linewidth=2.2, color=color, label=c.label)
        ax.set(title=title, xlabel=xlabel, ylabel="error (%)")
        ax.grid(alpha=0.3)
        ax.legend(title="bold: test, dashed: train", fontsize=8, title_fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def lines_figure(
    path: Path, panels: Sequence[tuple[str, str, dict[str, Sequence[float]]]], ylabel: str, data: str = ""
) -> Path:
    """Stacked panels of one line per series (Fig. 7: layer responses by layer index and sorted)."""
    fig = Figure(figsize=(7, 3.2 * len(panels)), layout="constrained")
    if data:
        fig.suptitle(data)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (title, xlabel, series) in zip(axes, panels, strict=True):
        for label, ys in series.items():
            ax.plot(range(1, len(ys) + 1), ys, marker=".", linewidth=1.2, label=label)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def data_lines(ctx: Context) -> list[str]:
    spec, ds = ctx.runner.data, ctx.runner.dataset
    lines = [f"- Data: **{ds.label}** (`{spec}`; {ds.name}; stored as {ds.encoding or 'unknown'})"]
    if ds.label.startswith("CIFAR-10 (") and ds.encoding != "synthetic":
        lines.append(f"- This is {ds.label}: CIFAR-10 content re-encoded ({ds.encoding}), not the paper's exact "
                     "data; lossy encoding removes detail, so errors on it run higher.")  # fmt: skip
    if ds.encoding == "synthetic":
        lines.append("- Synthetic data (coloured noise) for testing the pipeline: not comparable with the paper.")
    return lines


def header(ctx: Context, title: str, cites: str, runs: Sequence[RunResult] = (), training: bool = True) -> list[str]:
    info = run_info()
    lines = [f"# {title}", "", f"Reproduces {cites} of {PAPER_REF}, with `reslab reproduce {ctx.experiment}`.", ""]
    if training:
        b, r = ctx.budget, ctx.budget.recipe()
        length = f"{r.iterations} iterations" if r.iterations is not None else f"{r.epochs:g} epochs"
        every = f"every {b.eval_every} iterations" if b.eval_every else f"{r.evaluations} times per run"
        lines += [
            *data_lines(ctx),
            f"- Budget: `{b.name}`: {length} at batch {b.batch_size} per run, an evaluation (on the validation split "
            f"where one is held out, else the test set) {every}. {b.note}",
            f"- Seeds: {', '.join(str(s) for s in range(ctx.seeds))}",
        ]
    else:
        lines.append("- No training and no data: everything is counted on freshly built modules.")
    lines += [
        f"- Machine: {info['machine']}; torch {info['torch']}, {info['torch_threads']} threads; reslab "
        f"{info['reslab']} ({info['git_commit']})",
        f"- Date: {_dt.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- Wall-clock of this command: {(time.perf_counter() - ctx.started) / 60:.1f} min"
        + (f" (runs found already finished under `{ctx.runner.out / 'runs'}` cost nothing)" if training else ""),
    ]
    if runs:
        seconds = sum(r.summary.get("train_seconds", 0.0) for r in runs)
        wall = sum(r.summary.get("wall_seconds", 0.0) for r in runs)
        lines.append(f"- Time of the {len(runs)} runs, whichever command trained them (their summary.json): "
                     f"{wall / 60:.1f} min wall-clock (`wall_seconds`: training, evaluations, checkpoints), of "
                     f"which {seconds / 60:.1f} min training steps (`train_seconds`)")  # fmt: skip
    return [*lines, ""]


REPRODUCED, NOT_REPRODUCED, UNRESOLVED = "reproduced", "not reproduced", "not resolved at this budget"


def claim(text: str, paper: str, reslab: str, verdict: str, margin: str = "") -> dict[str, str]:
    """One row of the scorecard (`reslab reproduce all`): a claim of the paper, the paper's figure, ours, the
    verdict and the noise margin that decided it. Each experiment states its own in results.json ("claims")."""
    if verdict not in (REPRODUCED, NOT_REPRODUCED, UNRESOLVED, "baseline", "exact"):
        raise ValueError(f"unknown verdict {verdict!r}")
    return {"claim": text, "paper": paper, "reslab": reslab, "verdict": verdict, "margin": margin}


def gap_verdict(direction: str, expected: str) -> str:
    """A ``higher`` / ``lower`` / ``within noise`` comparison against the direction the paper reports."""
    if direction == "within noise":
        return UNRESOLVED
    return REPRODUCED if direction == expected else NOT_REPRODUCED


def seed_noise(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Twice the standard error of the gap between the means of ``a`` and ``b`` over seeds; None unless both have two
    or more seeds (one seed says nothing of how seeds vary)."""
    if len(a) < 2 or len(b) < 2:
        return None
    return 2 * math.sqrt(statistics.variance(a) / len(a) + statistics.variance(b) / len(b))


Mistakes = Sequence[Sequence[bool]]  # one net's mistakes on each test image, one sequence per seed


def paired_noise(a: Mistakes, b: Mistakes) -> tuple[float, float]:
    """Twice the standard error (points) of the gap between two nets' mean test errors from their mistakes image by
    image on the same test images (averaged over seeds image by image): the paired (McNemar) estimate of the test
    set's sampling noise. Nets trained on the same data mostly miss the same images, which the unpaired binomial error
    of `test_noise` ignores (it treats the two error rates as measured on independent test sets, and so overstates
    the noise of a gap between nets tested on the same ones).

    Also returns the part of `seed_noise` squared that the paired term holds already: the seeds' disagreements image
    by image (their variance over seeds, per image, over the images and seeds of each side), which move each seed's
    error rate and the per-image differences alike."""
    n = {len(m) for m in (*a, *b)}
    if len(n) != 1:
        raise ValueError(f"mistakes on different numbers of test images: {sorted(n)}")
    images = n.pop()
    per_image = [statistics.fmean(x) - statistics.fmean(y) for x, y in zip(zip(*a), zip(*b), strict=True)]
    paired = 200 * statistics.stdev(per_image) / math.sqrt(images)
    shared = sum(4e4 * statistics.fmean(statistics.variance(x) for x in zip(*m)) / (images * len(m))
                 for m in (a, b) if len(m) > 1)  # fmt: skip
    return paired, shared


def test_noise(
    a: Sequence[float], b: Sequence[float], images: int = 10_000, mistakes: tuple[Mistakes, Mistakes] | None = None
) -> tuple[float, str]:
    """The noise a gap between two mean test errors must exceed (twice its standard error), and what set it: the test
    set's sampling, `paired_noise` where the caller has each net's ``mistakes`` image by image, else the binomial
    error of two error rates on ``images`` independent images; and, where both sides have two or more seeds, the
    spread over seeds (`seed_noise`), added in variance (independent sources: which images the test set drew, which
    net a seed trained), less the seeds' image-by-image disagreements that the paired term counts already. Seeds never
    bring the margin below the sampling: every seed is tested on the same images, and two seeds can agree by chance."""
    if mistakes is None:
        pa, pb = statistics.fmean(a) / 100, statistics.fmean(b) / 100
        sampling, shared = 200 * math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / images), 0.0
        how = "test-set sampling"
    else:
        (sampling, shared), how = paired_noise(*mistakes), "test-set sampling, paired"
    seeds = seed_noise(a, b)
    if seeds is None:
        return sampling, how
    return math.sqrt(sampling**2 + max(seeds**2 - shared, 0.0)), f"{how}, and seeds"


def mistakes_note(results: dict[str, RunResult], mistakes: dict[str, Sequence[bool]]) -> str:
    """A report's sentence on the mistakes its paired margins compare (`Runner.test_mistakes` of each run, by name):
    where they come from and how far their errors are from the ones the runs recorded."""
    drift = max(abs(100 * statistics.fmean(mistakes[n]) - r.summary["test_error"]) for n, r in results.items())
    return (
        "The mistakes compared are the final models', one view: recorded by each run's final evaluation (its "
        "mistakes.json, whose error must be the recorded one exactly), or for a run older than that record evaluated "
        "again, once, in the precision it was tested in where this device has it (else fp32), whose error may be "
        f"{AGAIN_IMAGES} images or {AGAIN_POINTS:g} points from the recorded one, whichever is more "
        f"({OTHER_PRECISION_POINTS:g} points in fp32 for a run tested in another precision). Here the largest "
        f"difference is {drift:.2f} points."
    )


def write_results(ctx: Context, rows: Sequence[dict[str, Any]], extra: dict[str, Any] | None = None) -> None:
    """results.json (rows plus context) and results.csv (the rows) beside report.md."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    trains = ctx.experiment not in TRAINS_NOTHING
    label = ctx.data_label if trains else "none (no training)"
    doc = {"experiment": ctx.experiment, "budget": ctx.budget.name, "data": ctx.runner.data if trains else None,
           "data_label": label,
           "seeds": ctx.seeds,
           "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": run_info()["machine"],
           "rows": list(rows), **(extra or {})}  # fmt: skip
    write_text(ctx.out / "results.json", json.dumps(doc, indent=2, default=str) + "\n")
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(dict.fromkeys(k for r in rows for k in r)))
    writer.writeheader()
    writer.writerows(rows)
    write_text(ctx.out / "results.csv", table.getvalue())


def write_report(ctx: Context, title: str, cites: str, sections: Sequence[str], runs: Sequence[RunResult] = (),
                 training: bool = True) -> Path:  # fmt: skip
    """``DIR/<experiment>/report.md``: the header, then the experiment's sections (figures, tables, statements)."""
    ctx.out.mkdir(parents=True, exist_ok=True)
    path = ctx.out / "report.md"
    write_text(path, "\n".join([*header(ctx, title, cites, runs, training), *(s.rstrip() + "\n" for s in sections)]))
    return path
