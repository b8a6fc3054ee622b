"""``reslab detect``: object detection with reslab backbones (Sec. 4.3): ``train`` and ``make-dataset``."""

from __future__ import annotations

import argparse
import json
import sys

from reslab.choices import (
    CANVAS_SCALE,
    CANVAS_SIZE,
    DETECTION_THRESHOLD,
    DETECTOR_BACKBONE,
    DETECTOR_DESIGN,
    DETECTOR_MAX_SIZE,
    DETECTOR_MIN_SIZE,
)
from reslab.choices import DETECTOR_DESIGNS as DESIGNS
from reslab.cli.options import add_device_args, positive_int
from reslab.cli.parser import COMMANDS, fraction, non_negative_int
from reslab.cli.train import add_run_arguments


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help=COMMANDS["detect"][1],
                       description="Object detection with reslab networks as Faster R-CNN backbones "
                       "(Sec. 4.3).")  # fmt: skip
    cmds = p.add_subparsers(dest="detect_command", required=True, parser_class=type(p))
    t = cmds.add_parser("train", help="train Faster R-CNN on a COCO-format folder",
                        description="Train Faster R-CNN with a reslab network as its backbone on a COCO-format folder "
                        "(train/ and test/ with images/ and instances.json each, or COCO's train2017/, val2017/ and "
                        "annotations/): the paper's C4 design (Sec. 4.3, Appendix A) or FPN. --init takes the "
                        "backbone's weights (any reslab classification run or weights file). The flags of `reslab "
                        "train` apply (those a detector does not use are refused); the run folder, resume and "
                        "torchrun work as there.")  # fmt: skip
    t.add_argument("--backbone", default=DETECTOR_BACKBONE, help="a reslab network (`reslab models`), e.g. "
                   "resnet101")  # fmt: skip
    t.add_argument("--design", choices=DESIGNS, default=DETECTOR_DESIGN, help="c4 (the paper's) or fpn")
    t.add_argument("--min-size", type=positive_int, default=DETECTOR_MIN_SIZE, help="shorter image side the "
                   f"detector resizes to (default: {DETECTOR_MIN_SIZE}, the paper's)")  # fmt: skip
    t.add_argument("--max-size", type=positive_int, default=DETECTOR_MAX_SIZE,
                   help="longest side at most")  # fmt: skip
    add_run_arguments(t, default_recipe="detection")
    t.set_defaults(func=run_train)
    e = cmds.add_parser("eval", help="COCO mAP of a detection run on a COCO-format split",
                        description="COCO's box statistics (mAP@[.5,.95], mAP@.5, mAP@.75, by size; recall) of a "
                        "detection run on the test split of its data (or --data), as a table, or JSON.")  # fmt: skip
    e.add_argument("run", help="a detection run folder or its checkpoint.pt")
    e.add_argument("--data", default=None, help="a COCO-format folder (default: the run's)")
    e.add_argument("--batch-size", type=positive_int, default=None, help="images per batch (default: the run's "
                   "evaluation batch size)")  # fmt: skip
    e.add_argument("--json", action="store_true")
    add_device_args(e)
    e.set_defaults(func=run_eval)
    pr = cmds.add_parser("predict", help="boxes on image files: PNGs with the boxes drawn, and JSON lines",
                         description="Detect objects in image files or folders with a detection run; writes each "
                         "image with its boxes, labels and scores drawn (PNG) into --out and one JSON object per image "
                         "to stdout and to --out/detections.jsonl.")  # fmt: skip
    pr.add_argument("run", help="a detection run folder or its checkpoint.pt")
    pr.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    pr.add_argument("--out", required=True, help="folder for the drawn images")
    pr.add_argument("--threshold", type=fraction, default=DETECTION_THRESHOLD,
                    help="smallest score shown")  # fmt: skip
    add_device_args(pr)
    pr.set_defaults(func=run_predict)
    m = cmds.add_parser("make-dataset", help="CIFAR objects pasted on canvases, written as a COCO-format set",
                        description="Write a real-image detection set in COCO format from an ImageFolder folder or tar "
                        "(train/<class>/, test/<class>/, e.g. the CIFAR-10 copy): each canvas has a blurred "
                        "background from another image and 1-6 images pasted at random sizes and places, each left at "
                        "least half in sight by those pasted after it; train canvases from the training images, test "
                        "canvases from the test images.")  # fmt: skip
    m.add_argument("--data", required=True, help="ImageFolder folder or tar with train/ and test/ (or val/)")
    m.add_argument("--out", required=True, help="folder for train/ and test/ (images/ + instances.json each)")
    m.add_argument("--train", type=positive_int, default=2000, help="training canvases")
    m.add_argument("--test", type=positive_int, default=500, help="test canvases")
    m.add_argument("--size", type=positive_int, default=CANVAS_SIZE, help="canvas side in pixels")
    m.add_argument("--scale", default=",".join(map(str, CANVAS_SCALE)), help="smallest,largest pasted object side")
    m.add_argument("--seed", type=non_negative_int, default=0, help="seed of the canvases' layout")
    m.set_defaults(func=run_make_dataset)


def run_train(args: argparse.Namespace) -> int:
    from reslab.cli.train import run
    from reslab.errors import ConfigError

    if args.shortcut:
        raise ConfigError("--shortcut is for classification; a detector's backbone keeps its family's option")
    if args.init is None:  # create_detector still builds a random one, for tests and for Python users who know
        raise ConfigError("a detector's backbone starts from trained weights (Sec. 4.3): pass --init (a classification "
                          "run, weights file, shipped name or torchvision:NAME); its BN layers are frozen, which a "
                          "randomly initialised network cannot train through")  # fmt: skip
    args.model = f"fasterrcnn_{args.backbone}_{args.design}"
    args.model_kwargs = {"min_size": args.min_size, "max_size": args.max_size}
    return run(args)


def run_make_dataset(args: argparse.Namespace) -> int:
    from reslab.detection.canvas import make_canvases
    from reslab.errors import ConfigError

    try:
        lo, hi = (int(v) for v in args.scale.split(","))
    except ValueError:
        raise ConfigError(f"--scale expects two sizes like 32,128, got {args.scale!r}") from None
    out = make_canvases(args.data, args.out, {"train": args.train, "test": args.test}, size=args.size,
                        scale=(lo, hi), seed=args.seed)  # fmt: skip
    print(f"wrote {args.train} training and {args.test} test canvases to {out} (COCO format: "
          "images/ and instances.json in train/ and test/)")  # fmt: skip
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from reslab.detection.coco import STATS, format_stats
    from reslab.tasks.detection import evaluate_detector

    r = evaluate_detector(args.run, data=args.data, batch_size=args.batch_size, device=args.device,
                          precision=args.precision)  # fmt: skip
    if args.json:
        print(json.dumps(r, indent=2))
    else:
        print(f"{r['run']}: {r['images']} test images, COCO box statistics (%):")
        print(format_stats({name: r[name] for name in STATS}))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from reslab.deploy.detect import draw_to_folder, predict_files

    for det in draw_to_folder(predict_files(args.run, args.images, threshold=args.threshold, device=args.device,
                                            precision=args.precision), args.out):  # fmt: skip
        if det.error is not None:
            print(f"reslab: skipped {det.path}: {det.error}", file=sys.stderr)
        else:
            print(json.dumps(det.as_dict()))
    return 0
