"""Table 1 (ImageNet architectures) and Table 6's parameter column (CIFAR-10 ResNets): no training.

Parameters and multiply-adds are counted on the built modules (`reslab.complexity`) at each family's input size,
beside the paper's figures: Table 1's "FLOPs" (multiply-adds, 224x224) and Table 6's parameter counts. VGG-16 and
VGG-19 (torchvision's, counted by the same function) stand beside ResNet-34 and plain-34, for Sec. 3.3's "3.6 billion
FLOPs ... only 18% of VGG-19 (19.6 billion FLOPs)".
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reslab import paper
from reslab.experiments.report import NOT_REPRODUCED, REPRODUCED, claim, markdown_table, write_report, write_results
from reslab.experiments.runner import Context
from reslab.models import complexity, list_models, model_complexity, model_spec


def count(name: str) -> dict[str, Any]:
    spec = model_spec(name)
    c = model_complexity(name)
    return {"model": name, "family": spec.family, "depth": spec.depth,
            "input": f"{spec.input_size[1]}x{spec.input_size[2]}", "params (M)": round(c["params"] / 1e6, 3),
            "GMACs": round(c["macs"] / 1e9, 3)}  # fmt: skip


def vgg_rows() -> list[dict[str, Any]]:
    """VGG-16/19 (torchvision's definition, built on the meta device) against ResNet-34 and plain-34."""
    import torch
    import torchvision

    ours = {name: model_complexity(name) for name in ("resnet34", "plain34")}
    rows = []
    for name in ("vgg16", "vgg19"):
        with torch.device("meta"):
            c = complexity(getattr(torchvision.models, name)(weights=None), (3, 224, 224))
        rows.append({"model": name, "depth": int(name[3:]), "params (M)": round(c["params"] / 1e6, 3),
                     "GMACs": round(c["macs"] / 1e9, 3),
                     "paper GMACs": paper.VGG19_GMACS if name == "vgg19" else "",
                     **{f"GMACs / {k}": round(c["macs"] / v["macs"], 2) for k, v in ours.items()},
                     **{f"params / {k}": round(c["params"] / v["params"], 2) for k, v in ours.items()}})  # fmt: skip
    return rows


def imagenet_rows() -> list[dict[str, Any]]:
    rows = []
    for name in list_models():
        if model_spec(name).family == "imagenet":
            rows.append({**count(name), "paper GMACs (Table 1)": model_spec(name).paper.get("gmacs", "")})
    return rows


def cifar_rows() -> list[dict[str, Any]]:
    return [{**count(f"resnet{d}"), "paper params (M) (Table 6)": p} for d, p in paper.CIFAR_PARAMS_M.items()]


TABLE1 = tuple(f"resnet{d}" for d in paper.IMAGENET_GMACS)


def run(ctx: Context) -> Path:
    imagenet, cifar, vgg = imagenet_rows(), cifar_rows(), vgg_rows()
    r34 = next(r for r in imagenet if r["model"] == "resnet34")
    vgg19 = next(r for r in vgg if r["model"] == "vgg19")
    sections = [
        "## Table 1: ImageNet networks (224x224)\n\n" + markdown_table(
            imagenet, ["model", "depth", "params (M)", "GMACs", "paper GMACs (Table 1)"]),
        "GMACs = billions of multiply-adds (the paper's \"FLOPs\"), counted layer by layer on the built module, "
        "convolutions and the FC layer only. Of the plain nets, the paper gives FLOPs only for plain-18/34. "
        "The bottleneck nets put the stride-2 on the first 1x1 as the paper does.",
        "## VGG against the 34-layer nets (224x224)\n\n" + markdown_table(
            vgg, ["model", "params (M)", "GMACs", "paper GMACs", "GMACs / resnet34", "GMACs / plain34",
                  "params / resnet34", "params / plain34"]),
        f"VGG as torchvision defines it (`torchvision.models.vgg16/vgg19`, with its fully-connected layers), counted "
        f"by the same function. ResNet-34's {r34['GMACs']:.2f} GMACs are {r34['GMACs'] / vgg19['GMACs']:.0%} of "
        f"VGG-19's {vgg19['GMACs']:.2f} (the paper: 3.6 of 19.6, 18%), with "
        f"{r34['params (M)'] / vgg19['params (M)']:.0%} of its parameters.",
        "## Table 6: CIFAR-10 ResNets (32x32)\n\n" + markdown_table(
            cifar, ["model", "depth", "params (M)", "paper params (M) (Table 6)", "GMACs"]),
    ]  # fmt: skip
    share = r34["GMACs"] / vgg19["GMACs"]
    off = max(abs(r["GMACs"] - paper.IMAGENET_GMACS[r["depth"]]) / paper.IMAGENET_GMACS[r["depth"]]
              for r in imagenet if r["model"] in TABLE1)  # fmt: skip
    claims = [
        claim(
            "Table 1: multiply-adds of ResNet-18/34/50/101/152",
            "1.8 / 3.6 / 3.8 / 7.6 / 11.3 GFLOPs",
            " / ".join(f"{r['GMACs']:.2f}" for r in imagenet if r["model"] in TABLE1),
            REPRODUCED if off < 0.05 else NOT_REPRODUCED,
            f"largest deviation {off:.1%} (5% allowed: rounding)",
        ),
        claim(
            "ResNet-34 costs 18% of VGG-19",
            "3.6 of 19.6 GFLOPs (Sec. 3.3)",
            f"{r34['GMACs']:.2f} of {vgg19['GMACs']:.2f} ({share:.0%})",
            REPRODUCED if abs(share - 0.18) < 0.02 else NOT_REPRODUCED,
            "2 points allowed (rounding)",
        ),
    ]
    write_results(ctx, [*imagenet, *vgg, *cifar], {"claims": claims})
    return write_report(ctx, "Table 1 and Table 6: parameters and multiply-adds", "Table 1 and Table 6", sections,
                        training=False)  # fmt: skip
