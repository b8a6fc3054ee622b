"""The resolved configuration of one run: what to train, on what, how, and where to write it.

Every option is declared once here, with its default, its help text (the CLI's) and whether a resumed run may change
it; `TrainConfig.__post_init__` is its one check, so an invalid configuration cannot exist. The configuration is
written to ``RUN/config.json`` and into every checkpoint; ``from_dict(to_dict(c)) == c``.
"""

from __future__ import annotations

import functools
import math
import os
import types
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from reslab.choices import EVAL_BATCH, SHIPPED, TASKS, TORCHVISION
from reslab.data.spec import is_builtin, resolve_spec
from reslab.engine.precision import check_device_name, check_precision_name
from reslab.engine.recipes import IN_MEMORY, PAPER, RECIPES, Recipe, schedule_view
from reslab.errors import ConfigError, ModelError

# Fields a resumed run may change: where and how often it reports, not what it computes.
_FREE = {"free": True}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune")  # torch.compile's modes


def _opt(default: Any, help: str, *, free: bool = False) -> Any:
    return field(default=default, metadata={"help": help, **(_FREE if free else {})})


# What a detection run does not read (its task sizes images with the detector's min_size/max_size, flips them at random
# and tests one view): refused when given (not at their defaults), reset in configs recorded before they were refused
# (`_migrate`). Their values when not given (TrainConfig's defaults, the detection recipe's) are DETECTION_UNREAD and
# DETECTION_UNREAD_RECIPE below TrainConfig.
_DETECTION_UNREAD_FIELDS = ("image_size", "strict_data", "data_dir", "head_lr_scale")
_WARMUP_FIELDS = ("paper_warmup_min_depth", "paper_warmup_lr", "paper_warmup_error")  # the paper's rule, CIFAR only
_DETECTION_UNREAD_RECIPE_FIELDS = ("label_smoothing", "flip", "tta_flip", "tta_shift", "low_res_size",
                                   "low_res_fraction", *_WARMUP_FIELDS)  # fmt: skip

RESIZE_HELP = (
    "resize images (shorter side S, centre crop SxS; needed when their sizes differ)"  # --image-size in memory
)


