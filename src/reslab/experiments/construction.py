"""The construction argument (Sec. 1 and Sec. 3.1): a deeper solution exists, and SGD does not find it.

"There exists a solution by construction to the deeper model: the added layers are identity mapping, and the other
layers are copied from the learned shallower model. The existence of this constructed solution indicates that a
deeper model should produce no higher training error than its shallower counterpart."

This experiment builds that solution for real: the trained plain-20 of `degradation`, with identity units inserted at
the end of each stage, becomes a network of plain-56's layout (the same skeleton class, nine units per stage, the
channel and stride changes where plain-20 has them). An inserted unit's two 3x3 convolutions have identity (Dirac)
kernels and its BNs are the identity in inference mode (running mean 0, running variance 1 - eps, weight 1, bias 0);
its ReLUs are identities too, because a unit's input is the output of a ReLU and so non-negative. The report checks
that the constructed net computes plain-20's logits on the whole test set, compares it with plain-56 and ResNet-56
trained from scratch (the degradation), and then lets SGD loose on it with the same budget and recipe. In training
mode BN normalises with the batch's statistics, so the inserted layers are the identity only in inference mode: SGD
starts near, not at, the constructed solution.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import nn

from reslab.experiments import degradation
from reslab.experiments.report import (
    NOT_REPRODUCED,
    REPRODUCED,
    UNRESOLVED,
    claim,
    markdown_table,
    write_report,
    write_results,
)
from reslab.experiments.runner import Context, RunResult, RunSpec
from reslab.models import ResNet, create_model
from reslab.models.trained import load_trained
from reslab.tasks.classification import EvalBatches, evaluate
from reslab.weights.checkpoint import write_checkpoint

SHALLOW, DEEP = 20, 56
TAIL = degradation.TAIL


def specs(ctx: Context) -> dict[str, RunSpec]:
    """degradation's plain-20, plain-56 and ResNet-56 (seed 0), and the constructed net trained further."""
    init = str(ctx.out / f"plain{DEEP}-constructed-init.pt")
    return {"shallow": RunSpec(f"plain{SHALLOW}"), "deep": RunSpec(f"plain{DEEP}"), "resnet": RunSpec(f"resnet{DEEP}"),
            "sgd": RunSpec(f"plain{DEEP}", variant="constructed", init=init)}  # fmt: skip


@torch.no_grad()
def make_identity(unit: nn.Module) -> None:
    """Turn a plain unit into the identity on non-negative inputs, in inference mode."""
    for m in unit.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.dirac_(m.weight)  # each output channel copies its input channel
        elif isinstance(m, nn.BatchNorm2d):
            m.running_mean.zero_()
            m.running_var.fill_(1 - m.eps)  # (x - 0) / sqrt(1 - eps + eps) = x
            m.weight.fill_(1.0)
            m.bias.zero_()


def construct(shallow: ResNet, depth: int) -> ResNet:
    """``shallow``'s layers with identity units appended to each stage: a plain net of ``depth`` layers."""
    deep = create_model("cifar_resnet", depth=depth, mode="plain", num_classes=shallow.fc.out_features)
    for name in ("conv1", "bn1", "fc"):
        getattr(deep, name).load_state_dict(getattr(shallow, name).state_dict())
    for stage in shallow.stage_names:
        learned, units = getattr(shallow, stage), getattr(deep, stage)
        for i, unit in enumerate(units):
            if i < len(learned):
                unit.load_state_dict(learned[i].state_dict())
            else:
                make_identity(unit)
    return deep.eval()


@torch.no_grad()
def logits(model: nn.Module, batches: EvalBatches) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x) for x, _ in batches])


def errors(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, mean: torch.Tensor, classes: int) -> float:
    """Top-1 error (%) in inference mode, one view, fp32."""
    return evaluate(model, EvalBatches(images, labels, mean, 500), classes)["error"]


