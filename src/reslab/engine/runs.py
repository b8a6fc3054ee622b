"""``reslab runs DIR...``: finished runs as one markdown table, straight from their run folders.

This is how README result tables are made: every cell is read from a run folder, none is typed in by hand. Folders
that hold no finished run are listed under the table with what they hold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reslab.engine.rundir import RunDir
from reslab.errors import ConfigError, ReslabError
from reslab.tasks.classification import views_label

COLUMNS = ("run", "model", "recipe", "data", "test error (%)", "reported (%)", "iterations", "epochs",
           "training loop (min)", "machine", "date", "commit")  # fmt: skip


def run_row(folder: str | Path) -> dict[str, Any]:
    """One finished run as a table row. ``reported`` is the recipe's own figure (with its test-time augmentation)."""
    run = RunDir(folder)
    summary, info, config = run.summary(), run.record(), run.config()
    recipe = config.recipe
    if "test_mAP" in summary:  # a detection run: COCO's mAP@[.5,.95] and mAP@.5 in the error columns' place
        error, reported = f"mAP {summary['test_mAP']:.2f}", f"mAP@.5 {summary['test_mAP50']:.2f}"
    else:
        # Streamed ImageNet-style data has no test split: its val split is what is reported (as in the paper)
        error = round(summary["test_error"], 2) if "test_error" in summary else f"{summary['val_error']:.2f} (val)"
        reported = (f"{summary.get('reported_test_error', summary.get('reported_error')):.2f} "
                    f"({views_label(recipe.tta_flip, recipe.tta_shift)})")  # fmt: skip
    return {
        "run": run.path.name,
        "model": config.model,
        "recipe": recipe.name,
        "data": summary.get("data_label") or info.get("data_label") or summary.get("dataset", "?"),
        "test error (%)": error,
        "reported (%)": reported,
        "iterations": summary["iterations"],
        "epochs": round(summary["iterations"] * recipe.batch_size / max(info.get("train_images", 0), 1), 1),
        "training loop (min)": round(summary["wall_seconds"] / 60, 1),
        "machine": info.get("machine", "?"),
        "date": str(info.get("date", "?"))[:10],
        "commit": str(info.get("git_commit", "?"))[:7],
    }


def runs_table(folders: list[str]) -> str:
    """The table of the finished runs among ``folders``, then one line for each folder that is not one."""
    rows, others = [], []
    for folder in folders:
        status = RunDir(folder).status()
        if not status.finished:
            others.append(f"- {folder}: {status.describe() if status.holds_run else 'not a reslab run folder'}")
            continue
        try:
            rows.append(run_row(folder))
        except (ReslabError, KeyError, TypeError, ValueError) as e:
            others.append(f"- {folder}: unreadable ({e})")
    if not rows and all(not RunDir(f).status().holds_run for f in folders):
        raise ConfigError(f"no reslab run folder among {', '.join(folders[:3])}{', ...' if len(folders) > 3 else ''}")
    lines = []
    if rows:
        lines += ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
        lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    if others:
        lines += [*(["", "Not in the table:"] if rows else ["No finished run:"]), *others]
    return "\n".join(lines)
