"""``reslab train`` and ``reslab eval``: flags in, `TrainConfig` out, then the library does the work."""

from __future__ import annotations

import argparse
import json
import os
import typing
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

from reslab.engine.recipes import RECIPES, Recipe, get_recipe
from reslab.errors import ConfigError

# Recipe fields that the command line can override, with their parsers (name -> --flag-name).
_RECIPE_FLAGS = tuple(f.name for f in fields(Recipe) if f.name not in ("name", "extra", "milestones"))


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _milestones(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"expected comma-separated fractions such as 0.5,0.75, got {text!r}") from e


class _Unset:
    """What ``--flag none`` parses to: clear an optional recipe field (``None`` itself means "flag not given")."""

    def __repr__(self) -> str:
        return "none"


_NONE = _Unset()


def _type_of(name: str) -> Callable[[str], Any]:
    """The parser of one recipe field, from its resolved type hint; optional fields also take ``none``."""
    hint = typing.get_type_hints(Recipe)[name]
    members = typing.get_args(hint) or (hint,)
    optional = type(None) in members
    base = next(m for m in members if m is not type(None))
    convert: Callable[[str], Any] = {bool: _bool, int: int, float: float}.get(base, str)
    if not optional:
        return convert

    def parse(text: str) -> Any:
        return _NONE if text.lower() == "none" else convert(text)

    parse.__name__ = f"{getattr(base, '__name__', 'value')} or none"  # argparse names the type in its error
    return parse


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a network (the paper's recipe or the fast one)")
    p.add_argument("--model", default="resnet20", help="registered model name (see `reslab models`)")
    p.add_argument(
        "--data", default="cifar10", help="'cifar10' (downloaded), an ImageFolder folder or .tar, or 'synthetic[:N]'"
    )
    p.add_argument("--data-dir", default=None, help="download/cache folder (default $RESLAB_DATA or ~/.cache/reslab)")
    p.add_argument("--strict", action="store_true", help="an unreadable image is an error instead of a skipped warning")
    p.add_argument("--val-split", type=int, default=0, help="hold out N training images for validation (paper: 5000)")
    p.add_argument("--recipe", default="paper", choices=sorted(RECIPES), help="hyperparameter set (default: paper)")
    p.add_argument("--out", default=None, help="run folder (default runs/MODEL-RECIPE-sSEED)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt if it exists")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--channels-last", type=_bool, default=True)
    p.add_argument("--no-augment", action="store_true", help="no pad/crop/flip")
    p.add_argument("--eval-every", type=int, default=0,
                   help="iterations between evaluations (0: the recipe's --evaluations per run)")  # fmt: skip
    p.add_argument("--log-every", type=positive_int, default=50)
    p.add_argument("--checkpoint-every", type=int, default=0, help="iterations between checkpoints (0: at evaluations)")
    p.add_argument("--sync-bn", action="store_true", help="synchronised BN across processes (CUDA under torchrun)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (did not help on our CPU)")
    p.add_argument("--shortcut", choices=["A", "B", "C"], default=None, help="override the model's shortcut option")
    g = p.add_argument_group("recipe overrides (default: the recipe's value)")
    for name in _RECIPE_FLAGS:
        g.add_argument(f"--{name.replace('_', '-')}", dest=f"r_{name}", type=_type_of(name), default=None)
    g.add_argument("--milestones", dest="r_milestones", type=_milestones, default=None,
                   help="step schedule: fractions of the run, e.g. 0.5,0.75")  # fmt: skip
    p.set_defaults(func=run_train)


def add_eval_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a checkpoint: top-1/top-5 error and per-class accuracy")
    p.add_argument("checkpoint")
    p.add_argument("--data", default=None, help="dataset (default: the one the checkpoint was trained on)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--split", default="test", choices=["test", "train"])
    p.add_argument("--tta", action="store_true", help="average with the horizontally flipped image")
    p.add_argument("--tta-shift", type=int, default=0, metavar="S",
                   help="with --tta: also the views shifted by (+S, +S) and (-S, -S) pixels (6 views)")  # fmt: skip
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16", "fp16"])
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_eval)


def add_runs_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("runs", help="finished runs as a markdown table (test error, wall-clock, machine, date)")
    p.add_argument("folders", nargs="+", metavar="RUN_DIR")
    p.set_defaults(func=run_runs)


def run_runs(args: argparse.Namespace) -> int:
    from reslab.engine.runs import runs_table

    print(runs_table(args.folders))
    return 0


def run_train(args: argparse.Namespace) -> int:
    from reslab.engine.config import TrainConfig
    from reslab.engine.trainer import train

    overrides = {k[2:]: v for k, v in vars(args).items() if k.startswith("r_") and v is not None}
    cleared = {k: None for k, v in overrides.items() if v is _NONE}
    recipe = get_recipe(args.recipe, **{k: v for k, v in overrides.items() if k not in cleared})
    if cleared:
        recipe = replace(recipe, **cleared)
        recipe.validate()
    out = args.out or os.path.join("runs", f"{args.model}-{args.recipe}-s{args.seed}")
    config = TrainConfig(
        model=args.model, model_kwargs={"shortcut": args.shortcut} if args.shortcut else {}, data=args.data,
        data_dir=args.data_dir, strict_data=args.strict, val_split=args.val_split, augment=not args.no_augment,
        recipe=recipe, seed=args.seed, precision=args.precision, channels_last=args.channels_last, device=args.device,
        out=out, eval_every=args.eval_every, log_every=args.log_every, checkpoint_every=args.checkpoint_every,
        sync_bn=args.sync_bn, compile=args.compile,
    )  # fmt: skip
    summary = train(config, resume=args.resume)
    if summary:
        print(json.dumps({k: v for k, v in summary.items() if "per_class" not in k}, indent=2))
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from reslab.engine.evaluate import evaluate_checkpoint

    if args.tta_shift < 0 or (args.tta_shift and not args.tta):
        raise ConfigError(f"--tta-shift {args.tta_shift}: needs --tta and a shift >= 0")
    result = evaluate_checkpoint(args.checkpoint, data=args.data, data_dir=args.data_dir, split=args.split,
                                 tta=args.tta, tta_shift=args.tta_shift, device=args.device,
                                 precision=args.precision)  # fmt: skip
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['dataset']} [{result['split']}, {result['n']} images{_tta_label(args)}]")
    print(f"top-1 error {result['error']:.2f}%   top-5 error {result['top5_error']:.2f}%")
    for name, acc in zip(result["classes"], result["per_class_accuracy"], strict=False):
        print(f"  {name:>12s}  {acc:6.2f}%")
    return 0


def _tta_label(args: argparse.Namespace) -> str:
    if not args.tta:
        return ""
    return f", TTA: flip and shifts of {args.tta_shift} px (6 views)" if args.tta_shift else ", flip TTA"
