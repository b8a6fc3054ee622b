"""Valid choices of command-line flags whose owners are heavy modules (they import torch), declared here once and
imported by those owners, so that every command answers its flags and --help without loading torch."""

# The first of each is its default.
SPLITS = ("test", "val", "train")  # reslab.engine.evaluate: what `reslab eval --split` evaluates
EVAL_MODES = ("center", "ten-crop", "multi-scale")  # reslab.data.loader: the large-image test views
EXPORT_FORMATS = ("onnx", "safetensors", "pt2")  # reslab.deploy.export
# Defaults of library functions whose flags the CLI shows (the functions read them from here too):
DETECTOR_BACKBONE, DETECTOR_DESIGN = "resnet50", "c4"  # reslab detect train: the network and design
DETECTOR_MIN_SIZE, DETECTOR_MAX_SIZE = 600, 1000  # reslab.detection.model.create_detector: the paper's 600 px
DETECTION_THRESHOLD = 0.5  # reslab.deploy.detect: the smallest score shown
PREDICT_BATCH = 64  # reslab.deploy.predict.Predictor: images per forward pass
TOP_K = 5  # reslab.deploy.predict.Predictor.predict: classes shown per image (all of a model's if it has fewer)
CANVAS_SIZE, CANVAS_SCALE = 256, (32, 128)  # reslab.detection.canvas.make_canvases: canvas side, pasted object sides
EVAL_BATCH = {"in memory": 1000, "streamed": 50, "detection": 8}  # TrainConfig.eval_batch: images per test batch
TASKS = ("classification", "detection")  # reslab.tasks.TASKS: what TrainConfig.task may be
DETECTOR_DESIGNS = ("c4", "fpn")  # reslab.detection.model: the paper's C4 split, or an FPN
# How a weights reference names its source, where it is not a path (`TrainConfig.init`, `load_trained`):
SHIPPED = "shipped:"  # a model with shipped weights, as a config records it (--init resnet20 -> shipped:resnet20)
TORCHVISION = "torchvision:"  # torchvision's ImageNet weights (reslab.weights.torchvision)
