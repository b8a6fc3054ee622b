"""Every flag of `reslab train` round-trips into the `TrainConfig` (and its `Recipe`) that the run would use, and one
invalid value of each is one line and exit code 2.

The cases are keyed by the parser's own destinations, so a flag added without a case here fails
`test_every_train_flag_has_a_case`.
"""

from __future__ import annotations

import argparse

import pytest

from reslab.cli import build_parser, main
from reslab.cli.train import config_from_args
from reslab.engine.recipes import OVERRIDABLE

BASE = ["train", "--data", "synthetic:64"]


def _cfg(c):
    return c


def _rec(c):
    return c.recipe


# dest -> (flags that set a valid non-default value, what reads the value back, the value expected)
VALID = {
    "model": (["--model", "resnet56"], lambda c: c.model, "resnet56"),
    "init": (["--init", "resnet20"], lambda c: c.init, "shipped:resnet20"),
    "freeze": (["--init", "resnet20", "--freeze", "stem,layer1"], lambda c: c.freeze, ("stem", "layer1")),
    "freeze_bn": (["--init", "resnet20", "--freeze-bn"], lambda c: c.freeze_bn, True),
    "head_lr_scale": (["--init", "resnet20", "--head-lr-scale", "10"], lambda c: c.head_lr_scale, 10.0),
    "recipe": (["--recipe", "fast"], lambda c: c.recipe.name, "fast"),
    "shortcut": (["--shortcut", "B"], lambda c: c.model_kwargs, {"shortcut": "B"}),
    "data": (["--data", "synthetic:128"], lambda c: c.data, "synthetic:128"),
    "data_dir": (["--data", "FOLDER", "--data-dir", "/tmp/reslab-cache"], lambda c: c.data_dir, "/tmp/reslab-cache"),
    "image_size": (["--image-size", "24"], lambda c: c.image_size, 24),
    "workers": (["--recipe", "imagenet-paper", "--model", "resnet18", "--data", "/tmp/photos", "--workers", "3"],
                lambda c: c.workers, 3),
    "strict_data": (["--data", "FOLDER", "--strict"], lambda c: c.strict_data, True),
    "device_decode": (["--recipe", "imagenet-paper", "--model", "resnet18", "--data", "/tmp/photos", "--device-decode"],
                      lambda c: c.device_decode, True),
    "val_split": (["--val-split", "16"], lambda c: c.val_split, 16),
    "augment": (["--no-augment"], lambda c: c.augment, False),
    "out": (["--out", "/tmp/some-run"], lambda c: c.out, "/tmp/some-run"),
    "stop_at": (["--stop-at", "7"], lambda c: c.stop_at, 7),
    "seed": (["--seed", "3"], lambda c: c.seed, 3),
    "device": (["--device", "cpu"], lambda c: c.device, "cpu"),
    "precision": (["--precision", "fp32"], lambda c: c.precision, "fp32"),
    "channels_last": (["--channels-last", "false"], lambda c: c.channels_last, False),
    "log_every": (["--log-every", "7"], lambda c: c.log_every, 7),
    "eval_every": (["--eval-every", "7"], lambda c: c.eval_every, 7),
    "eval_batch_size": (["--eval-batch-size", "7"], lambda c: c.eval_batch_size, 7),
    "checkpoint_every": (["--checkpoint-every", "7"], lambda c: c.checkpoint_every, 7),
    "checkpoint_minutes": (["--checkpoint-minutes", "2.5"], lambda c: c.checkpoint_minutes, 2.5),
    "sync_bn": (["--sync-bn"], lambda c: c.sync_bn, True),
    "compile": (["--compile"], lambda c: c.compile, True),
    "compile_mode": (["--compile", "--compile-mode", "reduce-overhead"], lambda c: c.compile_mode, "reduce-overhead"),
    "progress": (["--quiet"], lambda c: c.progress, False),
    # recipe overrides (dest r_<field>)
    "r_batch_size": (["--batch-size", "16"], lambda c: c.recipe.batch_size, 16),
    "r_lr": (["--lr", "0.05"], lambda c: c.recipe.lr, 0.05),
    "r_momentum": (["--momentum", "0.8"], lambda c: c.recipe.momentum, 0.8),
    "r_nesterov": (["--nesterov", "true"], lambda c: c.recipe.nesterov, True),
    "r_weight_decay": (["--weight-decay", "5e-4"], lambda c: c.recipe.weight_decay, 5e-4),
    "r_iterations": (["--iterations", "100"], lambda c: c.recipe.iterations, 100),
    "r_epochs": (["--epochs", "3"], lambda c: (c.recipe.epochs, c.recipe.iterations), (3.0, None)),
    "r_schedule": (["--schedule", "cosine"], lambda c: c.recipe.schedule, "cosine"),
    "r_milestones": (["--milestones", "0.3,0.6"], lambda c: c.recipe.milestones, (0.3, 0.6)),
    "r_gamma": (["--gamma", "0.2"], lambda c: c.recipe.gamma, 0.2),
    "r_plateau_patience": (["--schedule", "plateau", "--val-split", "8", "--plateau-patience", "3"],
                           lambda c: c.recipe.plateau_patience, 3),
    "r_plateau_threshold": (["--schedule", "plateau", "--val-split", "8", "--plateau-threshold", "0.5"],
                            lambda c: c.recipe.plateau_threshold, 0.5),
    "r_warmup_fraction": (["--warmup-fraction", "0.1"], lambda c: c.recipe.warmup_fraction, 0.1),
    "r_final_lr_fraction": (["--schedule", "cosine", "--final-lr-fraction", "0.1"],
                            lambda c: c.recipe.final_lr_fraction, 0.1),
    "r_paper_warmup_min_depth": (["--paper-warmup-min-depth", "none"], lambda c: c.recipe.paper_warmup_min_depth,
                                 None),
    "r_paper_warmup_lr": (["--model", "resnet110", "--paper-warmup-lr", "0.02"], lambda c: c.recipe.paper_warmup_lr,
                          0.02),
    "r_paper_warmup_error": (["--model", "resnet110", "--paper-warmup-error", "0.5"],
                             lambda c: c.recipe.paper_warmup_error, 0.5),
    "r_label_smoothing": (["--label-smoothing", "0.1"], lambda c: c.recipe.label_smoothing, 0.1),
    "r_flip": (["--flip", "alternate"], lambda c: c.recipe.flip, "alternate"),
    "r_no_decay_bn": (["--no-decay-bn", "true"], lambda c: c.recipe.no_decay_bn, True),
    "r_tta_flip": (["--tta-flip", "true"], lambda c: c.recipe.tta_flip, True),
    "r_tta_shift": (["--tta-flip", "true", "--tta-shift", "1"], lambda c: c.recipe.tta_shift, 1),
    "r_low_res_size": (["--low-res-size", "24", "--low-res-fraction", "0.5"], lambda c: c.recipe.low_res_size, 24),
    "r_low_res_fraction": (["--low-res-size", "24", "--low-res-fraction", "0.5"],
                           lambda c: c.recipe.low_res_fraction, 0.5),
    "r_evaluations": (["--evaluations", "3"], lambda c: c.recipe.evaluations, 3),
    "r_augmentation": (["--augmentation", "imagenet-torchvision", "--model", "resnet18", "--data", "FOLDER"],
                       lambda c: c.recipe.augmentation, "imagenet-torchvision"),
}  # fmt: skip

