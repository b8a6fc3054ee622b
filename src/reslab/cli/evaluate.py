"""``reslab eval`` (a checkpoint's errors on a split) and ``reslab runs`` (finished runs as a markdown table)."""

from __future__ import annotations

import argparse
import json

from reslab.choices import EVAL_MODES, SPLITS
from reslab.cli.options import add_device_args, add_field, positive_int
from reslab.cli.parser import COMMANDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help=COMMANDS["eval"][1],
                       description="Evaluate a checkpoint (or a run folder) on a split of its data, preprocessed "
                       "as in training.")  # fmt: skip
    p.add_argument(
        "checkpoint",
        metavar="MODEL",
        help="a checkpoint.pt, a run folder, a reslab safetensors file, a "
        "model name with shipped weights, or torchvision's weights (torchvision:resnet50)",
    )
    p.add_argument("--data", default=None, help="dataset (default: the one the checkpoint was trained on)")
    add_field(p, "data_dir", default=None, help="download/cache folder (default: the training run's)")
    p.add_argument("--split", default=SPLITS[0], choices=SPLITS,
                   help="test; val (the run's held-out images); train (the images it trained on)")  # fmt: skip
    p.add_argument("--tta", action="store_true", help="also the horizontally flipped views (2 views)")
    p.add_argument("--tta-shift", type=int, default=0, metavar="S",
                   help="with --tta: also the views shifted by (+S, +S) and (-S, -S) pixels (6 views)")  # fmt: skip
    modes = p.add_mutually_exclusive_group()
    modes.add_argument("--ten-crop", dest="mode", action="store_const", const="ten-crop", default=EVAL_MODES[0],
                       help="large images: the 10-crop test (4 corners + centre, and mirrored; Sec. 3.4)")  # fmt: skip
    modes.add_argument("--multi-scale", dest="mode", action="store_const", const="multi-scale",
                       help="large images: the paper's fully-convolutional test, scores averaged over shorter sides "
                       "224, 256, 384, 480, 640 (scaled to the run's crop size) and mirrors (Sec. 3.4)")  # fmt: skip
    p.add_argument("--scales", type=_scales, default=None, metavar="S1,S2,...",
                   help="with --multi-scale: other shorter sides")  # fmt: skip
    add_field(p, "workers", metavar="N")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="images per evaluation batch (default: the run's --eval-batch-size)")  # fmt: skip
    add_device_args(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run_eval)

    p = sub.add_parser("runs", help=COMMANDS["runs"][1],
                       description="Finished runs as one markdown table, every cell read from the run folders; "
                       "folders that hold no finished run are listed under it with what they hold.")  # fmt: skip
    p.add_argument("folders", nargs="+", metavar="RUN_DIR")
    p.set_defaults(func=run_runs)


def run_eval(args: argparse.Namespace) -> int:
    from reslab.engine.evaluate import evaluate_checkpoint

    r = evaluate_checkpoint(args.checkpoint, data=args.data, data_dir=args.data_dir, split=args.split,
                            flip=args.tta, shift=args.tta_shift, device=args.device, precision=args.precision,
                            batch_size=args.batch_size, mode=args.mode, scales=args.scales,
                            workers=args.workers)  # fmt: skip
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(f"{r['data_label']}, {r['split']} split: {r['n']} images, {r['views']}; {r['checkpoint']} (iteration "
          f"{r['iteration']})")  # fmt: skip
    print(f"top-1 error {r['error']:.2f}%   top-5 error {r['top5_error']:.2f}%   loss {r['loss']:.4f}")
    print("per-class top-1 error (%):")
    for name, err in zip(r["classes"], r["per_class_error"], strict=True):
        print(f"  {name:>12s}  {err:6.2f}")
    return 0


def _scales(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected shorter sides like 224,256,384, got {text!r}") from None


def run_runs(args: argparse.Namespace) -> int:
    from reslab.engine.runs import runs_table

    print(runs_table(args.folders))
    return 0
