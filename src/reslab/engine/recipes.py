"""Training recipes as data: the paper's CIFAR-10 recipe and a measured fast one; the schedule and the optimizer.

A `Recipe` holds every optimisation hyperparameter, each declared once here with its default, its help text (which
the CLI shows) and its check (in `Recipe.__post_init__`, so an invalid recipe cannot exist). The learning-rate
schedule is a pure function of the iteration, except for the paper's warm-up rule for 110+ layers, which depends on
the training error and is a small state machine (`PaperWarmup`); `LRSchedule` combines the two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any

from reslab.data.presets import PRESETS
from reslab.data.tta import count_views
from reslab.errors import ConfigError

if TYPE_CHECKING:
    import torch
    from torch import nn

SCHEDULES = ("step", "cosine", "onecycle", "plateau")
# The fields that shape only some schedules: given for another schedule they would change nothing, so they are refused.
SCHEDULE_FIELDS = {
    "milestones": ("step",),
    "gamma": ("step", "plateau"),
    "plateau_patience": ("plateau",),
    "plateau_threshold": ("plateau",),
    "final_lr_fraction": ("cosine", "onecycle"),
}
FLIP_MODES = ("random", "alternate")
# "cifar": images held in memory, padded, cropped and flipped a batch at a time (Sec. 4.2); "detection": a COCO-format
# set's images and boxes, flipped (reslab.detection.task); the others stream large images through DataLoader workers
# (reslab.data.views.PRESETS, Sec. 3.4).
IN_MEMORY = ("cifar", "detection")  # the augmentations of data held in memory; the others stream
AUGMENTATIONS = (*IN_MEMORY, *PRESETS)


def _opt(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class Recipe:
    """Every optimisation hyperparameter of a run; see each field's help (``reslab train --help``).

    The run's length is ``iterations`` (optimizer steps) or ``epochs`` (passes over the training images), exactly one
    of them. ``milestones`` are fractions of the run for the ``step`` schedule (the paper's 32k and 48k of 64k are 0.5
    and 0.75), so a shorter run keeps the paper's shape.
    """

    name: str = "custom"
    batch_size: int = _opt(128, "images per optimizer step, over all processes")
    lr: float = _opt(0.1, "learning rate (the peak, for warm-up and one-cycle schedules)")
    momentum: float = _opt(0.9, "SGD momentum")
    nesterov: bool = _opt(False, "Nesterov momentum")
    weight_decay: float = _opt(1e-4, "L2 weight decay")
    iterations: int | None = _opt(64_000, "length in optimizer steps (replaces --epochs)")
    epochs: float | None = _opt(None, "length in passes over the training images (replaces --iterations)")
    schedule: str = _opt("step", f"learning-rate schedule: {', '.join(SCHEDULES)} (lr / --gamma each time the "
                         "validation error plateaus, see --plateau-patience)")  # fmt: skip
    milestones: tuple[float, ...] = _opt((0.5, 0.75), "step schedule: fractions of the run where lr is multiplied "
                                         "by --gamma, e.g. 0.5,0.75")  # fmt: skip
    gamma: float = _opt(0.1, "step schedule: lr factor at each milestone")
    plateau_patience: int = _opt(5, "plateau schedule: evaluations in a row without an improvement of at least "
                                 "--plateau-threshold on the best validation error so far")  # fmt: skip
    plateau_threshold: float = _opt(0.1, "plateau schedule: an improvement counts when it exceeds this (error points)")
    warmup_fraction: float = _opt(0.0, "linear lr warm-up from 0 over this fraction of the run")
    final_lr_fraction: float = _opt(0.0, "cosine / onecycle: the final lr as a fraction of --lr")
    paper_warmup_min_depth: int | None = _opt(110, "the paper's rule (Sec. 4.2) for nets of this depth and deeper: "
                                              "lr 0.01 until the training error is below 80%; none: off")  # fmt: skip
    paper_warmup_lr: float = _opt(0.01, "the paper's rule: its low lr")
    paper_warmup_error: float = _opt(0.80, "the paper's rule: the training error (fraction) that ends it")
    label_smoothing: float = _opt(0.0, "cross-entropy label smoothing")
    flip: str = _opt("random", "training flips: random (the paper) or alternate (each image's mirroring inverted "
                     "every epoch)")  # fmt: skip
    no_decay_bn: bool = _opt(False, "no weight decay on BN and bias parameters")
    tta_flip: bool = _opt(False, "reported test error averages the softmax of each image and its mirror")
    tta_shift: int = _opt(0, "with --tta-flip: also the views shifted by (+S,+S) and (-S,-S) pixels (6 in all)")
    low_res_size: int | None = _opt(None, "progressive resizing: train the first --low-res-fraction of the run on "
                                    "images downsampled to this size (not in the paper)")  # fmt: skip
    low_res_fraction: float = _opt(0.0, "progressive resizing: the fraction of the run at --low-res-size")
    evaluations: int = _opt(20, "periodic evaluations per run when --eval-every is 0 (at least an epoch apart)")
    augmentation: str = _opt("cifar", f"training data: {', '.join(AUGMENTATIONS)} (the imagenet ones stream large "
                             "images from disk)")  # fmt: skip

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"bad value for {f.name}: {value!r} (must be a finite number)")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose one of {', '.join(SCHEDULES)}")
        if self.augmentation not in AUGMENTATIONS:
            raise ConfigError(f"unknown augmentation {self.augmentation!r}; choose one of {', '.join(AUGMENTATIONS)}")
        if self.flip not in FLIP_MODES:
            raise ConfigError(f"unknown flip mode {self.flip!r}; choose one of {', '.join(FLIP_MODES)}")
        if (self.iterations is None) == (self.epochs is None):
            raise ConfigError("a recipe's length is --iterations or --epochs: exactly one of them (got "
                              f"iterations={self.iterations}, epochs={self.epochs})")  # fmt: skip
        checks = {
            "batch_size": self.batch_size >= 1,
            "lr": self.lr > 0,
            "momentum": 0 <= self.momentum < 1 and (self.momentum > 0 or not self.nesterov),
            "weight_decay": self.weight_decay >= 0,
            "iterations": self.iterations is None or self.iterations >= 1,
            "epochs": self.epochs is None or self.epochs > 0,
            "milestones": all(0 < m < 1 for m in self.milestones) and list(self.milestones) == sorted(self.milestones),
            "gamma": self.gamma > 0,
            "warmup_fraction": 0 <= self.warmup_fraction < 1,
            "final_lr_fraction": 0 <= self.final_lr_fraction <= 1,
            "paper_warmup_lr": self.paper_warmup_lr > 0,
            "paper_warmup_error": 0 < self.paper_warmup_error <= 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "low_res_size": self.low_res_size is None or self.low_res_size >= 8,
            "low_res_fraction": 0 <= self.low_res_fraction < 1 and (self.low_res_fraction == 0 or self.low_res_size),
            "evaluations": self.evaluations >= 1,
            "plateau_patience": self.plateau_patience >= 1,
            "plateau_threshold": self.plateau_threshold >= 0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"bad value for {bad[0]}: {getattr(self, bad[0])!r}")
        count_views(self.tta_flip, self.tta_shift)

    def resolve_iterations(self, train_images: int) -> int:
        """The run's length in optimizer steps."""
        if self.epochs is not None:
            return max(1, math.ceil(self.epochs * train_images / self.batch_size))
        return int(self.iterations)  # type: ignore[arg-type]


