"""Class probabilities for image files, each preprocessed exactly as the model's evaluation data was.

The preprocessing is read from the model (`TrainedModel`), never asked of the user:

* a model trained on images held in memory (CIFAR-style): the image resized so that it covers the training size
  and centre-cropped to it (what ``--image-size`` did to the training folder), scaled to [0, 1], and the stored
  per-pixel mean image subtracted (Sec. 4.2);
* a model trained on streamed large images: the single centre view of ``reslab eval`` (shorter side resized to the
  run's test size, centre crop) normalised with the stored mean (and std) (Sec. 3.4).

Fast by default on a CPU: batched, ``torch.inference_mode``, channels_last, every BN folded into the convolution
before it, and in bf16 where the processor has native bf16 (``--precision auto``), as in training: the folded weights
are cast once rather than by autocast on every call (benchmarks/inference.py measures both against fp32, and the
agreement of their top-1 predictions). Files that cannot be read or decoded are reported and
skipped, never the end of a run over a folder.
"""

from __future__ import annotations

import copy
import io
import logging
import textwrap
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.fx.experimental.optimization import fuse

from reslab.choices import PREDICT_BATCH, TOP_K
from reslab.data.batches import normalize
from reslab.data.folders import IMAGE_EXTENSIONS, decode_image
from reslab.data.loader import Normalizer
from reslab.data.views import LargeAugment, center_view
from reslab.engine.precision import autocast, dtype_of, resolve_device, resolve_precision
from reslab.errors import ConfigError
from reslab.weights.trained import TrainedModel

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    """One image's result: the ``top`` (class name, probability) pairs, best first, or why it was skipped."""

    path: str
    top: list[tuple[str, float]]
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        if self.error is not None:
            return {"path": self.path, "error": self.error}
        return {"path": self.path, "top": [{"class": c, "probability": p} for c, p in self.top]}


def image_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """The files named, and the image files under the folders named (recursively, in sorted order). A path that
    does not exist is a one-line error before any work starts."""
    paths = [Path(p) for p in paths]
    missing = next((p for p in paths if not p.exists()), None)
    if missing is not None:
        raise ConfigError(f"no such file or folder: {missing}")
    for p in paths:
        if p.is_dir():
            yield from sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
                              and not f.name.startswith("."))  # fmt: skip
        else:
            yield p


def inference_model(model: torch.nn.Module, device: torch.device, precision: str, channels_last: bool = True
                    ) -> torch.nn.Module:  # fmt: skip
    """A copy of ``model`` for inference only, on ``device``: each BN folded into the convolution that feeds it
    (torch.fx's ``fuse``: the same function in exact arithmetic, one pass over memory less per layer), cast to bf16
    when that is the precision (autocast would re-cast every weight on every call; fp16 stays with autocast, whose
    fp32 reductions it needs), and channels_last. A network fx cannot trace is used unfused."""
    model = model.eval()
    try:
        model = fuse(model)  # returns a copy
    except Exception as e:  # fx raises several kinds (TraceError, TypeError...) on code it cannot trace
        log.warning("BN not folded (%s: %s); predicting with the unfused network", type(e).__name__, e)
        model = copy.deepcopy(model)
    model = model.to(device)
    if precision == "bf16":
        model = model.to(dtype_of(precision))
    return model.to(memory_format=torch.channels_last) if channels_last else model


