"""Detection as a task of reslab's training loop: resumable batches of images and boxes, Faster R-CNN's losses,
and COCO's mAP as the evaluation.

The loop (`reslab.engine.trainer.Trainer`) knows no task: it asks this one to prepare a batch, to compute the loss
and the statistics to sum, to turn the sums into a log record and to evaluate. The batch stream follows the
classification stream's rules (`reslab.data.batches`): each epoch's order is a permutation seeded by
``(seed, epoch)`` and each batch's flips by ``(seed, epoch, batch)``, so the state is ``(epoch, batch)``, resuming
is exact, and under torchrun every rank draws the same global batch and keeps its own contiguous part.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from reslab.choices import EVAL_BATCH
from reslab.data.batches import check_batch_size, seeded_generator
from reslab.detection.coco import CocoDetection, coco_eval, to_coco_results

BATCH = EVAL_BATCH["detection"]  # images per detection forward pass at test

Images = list[torch.Tensor]
Targets = list[dict[str, torch.Tensor]]
LOSSES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")  # torchvision's Faster R-CNN


def hflip(image: torch.Tensor, target: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The image mirrored left-right, with its boxes (x1, y1, x2, y2) mirrored to match."""
    w = image.shape[-1]
    boxes = target["boxes"].clone()
    boxes[:, [0, 2]] = w - target["boxes"][:, [2, 0]]
    return image.flip(-1), {**target, "boxes": boxes}


class DetectionBatches:
    """An endless, resumable, rank-sharded stream of ``(images, targets)`` training batches (uint8 images of any
    size; Faster R-CNN resizes them itself), each image mirrored with probability 1/2 (Faster R-CNN's only training
    augmentation)."""

    def __init__(self, data: CocoDetection, batch_size: int, *, seed: int = 0, flip: bool = True, rank: int = 0,
                 world: int = 1) -> None:  # fmt: skip
        check_batch_size(batch_size, world, len(data))
        self.data, self.batch_size, self.seed, self.flip = data, batch_size, seed, flip
        self.rank, self.world = rank, world
        self.epoch, self.batch = 0, 0
        self.batches_per_epoch = len(data) // batch_size  # the last partial batch is dropped, as in classification

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.batch = int(state["epoch"]), int(state["batch"])

    def __iter__(self) -> Iterator[tuple[Images, Targets]]:
        return self

    def __next__(self) -> tuple[Images, Targets]:
        if self.batch >= self.batches_per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        order = torch.randperm(len(self.data), generator=seeded_generator(self.seed, self.epoch))
        idx = order[self.batch * self.batch_size : (self.batch + 1) * self.batch_size].tolist()
        mirror = torch.rand(self.batch_size, generator=seeded_generator(self.seed, self.epoch, self.batch)) < 0.5
        self.batch += 1
        shard = self.batch_size // self.world
        images, targets = [], []
        for k in range(self.rank * shard, (self.rank + 1) * shard):
            image, target = self.data[idx[k]]
            if self.flip and mirror[k]:
                image, target = hflip(image, target)
            images.append(image)
            targets.append(target)
        return images, targets


@dataclass
class DetectionData:
    """What a detection run trains and tests on."""

    train: DetectionBatches
    classes: list[str]
    train_size: int
    test: CocoDetection
    name: str = "detection data"
    label: str | None = None
    mean: torch.Tensor | None = None  # the detector normalises inside (its transform); recorded for checkpoints
    preprocess: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@torch.inference_mode()
def detections(model: nn.Module, images: Images) -> list[dict[str, torch.Tensor]]:
    """torchvision's ``GeneralizedRCNN`` at inference, with its heads in fp32: the backbone runs in the caller's
    autocast (bf16 where asked), but the RPN and the RoI heads decode boxes in the dtype of their inputs, and bf16
    coordinates above 512 px are multiples of 4 (COCO's mAP at small sizes drops by points), so they get fp32
    features and no autocast, as detectron2 decodes boxes in fp32. ``model`` in eval mode; ``images`` in [0, 1]."""
    sizes = [tuple(int(s) for s in image.shape[-2:]) for image in images]
    batch, _ = model.transform(images)
    features = model.backbone(batch.tensors)
    features = {k: v.float() for k, v in (features.items() if isinstance(features, dict) else [("0", features)])}
    with torch.autocast(batch.tensors.device.type, enabled=False):
        proposals, _ = model.rpn(batch, features)
        found, _ = model.roi_heads(features, proposals, batch.image_sizes)
        return model.transform.postprocess(found, batch.image_sizes, sizes)


