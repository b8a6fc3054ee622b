"""A detection run's parts for the shared training engine (`reslab.engine.run.build_trainer`): the detector, the
COCO-format data and the task. Run folders, checkpoints, resume, torchrun, logging and the schedule are the
engine's, exactly as for classification.

The detector normalises its input inside (torchvision's transform) with the statistics of the data its backbone was
trained on (`reslab.detection.model`). Those are recorded in the checkpoint (``mean`` and ``preprocess``), so a
resumed run normalises as it started even when the backbone's weights file is gone.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from reslab.detection.coco import CocoDetection, load_coco
from reslab.detection.model import create_detector
from reslab.detection.task import DetectionBatches, DetectionData, DetectionTask
from reslab.engine import distributed as D
from reslab.engine.config import TrainConfig
from reslab.errors import DataError


def open_coco(root: str | Path, splits: tuple[str, ...] = ("train", "test")) -> tuple[CocoDetection, ...]:
    """The named splits (``train``, ``test``) of a COCO-format folder: ``train/`` and ``test/`` (or ``val/``), each
    with ``images/`` and ``instances.json`` (`reslab detect make-dataset`'s layout), or COCO's own ``train2017/``,
    ``val2017/`` and ``annotations/instances_{train,val}2017.json``. Only the splits asked for are read (COCO's
    training annotations alone are 450 MB)."""
    root = Path(root)
    ann = root / "annotations"
    layouts = [{"train": (root / "train" / "images", root / "train" / "instances.json"),
                "test": (root / test / "images", root / test / "instances.json")} for test in ("test", "val")]
    layouts.append({"train": (root / "train2017", ann / "instances_train2017.json"),
                    "test": (root / "val2017", ann / "instances_val2017.json")})  # fmt: skip
    for layout in layouts:
        if all(layout[s][1].is_file() for s in splits):
            return tuple(load_coco(*layout[s]) for s in splits)
    raise DataError(f"{root} is not a COCO-format folder with {' and '.join(splits)} splits: expected train/ and "
                    "test/ (or val/) with images/ and instances.json each, or COCO's train2017/, val2017/ and "
                    "annotations/instances_*2017.json")  # fmt: skip


def subset(data: CocoDetection, n: int | None) -> CocoDetection:
    """The first ``n`` images (all if None), with the ground truth COCOeval reads cut to match."""
    if n is None or n >= len(data):
        return data
    keep = {int(im["id"]) for im in data.images[:n]}
    gt = {**data.gt, "images": data.images[:n], "annotations": [a for a in data.gt.get("annotations", [])
                                                                if int(a["image_id"]) in keep]}  # fmt: skip
    return CocoDetection(data.root, data.images[:n], data.targets[:n], data.classes, data.category_ids, gt)


def detection_parts(config: TrainConfig, *, device: torch.device, dist: D.DistInfo, log: Callable[[str], None],
                    load_init: bool, mean: torch.Tensor | None = None,
                    preprocess: dict[str, Any] | None = None) -> Any:  # fmt: skip
    """`reslab.engine.run.TaskParts` of a detection run; ``mean`` and ``preprocess`` are a resumed run's."""
    from reslab.engine.run import TaskParts

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
        kwargs.update(image_mean=tuple(mean.tolist()), image_std=tuple((preprocess or {})["image_std"]))
    weights = config.init if load_init and mean is None else None
    model = create_detector(config.model, num_classes=len(train_set.classes), backbone_weights=weights, **kwargs)
    if weights:
        log(f"backbone weights from {config.init}")
    batches = DetectionBatches(train_set, config.recipe.batch_size, seed=config.seed, rank=dist.rank,
                               world=dist.world)  # fmt: skip
    source = DetectionData(batches, train_set.classes, len(train_set), test_set, name=Path(config.data).name,
                           label=train_set.gt.get("info", {}).get("description"),
                           mean=torch.tensor(model.transform.image_mean),
                           preprocess={"image_std": list(model.transform.image_std)})  # fmt: skip

    def make_task(total: int) -> DetectionTask:
        return DetectionTask(source, device=device, eval_batch_size=config.eval_batch, log=log)

    return TaskParts(model, source, make_task)


@dataclass
class LoadedDetector:
    """A detector rebuilt from a detection run's checkpoint, with what using it needs."""

    model: torch.nn.Module
    config: TrainConfig
    classes: list[str]
    path: Path


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> LoadedDetector:
    """Rebuild the detector a detection run (its folder or checkpoint.pt) trained, in eval mode, normalising its
    input as the run did."""
    from reslab.engine.rundir import CHECKPOINT, read_checkpoint
    from reslab.errors import ReslabError
    from reslab.models.weights import fit_weights

    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT
    state = read_checkpoint(path)
    config = TrainConfig.from_dict(state["config"])
    if not config.detects:
        raise ReslabError(f"{path} is a classification run: use reslab eval / reslab predict")
    classes = list(state["classes"])
    kwargs = {**config.model_kwargs, "image_mean": tuple(state["mean"].tolist()),
              "image_std": tuple(state["preprocess"]["image_std"])}  # fmt: skip
    model = create_detector(config.model, num_classes=len(classes), **kwargs)
    fit_weights(model, state["model"], path)
    return LoadedDetector(model.to(device).eval(), config, classes, path)
