"""Boxes on image files with a trained detector: the detections above a score, and the image with them drawn."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

from reslab.engine.precision import autocast
from reslab.weights.trained import TrainedModel


@dataclass
class Detections:
    """One image's detections (class name, score, box x1 y1 x2 y2 in pixels), best first; or why it was skipped."""

    path: Path
    found: list[tuple[str, float, list[float]]] = field(default_factory=list)
    image: torch.Tensor | None = None  # uint8 [3, H, W]
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        if self.error is not None:
            return {"path": str(self.path), "error": self.error}
        return {"path": str(self.path), "detections": [{"class": c, "score": round(s, 4),
                                                        "box": [round(v, 1) for v in b]} for c, s, b in self.found]}

    def drawn(self) -> np.ndarray:
        """The image with its boxes, class names and scores drawn, as an RGB uint8 array [H, W, 3]."""
        if not self.found:  # nothing to draw (torchvision would warn)
            return self.image.permute(1, 2, 0).numpy()
        boxes = torch.tensor([b for _, _, b in self.found], dtype=torch.float32).reshape(-1, 4)
        labels = [f"{c} {s:.2f}" for c, s, _ in self.found]
        return draw_bounding_boxes(self.image, boxes, labels, width=2).permute(1, 2, 0).numpy()


def found_boxes(classes: list[str], labels: torch.Tensor, boxes: torch.Tensor, scores: torch.Tensor | None = None,
                threshold: float = 0.5) -> list[tuple[str, float, list[float]]]:  # fmt: skip
    """A detector's output (or ground truth: no ``scores``, drawn as 1.00) as `Detections.found` triples, the boxes
    scoring below ``threshold`` left out; ``labels`` count from 1 (0 is the background)."""
    scores = torch.ones(len(labels)) if scores is None else scores.float().cpu()
    return [(classes[int(k) - 1], float(v), box) for k, v, box in
            zip(labels.tolist(), scores, boxes.float().cpu().tolist(), strict=True) if v >= threshold]  # fmt: skip


def detect_files(loaded: TrainedModel, files: Iterable[Path], *, threshold: float = 0.5,
                 device: torch.device | str = "cpu", precision: str = "fp32") -> Iterator[Detections]:  # fmt: skip
    """`Detections` per file, in order; files that cannot be decoded come back with ``error`` set."""
    device = torch.device(device)
    for f in files:
        try:
            with Image.open(f) as img:
                image = torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1)
        except (OSError, ValueError) as e:
            yield Detections(Path(f), error=f"cannot decode it ({type(e).__name__})")
            continue
        with torch.inference_mode(), autocast(precision, device):
            out = loaded.model([image.to(device).float().div_(255)])[0]
        yield Detections(Path(f), found_boxes(loaded.classes, out["labels"], out["boxes"], out["scores"], threshold),
                         image)