@torch.inference_mode()
def detect(model: nn.Module, data: CocoDetection, *, batch_size: int = BATCH, device: torch.device | str = "cpu",
           log: Callable[[str], None] = lambda message: None) -> list[dict[str, torch.Tensor]]:  # fmt: skip
    """The model's detections on every image of ``data``, in order (eval mode, restored afterwards)."""
    was_training = model.training
    model.eval()
    outputs: list[dict[str, torch.Tensor]] = []
    try:
        for lo in range(0, len(data), batch_size):
            images = [data[i][0].to(device).float().div_(255) for i in range(lo, min(lo + batch_size, len(data)))]
            outputs += [{k: v.float().cpu() for k, v in out.items()} for out in detections(model, images)]
    finally:
        model.train(was_training)
    return outputs


class DetectionTask:
    """Faster R-CNN's summed losses on ``(images, targets)`` batches; COCO mAP on the test set as the evaluation.

    The periodic evaluation's ``error`` is 100 - mAP@[.5,.95] in points, so the loop's logs and the plateau rule read
    it as they read a classification error.
    """

    def __init__(self, data: DetectionData, *, device: torch.device | str = "cpu", eval_batch_size: int = BATCH,
                 log: Callable[[str], None] = lambda message: None) -> None:  # fmt: skip
        self.data, self.device, self.eval_batch_size, self.log = data, torch.device(device), eval_batch_size, log

    def prepare(self, batch: tuple[Images, Targets], iteration: int) -> tuple[Images, Targets]:
        images, targets = batch
        images = [im.to(self.device, non_blocking=True).float().div_(255) for im in images]
        targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]
        return images, targets

    def loss(self, net: nn.Module, batch: tuple[Images, Targets]) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = batch
        losses = net(images, targets)
        loss = sum(losses[k] for k in LOSSES)
        with torch.no_grad():
            n = float(len(images))
            stats = torch.stack([loss.detach().float() * n, *(losses[k].detach().float() * n for k in LOSSES),
                                 loss.new_full((), n, dtype=torch.float32)])  # fmt: skip
        return loss, stats

    def interval_record(self, totals: list[float]) -> dict[str, float]:
        n = totals[-1]
        return {"train_loss": totals[0] / n, **{k: v / n for k, v in zip(LOSSES, totals[1:-1], strict=True)}}

    def _map(self, model: nn.Module) -> dict[str, float]:
        outputs = detect(model, self.data.test, batch_size=self.eval_batch_size, device=self.device)
        return coco_eval(self.data.test, to_coco_results(self.data.test, outputs))

    def evaluate(self, model: nn.Module) -> list[dict[str, Any]]:
        stats = self._map(model)
        return [{"split": "test", "error": 100 * (1 - stats["mAP"]), "mAP": 100 * stats["mAP"],
                 "mAP50": 100 * stats["mAP50"]}]  # fmt: skip

    def final_evaluation(self, model: nn.Module) -> dict[str, Any]:
        self.log(f"final evaluation: COCO mAP on {len(self.data.test)} test images ...")
        stats = self._map(model)
        out: dict[str, Any] = {"dataset": self.data.name, "data_label": self.data.label or self.data.name,
                               "test_images": len(self.data.test)}  # fmt: skip
        out.update({f"test_{k}": (100 * v if v >= 0 else v) for k, v in stats.items()})  # -1: no such objects
        out.update(reported_split="test", reported_error=100 * (1 - stats["mAP"]), reported_views="1 view")
        return out