# Sec. 4.2: "a mini-batch size of 128 ... start with a learning rate of 0.1, divide it by 10 at 32k and 48k
# iterations, and terminate training at 64k iterations ... weight decay of 0.0001 and momentum of 0.9".
PAPER = Recipe(name="paper")

# The shortest wall-clock to the paper recipe's accuracy for ResNet-20 on a 2-core CPU; how each choice was measured
# is in README ("How the fast recipe was chosen") with its files in docs/results/. Chosen: bf16 autocast where the
# CPU has it, batch 256 (as fast per image as 128 and 512), flip + shifted-view TTA, progressive resizing (the first
# half at 24x24, so more epochs fit the same wall-clock). One-cycle, Nesterov, label smoothing 0.1 and no decay on
# BN/bias are common short-schedule practice, not ablated. Alternating flips were measured and not adopted.
FAST = Recipe(
    name="fast",
    batch_size=256,
    lr=0.2,
    nesterov=True,
    weight_decay=5e-4,
    iterations=None,
    epochs=28,
    schedule="onecycle",
    warmup_fraction=0.15,
    final_lr_fraction=0.0,
    paper_warmup_min_depth=None,
    label_smoothing=0.1,
    no_decay_bn=True,
    tta_flip=True,
    tta_shift=1,
    low_res_size=24,
    low_res_fraction=0.5,
    evaluations=5,
)

