"""``reslab runs DIR...``: finished runs as one markdown table, straight from their ``summary.json``/``config.json``.

This is how README result tables are made: every cell is read from a run folder, none is typed in by hand.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reslab.errors import ConfigError

COLUMNS = ("run", "model", "recipe", "data", "test error (%)", "reported (%)", "iterations", "epochs",
           "training loop (min)", "machine", "date", "commit")  # fmt: skip


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise ConfigError(f"{path.parent} is not a finished run (no {path.name})") from e
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"cannot read {path}: not a JSON object")
    return data


def run_row(folder: str | Path) -> dict[str, Any]:
    """One finished run as a table row. ``reported`` is the recipe's own figure (with its test-time augmentation)."""
    folder = Path(folder)
    summary, info = _read(folder / "summary.json"), _read(folder / "config.json")
    recipe = info["config"]["recipe"]
    views = "6-view TTA" if recipe.get("tta_shift") else "flip TTA" if recipe.get("tta_flip") else "1 view"
    epochs = summary["iterations"] * recipe["batch_size"] / max(info.get("train_images", 0), 1)
    return {
        "run": folder.name,
        "model": info["config"]["model"],
        "recipe": recipe["name"],
        "data": summary.get("data_label") or info.get("data_label") or summary.get("dataset", "?"),
        "test error (%)": round(summary["test_error"], 2),
        "reported (%)": f"{summary['reported_test_error']:.2f} ({views})",
        "iterations": summary["iterations"],
        "epochs": round(epochs, 1),
        "training loop (min)": round(summary["wall_seconds"] / 60, 1),
        "machine": info.get("machine", "?"),
        "date": str(info.get("date", "?"))[:10],
        "commit": str(info.get("git_commit", "?"))[:7],
    }


def runs_table(folders: list[str]) -> str:
    rows = [run_row(f) for f in folders]
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    return "\n".join(lines)
