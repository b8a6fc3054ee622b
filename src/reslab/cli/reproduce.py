"""``reslab reproduce NAME``: one of the paper's experiments, cached and resumable, with its report and figures."""

from __future__ import annotations

import argparse
import ast
import importlib.util
import inspect
import shlex

from reslab.cli.options import DocstringFormatter, Parser, add_data_args, add_field, add_switch, positive_int
from reslab.cli.parser import COMMANDS
from reslab.errors import ConfigError
from reslab.experiments import ALL, EXPERIMENTS, ONE_SEED, TRAINS_NOTHING, module_of


def _docstring(name: str) -> str:
    """The experiment module's docstring, read without importing it (its imports are heavy: matplotlib)."""
    spec = importlib.util.find_spec(module_of(name))
    with open(spec.origin) as f:  # type: ignore[union-attr, arg-type]
        return ast.get_docstring(ast.parse(f.read())) or ""


def register(sub: argparse._SubParsersAction) -> None:
    from reslab.experiments.budgets import BUDGETS, DEFAULT_BUDGET

    p = sub.add_parser("reproduce", help=COMMANDS["reproduce"][1],
                       description="One of the paper's experiments, cached and resumable, with its report and "
                       "figures. `reslab reproduce NAME --help` says what NAME reproduces and how.")  # fmt: skip
    experiments = p.add_subparsers(dest="experiment", required=True, parser_class=Parser, metavar="NAME")
    every = {**EXPERIMENTS, ALL: "every experiment in order, then a scorecard of the paper's claims (OUT/README.md)"}
    for name, summary in every.items():
        doc = _docstring("scorecard" if name == ALL else name)
        e = experiments.add_parser(name, help=summary, description=doc, formatter_class=DocstringFormatter)
        if name not in TRAINS_NOTHING:
            add_data_args(e, streamed=False)  # the experiments hold their data in memory
        e.add_argument("--out", required=True, help="results folder: runs in OUT/runs, the report in OUT/NAME/")
        budgets = "; ".join(f"{b.name}: {b.summary}" for b in BUDGETS.values())
        if name in TRAINS_NOTHING:  # its numbers are the same at every budget; the scorecard reads it by budget
            budgets = f"the scorecard this report joins (it trains nothing: the same numbers at each budget); {budgets}"
        e.add_argument("--budget", default=DEFAULT_BUDGET, choices=list(BUDGETS), help=budgets)
        if name not in ONE_SEED:
            e.add_argument("--seeds", type=positive_int, default=1, help="train seeds 0..K-1 of every run")
        if name == "depth":
            e.add_argument("--with-1202", action="store_true", help="also ResNet-1202 (Table 6; very long)")
        if name == ALL:
            e.add_argument("--scorecard-only", action="store_true",
                           help="train nothing: write OUT/README.md from the experiments already reported under OUT "
                           "(the others `not run`), e.g. while a long run is under way")  # fmt: skip
        if name not in TRAINS_NOTHING:
            add_field(e, "device")
            e.add_argument("--jobs", type=positive_int, default=1, metavar="K",
                           help="train up to K of an experiment's runs at once on the device, each in its own "
                           "process (for a GPU that one small run leaves idle; on a CPU they share the "
                           "cores)")  # fmt: skip
        add_switch(e, "--quiet", "progress")
        e.set_defaults(func=run)


def _command(args: argparse.Namespace) -> str:
    """The command as the report records it: what was asked, with every default made explicit."""
    words = ["reslab", "reproduce", args.experiment]
    reads_data = args.experiment not in TRAINS_NOTHING and not getattr(args, "scorecard_only", False)
    words += ["--data", args.data] if reads_data else []
    words += ["--budget", args.budget, "--out", args.out]
    words += ["--seeds", str(args.seeds)] if getattr(args, "seeds", 1) != 1 else []
    words += ["--jobs", str(args.jobs)] if getattr(args, "jobs", 1) != 1 else []
    words += ["--image-size", str(args.image_size)] if getattr(args, "image_size", None) is not None else []
    words += ["--device", args.device] if getattr(args, "device", "auto") != "auto" else []
    words += ["--with-1202"] if getattr(args, "with_1202", False) else []
    words += ["--scorecard-only"] if getattr(args, "scorecard_only", False) else []
    return shlex.join(words)


def run(args: argparse.Namespace) -> int:
    from reslab.experiments.reproduce import reproduce

    try:
        # The options this experiment's parser offers (table1 takes no data, device or jobs; some take no --seeds),
        # by reproduce()'s own names for them: its signature is the one list of what it accepts.
        explicit = {"name", "out", "budget", "progress", "command"}
        accepted = set(inspect.signature(reproduce).parameters) - explicit
        given = {k: v for k, v in vars(args).items() if k in accepted}
        report = reproduce(args.experiment, out=args.out, budget=args.budget, progress=args.progress,
                           command=_command(args), **given)  # fmt: skip
    except OSError as e:  # an unwritable or misnamed --out: the user's to fix, in one line
        raise ConfigError(f"cannot write {e.filename or args.out}: {e.strerror or e}") from e
    print(report)
    return 0