class Predictor:
    """Batched prediction with a loaded model on ``device`` (auto: CUDA if present) in ``precision`` (auto: bf16
    where native), through `inference_model`'s copy of it (``loaded.model`` itself is left as it was)."""

    def __init__(self, loaded: TrainedModel, *, device: str = "auto", precision: str = "auto",
                 batch_size: int = PREDICT_BATCH, channels_last: bool = True) -> None:  # fmt: skip
        if batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size}")
        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.classes, self.batch_size, self.channels_last = list(loaded.classes), batch_size, channels_last
        self.model = inference_model(loaded.model, self.device, self.precision, channels_last)
        self.dtype = dtype_of(self.precision) if self.precision == "bf16" else torch.float32
        self.autocast = "fp16" if self.precision == "fp16" else "fp32"  # bf16: the weights are bf16 already
        pre = loaded.preprocessing
        self.large = LargeAugment(**pre.view) if pre.view else None
        if pre.mean is None:
            raise ConfigError(f"{loaded.source} records no preprocessing (it was trained on a custom batch source)")
        self.mean = pre.mean.float()
        if pre.input_size is None:
            raise ConfigError(f"{loaded.source} records a per-channel mean but no view size: nothing says what size "
                              "its images were")  # fmt: skip
        self.shape = pre.input_size
        self.size = self.shape[1]
        self.normalizer = Normalizer(self.mean, pre.std, self.device) if self.large else None

    def view(self, data: bytes) -> torch.Tensor:
        """uint8 [3, S, S]: the model's evaluation view of one encoded image."""
        if self.large is not None:
            return center_view(data, self.large)
        h, w = self.shape
        if h == w:  # what `--image-size` did to the training images
            return torch.from_numpy(decode_image(data, h)[0].copy()).permute(2, 0, 1)
        with Image.open(io.BytesIO(data)) as img:  # same-size non-square training images: cover, then centre-crop
            img = img.convert("RGB")
            s = max(h / img.height, w / img.width)
            nw, nh = max(w, round(img.width * s)), max(h, round(img.height * s))
            img = img.resize((nw, nh), Image.Resampling.BILINEAR)
            left, top = (nw - w) // 2, (nh - h) // 2
            return torch.from_numpy(np.asarray(img.crop((left, top, left + w, top + h))).copy()).permute(2, 0, 1)

    @torch.inference_mode()
    def probabilities(self, views: torch.Tensor) -> torch.Tensor:
        """Softmax probabilities [N, classes] for uint8 views [N, 3, S, S]."""
        x = views.to(self.device)
        x = self.normalizer(x) if self.normalizer is not None else normalize(x, self.mean.to(self.device))
        x = x.to(self.dtype, memory_format=torch.channels_last if self.channels_last else torch.preserve_format)
        with autocast(self.autocast, self.device):
            logits = self.model(x)
        return logits.float().softmax(1).cpu()

    def count_wrong(self, views: torch.Tensor, labels: torch.Tensor) -> int:
        """How many of uint8 views [N, 3, S, S] the model's top-1 class gets wrong (batches of ``batch_size``)."""
        return sum(int((self.probabilities(views[i : i + self.batch_size]).argmax(1) != labels[i : i + self.batch_size])
                       .sum()) for i in range(0, len(labels), self.batch_size))  # fmt: skip

    def predict(self, files: Iterable[str | Path], top_k: int | None = None) -> Iterator[Prediction]:
        """One `Prediction` per file, in order; unreadable files come back with their ``error`` set. ``top_k``
        classes each (default: `TOP_K`, 5, or all of a model's if it has fewer; more than it has is an error)."""
        top_k = min(TOP_K, len(self.classes)) if top_k is None else top_k
        if top_k > len(self.classes):
            raise ConfigError(f"--top-k {top_k} is more than the model's {len(self.classes)} classes")
        k = top_k
        batch: list[tuple[str, torch.Tensor]] = []
        for f in files:
            try:
                batch.append((str(f), self.view(Path(f).read_bytes())))
            except Exception as e:  # any decoder's failure on one bad file: report it, keep going
                yield Prediction(str(f), [], _why(e))
                continue
            if len(batch) == self.batch_size:
                yield from self._flush(batch, k)
                batch = []
        if batch:
            yield from self._flush(batch, k)

    def _flush(self, batch: list[tuple[str, torch.Tensor]], k: int) -> Iterator[Prediction]:
        probs = self.probabilities(torch.stack([v for _, v in batch]))
        top = probs.topk(k, 1)
        for (path, _), p, i in zip(batch, top.values.tolist(), top.indices.tolist(), strict=True):
            yield Prediction(path, [(self.classes[j], q) for j, q in zip(i, p, strict=True)])


def _why(e: Exception) -> str:
    if isinstance(e, UnidentifiedImageError):
        return "not an image file PIL or libjpeg-turbo can decode"
    if isinstance(e, Image.DecompressionBombError):
        return "too many pixels to decode safely (over Pillow's decompression-bomb limit)"
    if isinstance(e, OSError) and e.strerror:
        return f"cannot read it: {e.strerror}"
    first = str(e).splitlines()[0] if str(e) else ""
    return f"cannot decode it: {type(e).__name__}: {textwrap.shorten(first, 100, placeholder=' ...')}"