# dest -> (flags with one invalid value, what the one-line error says)
INVALID = {
    "model": (["--model", "resnet21"], "unknown model 'resnet21'"),
    "init": (["--init", "/no/such/weights.pt"], "weights not found: /no/such/weights.pt"),
    "freeze": (["--init", "resnet20", "--freeze", "stem,layer9"], "layer9"),
    "freeze_bn": (["--freeze-bn"], "need --init"),
    "head_lr_scale": (["--head-lr-scale", "0"], "head_lr_scale must be"),
    "recipe": (["--recipe", "slow"], "invalid choice"),
    "shortcut": (["--shortcut", "D"], "invalid choice"),
    "data": (["--data", "/does/not/exist"], "data not found"),
    "data_dir": (["--data", "cifar10", "--data-dir", "/proc/no-such-dir"], "/proc/no-such-dir"),
    "image_size": (["--image-size", "4"], "image_size must be >= 8"),
    "workers": (["--workers", "-1"], "workers must be >= 0"),
    "strict_data": (["--strict", "yes"], "unrecognized arguments"),
    "device_decode": (["--device-decode"], "--device-decode decodes streamed large images"),
    "val_split": (["--val-split", "-1"], "val_split must be >= 0"),
    "augment": (["--no-augment", "x"], "unrecognized arguments"),
    "out": (["--out", "/proc/version"], "/proc/version"),
    "stop_at": (["--stop-at", "0"], "stop_at must be >= 1"),
    "seed": (["--seed", "-1"], "seed must be"),
    "device": (["--device", "tpu"], "unknown device"),
    "precision": (["--precision", "fp8"], "invalid choice"),
    "channels_last": (["--channels-last", "maybe"], "expected true/false"),
    "log_every": (["--log-every", "0"], "log_every must be >= 1"),
    "eval_every": (["--eval-every", "-1"], "eval_every must be >= 0"),
    "eval_batch_size": (["--eval-batch-size", "0"], "eval_batch_size must be >= 1"),
    "checkpoint_every": (["--checkpoint-every", "-1"], "checkpoint_every must be >= 0"),
    "checkpoint_minutes": (["--checkpoint-minutes", "-1"], "checkpoint_minutes must be"),
    "sync_bn": (["--sync-bn"], "sync-bn needs"),
    "compile": (["--compile", "1"], "unrecognized arguments"),
    "compile_mode": (["--compile-mode", "reduce-overhead"], "is a mode of --compile, which is off"),
    "progress": (["--quiet", "1"], "unrecognized arguments"),
    "r_batch_size": (["--batch-size", "0"], "bad value for batch_size"),
    "r_lr": (["--lr", "-1"], "bad value for lr"),
    "r_momentum": (["--momentum", "1"], "bad value for momentum"),
    "r_nesterov": (["--nesterov", "maybe"], "expected true/false"),
    "r_weight_decay": (["--weight-decay", "-1"], "bad value for weight_decay"),
    "r_iterations": (["--iterations", "0"], "bad value for iterations"),
    "r_epochs": (["--iterations", "none", "--epochs", "0"], "bad value for epochs"),
    "r_schedule": (["--schedule", "linear"], "unknown schedule 'linear'"),
    "r_milestones": (["--milestones", "0.75,0.5"], "bad value for milestones"),
    "r_gamma": (["--gamma", "0"], "bad value for gamma"),
    "r_plateau_patience": (["--plateau-patience", "0"], "bad value for plateau_patience"),
    "r_plateau_threshold": (["--plateau-threshold", "-1"], "bad value for plateau_threshold"),
    "r_warmup_fraction": (["--warmup-fraction", "1"], "bad value for warmup_fraction"),
    "r_final_lr_fraction": (["--final-lr-fraction", "2"], "bad value for final_lr_fraction"),
    "r_paper_warmup_min_depth": (["--paper-warmup-min-depth", "1.5"], "invalid int or none value"),
    "r_paper_warmup_lr": (["--paper-warmup-lr", "0"], "bad value for paper_warmup_lr"),
    "r_paper_warmup_error": (["--paper-warmup-error", "80"], "bad value for paper_warmup_error"),
    "r_label_smoothing": (["--label-smoothing", "1"], "bad value for label_smoothing"),
    "r_flip": (["--flip", "sometimes"], "unknown flip mode"),
    "r_no_decay_bn": (["--no-decay-bn", "maybe"], "expected true/false"),
    "r_tta_flip": (["--tta-flip", "maybe"], "expected true/false"),
    "r_tta_shift": (["--tta-shift", "1"], "needs the flip views too"),
    "r_low_res_size": (["--low-res-size", "4"], "bad value for low_res_size"),
    "r_low_res_fraction": (["--low-res-fraction", "0.5"], "bad value for low_res_fraction"),
    "r_evaluations": (["--evaluations", "0"], "bad value for evaluations"),
    "r_augmentation": (["--augmentation", "imagenet-paper", "--model", "resnet18"], "streams large images"),
}