def binomial_se(a: float, b: float, n: int) -> float:
    """Standard error (points) of the difference of two error rates (%) measured on the same ``n`` images."""
    pa, pb = a / 100, b / 100
    return 100 * math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / n)


def figure(path: Path, curves: dict[str, RunResult], constructed: float, data: str) -> Path:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for i, (label, r) in enumerate(curves.items()):
        ax.plot(*r.train_curve(), color=f"C{i}", linewidth=1.4, label=label)
    ax.axhline(constructed, color="black", linestyle="--", linewidth=1,
               label=f"plain-{DEEP} constructed from plain-{SHALLOW}, no training")  # fmt: skip
    ax.set(title=f"{data}: training error (train mode, augmented batches)", xlabel="iterations",
           ylabel="training error (%)")  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def run(ctx: Context) -> Path:
    s = specs(ctx)
    trained = ctx.runner.run_all([s["shallow"], s["deep"], s["resnet"]])
    ds = ctx.runner.dataset
    shallow = load_trained(trained[s["shallow"].name].path)
    deep = construct(shallow.model, DEEP)
    ctx.out.mkdir(parents=True, exist_ok=True)
    write_checkpoint(s["sgd"].init, deep.state_dict())  # atomic: a kill here never leaves a torn init for the run
    mean = shallow.preprocessing.mean
    test = EvalBatches(ds.test_images, ds.test_labels, mean, 500)
    diff = (logits(deep, test) - logits(shallow.model, test)).abs().max().item()
    results = {**trained, **ctx.runner.run_all([s["sgd"]])}
    nets = {f"plain-{SHALLOW}": load_trained(trained[s["shallow"].name].path).model,
            f"plain-{DEEP} constructed": deep,
            f"plain-{DEEP} from scratch": load_trained(trained[s["deep"].name].path).model,
            f"ResNet-{DEEP} from scratch": load_trained(trained[s["resnet"].name].path).model,
            f"plain-{DEEP} constructed, then SGD": load_trained(results[s["sgd"].name].path).model}  # fmt: skip
    runs = {f"plain-{SHALLOW}": s["shallow"], f"plain-{DEEP} from scratch": s["deep"],
            f"ResNet-{DEEP} from scratch": s["resnet"], f"plain-{DEEP} constructed, then SGD": s["sgd"]}  # fmt: skip
    how = {f"plain-{SHALLOW}": "trained", f"plain-{DEEP} constructed": f"plain-{SHALLOW} + identity units, no training",
           f"plain-{DEEP} from scratch": "trained", f"ResNet-{DEEP} from scratch": "trained",
           f"plain-{DEEP} constructed, then SGD": "constructed, then trained with the same budget"}  # fmt: skip
    table: list[dict[str, Any]] = []
    k = ds.num_classes
    for label, model in nets.items():
        run_ = runs.get(label)
        logged = results[run_.name].final_train_error(TAIL) if run_ else None
        table.append({"net": label, "how": how[label],
                      "training error (%)": errors(model, ds.train_images, ds.train_labels, mean, k),
                      "test error (%)": errors(model, ds.test_images, ds.test_labels, mean, k),
                      "logged training error (%)": logged if logged is not None else ""})  # fmt: skip
    row = {r["net"]: r for r in table}
    p20, built = row[f"plain-{SHALLOW}"], row[f"plain-{DEEP} constructed"]
    scratch, resnet = row[f"plain-{DEEP} from scratch"], row[f"ResNet-{DEEP} from scratch"]
    sgd = row[f"plain-{DEEP} constructed, then SGD"]
    same = built["training error (%)"] == p20["training error (%)"] and built["test error (%)"] == p20["test error (%)"]
    ctx.out.mkdir(parents=True, exist_ok=True)
    curves = {label: results[spec.name] for label, spec in runs.items()}
    figure(ctx.out / "construction.png", curves, built["training error (%)"], ctx.data_label)
    n = len(ds.train_labels)
    gap = scratch["training error (%)"] - built["training error (%)"]
    margin = 2 * binomial_se(scratch["training error (%)"], built["training error (%)"], n)
    if gap > margin:
        found = (f"- **SGD does not find it**: trained from scratch with the same budget, plain-{DEEP} ends at "
                 f"{scratch['training error (%)']:.2f}% training error, {gap:.2f} points above the constructed net "
                 f"of its own layout (the margin of sampling noise is {margin:.2f}). The network has the capacity, so "
                 "its higher error is an optimisation failure, not one of capacity or overfitting.")  # fmt: skip
    else:
        found = (
            f"- **Here SGD does as well**: trained from scratch, plain-{DEEP} ends at "
            f"{scratch['training error (%)']:.2f}% training error, {gap:+.2f} points from the constructed net "
            f"(within or below the margin of sampling noise, {margin:.2f}): no degradation at this budget."
        )
    drift = sgd["training error (%)"] - p20["training error (%)"]
    towards = "plain-20's" if abs(drift) < abs(sgd["training error (%)"] - scratch["training error (%)"]) else \
        f"plain-{DEEP}'s from scratch"  # fmt: skip
    statements = [
        f"- **The solution by construction exists**: the constructed plain-{DEEP} computes plain-{SHALLOW}'s logits on "
        f"all {len(ds.test_labels)} test images up to {diff:.2g} (largest absolute difference, fp32), and its errors "
        f"are {'exactly' if same else 'not exactly'} plain-{SHALLOW}'s: {built['training error (%)']:.2f}% training, "
        f"{built['test error (%)']:.2f}% test.",
        found + f" ResNet-{DEEP}, the same layers with identity shortcuts, reaches "
        f"{resnet['training error (%)']:.2f}%.",
        f"- **SGD let loose on the constructed net** (BN in training mode, the same budget and recipe, warm-up "
        f"included): it ends at {sgd['training error (%)']:.2f}% training error, {drift:+.2f} points from "
        f"plain-{SHALLOW}'s, closer to {towards}. The constructed layers are the identity only in inference mode: in "
        "training mode BN normalises with the batch's statistics.",
        "- Training and test errors in this section: each net in inference mode on the un-augmented training images "
        f"({n}) and test images, one view. The logged training error is the curves' (train mode, augmented batches; "
        f"mean of the last {TAIL:.0%} of the run). The margin of sampling noise is twice the binomial standard error "
        f"of the difference of two error rates on {n} images: it says nothing of seed-to-seed variation.",
    ]
    sections = [
        "## The construction, measured\n\n" + markdown_table(table, list(table[0])),
        "## What it shows\n\n" + "\n".join(statements),
        "## Training curves\n\n![construction](construction.png)",
    ]
    claims = [
        claim(f"Construction: plain-{SHALLOW} + identity units is a plain-{DEEP} no worse than plain-{SHALLOW}",
              "the solution exists by construction (Sec. 1)", f"logits equal to {diff:.2g}; errors "
              f"{'equal' if same else 'not equal'}", "exact" if same and diff < 1e-3 else NOT_REPRODUCED),
        claim(f"Construction: SGD does not find it (plain-{DEEP} from scratch trains worse)",
              "degradation is an optimisation failure (Sec. 1, 3.1)",
              f"plain-{DEEP} {scratch['training error (%)']:.2f}% vs constructed "
              f"{built['training error (%)']:.2f}% training error", REPRODUCED if gap > margin else UNRESOLVED,
              f"gap {gap:+.2f}, noise {margin:.2f} (sampling)"),
    ]  # fmt: skip
    write_results(ctx, table, {"max_abs_logit_difference": diff, "errors_equal": same, "claims": claims})
    return write_report(ctx, f"The construction argument on {ctx.data_label}", "Sec. 1 and Sec. 3.1", sections,
                        list(results.values()))  # fmt: skip
