"""``reslab export``: a trained model as an ONNX graph, a safetensors file or a torch.export program, checked against
PyTorch before it is kept (`reslab.deploy.export`)."""

from __future__ import annotations

import argparse

from reslab.choices import EXPORT_FORMATS as FORMATS
from reslab.cli.options import add_trained_model
from reslab.cli.parser import COMMANDS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help=COMMANDS["export"][1],
                       description="Write a trained model for deployment: onnx (needs pip install "
                       "\"reslab[export]\"; classes and preprocessing in its metadata_props), safetensors (weights "
                       "with reslab's metadata) or pt2 (torch.export). The file is read back and its outputs "
                       "compared with PyTorch's before it is kept.")  # fmt: skip
    add_trained_model(p)
    p.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    p.add_argument("--out", default=None, metavar="FILE",
                   help="where to write it (default: <model name>.<format> in the current folder; a folder: that "
                   "name in it)")  # fmt: skip
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="skip reading the file back and comparing its outputs with PyTorch's")  # fmt: skip
    p.set_defaults(func=run_export)


def run_export(args: argparse.Namespace) -> int:
    from reslab.deploy.export import default_out, export_model, require_onnx
    from reslab.models.trained import load_trained

    if args.format == "onnx":
        require_onnx()  # before loading the model: a missing extra should be the first thing said
    loaded = load_trained(args.model)
    out = args.out if args.out is not None else default_out(loaded, args.format)
    print(export_model(loaded, args.format, out, check=args.check).describe())
    return 0