NOT_CONFIG = {"help", "resume", "func", "command"}  # flags that are not a field of the run's config


def train_dests() -> set[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest for a in sub.choices["train"]._actions} - NOT_CONFIG


def test_every_train_flag_has_a_case():
    dests = train_dests()
    assert dests == set(VALID), sorted(dests ^ set(VALID))
    assert dests == set(INVALID), sorted(dests ^ set(INVALID))
    assert {f"r_{n}" for n in OVERRIDABLE} <= dests


@pytest.mark.parametrize("dest", sorted(VALID))
def test_flag_sets_exactly_its_field(dest, tmp_path):
    flags, read, expected = VALID[dest]
    folder = tmp_path / "images"
    (folder / "train" / "a").mkdir(parents=True)
    flags = [str(folder) if f == "FOLDER" else f for f in flags]
    args = build_parser().parse_args([*BASE, *flags])
    config = config_from_args(args)
    assert read(config) == expected
    default = config_from_args(build_parser().parse_args(BASE))
    if dest not in ("data", "r_augmentation"):  # these two change the data as well
        assert read(default) != expected, "the case must set a value other than the default"


@pytest.mark.parametrize("dest", sorted(INVALID))
def test_invalid_flag_value_is_one_line_and_exit_2(dest, tmp_path, capsys):
    flags, message = INVALID[dest]
    argv = [*BASE, "--iterations", "1", "--batch-size", "16", *flags]
    if "--out" not in flags:
        argv += ["--out", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r").exists()
