"""``reslab models``: every registered network with its parameters and multiply-adds beside the paper's."""

from __future__ import annotations

import argparse

from reslab.cli.parser import COMMANDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help=COMMANDS["models"][1],
                       description="Every registered network with its parameters and multiply-adds, counted on the "
                       "built module, beside the paper's figures.")  # fmt: skip
    p.add_argument("pattern", nargs="?", default=None, help="shell-style name filter, e.g. 'plain*'")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from reslab.models.table import format_table, model_rows

    print(format_table(model_rows(args.pattern)))
    print("\nparams/MACs counted by reslab on the built module (each conv/linear layer's multiply-adds);")
    print("paper figures: Table 6 (CIFAR params), Table 1 (ImageNet multiply-adds), Identity Mappings (pre-act).")
    print("shipped weights: create_model(name, pretrained=True); their test error on the data their manifest names.")
    return 0
