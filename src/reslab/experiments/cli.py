"""``reslab reproduce NAME``: flags in, `reslab.experiments.reproduce` does the work."""

from __future__ import annotations

import argparse

from reslab.engine.cli import positive_int
from reslab.errors import ConfigError
from reslab.experiments import EXPERIMENTS


def add_reproduce_parser(sub: argparse._SubParsersAction) -> None:
    listing = "; ".join(f"{k}: {v[1]}" for k, v in EXPERIMENTS.items())
    p = sub.add_parser("reproduce", help="reproduce one of the paper's experiments (figures, tables, report)",
                       description=f"Experiments: {listing}.")  # fmt: skip
    # Not argparse choices: an unknown name is a ConfigError like every other user mistake (one line, exit 2).
    p.add_argument("name", help=f"one of: {', '.join(EXPERIMENTS)}")
    p.add_argument("--data", default="cifar10",
                   help="'cifar10' (downloaded), an ImageFolder folder or .tar, or 'synthetic[:N]'")  # fmt: skip
    p.add_argument("--data-dir", default=None, help="download/cache folder (default $RESLAB_DATA or ~/.cache/reslab)")
    p.add_argument("--out", required=True, help="results folder: runs in OUT/runs, the report in OUT/NAME/report.md")
    p.add_argument("--budget", default="cpu", help="smoke (seconds, CI), cpu (2-core laptop: degradation about 1.9 h "
                   "here) or paper (the paper's 64k iterations; for a GPU); default cpu")  # fmt: skip
    p.add_argument("--seeds", type=positive_int, default=1, help="train seeds 0..K-1 of every run (default 1)")
    p.add_argument("--with-1202", action="store_true", help="depth: also ResNet-1202 (Table 6; very long)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--quiet", action="store_true", help="only the per-run progress lines, no per-run training log")
    p.set_defaults(func=run_reproduce)


def run_reproduce(args: argparse.Namespace) -> int:
    from reslab.experiments import reproduce

    try:
        report = reproduce(args.name, data=args.data, out=args.out, budget=args.budget, seeds=args.seeds,
                           data_dir=args.data_dir, device=args.device, with_1202=args.with_1202,
                           progress=not args.quiet)  # fmt: skip
    except OSError as e:  # an unwritable or misnamed --out: the user's to fix, in one line
        raise ConfigError(f"cannot write {e.filename or args.out}: {e.strerror or e}") from e
    print(report)
    return 0