# Sec. 3.4: "mini-batch size of 256. The learning rate starts from 0.1 and is divided by 10 when the error
# plateaus, and the models are trained for up to 60 x 10^4 iterations. We use a weight decay of 0.0001 and a momentum
# of 0.9. We do not use dropout." The paper does not define a plateau; ours is --plateau-patience evaluations (one per
# epoch) without an improvement of --plateau-threshold points in the validation error (1 crop).
IMAGENET_PAPER = Recipe(
    name="imagenet-paper",
    batch_size=256,
    iterations=600_000,
    schedule="plateau",
    paper_warmup_min_depth=None,
    evaluations=120,  # 600k iterations of 256 are ~120 epochs of ImageNet's 1.28M images: one evaluation per epoch
    augmentation="imagenet-paper",
)

# What torchvision's ResNet-50 "IMAGENET1K_V1" weights were trained with (its classification reference scripts):
# 90 epochs, lr 0.1 divided by 10 every 30 epochs, batch 256 (32 x 8 GPUs), RandomResizedCrop, per-channel norm.
IMAGENET_TORCHVISION = Recipe(
    name="imagenet-torchvision",
    batch_size=256,
    iterations=None,
    epochs=90,
    milestones=(1 / 3, 2 / 3),
    paper_warmup_min_depth=None,
    evaluations=90,
    augmentation="imagenet-torchvision",
)

# Faster R-CNN fine-tuned from a classification network (Sec. 4.3 follows Faster R-CNN's training: SGD with momentum
# 0.9 and weight decay 1e-4, lr divided by 10 once, late). The paper's COCO schedule (8 GPUs, 240k + 80k iterations
# at lr 0.001 and 0.0001 for 2 images per GPU) does not transfer to one machine; this is the usual single-machine
# form: batch 8, lr 0.01 (the linear scaling rule from detectron2's 0.02 for 16), 12 epochs with the lr divided by
# 10 at 2/3 and 8/9 of the run, a short linear warm-up.
DETECTION = Recipe(
    name="detection",
    batch_size=8,
    lr=0.01,
    iterations=None,
    epochs=12,
    milestones=(2 / 3, 8 / 9),
    warmup_fraction=0.02,
    paper_warmup_min_depth=None,
    evaluations=4,
    augmentation="detection",
)

RECIPES = {r.name: r for r in (PAPER, FAST, IMAGENET_PAPER, IMAGENET_TORCHVISION, DETECTION)}
OVERRIDABLE = tuple(f.name for f in fields(Recipe) if f.name != "name")


