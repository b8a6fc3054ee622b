"""Table 1 (ImageNet architectures) and Table 6's parameter column (CIFAR-10 ResNets): no training.

Parameters and multiply-adds are counted on the built modules (`reslab.complexity`) at each family's input size,
beside the paper's figures: Table 1's "FLOPs" (multiply-adds, 224x224) and Table 6's parameter counts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reslab import paper
from reslab.experiments.report import markdown_table, write_report, write_results
from reslab.experiments.runner import Context
from reslab.models import list_models, model_complexity, model_spec


def count(name: str) -> dict[str, Any]:
    spec = model_spec(name)
    c = model_complexity(name)
    return {"model": name, "family": spec.family, "depth": spec.depth,
            "input": f"{spec.input_size[1]}x{spec.input_size[2]}", "params (M)": round(c["params"] / 1e6, 3),
            "GMACs": round(c["macs"] / 1e9, 3)}  # fmt: skip


def imagenet_rows() -> list[dict[str, Any]]:
    rows = []
    for name in list_models():
        if model_spec(name).family == "imagenet":
            rows.append({**count(name), "paper GMACs (Table 1)": model_spec(name).paper.get("gmacs", "")})
    return rows


def cifar_rows() -> list[dict[str, Any]]:
    return [{**count(f"resnet{d}"), "paper params (M) (Table 6)": p} for d, p in paper.CIFAR_PARAMS_M.items()]


def run(ctx: Context) -> Path:
    imagenet, cifar = imagenet_rows(), cifar_rows()
    sections = [
        "## Table 1: ImageNet networks (224x224)\n\n" + markdown_table(
            imagenet, ["model", "depth", "params (M)", "GMACs", "paper GMACs (Table 1)"]),
        "GMACs = billions of multiply-adds (the paper's \"FLOPs\"): `torch.utils.flop_counter` FLOPs / 2, "
        "convolutions and the FC layer only. Of the plain nets, the paper gives FLOPs only for plain-18/34. "
        "The bottleneck nets put the stride-2 on the first 1x1 as the paper does.",
        "## Table 6: CIFAR-10 ResNets (32x32)\n\n" + markdown_table(
            cifar, ["model", "depth", "params (M)", "paper params (M) (Table 6)", "GMACs"]),
    ]  # fmt: skip
    write_results(ctx, [*imagenet, *cifar])
    return write_report(ctx, "Table 1 and Table 6: parameters and multiply-adds", "Table 1 and Table 6", sections,
                        training=False)  # fmt: skip
