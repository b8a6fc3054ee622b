"""The ``reslab`` command: each subcommand parses its flags and calls the library; nothing else lives here.

User mistakes and unusable inputs are one line on stderr and exit code 2; an interrupted training says where its
checkpoint is and exits with 128 + the signal's number; output into a closed pipe (``| head``) ends quietly.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence

from reslab.cli.options import Parser
from reslab.errors import ReslabError, TrainingInterrupted, is_peer_lost


def build_parser() -> argparse.ArgumentParser:
    from reslab.cli import detect, evaluate, export, models, predict, reproduce, train

    parser = Parser(prog="reslab", description="Deep Residual Learning for Image Recognition (He et al., 2015).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for command in (models, train, evaluate, predict, reproduce, export, detect):
        command.register(sub)
    return parser


def _one_line_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> str:
    """Warnings as users see every other message: one line, without Python's source line."""
    return f"reslab: warning: {message}\n"


def main(argv: Sequence[str] | None = None) -> int:
    warnings.formatwarning = _one_line_warning  # type: ignore[assignment]
    args = build_parser().parse_args(argv)
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
    except Exception as e:
        if not is_peer_lost(e):
            raise
        # A torchrun job whose other process died: gloo's 40-line trace says only that; the checkpoint is intact.
        rank = os.environ.get("RANK", "?")
        print(f"reslab: error: rank {rank} stopped: another process of the job died ({str(e).splitlines()[0][:120]}); "
              "the last checkpoint is intact: continue with --resume", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`reslab eval ... | head -1`): nothing more to say. Point stdout at /dev/null so that
        # the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a command killed by a closed pipe


__all__ = ["build_parser", "main"]
