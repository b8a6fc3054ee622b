"""``reslab train``: flags in, a `TrainConfig` out, then `reslab.engine.run.train` does the work.

Every flag's default and help text is the one declared beside its field in `TrainConfig` or `Recipe`; a recipe field
given on the command line replaces the chosen recipe's value (``--lr 0.05``; ``none`` clears an optional field).
"""

from __future__ import annotations

import argparse
import json

from reslab.cli.options import add_data_args, add_device_args, add_field, add_switch, default_of, field_of
from reslab.cli.parser import COMMANDS
from reslab.engine.config import COMPILE_MODES, TrainConfig, model_of_init
from reslab.engine.recipes import IN_MEMORY, OVERRIDABLE, RECIPES, Recipe, get_recipe
from reslab.errors import ConfigError
from reslab.models.options import SHORTCUT_OPTIONS

DESCRIPTION = """Train a network with the paper's CIFAR-10 recipe (Sec. 4.2), the measured fast one, or on large
images (ImageNet) with the paper's ImageNet recipe (Sec. 3.4, imagenet-paper) or torchvision's (imagenet-torchvision),
which stream the images from a folder, a tar or WebDataset shards through --workers processes. Every recipe field can
be set on its own (the values of every recipe are shown); the run folder gets config.json, metrics.jsonl,
checkpoint.pt and, when finished, summary.json. Under torchrun, each process trains on its part of every batch."""
EPILOG = """On SIGINT (Ctrl-C) or SIGTERM a run finishes its current step, writes a checkpoint and exits with 130
(143 for SIGTERM); --resume continues it exactly. A checkpoint is also written every --checkpoint-minutes."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help=COMMANDS["train"][1], description=DESCRIPTION,
                       epilog=EPILOG)  # fmt: skip
    add_field(p, "model", default=None,
              help="registered model name (see `reslab models`; default: the model --init's weights were trained "
              f"as, else {default_of(TrainConfig, 'model')})")  # fmt: skip
    add_run_arguments(p, default_recipe=default_of(TrainConfig, "recipe").name)
    p.set_defaults(func=run)


def add_run_arguments(p: argparse.ArgumentParser, *, default_recipe: str) -> None:
    """Every flag of a training run but the model's (``reslab detect train`` names its model otherwise)."""
    g = p.add_argument_group("fine-tuning")
    add_field(g, "init", metavar="WEIGHTS")
    add_field(g, "freeze", metavar="PARTS")
    add_switch(g, "--freeze-bn", "freeze_bn")
    add_field(g, "head_lr_scale", metavar="X")
    add_field(p, "recipe", type=str, default=default_recipe, choices=sorted(RECIPES),
              help="hyperparameter set (see the recipe overrides below)")  # fmt: skip
    p.add_argument("--shortcut", choices=SHORTCUT_OPTIONS, default=None,
                   help="shortcut option (Sec. 3.3) instead of the one the model's family uses")  # fmt: skip
    add_data_args(p)
    add_switch(p, "--device-decode", "device_decode")
    add_field(p, "val_split", metavar="N")
    add_switch(p, "--no-augment", "augment")
    add_field(p, "out", metavar="DIR")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    add_field(p, "stop_at", metavar="N")
    add_field(p, "seed")
    add_device_args(p)
    add_field(p, "channels_last", metavar="BOOL")
    for name in ("log_every", "eval_every", "eval_batch_size", "checkpoint_every", "checkpoint_minutes"):
        add_field(p, name, metavar="N")
    add_switch(p, "--sync-bn", "sync_bn")
    add_switch(p, "--compile", "compile")
    add_field(p, "compile_mode", choices=COMPILE_MODES)
    add_switch(p, "--quiet", "progress")
    g = p.add_argument_group("recipe overrides", "each replaces the chosen recipe's value; the recipes' own values "
                             "are shown")  # fmt: skip
    for name in OVERRIDABLE:
        values = "; ".join(f"{r}: {_show(getattr(recipe, name))}" for r, recipe in RECIPES.items())
        help = field_of(Recipe, name).metadata["help"].replace("%", "%%")
        add_field(g, name, Recipe, dest=f"r_{name}", default=argparse.SUPPRESS, metavar=name.split("_")[-1].upper(),
                  help=f"{help} ({values})")  # fmt: skip


def _show(value: object) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return "none" if value is None else str(value)


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The run's `TrainConfig`, from `reslab train`'s (or `reslab detect train`'s) parsed flags."""
    overrides = {k[2:]: v for k, v in vars(args).items() if k.startswith("r_")}
    model_kwargs = dict(getattr(args, "model_kwargs", None) or {})  # set by `reslab detect train`
    if args.shortcut:
        model_kwargs["shortcut"] = args.shortcut
    recipe = get_recipe(args.recipe, **overrides)
    model = args.model or model_of_init(args.init)
    if model is None and recipe.augmentation not in IN_MEMORY:  # the default, resnet20, is a 32-px CIFAR net
        raise ConfigError(f"--recipe {recipe.name} trains a network for large images: name it with --model (e.g. "
                          "resnet50; `reslab models` lists them)")  # fmt: skip
    return TrainConfig(
        model=model or default_of(TrainConfig, "model"),
        model_kwargs=model_kwargs, init=args.init,
        freeze=args.freeze, freeze_bn=args.freeze_bn, head_lr_scale=args.head_lr_scale,
        data=args.data,
        data_dir=args.data_dir, image_size=args.image_size, workers=args.workers, strict_data=args.strict_data,
        device_decode=args.device_decode,
        val_split=args.val_split,
        augment=args.augment, recipe=recipe, seed=args.seed, precision=args.precision,
        channels_last=args.channels_last, device=args.device, out=args.out, eval_every=args.eval_every,
        log_every=args.log_every, checkpoint_every=args.checkpoint_every, checkpoint_minutes=args.checkpoint_minutes,
        stop_at=args.stop_at, sync_bn=args.sync_bn, compile=args.compile, compile_mode=args.compile_mode,
        eval_batch_size=args.eval_batch_size,
        progress=args.progress,
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from reslab.engine.run import train

    summary = train(config_from_args(args), resume=args.resume)
    if summary:
        print(json.dumps({k: v for k, v in summary.items() if "per_class" not in k}, indent=2))
    return 0
