"""``reslab predict``: class probabilities for image files and folders, with any trained model."""

from __future__ import annotations

import argparse
import json
import sys

from reslab.choices import PREDICT_BATCH, TOP_K
from reslab.cli.options import add_device_args, add_trained_model, positive_int
from reslab.cli.parser import COMMANDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help=COMMANDS["predict"][1],
                       description="Classify images with a checkpoint, a run folder, a reslab safetensors file or a "
                       "model name with shipped weights, preprocessed as the model's own evaluation data was "
                       "(input size and mean come from the model). Folders are walked; files that cannot be "
                       "decoded are reported on stderr and skipped.")  # fmt: skip
    add_trained_model(p)
    p.add_argument("images", nargs="+", metavar="IMAGE_OR_DIR")
    p.add_argument(
        "--top-k",
        type=positive_int,
        default=None,
        help=f"classes shown per image (default: {TOP_K}, or all of a model's if it has fewer)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line instead of text")
    p.add_argument("--batch-size", type=positive_int, default=PREDICT_BATCH,
                   help="images per forward pass")  # fmt: skip
    add_device_args(p)
    p.set_defaults(func=run_predict)


def shown(path: str) -> str:
    """A file name as any terminal can print it: bytes that are not UTF-8 (kept by Python as surrogates) shown as
    backslash escapes, so that a strict UTF-8 stdout never fails on them."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def run_predict(args: argparse.Namespace) -> int:
    from reslab.deploy.predict import Predictor, image_files
    from reslab.errors import DataError
    from reslab.models.trained import load_trained

    files = list(image_files(args.images))  # a missing path fails here, before the model is loaded
    predictor = Predictor(load_trained(args.model), device=args.device, precision=args.precision,
                          batch_size=args.batch_size)  # fmt: skip
    done = skipped = 0
    for pred in predictor.predict(files, args.top_k):
        if pred.error is not None:
            skipped += 1
            print(f"reslab: skipped {shown(pred.path)}: {pred.error}", file=sys.stderr)
            continue
        done += 1
        if args.json:
            print(json.dumps({**pred.as_dict(), "path": shown(pred.path)}))
        else:
            print(f"{shown(pred.path)}\t" + "\t".join(f"{c} {100 * p:.1f}%" for c, p in pred.top))
    if done == 0:
        raise DataError(f"no image could be classified ({skipped} skipped)" if skipped else "no image files found")
    return 0
