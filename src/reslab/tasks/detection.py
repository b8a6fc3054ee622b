"""The detection task's parts for the shared training engine (`reslab.engine.run.build_trainer`): the detector, the
COCO-format data and the task; and the detector a detection run trained (`load_detector`). Run folders,
checkpoints, resume, torchrun, logging and the schedule are the engine's, exactly as for classification.

The detector normalises its input inside (torchvision's transform) with the statistics of the data its backbone was
trained on (`reslab.detection.model`). Those are recorded in the checkpoint (``mean`` and ``preprocess``), so a
resumed run normalises as it started even when the backbone's weights file is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from reslab.detection.coco import coco_eval, open_coco, subset, to_coco_results
from reslab.detection.model import create_detector
from reslab.detection.task import DetectionBatches, DetectionData, DetectionTask, detect
from reslab.engine import distributed as D
from reslab.engine.config import TrainConfig
from reslab.engine.parts import TaskParts
from reslab.engine.precision import autocast, resolve_device, resolve_precision
from reslab.errors import ConfigError, DataError, ReslabError
from reslab.weights.checkpoint import checkpoint_file, read_checkpoint
from reslab.weights.state import fit_weights
from reslab.weights.trained import Arch, Preprocessing, TrainedModel


def detection_parts(config: TrainConfig, *, data: Any = None, model: torch.nn.Module | None = None,
                    device: torch.device, dist: D.DistInfo, log: Callable[[str], None], load_init: bool,
                    mean: torch.Tensor | None = None,
                    preprocess: dict[str, Any] | None = None) -> TaskParts:  # fmt: skip
    """The `TaskParts` of a detection run (`reslab.engine.parts.MakeParts`); ``mean`` and ``preprocess`` are a
    resumed run's."""
    if data is not None or model is not None:
        raise ConfigError("a detection run builds its model and data from the config")
    train_set, test_set = open_coco(config.data)
    if train_set.classes != test_set.classes:
        raise DataError(f"{config.data}: the training and test splits list different categories")
    train_set, test_set = subset(train_set, config.train_subset), subset(test_set, config.test_subset)
    for name, split in (("training", train_set), ("test", test_set)):
        if not any(len(t["boxes"]) for t in split.targets):
            raise DataError(f"{config.data}: the {name} split has no objects (boxes that are not crowds), so there "
                            "is nothing to " + ("learn" if name == "training" else "measure mAP on"))  # fmt: skip
    torch.manual_seed(config.seed)  # the detector's new layers
    kwargs = dict(config.model_kwargs)
    if mean is not None:  # resumed: the statistics it started with; its weights come from the checkpoint
        kwargs.update(image_mean=tuple(mean.tolist()), image_std=tuple(_std(preprocess).tolist()))
    weights = config.init if load_init and mean is None else None
    model = create_detector(config.model, num_classes=len(train_set.classes), backbone_weights=weights, **kwargs)
    if weights:
        log(f"backbone weights from {config.init}")
    batches = DetectionBatches(train_set, config.recipe.batch_size, seed=config.seed, rank=dist.rank,
                               world=dist.world)  # fmt: skip
    source = DetectionData(batches, train_set.classes, len(train_set), test_set, name=Path(config.data).name,
                           label=train_set.gt.get("info", {}).get("description"),
                           mean=torch.tensor(model.transform.image_mean),
                           preprocess={"std": torch.tensor(model.transform.image_std)})  # fmt: skip

    def make_task(total: int) -> DetectionTask:
        return DetectionTask(source, device=device, eval_batch_size=config.eval_batch, log=log)

    return TaskParts(model, source, make_task)


def _std(preprocess: dict[str, Any] | None) -> torch.Tensor:
    """A detection run's per-channel std [3], as its checkpoint records it (`Preprocessing.std`; runs written by
    reslab before December 2026 called it ``image_std``, a list)."""
    recorded = (preprocess or {}).get("std", (preprocess or {}).get("image_std"))
    if recorded is None:
        raise ReslabError("the detection checkpoint records no std of its input normalisation")
    return torch.as_tensor(recorded, dtype=torch.float32)


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """Rebuild the detector a detection run (its folder or checkpoint.pt) trained, in eval mode, normalising its
    input as the run did (its per-channel mean and std: ``preprocessing.mean`` and ``.std``, [3])."""
    path = checkpoint_file(path)
    state = read_checkpoint(path)
    config = TrainConfig.from_dict(state["config"])
    if config.task != "detection":
        raise ReslabError(f"{path} is a classification run: use reslab eval / reslab predict")
    classes = list(state["classes"])
    pre = Preprocessing(state["mean"], _std(state.get("preprocess")))
    kwargs = {**config.model_kwargs, "image_mean": tuple(pre.mean.tolist()), "image_std": tuple(pre.std.tolist())}
    model = create_detector(config.model, num_classes=len(classes), **kwargs)
    fit_weights(model, state["model"], path)
    return TrainedModel(model.to(device).eval(), Arch(config.model, dict(config.model_kwargs)), classes, pre,
                        int(state["iteration"]), path, dict(state["config"]))  # fmt: skip


def evaluate_detector(run: str | Path, *, data: str | None = None, batch_size: int | None = None,
                      device: str = "auto", precision: str = "auto") -> dict[str, Any]:  # fmt: skip
    """COCO's box statistics (mAP@[.5,.95], mAP@.5, ...) of the detection run ``run`` on the test split of its data
    (or of ``data``, whose classes must be the run's), with ``run``, ``images`` and ``stats`` entries."""
    dev = resolve_device(device)
    loaded = load_detector(run, dev)
    (test,) = open_coco(data or loaded.config["data"], ("test",))
    if test.classes != loaded.classes:
        few = lambda names: ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")  # noqa: E731
        raise DataError(f"the test set's classes ({few(test.classes)}) are not the ones {loaded.source} was trained "
                        f"on ({few(loaded.classes)})")  # fmt: skip
    with autocast(resolve_precision(precision, dev), dev):
        outputs = detect(loaded.model, test, batch_size=batch_size or TrainConfig.from_dict(loaded.config).eval_batch,
                         device=dev)  # fmt: skip
    return {"run": str(loaded.source), "images": len(test), **coco_eval(test, to_coco_results(test, outputs))}
