"""``reslab detect``: object detection with reslab backbones (Sec. 4.3). So far: ``make-dataset``."""

from __future__ import annotations

import argparse

from reslab.cli.options import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("detect", help="object detection: make the CIFAR-canvas COCO set (training comes next)",
                       description="Object detection with reslab networks as Faster R-CNN backbones "
                       "(Sec. 4.3).")  # fmt: skip
    cmds = p.add_subparsers(dest="detect_command", required=True, parser_class=type(p))
    m = cmds.add_parser("make-dataset", help="CIFAR objects pasted on canvases, written as a COCO-format set",
                        description="Write a real-image detection set in COCO format from an ImageFolder tar "
                        "(train/<class>/, test/<class>/, e.g. the CIFAR-10 copy): each canvas has a blurred "
                        "background from another image and 1-6 images pasted at random sizes and places; train "
                        "canvases from the training images, test canvases from the test images.")  # fmt: skip
    m.add_argument("--data", required=True, help="ImageFolder tar with train/ and test/")
    m.add_argument("--out", required=True, help="folder for train/ and test/ (images/ + instances.json each)")
    m.add_argument("--train", type=positive_int, default=2000, help="training canvases (default: 2000)")
    m.add_argument("--test", type=positive_int, default=500, help="test canvases (default: 500)")
    m.add_argument("--size", type=positive_int, default=256, help="canvas side in pixels (default: 256)")
    m.add_argument("--scale", default="32,128", help="smallest,largest pasted object side (default: 32,128)")
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=run_make_dataset)


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
