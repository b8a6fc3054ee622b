"""``reslab detect``: object detection with reslab backbones (Sec. 4.3): ``train`` and ``make-dataset``."""

from __future__ import annotations

import argparse

from reslab.choices import DETECTOR_DESIGNS as DESIGNS
from reslab.cli.options import add_device_args, positive_int
from reslab.cli.parser import COMMANDS
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
                        "backbone's weights (any reslab classification run or weights file). Every flag of `reslab "
                        "train` applies; the run folder, resume and torchrun work as there.")  # fmt: skip
    t.add_argument("--backbone", default="resnet50", help="a reslab network (`reslab models`), e.g. resnet101")
    t.add_argument("--design", choices=DESIGNS, default="c4", help="c4 (the paper's) or fpn (default: c4)")
    t.add_argument("--min-size", type=positive_int, default=600, help="shorter image side the detector resizes to "
                   "(the paper: 600)")  # fmt: skip
    t.add_argument("--max-size", type=positive_int, default=1000, help="longest side at most (default: 1000)")
    add_run_arguments(t, default_recipe="detection")
    t.set_defaults(func=run_train)
    e = cmds.add_parser("eval", help="COCO mAP of a detection run on a COCO-format split",
                        description="COCO's box statistics (mAP@[.5,.95], mAP@.5, mAP@.75, by size; recall) of a "
                        "detection run on the test split of its data (or --data), as a table, or JSON.")  # fmt: skip
    e.add_argument("run", help="a detection run folder or its checkpoint.pt")
    e.add_argument("--data", default=None, help="a COCO-format folder (default: the run's)")
    e.add_argument("--batch-size", type=positive_int, default=8)
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
    pr.add_argument("--threshold", type=float, default=0.5, help="smallest score shown (default: 0.5)")
    add_device_args(pr)
    pr.set_defaults(func=run_predict)
    m = cmds.add_parser("make-dataset", help="CIFAR objects pasted on canvases, written as a COCO-format set",
                        description="Write a real-image detection set in COCO format from an ImageFolder tar "
                        "(train/<class>/, test/<class>/, e.g. the CIFAR-10 copy): each canvas has a blurred "
                        "background from another image and 1-6 images pasted at random sizes and places, each left at "
                        "least half in sight by those pasted after it; train canvases from the training images, test "
                        "canvases from the test images.")  # fmt: skip
    m.add_argument("--data", required=True, help="ImageFolder tar with train/ and test/")
    m.add_argument("--out", required=True, help="folder for train/ and test/ (images/ + instances.json each)")
    m.add_argument("--train", type=positive_int, default=2000, help="training canvases (default: 2000)")
    m.add_argument("--test", type=positive_int, default=500, help="test canvases (default: 500)")
    m.add_argument("--size", type=positive_int, default=256, help="canvas side in pixels (default: 256)")
    m.add_argument("--scale", default="32,128", help="smallest,largest pasted object side (default: 32,128)")
    m.add_argument("--seed", type=int, default=0)
    m.set_defaults(func=run_make_dataset)


def run_train(args: argparse.Namespace) -> int:
    from reslab.cli.train import run
    from reslab.errors import ConfigError

    if args.shortcut:
        raise ConfigError("--shortcut is for classification; a detector's backbone keeps its family's option")
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
    import json

    from reslab.detection.coco import coco_eval, format_stats, open_coco, to_coco_results
    from reslab.detection.task import detect
    from reslab.engine.precision import autocast, resolve_device, resolve_precision
    from reslab.errors import DataError
    from reslab.tasks.detection import load_detector

    device = resolve_device(args.device)
    loaded = load_detector(args.run, device)
    (test,) = open_coco(args.data or loaded.config["data"], ("test",))
    if test.classes != loaded.classes:
        few = lambda names: ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")  # noqa: E731
        raise DataError(f"the test set's classes ({few(test.classes)}) are not the ones {loaded.source} was trained "
                        f"on ({few(loaded.classes)})")  # fmt: skip
    with autocast(resolve_precision(args.precision, device), device):
        outputs = detect(loaded.model, test, batch_size=args.batch_size, device=device)
    stats = coco_eval(test, to_coco_results(test, outputs))
    if args.json:
        print(json.dumps({"run": str(loaded.source), "images": len(test), **stats}, indent=2))
    else:
        print(f"{loaded.source}: {len(test)} test images, COCO box statistics (%):")
        print(format_stats(stats))
    return 0


def run_predict(args: argparse.Namespace) -> int:
    import json
    import sys
    from pathlib import Path

    from PIL import Image

    from reslab.deploy.detect import detect_files
    from reslab.deploy.predict import image_files
    from reslab.engine.precision import resolve_device, resolve_precision
    from reslab.errors import DataError
    from reslab.files import write_text
    from reslab.tasks.detection import load_detector

    files = list(image_files(args.images))
    device = resolve_device(args.device)
    loaded = load_detector(args.run, device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines: list[str] = []
    taken: set[str] = set()
    for det in detect_files(loaded, files, threshold=args.threshold, device=device,
                            precision=resolve_precision(args.precision, device)):  # fmt: skip
        if det.error is not None:
            print(f"reslab: skipped {det.path}: {det.error}", file=sys.stderr)
            continue
        name = next(n for k in range(len(taken) + 1) if (n := det.path.stem + (f"-{k}" if k else "")) not in taken)
        taken.add(name)  # a/x.jpg and b/x.jpg: x.png and x-1.png, never one over the other
        target = out / f"{name}.png"
        Image.fromarray(det.drawn()).save(target)
        lines.append(json.dumps({**det.as_dict(), "drawn": str(target)}))
        print(lines[-1])
    if not lines:
        raise DataError("no image could be read" if files else "no image files found")
    write_text(out / "detections.jsonl", "\n".join(lines) + "\n")
    return 0