def get_recipe(name: str, **overrides: Any) -> Recipe:
    """Recipe ``name`` with some fields replaced (``None`` clears an optional field).

    The length is one thing: giving ``iterations`` clears the recipe's ``epochs`` and vice versa.
    """
    if name not in RECIPES:
        raise ConfigError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    unknown = sorted(set(overrides) - set(OVERRIDABLE))
    if unknown:
        raise ConfigError(f"unknown recipe field {unknown[0]!r}")
    if overrides.get("iterations") is not None and overrides.get("epochs") is not None:
        raise ConfigError("give the run's length as --iterations or --epochs, not both")
    if overrides.get("iterations") is not None:
        overrides.setdefault("epochs", None)
    if overrides.get("epochs") is not None:
        overrides.setdefault("iterations", None)
    recipe = replace(RECIPES[name], **overrides)
    if overrides.get("low_res_size") is not None and recipe.low_res_fraction == 0:
        raise ConfigError(f"--low-res-size trains the first --low-res-fraction of the run at that size; recipe "
                          f"{name}'s fraction is 0: give --low-res-fraction too")  # fmt: skip
    for key in overrides:
        if not reads(recipe.schedule, key):
            flag = "--" + key.replace("_", "-")
            raise ConfigError(f"{flag} shapes the {' and '.join(SCHEDULE_FIELDS[key])} schedule only; the run's is "
                              f"{recipe.schedule} (--schedule chooses it)")  # fmt: skip
    return recipe


def schedule_view(recipe: dict[str, Any]) -> dict[str, Any]:
    """``recipe`` (as a dict) without the fields its schedule does not read (`SCHEDULE_FIELDS`): what two runs must
    share to compute the same thing."""
    return {k: v for k, v in recipe.items() if reads(recipe.get("schedule"), k)}


def reads(schedule: str | None, field: str) -> bool:
    """Whether the lr schedule ``schedule`` reads the recipe field ``field`` (every field but `SCHEDULE_FIELDS`')."""
    return schedule in SCHEDULE_FIELDS.get(field, SCHEDULES)


def scheduled_lr(recipe: Recipe, it: int, total: int) -> float:
    """The learning rate for iteration ``it`` (0-based) of ``total``, before any paper warm-up override."""
    frac = it / total
    if recipe.warmup_fraction and frac < recipe.warmup_fraction:
        # capped: when the warm-up spans less than a step (a short run), (it + 1) / span would exceed 1
        return recipe.lr * min(1.0, (it + 1) / (recipe.warmup_fraction * total))
    if recipe.schedule == "plateau":  # `Plateau` divides it as the validation error stalls
        return recipe.lr
    if recipe.schedule == "step":
        return recipe.lr * recipe.gamma ** sum(frac >= m for m in recipe.milestones)
    floor = recipe.lr * recipe.final_lr_fraction
    decay = (frac - recipe.warmup_fraction) / (1 - recipe.warmup_fraction)
    if recipe.schedule == "cosine":
        return floor + (recipe.lr - floor) * 0.5 * (1 + math.cos(math.pi * decay))
    return floor + (recipe.lr - floor) * (1 - decay)  # onecycle: linear up, linear down


class PaperWarmup:
    """Sec. 4.2, ResNet-110: "we use 0.01 to warm up the training until the training error is below 80% (about
    400 iterations), and then go back to 0.1". Active only for nets of ``paper_warmup_min_depth`` layers or more.

    The training error is read over each logging interval; once it is below the threshold the warm-up ends for good.
    """

    def __init__(self, recipe: Recipe, depth: int) -> None:
        min_depth = recipe.paper_warmup_min_depth
        self.active = min_depth is not None and depth >= min_depth
        self.lr, self.threshold = recipe.paper_warmup_lr, recipe.paper_warmup_error

    def apply(self, lr: float) -> float:
        return min(lr, self.lr) if self.active else lr

    def observe(self, train_error: float) -> None:
        if self.active and train_error < self.threshold:
            self.active = False

    def state_dict(self) -> dict[str, bool]:
        return {"active": self.active}

    def load_state_dict(self, state: dict[str, bool]) -> None:
        self.active = bool(state["active"])


