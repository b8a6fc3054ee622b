"""Image classification as a task of the training loop: what a batch is, the loss, the metrics, the evaluation.

The loop (`reslab.engine.trainer`) knows none of this; it calls `ClassificationTask.prepare`, `loss`,
`interval_record`, `evaluate` and `final_evaluation`. The data comes as a `ClassificationData`: the built-in one holds
the images in memory (`in_memory`), and any other source (a ``DataLoader`` over data too large for memory) can be
wrapped in one by hand.

Evaluation reports top-1 and top-5 error, loss and per-class error, optionally with test-time augmentation (TTA):
the softmax averaged over views of each image: the image and its mirror (``flip``), and with ``shift = s`` both of
them moved by (+s, +s) and (-s, -s) pixels with zero (mean-grey) fill, 6 views in all, the translations the training
crops were drawn from. The paper reports single-view CIFAR-10 results.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reslab.data.batches import BatchStream, eval_batches, pixel_mean
from reslab.data.dataset import ImageDataset, holdout_split
from reslab.data.large import LargeData
from reslab.data.loader import EvalStream, StreamingBatches
from reslab.data.tta import count_views, views_label
from reslab.data.views import LargeAugment
from reslab.errors import ConfigError, OutOfMemory, is_out_of_memory

Batch = tuple[torch.Tensor, torch.Tensor]


# -- test-time views -------------------------------------------------------------------------------------------------
def shift_image(x: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """``x`` [N, C, H, W] moved by (dy, dx) pixels, the uncovered border filled with zeros (mean grey)."""
    h, w = x.shape[2:]
    p = max(abs(dy), abs(dx))
    padded = F.pad(x, (p, p, p, p))
    return padded[:, :, p - dy : p - dy + h, p - dx : p - dx + w]


def tta_views(x: torch.Tensor, flip: bool, shift: int = 0) -> list[torch.Tensor]:
    """The test-time views of a batch: itself; its mirror if ``flip``; both shifted by (+-shift, +-shift)."""
    count_views(flip, shift)
    views = [x, x.flip(3)] if flip else [x]
    if shift:
        views += [shift_image(v, s, s) for s in (shift, -shift) for v in views[:2]]
    return views


class _Tally:
    """Top-1/top-5 hits, loss and per-class hits of one set of views, summed over batches; with ``keep`` also which
    images top-1 misses, in order (what a paired comparison of two models on the same images needs)."""

    def __init__(self, num_classes: int, keep: bool = False) -> None:
        self.num_classes, self.n, self.correct1, self.correct5, self.loss = num_classes, 0, 0, 0, 0.0
        self.per_class = torch.zeros(num_classes, 2, dtype=torch.long)  # (correct, total)
        self.misses: list[bool] | None = [] if keep else None

    def add(self, probs: torch.Tensor, y: torch.Tensor) -> None:
        self.loss += F.nll_loss(probs.clamp_min(1e-12).log(), y, reduction="sum").item()
        top5 = probs.topk(min(5, self.num_classes), 1).indices
        hit1 = top5[:, 0] == y
        self.correct1 += int(hit1.sum())
        self.correct5 += int((top5 == y[:, None]).any(1).sum())
        self.per_class[:, 0] += torch.bincount(y[hit1].cpu(), minlength=self.num_classes)
        self.per_class[:, 1] += torch.bincount(y.cpu(), minlength=self.num_classes)
        self.n += len(y)
        if self.misses is not None:
            self.misses += (~hit1).tolist()

    def result(self) -> dict[str, Any]:
        if self.n == 0:
            raise ConfigError("nothing to evaluate: the evaluation set is empty")
        out = {
            "n": self.n,
            "error": 100.0 * (1 - self.correct1 / self.n),
            "top5_error": 100.0 * (1 - self.correct5 / self.n),
            "loss": self.loss / self.n,
            "per_class_error": (100.0 * (1 - self.per_class[:, 0] / self.per_class[:, 1].clamp_min(1))).tolist(),
        }
        return out if self.misses is None else {**out, "mistakes": self.misses}


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    num_classes: int,
    *,
    flip: bool = False,
    shift: int = 0,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    prefixes: tuple[int, ...] = (),
    mistakes: bool = False,
) -> dict[str, Any]:
    """Errors in percent over model-ready ``(images, labels)`` batches, with the views of `tta_views`; a batch whose
    images are a list of tensors brings its own views (10 crops, several scales), whose softmax is averaged instead.

    With ``prefixes`` the result maps each count k to the errors of the first k views (1: the image alone; 2: and its
    mirror), all from one pass over the views. With ``mistakes`` the result (with ``prefixes``, the fewest views')
    also lists, image by image in the batches' order, whether its top-1 prediction is wrong. Runs in whatever
    autocast context the caller opened; the softmax is averaged in fp32.
    """
    count_views(flip, shift)
    tallies = {k: _Tally(num_classes, mistakes and k == min(prefixes)) for k in prefixes}
    every = _Tally(num_classes, mistakes and not prefixes)  # all the views of each batch, however many it brings
    was_training = model.training
    model.eval()
    try:
        for x, y in batches:
            y = y.to(device, non_blocking=True)
            try:
                total = 0
                for k, view in enumerate(_views(x, flip, shift, device, channels_last), 1):
                    total = total + model(view).float().softmax(1)
                    if k in tallies:
                        tallies[k].add(total / k, y)
                if not prefixes:
                    every.add(total / k, y)
            except Exception as e:
                if is_out_of_memory(e):
                    raise OutOfMemory(
                        f"out of memory evaluating batches of {len(y)} images on {device}: use "
                        "smaller ones (reslab train --eval-batch-size, reslab eval --batch-size)"
                    ) from e
                raise
    finally:
        model.train(was_training)
    return {k: t.result() for k, t in tallies.items()} if prefixes else every.result()


def _views(x: torch.Tensor | list[torch.Tensor], flip: bool, shift: int, device: torch.device | str,
           channels_last: bool) -> list[torch.Tensor]:  # fmt: skip
    if isinstance(x, torch.Tensor):
        x = x.to(device, non_blocking=True)
        views = tta_views(x.contiguous(memory_format=torch.channels_last) if channels_last else x, flip, shift)
    else:
        views = [v.to(device, non_blocking=True) for v in x]
    return [v.contiguous(memory_format=torch.channels_last) if channels_last else v for v in views]


# -- data -------------------------------------------------------------------------------------------------------------
@dataclass
class EvalBatches:
    """In-memory uint8 images served as normalised, un-augmented batches in order; iterable any number of times."""

    images: torch.Tensor
    labels: torch.Tensor
    mean: torch.Tensor
    batch_size: int
    device: str = "cpu"

    def __iter__(self) -> Iterator[Batch]:
        return eval_batches(self.images, self.labels, self.mean, self.batch_size, self.device)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ClassificationData:
    """What a classification run learns from and is evaluated on.

    ``train`` yields model-ready ``(images, labels)`` batches (normalised and augmented; moved to the device by the
    task if they are not there yet) without end, or is restarted when it ends (a ``DataLoader``); resume is exact
    when it has ``state_dict``/``load_state_dict`` (as `BatchStream` has). ``eval_sets`` maps a split name to a
    re-iterable of model-ready batches; the first is the one evaluated during training ("val" when a hold-out
    exists, else "test"), all of them at the end. ``mean`` is the per-pixel mean the batches were normalised with:
    it is stored in checkpoints, so that `reslab eval` preprocesses as training did (None for a custom source).
    ``preprocess`` records anything else evaluation must repeat (the large-image path's sizes and std).
    """

    train: Iterable[Batch]
    classes: list[str]
    train_size: int
    eval_sets: dict[str, Iterable[Batch]] = field(default_factory=dict)
    mean: torch.Tensor | None = None
    name: str = "custom"
    label: str = ""
    preprocess: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def in_memory(
    ds: ImageDataset,
    *,
    batch_size: int,
    eval_batch_size: int,
    val_split: int = 0,
    mean: torch.Tensor | None = None,
    **stream: Any,
) -> ClassificationData:
    """The built-in source: images held in memory as uint8, augmented a whole batch at a time (`BatchStream`, which
    takes the ``stream`` keywords: seed, augment, alternate_flips, rank, world, device, channels_last).

    With ``val_split`` the training set loses that many images to a "val" split (the paper's 45k/5k), evaluated
    during training; the test set is then only evaluated at the end. ``mean``: the mean image to normalise with,
    where it has the images' shape (a resumed run's, or a fine-tuned model's); by default the training images'.
    """
    train = holdout_split(ds, val_split) if val_split else ds
    if mean is None or tuple(mean.shape) != tuple(train.train_images.shape[1:]):
        mean = pixel_mean(train.train_images)
    batches = BatchStream(train.train_images, train.train_labels, batch_size, mean, **stream)
    dev = str(batches.device)
    test = EvalBatches(ds.test_images, ds.test_labels, mean, eval_batch_size, dev)
    sets: dict[str, Iterable[Batch]] = {"test": test}
    if val_split:
        sets = {"val": EvalBatches(train.test_images, train.test_labels, mean, eval_batch_size, dev), "test": test}
    return ClassificationData(batches, list(ds.classes), len(train.train_labels), sets, mean, name=train.name,
                              label=ds.label)  # fmt: skip


def streaming(
    large: LargeData,
    aug: LargeAugment,
    mean: torch.Tensor,
    std: torch.Tensor | None,
    *,
    batch_size: int,
    eval_batch_size: int,
    workers: int,
    strict: bool = False,
    **stream: Any,
) -> ClassificationData:
    """Large images read from disk by ``workers`` DataLoader processes (`reslab.data.loader`): training batches from
    ``large``'s train split with ``aug`` (`StreamingBatches`, which takes the ``stream`` keywords: seed, rank, world,
    device, channels_last), evaluation on its val split, centre crop (10-crop and multi-scale: `reslab eval`)."""
    batches = StreamingBatches(large.splits["train"], aug, batch_size, mean, std, workers=workers, strict=strict,
                               **stream)  # fmt: skip
    val = EvalStream(large.splits["val"], aug, mean, std, batch_size=eval_batch_size, workers=workers,
                     device=batches.device, strict=strict)  # fmt: skip
    return ClassificationData(batches, list(large.classes), len(large.splits["train"]), {"val": val}, mean,
                              name=large.name, label=large.name,
                              preprocess={"large": asdict(aug), "std": std})  # fmt: skip


# -- the task ---------------------------------------------------------------------------------------------------------
class ClassificationTask:
    """Cross-entropy on ``(images, labels)`` batches; training error and loss per logging interval; top-1/top-5 error.

    Args:
        data: the run's `ClassificationData`.
        label_smoothing: of the cross-entropy (0 in the paper).
        low_res_size, low_res_until: progressive resizing (not in the paper): before iteration ``low_res_until`` the
            training images are downsampled to ``low_res_size`` (antialiased bilinear; never upsampled).
        views: ``(flip, shift)`` of the error a run reports (`count_views`).
        log: where progress lines of the final evaluation go.
    """

    def __init__(
        self,
        data: ClassificationData,
        *,
        label_smoothing: float = 0.0,
        low_res_size: int | None = None,
        low_res_until: int = 0,
        views: tuple[bool, int] = (False, 0),
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        log: Callable[[str], None] = lambda message: None,
    ) -> None:
        count_views(*views)
        self.data, self.views, self.log = data, views, log
        self.device, self.channels_last = torch.device(device), channels_last
        self.low_res_size, self.low_res_until = low_res_size, low_res_until
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)

    def prepare(self, batch: Batch, iteration: int) -> Batch:
        x, y = batch
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        size = self.low_res_size
        if size and iteration < self.low_res_until and x.shape[-1] > size:  # never upsample
            x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)  # a no-op for the built-in stream
        return x, y

    def loss(self, net: nn.Module, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss to minimise and this step's statistics (loss sum, wrong predictions, images), left on the device:
        the loop sums them and reads them once per logging interval."""
        x, y = batch
        logits = net(x)
        loss = self.criterion(logits, y)
        with torch.no_grad():
            n = loss.new_full((), len(y), dtype=torch.float32)  # a fill kernel: no host-to-device copy per step
            stats = torch.stack([loss.detach().float() * n, (logits.argmax(1) != y).sum().float(), n])
        return loss, stats

    def interval_record(self, totals: list[float]) -> dict[str, float]:
        """A logging interval's training loss and error (%), from the summed statistics."""
        loss_sum, wrong, n = totals
        return {"train_loss": loss_sum / n, "train_error": 100.0 * wrong / n}

    def evaluate(self, model: nn.Module) -> list[dict[str, Any]]:
        """The periodic evaluation: the first evaluation set, one view (a choice made on it stays off the test set
        when a validation split exists)."""
        if not self.data.eval_sets:
            return []
        name, batches = next(iter(self.data.eval_sets.items()))
        r = evaluate(model, batches, self.data.num_classes, device=self.device, channels_last=self.channels_last)
        return [{"split": name, "error": r["error"], "top5_error": r["top5_error"], "loss": r["loss"]}]

    def final_evaluation(self, model: nn.Module) -> dict[str, Any]:
        """Every evaluation set without TTA, with flip TTA and, if the reported views shift, with those 6 views (one
        pass: 1 and 2 views are the first of the 6); ``reported_test_error`` is the test error with the reported
        views. ``mistakes`` maps each set to its images' top-1 misses with one view, for the run folder's
        mistakes file (`RunDir.write_summary`), not for summary.json."""
        flip, shift = self.views
        out: dict[str, Any] = {"dataset": self.data.name, "data_label": self.data.label or self.data.name,
                               "reported_views": views_label(flip, shift)}  # fmt: skip
        suffixes = {1: "", 2: "_tta", 6: "_tta_shift"} if shift else {1: "", 2: "_tta"}
        for split, batches in self.data.eval_sets.items():
            t0 = time.perf_counter()
            self.log(f"final evaluation, {split} set: {views_label(True, shift)} ...")
            results = evaluate(model, batches, self.data.num_classes, flip=True, shift=shift, device=self.device,
                               channels_last=self.channels_last, prefixes=tuple(suffixes), mistakes=True)  # fmt: skip
            errors = ", ".join(f"{k} {'view' if k == 1 else 'views'} {r['error']:.2f}%" for k, r in results.items())
            self.log(f"final evaluation, {split} set: error {errors} ({time.perf_counter() - t0:.0f} s)")
            for k, suffix in suffixes.items():
                out[f"{split}_error{suffix}"] = results[k]["error"]
            out[f"{split}_top5_error"] = results[1]["top5_error"]
            out[f"{split}_per_class_error"] = results[1]["per_class_error"]
            out.setdefault("mistakes", {})[split] = results[1]["mistakes"]  # one view: `{split}_error`'s
        suffix = "_tta_shift" if shift else "_tta" if flip else ""
        if "test" in self.data.eval_sets:
            out["reported_test_error"] = out["test_error" + suffix]
        if self.data.eval_sets:  # ImageNet-style data has no test split: its val set is what a paper reports
            split = "test" if "test" in self.data.eval_sets else list(self.data.eval_sets)[-1]
            out["reported_split"], out["reported_error"] = split, out[f"{split}_error{suffix}"]
        return out
