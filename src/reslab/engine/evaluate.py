"""Evaluation: top-1 and top-5 error, loss and per-class accuracy, optionally with test-time augmentation (TTA).

TTA averages the softmax over views of each test image: the image and its mirror (``tta_flip``), and with
``tta_shift = s`` also both of them shifted by (+s, +s) and (-s, -s) pixels with zero (mean-grey) fill, 6 views in
all, the translations the training crops were drawn from. The paper reports single-view CIFAR-10 results.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reslab.data.batches import eval_batches
from reslab.engine.precision import autocast


def shift_image(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x`` [N, C, H, W] moved by (dy, dx) pixels, the uncovered border filled with zeros (mean grey)."""
    h, w = x.shape[2:]
    p = max(abs(dy), abs(dx))
    padded = F.pad(x, (p, p, p, p))
    return padded[:, :, p - dy : p - dy + h, p - dx : p - dx + w]


def tta_views(x: torch.Tensor, flip: bool, shift: int = 0) -> list[torch.Tensor]:
    """The test-time views of a batch: itself; its mirror if ``flip``; both shifted by (+-shift, +-shift)."""
    views = [x, x.flip(3)] if flip else [x]
    if shift:
        views += [shift_image(v, s, s) for s in (shift, -shift) for v in views[:2]]
    return views


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    mean: torch.Tensor,
    *,
    num_classes: int,
    device: torch.device,
    precision: str = "fp32",
    tta_flip: bool = False,
    tta_shift: int = 0,
    batch_size: int = 1000,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Errors in percent, over the views of `tta_views` (one view without TTA)."""
    was_training = model.training
    model.eval()
    correct1 = correct5 = 0
    loss_sum = 0.0
    per_class = torch.zeros(num_classes, 2, dtype=torch.long)  # (correct, total)
    try:
        for x, y in eval_batches(images, labels, mean, batch_size, str(device)):
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(precision, device):
                views = tta_views(x, tta_flip, tta_shift)
                probs = sum(model(v).float().softmax(1) for v in views) / len(views)
            loss_sum += F.nll_loss(probs.clamp_min(1e-12).log(), y, reduction="sum").item()
            top5 = probs.topk(min(5, num_classes), 1).indices
            hit1 = top5[:, 0] == y
            correct1 += int(hit1.sum())
            correct5 += int((top5 == y[:, None]).any(1).sum())
            per_class[:, 0] += torch.bincount(y[hit1].cpu(), minlength=num_classes)
            per_class[:, 1] += torch.bincount(y.cpu(), minlength=num_classes)
    finally:
        model.train(was_training)
    n = len(labels)
    return {
        "n": n,
        "error": 100.0 * (1 - correct1 / n),
        "top5_error": 100.0 * (1 - correct5 / n),
        "loss": loss_sum / n,
        "per_class_accuracy": (100.0 * per_class[:, 0] / per_class[:, 1].clamp_min(1)).tolist(),
    }


def evaluate_checkpoint(
    path: str,
    *,
    data: str | None = None,
    data_dir: str | None = None,
    split: str = "test",
    tta: bool = False,
    tta_shift: int = 0,
    device: str = "auto",
    precision: str = "auto",
) -> dict[str, Any]:
    """Evaluate a reslab checkpoint on a dataset split (``reslab eval``). The training mean image is reused."""
    from reslab.data.dataset import load_dataset
    from reslab.engine.checkpoint import load_checkpoint
    from reslab.engine.config import TrainConfig
    from reslab.engine.precision import resolve_device, resolve_precision
    from reslab.errors import DataError
    from reslab.models import create_model

    state = load_checkpoint(path)
    cfg = TrainConfig.from_dict(state["config"])
    ds = load_dataset(data or cfg.data, data_dir if data_dir is not None else cfg.data_dir)
    classes = list(state["classes"])
    if list(ds.classes) != classes:
        raise DataError(f"the data's classes {ds.classes[:4]}... differ from the checkpoint's {classes[:4]}...")
    if ds.test_images.shape[1:] != state["mean"].shape:
        raise DataError(f"the data's images are {list(ds.test_images.shape[1:])}, the checkpoint was trained on "
                        f"{list(state['mean'].shape)}")  # fmt: skip
    dev = resolve_device(device)
    model = create_model(cfg.model, num_classes=len(classes), **cfg.model_kwargs)
    model.load_state_dict(state["model"])
    model.to(dev)
    images, labels = (ds.test_images, ds.test_labels) if split == "test" else (ds.train_images, ds.train_labels)
    result = evaluate(model, images, labels, state["mean"], num_classes=len(classes), device=dev,
                      precision=resolve_precision(precision, dev), tta_flip=tta, tta_shift=tta_shift)  # fmt: skip
    return {**result, "dataset": ds.name, "split": split, "classes": classes, "iteration": int(state["iteration"])}
