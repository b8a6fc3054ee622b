"""The ``reslab`` command: each subcommand parses its flags and calls the library; nothing else lives here.

User mistakes and unusable inputs are one line on stderr and exit code 2; an interrupted training says where its
checkpoint is and exits with 128 + the signal's number; output into a closed pipe (``| head``) ends quietly.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import warnings
from collections.abc import Sequence

from reslab.cli.parser import COMMANDS, Parser
from reslab.errors import ReslabError, TrainingInterrupted, is_peer_lost


def build_parser(command: str | None = None, *, full: bool = True) -> argparse.ArgumentParser:
    """The parser of every subcommand; with ``full=False`` only ``command``'s is built (its module imported), the
    others named with their help line, which is all `reslab --help` and a mistyped command need."""
    parser = Parser(prog="reslab", description="Deep Residual Learning for Image Recognition (He et al., 2015).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    modules = dict.fromkeys(m for name, (m, _) in COMMANDS.items() if full or name == command)
    for module in modules:  # a module may register several commands (`evaluate`: eval and runs)
        importlib.import_module(f"reslab.cli.{module}").register(sub)
    for name, (_, help) in COMMANDS.items():
        if name not in sub.choices:
            sub.add_parser(name, help=help)
    return parser


def _command(argv: Sequence[str]) -> str | None:
    return next((a for a in argv if not a.startswith("-")), None)


def _one_line_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
    """Warnings as users see every other message: one line, without Python's source line."""
    return f"reslab: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # type: ignore[assignment]
    argv = list(sys.argv[1:] if argv is None else argv)
    try:  # the command's module imports torch: seconds, during which Ctrl-C is as welcome as later
        parser = build_parser(_command(argv), full=False)
    except KeyboardInterrupt:
        print("reslab: interrupted while starting", file=sys.stderr)
        return 130
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe fails here, inside the handlers below, not at the interpreter's exit
        return code
    except TrainingInterrupted as e:
        if str(e):  # the other ranks of a distributed run stop quietly
            print(f"reslab: {e}", file=sys.stderr)
        return e.exit_code
    except ReslabError as e:
        print(f"reslab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print(f"reslab: interrupted{f' ({e})' if str(e) else ''}", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`reslab eval ... | head -1`): nothing more to say. Point stdout at /dev/null so that
        # the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe
    except Exception as e:
        if not is_peer_lost(e):
            raise
        # A torchrun job whose other process died: gloo's 40-line trace says only that; the checkpoint is intact.
        rank = os.environ.get("RANK", "?")
        print(
            f"reslab: error: rank {rank} stopped: another process of the job died ({str(e).splitlines()[0][:120]}); "
            "the last checkpoint is intact: continue with --resume",
            file=sys.stderr,
        )
        return 1


__all__ = ["build_parser", "main"]
