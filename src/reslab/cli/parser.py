"""The command line's parser class and value types: argparse only, so that `import reslab.cli` stays light (the
subcommands, which read their flags off the library's dataclasses, are imported when the parser is built)."""

from __future__ import annotations

import argparse
import typing
from typing import Any

# Every subcommand: the module that registers its parser, and its line in `reslab --help` (declared here, so that
# `reslab --help` and a mistyped command are answered without importing the modules, and with them torch).
COMMANDS = {
    "models": ("models", "table of every registered network with the paper's figures"),
    "train": ("train", "train a network (the paper's recipe or the fast one)"),
    "eval": ("evaluate", "evaluate a checkpoint: top-1/top-5 error and per-class error"),
    "runs": ("evaluate", "finished runs as a markdown table (test error, wall-clock, machine, date)"),
    "predict": ("predict", "classify image files or folders with a trained model"),
    "reproduce": ("reproduce", "reproduce one of the paper's experiments (figures, tables, report)"),
    "export": ("export", "write a trained model as ONNX, safetensors or a torch.export program (pt2)"),
    "detect": ("detect", "object detection: train Faster R-CNN, make the CIFAR-canvas COCO set"),
}  # fmt: skip


class DefaultsFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows a flag's default where it says something: not for on/off switches or an unset (None, empty) default, nor
    where the help already says it in its own words ("(default: 600, the paper's)")."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.nargs == 0 or action.default is None or action.default == () or "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


class DocstringFormatter(argparse.RawDescriptionHelpFormatter, DefaultsFormatter):
    """Keeps a docstring description's paragraphs as written."""


class Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (no usage dump) and exit code 2, like every other user mistake; help shows
    the defaults."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> typing.NoReturn:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _integer(text: str, low: int, what: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = low - 1
    if value < low:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def non_negative_int(text: str) -> int:
    return _integer(text, 0, "an integer >= 0")


def fraction(text: str) -> float:
    """A number in [0, 1] (a score threshold, say); NaN is not one."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def positive_int(text: str) -> int:
    return _integer(text, 1, "a positive integer")
