"""The resolved configuration of one run: what to train, on what, how, and where to write it.

It is written to ``RUN_DIR/config.json`` and into every checkpoint; ``from_dict(to_dict(c)) == c``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from reslab.engine.precision import resolve_device
from reslab.engine.recipes import PAPER, Recipe
from reslab.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Fields that may differ between a checkpointed run and the command that continues or reuses it: where and how
# often it reports, not what it computes. (``log_every`` is not here: the paper's warm-up rule reads whole
# logging intervals.)
RESUME_IGNORED = frozenset({"stop_at", "progress", "out", "eval_every", "checkpoint_every", "device", "data_dir"})


@dataclass(frozen=True)
class TrainConfig:
    model: str = "resnet20"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    data: str = "cifar10"
    data_dir: str | None = None  # download/cache folder; default $RESLAB_DATA or the user cache
    strict_data: bool = False
    val_split: int = 0  # hold out this many training images as the validation set (the paper: 5000)
    augment: bool = True
    recipe: Recipe = PAPER
    seed: int = 0
    precision: str = "auto"
    channels_last: bool = True
    device: str = "auto"
    out: str = "runs/default"
    eval_every: int = 0  # iterations between evaluations; 0: the recipe's `evaluations` per run, >= 1 epoch apart
    log_every: int = 50
    checkpoint_every: int = 0  # iterations between checkpoints; 0: at every evaluation
    stop_at: int | None = None  # stop (checkpointed) after this iteration, as if killed: for resume tests
    sync_bn: bool = False
    compile: bool = False
    eval_batch_size: int = 1000
    progress: bool = True

    def validate(self) -> None:
        self.recipe.validate()
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        resolve_device(self.device)  # raises ConfigError for a bad or unavailable device
        if not 0 <= self.seed < 2**63:
            raise ConfigError(f"seed must be in [0, 2**63), got {self.seed}")
        for name in ("eval_every", "checkpoint_every", "val_split"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.log_every < 1:
            raise ConfigError(f"log_every must be >= 1, got {self.log_every}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["recipe"]["milestones"] = list(self.recipe.milestones)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        recipe = dict(d.get("recipe", {}))
        # A field this version does not know came from a newer reslab (or a foreign file): using the config without
        # it would silently change the run, so refuse.
        for given, known in ((d, fields(cls)), (recipe, fields(Recipe))):
            unknown = sorted(set(given) - {f.name for f in known})
            if unknown:
                raise ConfigError(f"unknown configuration field {unknown[0]!r} (written by another reslab version?)")
        if "milestones" in recipe:
            recipe["milestones"] = tuple(recipe["milestones"])
        return replace(cls(**{**d, "recipe": Recipe()}), recipe=Recipe(**recipe))
