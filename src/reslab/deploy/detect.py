"""Boxes on image files with a trained detector: the detections above a score, and the image with them drawn."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import draw_bounding_boxes

from reslab.choices import DETECTION_THRESHOLD
from reslab.deploy.predict import image_files
from reslab.detection.task import detections
from reslab.engine.precision import autocast, resolve_device, resolve_precision
from reslab.errors import ConfigError, DataError
from reslab.files import write_text
from reslab.tasks.detection import load_detector
from reslab.weights.trained import TrainedModel


@dataclass
class Detections:
    """One image's detections (class name, score, box x1 y1 x2 y2 in pixels), best first; or why it was skipped."""

    path: Path
    found: list[tuple[str, float, list[float]]] = field(default_factory=list)
    image: torch.Tensor | None = None  # uint8 [3, H, W]
    error: str | None = None
    drawn_path: Path | None = None  # where `draw_to_folder` wrote it

    def as_dict(self) -> dict[str, object]:
        if self.error is not None:
            return {"path": str(self.path), "error": self.error}
        out: dict[str, object] = {
            "path": str(self.path),
            "detections": [
                {"class": c, "score": round(s, 4), "box": [round(v, 1) for v in b]} for c, s, b in self.found
            ],
        }
        return out if self.drawn_path is None else {**out, "drawn": str(self.drawn_path)}

    def drawn(self) -> np.ndarray:
        """The image with its boxes, class names and scores drawn, as an RGB uint8 array [H, W, 3]."""
        if not self.found:  # nothing to draw (torchvision would warn)
            return self.image.permute(1, 2, 0).numpy()
        boxes = torch.tensor([b for _, _, b in self.found], dtype=torch.float32).reshape(-1, 4)
        labels = [f"{c} {s:.2f}" for c, s, _ in self.found]
        return draw_bounding_boxes(self.image, boxes, labels, width=2).permute(1, 2, 0).numpy()


def found_boxes(classes: list[str], labels: torch.Tensor, boxes: torch.Tensor, scores: torch.Tensor | None = None,
                threshold: float = DETECTION_THRESHOLD) -> list[tuple[str, float, list[float]]]:  # fmt: skip
    """A detector's output (or ground truth: no ``scores``, drawn as 1.00) as `Detections.found` triples, the boxes
    scoring below ``threshold`` left out; ``labels`` count from 1 (0 is the background)."""
    scores = torch.ones(len(labels)) if scores is None else scores.float().cpu()
    return [(classes[int(k) - 1], float(v), box) for k, v, box in
            zip(labels.tolist(), scores, boxes.float().cpu().tolist(), strict=True) if v >= threshold]  # fmt: skip


def detect_files(loaded: TrainedModel, files: Iterable[Path], *, threshold: float = DETECTION_THRESHOLD,
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
            out = detections(loaded.model, [image.to(device).float().div_(255)])[0]
        yield Detections(
            Path(f), found_boxes(loaded.classes, out["labels"], out["boxes"], out["scores"], threshold), image
        )


def predict_files(run: str | Path, images: Iterable[str | Path], *, threshold: float = DETECTION_THRESHOLD,
                  device: str = "auto", precision: str = "auto") -> Iterator[Detections]:  # fmt: skip
    """`Detections` for the image files and folders ``images`` (walked) by the detector the run ``run`` trained."""
    files = list(image_files(images))
    dev = resolve_device(device)
    loaded = load_detector(run, dev)
    yield from detect_files(loaded, files, threshold=threshold, device=dev, precision=resolve_precision(precision, dev))


def draw_to_folder(detections: Iterable[Detections], out: str | Path) -> Iterator[Detections]:
    """Write each readable image with its boxes drawn into ``out`` (``NAME.png``; ``NAME-1.png`` for a second image
    of the same name, never one over another) and all readable images' detections to ``out/detections.jsonl``;
    yields every `Detections` (``drawn`` set to the PNG's path) as it goes, unreadable ones too."""
    out = Path(out)
    lines: list[str] = []
    taken: set[str] = set()
    seen = 0
    for det in detections:  # the first one comes after the model has loaded: a failed load leaves no folder behind
        if not seen:
            try:
                out.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"cannot write to --out {out}: {e.strerror or e}") from None
        seen += 1
        if det.error is None:
            name = next(n for k in range(len(taken) + 1) if (n := det.path.stem + (f"-{k}" if k else "")) not in taken)
            taken.add(name)
            det.drawn_path = out / f"{name}.png"
            Image.fromarray(det.drawn()).save(det.drawn_path)
            lines.append(json.dumps(det.as_dict()))
        yield det
    if not lines:
        raise DataError("no image could be read" if seen else "no image files found")
    write_text(out / "detections.jsonl", "\n".join(lines) + "\n")