class Plateau:
    """Sec. 3.4's "divided by 10 when the error plateaus", made precise: after each periodic evaluation, if the
    validation error has not fallen below its best by more than ``plateau_threshold`` points for ``plateau_patience``
    evaluations in a row, the lr is multiplied by ``gamma`` and the count starts again. The best is the error of the
    last evaluation that counted as an improvement."""

    def __init__(self, recipe: Recipe) -> None:
        self.active = recipe.schedule == "plateau"
        self.patience, self.threshold, self.gamma = recipe.plateau_patience, recipe.plateau_threshold, recipe.gamma
        self.best: float | None = None
        self.stalled = self.drops = 0

    def factor(self) -> float:
        return self.gamma**self.drops

    def observe(self, error: float) -> None:
        # As torch's ReduceLROnPlateau(threshold_mode="abs"): only an improvement that counts moves the best, so a
        # slow steady descent (smaller steps than the threshold) still adds up to improvements.
        if not self.active:
            return
        if self.best is None or error < self.best - self.threshold:
            self.best, self.stalled = error, 0
            return
        self.stalled += 1
        if self.stalled >= self.patience:
            self.drops, self.stalled = self.drops + 1, 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "stalled": self.stalled, "drops": self.drops}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best, self.stalled, self.drops = state["best"], int(state["stalled"]), int(state["drops"])


class LRSchedule:
    """The learning rate of every iteration of a run: `scheduled_lr`, capped by the paper's warm-up while it lasts,
    divided at plateaus (`Plateau`) for that schedule.

    ``depth`` decides the warm-up rule, a CIFAR rule (pass 0 for other families).
    """

    def __init__(self, recipe: Recipe, total: int, depth: int) -> None:
        self.recipe, self.total = recipe, total
        self.warmup = PaperWarmup(recipe, depth)
        self.plateau = Plateau(recipe)

    def lr(self, iteration: int) -> float:
        return self.warmup.apply(scheduled_lr(self.recipe, iteration, self.total)) * self.plateau.factor()

    def observe(self, record: dict[str, Any]) -> None:
        """A whole logging interval's record: the warm-up reads its training error (%), if the task reports one; a
        periodic evaluation's record: the plateau rule reads its error (%)."""
        if "train_error" in record:
            self.warmup.observe(record["train_error"] / 100)
        if "split" in record and "error" in record:
            self.plateau.observe(record["error"])

    def state_dict(self) -> dict[str, Any]:
        return {**self.warmup.state_dict(), "plateau": self.plateau.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.warmup.load_state_dict(state)
        if "plateau" in state:  # checkpoints written before the plateau schedule existed have none
            self.plateau.load_state_dict(state["plateau"])


def build_optimizer(model: nn.Module, recipe: Recipe, head: set[int] | None = None,
                    head_lr_scale: float = 1.0) -> torch.optim.SGD:  # fmt: skip
    """SGD with momentum (Sec. 3.4) over the parameters that train (frozen ones are left out); with
    ``no_decay_bn`` the BN and bias parameters get no weight decay. The parameters whose ids are in ``head`` (the
    classifier, when fine-tuning) form their own groups whose ``lr_scale`` is ``head_lr_scale``: the trainer sets
    each group's learning rate to the schedule's times its ``lr_scale``."""
    import torch  # here, not at the top: the recipes are read by every command's flags, before any work

    if head_lr_scale != 1.0 and not head:
        raise ConfigError("head_lr_scale needs a classifier (a model with an `fc` layer)")
    head = head if head and head_lr_scale != 1.0 else set()
    groups = []
    for in_head in (False, True):
        params = [p for p in model.parameters() if p.requires_grad and (id(p) in head) == in_head]
        extra = {"lr_scale": head_lr_scale} if in_head else {}
        if recipe.no_decay_bn:
            groups += [{"params": [p for p in params if p.ndim > 1], **extra},
                       {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, **extra}]  # fmt: skip
        else:
            groups.append({"params": params, **extra})
    groups = [g for g in groups if g["params"]]
    # The fused kernel updates every parameter in one call: the same bits as the per-tensor loop (tested), and less
    # per-tensor overhead for ResNet-20's ~65 small tensors on a CPU.
    fused = all(p.device.type in ("cpu", "cuda") for p in model.parameters())
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay,
                           nesterov=recipe.nesterov, fused=fused)  # fmt: skip
