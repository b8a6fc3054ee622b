"""The model table printed by ``reslab models``: our counts beside the paper's figures."""

from __future__ import annotations

from reslab.errors import ModelError
from reslab.models.counting import model_complexity
from reslab.models.registry import list_models, model_spec
from reslab.weights.shipped import manifest

COLUMNS = (
    "model",
    "family",
    "depth",
    "input",
    "params (M)",
    "paper params (M)",
    "GMACs",
    "paper GMACs",
    "shipped weights",
)


def model_rows(pattern: str | None = None) -> list[dict[str, object]]:
    """One row per registered model, counted on a freshly built module at the family's input size."""
    names = list_models(pattern)
    if not names:
        raise ModelError(f"no registered model matches {pattern!r}; `reslab models` lists them all")
    shipped = manifest()
    rows = []
    for name in names:
        spec = model_spec(name)
        c = model_complexity(name)
        rows.append(
            {
                "model": name,
                "family": spec.family,
                "depth": spec.depth,
                "input": f"{spec.input_size[1]}x{spec.input_size[2]}",
                "params (M)": round(c["params"] / 1e6, 3),
                "paper params (M)": spec.paper.get("params_m", ""),
                "GMACs": round(c["macs"] / 1e9, 3),
                "paper GMACs": spec.paper.get("gmacs", ""),
                # the shipped weights' test error (1 view), as their manifest records it
                "shipped weights": f"{shipped[name]['test_error']:.2f}% err" if name in shipped else "",
            }
        )
    return rows


def format_table(rows: list[dict[str, object]], columns: tuple[str, ...] = COLUMNS) -> str:
    """A plain-text table, names left and numbers right (also valid GitHub markdown)."""
    cells = [[str(r[c]) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]

    def line(vals: list[str]) -> str:
        padded = [v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(vals, widths, strict=False))]
        return "| " + " | ".join(padded) + " |"

    sep = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(list(columns)), sep, *(line(row) for row in cells)])
