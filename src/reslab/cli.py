"""The ``reslab`` command: subcommands parse their flags and call the library; nothing else lives here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from reslab.errors import ReslabError


def _cmd_models(args: argparse.Namespace) -> int:
    from reslab.models.table import format_table, model_rows

    print(format_table(model_rows(args.pattern)))
    print("\nparams/MACs counted by reslab on the built module (torch.utils.flop_counter, MACs = FLOPs/2);")
    print("paper figures: Table 6 (CIFAR params), Table 1 (ImageNet multiply-adds), Identity Mappings (pre-act).")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad flag is one line (no usage dump) and exit code 2, like every other user mistake."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="reslab", description="Deep Residual Learning for Image Recognition.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("models", help="table of every registered network with the paper's figures")
    p.add_argument("pattern", nargs="?", default=None, help="shell-style name filter, e.g. 'plain*'")
    p.set_defaults(func=_cmd_models)
    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


def _engine_commands(sub: argparse._SubParsersAction) -> None:
    from reslab.engine.cli import add_eval_parser, add_runs_parser, add_train_parser

    add_train_parser(sub)
    add_eval_parser(sub)
    add_runs_parser(sub)


def _experiment_commands(sub: argparse._SubParsersAction) -> None:
    from reslab.experiments.cli import add_reproduce_parser

    add_reproduce_parser(sub)


# Each entry adds subcommands to the parser; the modules behind them are imported only when used.
_EXTRA_COMMANDS = [_engine_commands, _experiment_commands]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ReslabError as e:
        print(f"reslab: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("reslab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