@dataclass(frozen=True)
class TrainConfig:
    model: str = _opt("resnet20", "registered model name (see `reslab models`)")
    model_kwargs: dict[str, Any] = field(default_factory=dict, metadata={"help": "keywords of create_model"})
    init: str | None = _opt(None, "start from these weights: a checkpoint, run folder, safetensors or state-dict "
                            "file, or a model name with shipped weights; a classifier for another number of classes "
                            "is replaced")  # fmt: skip
    freeze: tuple[str, ...] = _opt((), "parts whose weights (and BN statistics) do not train: stem, layer1, layer2, "
                                   "... (comma-separated)")  # fmt: skip
    freeze_bn: bool = _opt(False, "every BN layer normalises with the initial weights' statistics and keeps them")
    head_lr_scale: float = _opt(1.0, "the classifier's learning rate as a multiple of the schedule's (fine-tuning)")
    data: str = _opt("cifar10", "'cifar10' (the official archive, downloaded), an ImageFolder folder or .tar "
                     "(train/<class>/..., test/<class>/...), or 'synthetic[:N]'")  # fmt: skip
    data_dir: str | None = _opt(None, "download and cache folder (default: $RESLAB_DATA or ~/.cache/reslab)", free=True)
    image_size: int | None = _opt(
        None,
        f"in-memory folders: {RESIZE_HELP}; streamed large images (--recipe "
        "imagenet-*): the crop size, default 224, the paper's other sizes scaled with it",
    )
    workers: int | None = _opt(None, "data-loading processes for streamed large images (default: the cores, less "
                               "one, per process)", free=True)  # fmt: skip
    strict_data: bool = _opt(False, "an unreadable image is an error instead of a skipped warning")
    device_decode: bool = _opt(False, "streamed large images: JPEGs decoded in batches on the training device "
                               "(nvJPEG on a GPU; the workers only read files and draw the crops)")  # fmt: skip
    train_subset: int | None = _opt(None, "train on a random subset of this many training images (the same for "
                                    "every seed; none: all)")  # fmt: skip
    test_subset: int | None = _opt(None, "test on a random subset of this many test images (none: all)")
    val_split: int = _opt(0, "hold out N training images as the validation set (the paper: 5000)")
    augment: bool = _opt(True, "pad-crop-flip augmentation (Sec. 4.2)")
    recipe: Recipe = PAPER
    task: str | None = _opt(None, "what the run trains (reslab.tasks): classification, or detection; default: "
                            "the recipe's (detection for --recipe detection)")  # fmt: skip
    seed: int = _opt(0, "seed of the initial weights and of the data order and augmentation")
    precision: str = _opt("auto", "auto: bf16 where the CPU or GPU has it natively, else fp32 (fp16 on old GPUs)")
    channels_last: bool = _opt(True, "NHWC memory format (faster convolutions on CPUs and tensor cores)")
    device: str = _opt("auto", "auto, cpu, cuda or cuda:N", free=True)
    out: str | None = _opt(None, "run folder (default: runs/MODEL-RECIPE-sSEED)", free=True)
    eval_every: int = _opt(0, "iterations between evaluations (0: the recipe's --evaluations per run)", free=True)
    log_every: int = _opt(50, "iterations per logging interval (the paper's warm-up rule reads whole intervals)")
    checkpoint_every: int = _opt(0, "iterations between checkpoints (0: at every evaluation)", free=True)
    checkpoint_minutes: float = _opt(5.0, "also write a checkpoint after this many minutes without one (0: off)",
                                     free=True)  # fmt: skip
    stop_at: int | None = _opt(None, "stop (with a checkpoint) after this iteration, as if interrupted", free=True)
    sync_bn: bool = _opt(False, "synchronised BN across processes (CUDA under torchrun)")
    compile: bool = _opt(False, "torch.compile the model (measured against eager in README's throughput tables)")
    compile_mode: str = _opt("default", "torch.compile's mode with --compile: default, reduce-overhead (CUDA "
                             "graphs) or max-autotune")  # fmt: skip
    eval_batch_size: int | None = _opt(None, "images per evaluation batch (default: "
                                       + ", ".join(f"{n} {kind}" for kind, n in EVAL_BATCH.items()) + ")",
                                       free=True)  # fmt: skip
    progress: bool = _opt(True, "progress bar and log lines on stderr", free=True)

    def __post_init__(self) -> None:
        if self.compile_mode not in COMPILE_MODES:
            raise ConfigError(f"unknown compile mode {self.compile_mode!r}; use one of {', '.join(COMPILE_MODES)}")
        if self.compile_mode != "default" and not self.compile:
            raise ConfigError(f"--compile-mode {self.compile_mode} is a mode of --compile, which is off")
        if not isinstance(self.recipe, Recipe):
            raise ConfigError(f"recipe must be a Recipe, got {type(self.recipe).__name__}")
        trains = "detection" if self.recipe.augmentation == "detection" else "classification"
        if self.task is None:
            object.__setattr__(self, "task", trains)
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        if self.task != trains:
            raise ConfigError(f"--recipe {self.recipe.name} trains {trains}, not {self.task}")
        object.__setattr__(self, "data", resolve_spec(self.data))  # recorded absolute: `reslab eval` from anywhere
        if self.init is not None:
            object.__setattr__(self, "init", resolve_init(self.init))
            # Weights compute their function only when built as they were trained (akamaster's option A zeros on both
            # sides; a reslab run's recorded keywords): those keywords join the config, unless given; a detector's
            # go to its backbone (model keyword backbone_kwargs).
            if self.task == "detection":
                from reslab.detection.model import parse_name

                given = dict(self.model_kwargs.get("backbone_kwargs") or {})
                chosen = {k: v for k, v in init_kwargs(self.init, parse_name(self.model)[0]).items() if k not in given}
                if chosen:
                    object.__setattr__(self, "model_kwargs",
                                       {**self.model_kwargs, "backbone_kwargs": {**given, **chosen}})  # fmt: skip
            else:
                chosen = {k: v for k, v in init_kwargs(self.init, self.model).items() if k not in self.model_kwargs}
                if chosen:
                    object.__setattr__(self, "model_kwargs", {**self.model_kwargs, **chosen})
        object.__setattr__(self, "freeze", tuple(self.freeze))
        if (self.freeze or self.freeze_bn) and self.init is None:
            raise ConfigError("--freeze and --freeze-bn keep trained weights fixed: they need --init")
        if (self.freeze or self.freeze_bn) and self.sync_bn:
            raise ConfigError("--sync-bn with --freeze or --freeze-bn: frozen BN statistics have nothing to sync")
        if not (math.isfinite(self.head_lr_scale) and self.head_lr_scale > 0):
            raise ConfigError(f"head_lr_scale must be a finite number > 0, got {self.head_lr_scale}")
        check_precision_name(self.precision)
        check_device_name(self.device)
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be in [0, 2**63), got {self.seed}")
        minimum = {"val_split": 0, "eval_every": 0, "checkpoint_every": 0, "log_every": 1}
        for name, low in minimum.items():
            if getattr(self, name) < low:
                raise ConfigError(f"{name} must be >= {low}, got {getattr(self, name)}")
        if not 0 <= self.checkpoint_minutes < float("inf"):
            raise ConfigError(f"checkpoint_minutes must be a finite number >= 0, got {self.checkpoint_minutes}")
        if self.device_decode and not self.streams:
            raise ConfigError("--device-decode decodes streamed large images (--recipe imagenet-*); in-memory data is "
                              "decoded once, into the cache")  # fmt: skip
        if self.image_size is not None and self.image_size < 8:
            raise ConfigError(f"image_size must be >= 8, got {self.image_size}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"workers must be >= 0, got {self.workers}")
        if self.workers is not None and not self.streams:
            raise ConfigError("--workers sets the data-loading processes of streamed large images (--recipe "
                              "imagenet-*); in-memory data is decoded once, into the cache")  # fmt: skip
        if self.task == "detection":
            from reslab.detection.model import parse_name

            parse_name(self.model)  # a detector's name, or one line saying what one looks like
            if self.sync_bn:
                raise ConfigError("--sync-bn: a detector's BN layers are frozen (Sec. 4.3), nothing to sync")
            if self.val_split or not self.augment or self.freeze or self.freeze_bn:
                raise ConfigError(
                    "detection runs have no --val-split, --no-augment, --freeze or --freeze-bn (the "
                    "detector freezes BN and its lowest stages itself: model keyword trainable_stages)"
                )
            given = [name for name, value in DETECTION_UNREAD.items() if getattr(self, name) != value]
            given += [name for name, value in DETECTION_UNREAD_RECIPE.items() if getattr(self.recipe, name) != value]
            if given:
                flag = "--strict" if given[0] == "strict_data" else "--" + given[0].replace("_", "-")
                why = ("the paper's warm-up rule is for its CIFAR nets (Sec. 4.2)" if given[0].startswith("paper_")
                       else "their images are read at --min-size/--max-size, flipped at random and tested in one "
                       "view")  # fmt: skip
                raise ConfigError(f"detection runs do not use {flag}: {why}")
        elif self.model.startswith("fasterrcnn_"):
            raise ConfigError(f"{self.model} is a detector: train it with --recipe detection (reslab detect train)")
        elif self.init is not None and self.init.startswith(TORCHVISION) and not self.streams:
            raise ConfigError(f"--init {self.init}: ImageNet weights for 224-px images normalised per channel; "
                              "fine-tune them on large images with --recipe imagenet-torchvision (a folder or "
                              ".tar with train/ and val/)")  # fmt: skip
        elif self.streams:
            if self.val_split:
                raise ConfigError("--val-split holds out in-memory images; streamed data (--recipe imagenet-*) is "
                                  "validated on its own val/ split")  # fmt: skip
            if not self.augment:
                raise ConfigError("--no-augment is for in-memory data; the imagenet recipes' augmentation is "
                                  "--recipe's (imagenet-paper or imagenet-torchvision)")  # fmt: skip
            if self.data_dir is not None:
                raise ConfigError("--data-dir is the download cache of in-memory data; large images are read where "
                                  "--data says")  # fmt: skip
            if self.recipe.flip != "random":  # the workers mirror each crop at random (reslab.data.views)
                raise ConfigError(f"--flip {self.recipe.flip} is for in-memory data; streamed images are mirrored "
                                  "at random")  # fmt: skip
            if is_builtin(self.data):
                raise ConfigError(
                    f"--recipe {self.recipe.name} streams large images from a folder or tar; "
                    f"{self.data!r} is a 32x32 in-memory dataset: use --recipe paper or fast"
                )
        if self.task != "detection" and is_builtin(self.data):  # flags for files that these data never read
            if self.strict_data:
                raise ConfigError(f"--strict refuses unreadable images of a folder or .tar; {self.data!r} has none")
            if self.data_dir is not None and self.data != "cifar10":
                raise ConfigError(f"--data-dir is the download and decode cache of cifar10 and of folders; "
                                  f"{self.data!r} is generated in memory")  # fmt: skip
        for name in ("stop_at", "train_subset", "test_subset", "eval_batch_size"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.task != "detection" and not _models().is_model_name(self.model):
            raise ModelError(_models().unknown_model(self.model))
        if self.task != "detection":  # keywords the model would refuse or ignore (a shortcut on a plain net): now
            _models().resolve(self.model, **self.model_kwargs)
        named = RECIPES.get(self.recipe.name)
        if self.task != "detection" and named is not None:  # the warm-up rule reads CIFAR depths only (TaskParts)
            given = [f for f in _WARMUP_FIELDS if getattr(self.recipe, f) != getattr(named, f)]
            family, depth = _models().family_and_depth(self.model, **self.model_kwargs) if given else ("", 0)
            if given and family != "cifar":
                raise ConfigError(f"--{given[0].replace('_', '-')}: the paper's warm-up rule is for its CIFAR nets "
                                  f"(Sec. 4.2); {self.model} never uses it")  # fmt: skip
            low = self.recipe.paper_warmup_min_depth
            shaped = [f for f in given if f != "paper_warmup_min_depth"]  # the rule's lr and error: read when it runs
            if shaped and (low is None or depth < low):
                raise ConfigError(f"--{shaped[0].replace('_', '-')} shapes the paper's warm-up rule, which is off for "
                                  f"{self.model} ({depth} layers; the rule starts at --paper-warmup-min-depth, "
                                  f"{'none' if low is None else low} here)")  # fmt: skip
        if (self.task != "detection" and not self.streams and self.recipe.schedule == "plateau"
                and not self.val_split):  # fmt: skip
            raise ConfigError("--schedule plateau divides the lr when the validation error stalls: in-memory data "
                              "needs --val-split N (the paper's CIFAR split: 5000), else the rule would read the "
                              "test set")  # fmt: skip
        if self.model_kwargs.get("num_classes") is not None:
            raise ConfigError("num_classes comes from the data; it is not a model keyword of a training run")

    @property
    def eval_batch(self) -> int:
        """Images per evaluation batch: ``eval_batch_size``, or its default for the kind of data."""
        if self.eval_batch_size is not None:
            return self.eval_batch_size
        return EVAL_BATCH["detection" if self.task == "detection" else "streamed" if self.streams else "in memory"]

    @property
    def streams(self) -> bool:
        """Whether this run streams large images from disk (the imagenet augmentations) or holds its data in memory."""
        return self.recipe.augmentation not in IN_MEMORY

    @property
    def run_dir(self) -> str:
        """The run folder: ``out``, or ``runs/MODEL-RECIPE-sSEED``."""
        return self.out or os.path.join("runs", f"{self.model}-{self.recipe.name}-s{self.seed}")

    def differences(self, other: TrainConfig) -> list[str]:
        """The fields in which ``other`` computes something else than this config (what a resumed or reused run may
        not change); fields marked free (output, cadence of reports, device) are left out, and so are the recipe's
        fields that its schedule does not read (a run recorded with ``--gamma`` on a cosine schedule, accepted before
        2026-12-03, resumes without it)."""
        mine, theirs = self.to_dict(), other.to_dict()
        mine["recipe"], theirs["recipe"] = schedule_view(mine["recipe"]), schedule_view(theirs["recipe"])
        out = []
        for f in fields(self):
            if f.metadata.get("free") or mine[f.name] == theirs[f.name]:
                continue
            if f.name == "recipe":  # named by its field, as its flag is: "recipe.lr" (--lr)
                named = [f"recipe.{r.name}" for r in fields(Recipe)
                         if mine["recipe"].get(r.name) != theirs["recipe"].get(r.name)]  # fmt: skip
                out += named or ["recipe"]  # a difference outside Recipe's fields (an older file's key) still counts
            else:
                out.append(f.name)
        return out

    def _value(self, name: str) -> Any:
        """A field's value by its name in `differences` (``recipe.lr`` for the recipe's)."""
        head, _, rest = name.partition(".")
        return getattr(self.recipe, rest) if head == "recipe" and rest else getattr(self, head)

    def changed_from(self, recorded: TrainConfig) -> str | None:
        """The first difference from a recorded run's config, in words for a refusal ("another 'recipe.lr' (0.1,
        not 0.05)": the recorded value first), or None where it would compute the same."""
        diff = self.differences(recorded)
        return f"another {diff[0]!r} ({recorded._value(diff[0])!r}, not {self._value(diff[0])!r})" if diff else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["recipe"]["milestones"] = list(self.recipe.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """The config a run recorded; configs written by earlier reslab versions are migrated (`_migrate`)."""
        d, recipe = _migrate(dict(d), dict(d.get("recipe", {})))
        # A field this version does not know came from a newer reslab (or a foreign file): using the config without
        # it would silently change the run, so refuse.
        for given, known in ((d, fields(cls)), (recipe, fields(Recipe))):
            unknown = sorted(set(given) - {f.name for f in known})
            if unknown:
                raise ConfigError(f"unknown configuration field {unknown[0]!r} (written by another reslab version?)")
        if "milestones" in recipe:
            recipe["milestones"] = tuple(recipe["milestones"])
        return cls(**{**d, "recipe": Recipe(**recipe)})


def _defaults(cls: type, names: tuple[str, ...]) -> dict[str, Any]:
    return {f.name: f.default for f in fields(cls) if f.name in names}


DETECTION_UNREAD = _defaults(TrainConfig, _DETECTION_UNREAD_FIELDS)
DETECTION_UNREAD_RECIPE = {f: getattr(RECIPES["detection"], f) for f in _DETECTION_UNREAD_RECIPE_FIELDS}


def model_of_init(init: str | None) -> str | None:
    """The model ``--init``'s weights were trained as, where they record it (a shipped model's name, torchvision's
    weights, a reslab checkpoint, run folder or safetensors file, a recognised foreign checkpoint); else None. What
    `reslab train` builds when --model is not given."""
    if not init:
        return None
    if init.startswith(TORCHVISION):
        from reslab.weights.torchvision import parse

        return parse(init).model
    if init.startswith(SHIPPED) or (not os.path.exists(os.path.expanduser(init)) and _models().is_model_name(init)):
        return init.removeprefix(SHIPPED)
    return _recorded(os.path.expanduser(init))[0]


def _models() -> types.ModuleType:
    """The model registry, loaded when a config is checked: it imports torch, and this module is read by every
    command's flags (`reslab train --help` answers without torch)."""
    from reslab.models import registry

    return registry


def init_kwargs(init: str, model: str) -> dict[str, Any]:
    """The model keywords that ``init``'s weights need to compute their function in ``model``: a recognised foreign
    format's (akamaster's option A zeros on both sides), torchvision's (the bottleneck's stride on the 3x3), or those
    a reslab file or run folder records, where it was trained as ``model`` (another model's keywords mean another
    thing, and `load_init` refuses that pairing anyway)."""
    if init.startswith(TORCHVISION):
        from reslab.weights.torchvision import MODEL_KWARGS  # torch: see _models

        return dict(MODEL_KWARGS)
    if init.startswith(SHIPPED):
        return {}
    trained_as, kwargs, foreign = _recorded(os.path.expanduser(init))
    return dict(kwargs) if foreign or trained_as == model else {}


def _recorded(path: str) -> tuple[str | None, tuple[tuple[str, Any], ...], bool]:
    """What the weights at ``path`` record: the model they were trained as, its keywords, and whether they are in a
    foreign format."""
    target = os.path.join(path, "checkpoint.pt") if os.path.isdir(path) else path
    try:
        st = os.stat(target)
    except OSError:
        return None, (), False  # missing: loading --init says so, in one line
    return _read_recorded(target, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read_recorded(path: str, _size: int, _mtime: int) -> tuple[str | None, tuple[tuple[str, Any], ...], bool]:
    # Cached, so that checking a config and choosing its model read the file once; keyed by size and mtime too, so a
    # file replaced under the same name is read again. Only names and keywords are kept, not the tensors.
    from reslab.weights.state import read_weights  # torch: see _models

    try:
        found = read_weights(path)
    except ModelError:
        return None, (), False  # unreadable: the run's loading of --init says why, in one line
    if found.foreign is not None:
        return found.foreign.model, tuple(found.foreign.model_kwargs.items()), True
    config = found.config or {}
    model, kwargs = config.get("model"), config.get("model_kwargs")
    return (
        (model if isinstance(model, str) else None),
        tuple((kwargs if isinstance(kwargs, dict) else {}).items()),
        False,
    )


def resolve_init(text: str) -> str:
    """``--init``'s value as recorded: an existing path made absolute, the name of a registered model (whose
    shipped weights it means) as ``shipped:NAME``, anything else as an absolute path (reported missing when read).
    Decided once, so a folder created later under that name (say, the run's own --out) changes nothing."""
    if text.startswith(SHIPPED):
        return text
    if text.startswith(TORCHVISION):  # recorded in one spelling, with the weights it chose: torchvision:resnet50.V2
        from reslab.weights.torchvision import parse  # torchvision: see _models

        return parse(text).ref
    path = os.path.expanduser(text)
    if not os.path.exists(path) and _models().is_model_name(text):
        return SHIPPED + text
    return os.path.abspath(path)


def _migrate(d: dict[str, Any], recipe: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Configs of reslab 0.1.0 before the engine's reshaping (2026-11-24): a recipe could hold both a length in
    iterations and one in epochs (epochs won), and had an unused ``extra``. Before 2026-12-03, ``workers`` was accepted
    for in-memory data, and detection runs accepted fields their task does not read (`DETECTION_UNREAD`) and a
    ``min_size`` above ``max_size`` (torchvision's resize then scales the longer side to ``max_size``, as with
    ``min_size == max_size``): none of them changed what the run computed, and all are refused now."""
    if recipe.get("epochs") is not None:
        recipe["iterations"] = None
    if recipe.get("extra") == {}:
        del recipe["extra"]
    if recipe.get("augmentation", "cifar") in IN_MEMORY:
        d.pop("workers", None)
    if recipe.get("augmentation") == "detection":
        d.update(DETECTION_UNREAD, sync_bn=False)  # a detector's BN is frozen: --sync-bn never did anything
        recipe.update(DETECTION_UNREAD_RECIPE)
        kwargs = dict(d.get("model_kwargs") or {})
        if kwargs.get("min_size", 0) > kwargs.get("max_size", float("inf")):
            d["model_kwargs"] = {**kwargs, "min_size": kwargs["max_size"]}
    return d, recipe
