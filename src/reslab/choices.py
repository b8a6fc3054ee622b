"""Valid choices of command-line flags whose owners are heavy modules (they import torch), declared here once and
imported by those owners, so that every command answers its flags and --help without loading torch."""

SPLITS = ("test", "val", "train")  # reslab.engine.evaluate: what `reslab eval --split` evaluates
EVAL_MODES = ("center", "ten-crop", "multi-scale")  # reslab.data.loader: the large-image test views
EXPORT_FORMATS = ("onnx", "safetensors", "pt2")  # reslab.deploy.export
DETECTOR_DESIGNS = ("c4", "fpn")  # reslab.detection.model: the paper's C4 split, or an FPN
