"""Object detection with reslab's networks as backbones: Faster R-CNN as the paper built it (Sec. 4.3, App. A)."""

from reslab.detection.model import create_detector

__all__ = ["create_detector"]
