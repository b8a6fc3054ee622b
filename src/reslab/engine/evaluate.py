"""Evaluation: top-1 and top-5 error, loss and per-class accuracy, optionally with flip test-time augmentation."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reslab.data.batches import eval_batches
from reslab.engine.precision import autocast


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
    batch_size: int = 1000,
    channels_last: bool = False,
) -> dict[str, Any]:
    """Errors in percent. ``tta_flip`` averages the softmax of each image and its mirror image."""
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
                probs = model(x).float().softmax(1)
                if tta_flip:
                    probs = (probs + model(x.flip(3)).float().softmax(1)) / 2
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
                      precision=resolve_precision(precision, dev), tta_flip=tta)  # fmt: skip
    return {**result, "dataset": ds.name, "split": split, "classes": classes, "iteration": int(state["iteration"])}
