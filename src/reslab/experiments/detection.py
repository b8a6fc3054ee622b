"""Sec. 4.3 / Appendix A: do residual representations transfer to detection better than plain ones?

The paper puts ResNet-101 and VGG-16 into the same Faster R-CNN and gets 27.2 against 21.2 COCO mAP@[.5,.95]. No
COCO copy exists here, so this experiment asks the same question at a scale that trains on a CPU:

1. The classification backbones are the `degradation` experiment's runs of ResNet-N and its plain twin plain-N
   (trained, or reused from the same ``--out``): the same budget, data and seeds.
2. A detection set made from the same data (`reslab.detection.canvas`): its objects pasted onto blurred canvases,
   training canvases from the training images and test canvases from the test images, written in COCO format under
   ``DIR/detection/canvases`` (deterministic: seed 0).
3. Each backbone fine-tuned as the paper's Faster R-CNN C4 (`reslab.detection.model`: RPN and RoI pooling on the
   second-to-last stage, the last stage per region, BN frozen) with the ``detection`` recipe, the same iterations
   and seed for both; COCO mAP on the test canvases. As the floor, the ResNet detector before any detection
   training (its heads random): what "far above an untrained detector" is measured against.

The report: the mAP table (mAP@[.5,.95], @.5, @.75, by size), the mAP curves, predicted boxes on test canvases, and
whether the ResNet backbone's advantage shows. At the cpu budget the backbones are the 20-layer nets (the 56-layer
detectors train about 3x slower; the paper budget adds them).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from matplotlib.figure import Figure

from reslab import paper
from reslab.deploy.detect import Detections, found_boxes
from reslab.detection.canvas import MIN_VISIBLE, make_canvases
from reslab.detection.coco import CocoDetection, coco_eval, open_coco, subset, to_coco_results
from reslab.detection.model import create_detector
from reslab.detection.task import detect
from reslab.engine.config import TrainConfig
from reslab.engine.precision import autocast, resolve_device, resolve_precision
from reslab.engine.recipes import get_recipe
from reslab.errors import ConfigError
from reslab.experiments import degradation
from reslab.experiments.report import (
    NOT_REPRODUCED,
    REPRODUCED,
    UNRESOLVED,
    claim,
    markdown_table,
    mean_std,
    write_report,
    write_results,
)
from reslab.experiments.runner import Context, RunResult, RunSpec
from reslab.files import write_json
from reslab.tasks.detection import load_detector

SHOWN = 4  # test canvases drawn with their predicted boxes


@dataclass(frozen=True)
class Setting:
    """The detection half of a budget (the classification half is the budget's own)."""

    depths: tuple[int, ...]
    train_canvases: int
    test_canvases: int
    size: int  # canvas side; the detector keeps it (min_size = max_size = size: no resizing)
    scale: tuple[int, int]  # pasted object sides
    iterations: int
    batch_size: int
    rois_per_image: int
    evaluations: int


# Why these numbers: at the cpu budget, 128-pixel canvases with 24-64 pixel objects keep the objects near the 32x32
# the backbones were trained on (the CIFAR nets' shared map has stride 2, anchors 4-64 pixels), and 64 sampled RoIs
# per image (Fast R-CNN's own number) are plenty for at most 6 objects. 2000 iterations of 8 canvases are 8 epochs
# of the 2000 training canvases, sized (from a short timing) for under an hour per detector on 2 CPU cores.
SETTINGS = {
    "smoke": Setting((20,), 16, 8, 64, (16, 32), iterations=4, batch_size=4, rois_per_image=32, evaluations=1),
    "cpu": Setting((20,), 2000, 500, 128, (24, 64), iterations=2000, batch_size=8, rois_per_image=64, evaluations=4),
    # the cpu budget's detectors, on the fast budget's (better trained) backbones
    "fast": Setting((20,), 2000, 500, 128, (24, 64), iterations=2000, batch_size=8, rois_per_image=64, evaluations=4),
    "paper": Setting((20, 56), 10000, 2000, 256, (32, 128), iterations=20000, batch_size=8, rois_per_image=128,
                     evaluations=10),
}  # fmt: skip


def canvases(ctx: Context, s: Setting) -> Path:
    """The detection set, made once: ``made.json`` (written last) records what it was made from and how, and a set
    made otherwise (another budget or data) is refused rather than reused."""
    out = ctx.out / "canvases"
    ds = ctx.runner.dataset
    made = {"data": ds.label, "source": ds.name, "train_images": len(ds.train_labels),
            "test_images": len(ds.test_labels), "canvases": [s.train_canvases, s.test_canvases], "size": s.size,
            "scale": list(s.scale), "min_visible": MIN_VISIBLE, "seed": 0}  # fmt: skip
    record = out / "made.json"
    if record.is_file():
        if json.loads(record.read_text()) != made:
            raise ConfigError(f"{out} holds canvases made with other settings (another --budget or --data?); use "
                              "another --out")  # fmt: skip
        return out
    make_canvases(ds, out, {"train": s.train_canvases, "test": s.test_canvases}, size=s.size, scale=s.scale, seed=0)
    write_json(record, made)
    return out


def detector_config(ctx: Context, s: Setting, backbone: RunSpec, data: Path) -> tuple[RunSpec, TrainConfig]:
    """Faster R-CNN C4 on ``backbone``'s classification run, with the detection recipe cut to the setting."""
    recipe = get_recipe("detection", iterations=s.iterations, epochs=None, batch_size=s.batch_size,
                        evaluations=s.evaluations)  # fmt: skip
    spec = RunSpec(f"fasterrcnn_{backbone.model}_c4", backbone.seed)
    return spec, TrainConfig(model=spec.model, data=str(data), init=str(ctx.runner.run_dir(backbone)), recipe=recipe,
                             model_kwargs={"min_size": s.size, "max_size": s.size, "rois_per_image": s.rois_per_image},
                             seed=backbone.seed, device=ctx.runner.device, log_every=max(1, s.iterations // 50),
                             progress=ctx.runner.base.progress, out=str(ctx.runner.run_dir(spec)))  # fmt: skip


def train_detectors(ctx: Context, runs: list[tuple[RunSpec, TrainConfig]]) -> list[RunResult]:
    """Each detector trained (resumed, or found finished with the same config), in order."""
    for i, (spec, cfg) in enumerate(runs, 1):
        head = f"detector {i}/{len(runs)}: {spec.name}"
        if not ctx.runner.reuse(cfg, head):
            seconds = ctx.runner.train_one(cfg, None, head)
            ctx.runner.say(f"{head} finished in {seconds:.0f} s")
    return [ctx.runner.result(spec) for spec, _ in runs]


def untrained_map(ctx: Context, cfg: TrainConfig, test: CocoDetection, num_classes: int) -> dict[str, float]:
    """COCO statistics (percent; None: no objects of that size) of ``cfg``'s detector before detection training:
    the backbone's weights, the rest random. Computed once per configuration (``untrained.json``)."""
    cache = ctx.out / "untrained.json"
    key = cfg.to_dict()
    if cache.is_file() and (found := json.loads(cache.read_text())).get("config") == json.loads(json.dumps(key)):
        return found["stats"]
    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = create_detector(cfg.model, num_classes=num_classes, backbone_weights=cfg.init, **cfg.model_kwargs)
    with autocast(resolve_precision(cfg.precision, device), device):
        outputs = detect(model.to(device), test, device=device)
    stats = {k: (100 * v if v >= 0 else None) for k, v in coco_eval(test, to_coco_results(test, outputs)).items()}
    write_json(cache, {"config": key, "stats": stats})
    return stats


def row(net: str, runs: list[RunResult], backbones: list[RunResult]) -> dict[str, Any]:
    """One detector's line of the table, averaged over seeds."""

    def mean(key: str) -> float | str:
        values = [r.summary[f"test_{key}"] for r in runs]
        return "n/a" if min(values) < 0 else statistics.fmean(values)  # COCOeval's -1: no objects of that size

    maps = [r.summary["test_mAP"] for r in runs]
    return {"detector": f"Faster R-CNN C4, {net}", "net": net, "depth": backbones[0].spec.depth, "seeds": len(runs),
            "backbone test error (%)": statistics.fmean(b.summary["test_error"] for b in backbones),  # one view
            "mAP@[.5,.95]": mean("mAP"), "mAP std": mean_std(maps)[1], "mAP@.5": mean("mAP50"),
            "mAP@.75": mean("mAP75"), "mAP small": mean("mAP_small"), "mAP medium": mean("mAP_medium"),
            "mAP large": mean("mAP_large"),
            "training (min)": statistics.fmean(r.summary["train_seconds"] for r in runs) / 60}  # fmt: skip


def curves(path: Path, groups: dict[str, list[RunResult]], data: str) -> Path:
    """mAP@[.5,.95] at each periodic evaluation and the training loss, seed 0 of each detector."""
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    fig.suptitle(f"Faster R-CNN C4 on canvases of {data}")
    left, right = fig.subplots(1, 2)
    for net, runs in groups.items():
        m = runs[0].metrics
        ev = [r for r in m if "mAP" in r]
        left.plot([r["iter"] for r in ev], [r["mAP"] for r in ev], marker="o", label=net)
        tr = [r for r in m if "train_loss" in r]
        right.plot([r["iter"] for r in tr], [r["train_loss"] for r in tr], linewidth=1, label=net)
    left.set(xlabel="iteration", ylabel="test mAP@[.5,.95] (%)", title="test mAP")
    right.set(xlabel="iteration", ylabel="summed Faster R-CNN losses", title="training loss", yscale="log")
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.savefig(path, dpi=110)
    return path


def boxes_figure(path: Path, runs: dict[str, Path], test: CocoDetection, device: str) -> Path:
    """The first test canvases: ground truth in the top row, then each detector's boxes scoring at least 0.5."""
    n = min(SHOWN, len(test))
    first = subset(test, n)
    pairs = [first[i] for i in range(n)]
    images = [image for image, _ in pairs]
    rows = [("ground truth", [found_boxes(test.classes, t["labels"], t["boxes"]) for _, t in pairs])]
    dev = resolve_device(device)
    for net, run in runs.items():
        loaded = load_detector(run, dev)
        with autocast(resolve_precision(loaded.config["precision"], dev), dev):
            outputs = detect(loaded.model, first, device=dev)
        rows.append((net, [found_boxes(loaded.classes, o["labels"], o["boxes"], o["scores"]) for o in outputs]))
    fig = Figure(figsize=(2.6 * n, 2.7 * len(rows)), layout="constrained")
    axes = fig.subplots(len(rows), n, squeeze=False)
    for r, (name, found) in enumerate(rows):
        for c in range(n):
            axes[r, c].imshow(Detections(Path(str(c)), found[c], images[c]).drawn())
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name)
    fig.savefig(path, dpi=110)
    return path


def claims(table: list[dict[str, Any]], seeds: int) -> list[dict[str, str]]:
    """Sec. 4.3 for the scorecard: the residual backbone's detector above the plain one's, beyond noise (with one
    seed there is no noise estimate: not resolved)."""
    by_net = {r["net"]: r for r in table if "net" in r}
    out = []
    for depth in sorted({r["depth"] for r in by_net.values()}):
        res, plain = by_net[f"ResNet-{depth}"], by_net[f"plain-{depth}"]
        gap = res["mAP@[.5,.95]"] - plain["mAP@[.5,.95]"]
        noise = 2 * math.hypot(res["mAP std"], plain["mAP std"]) / math.sqrt(seeds) if seeds > 1 else math.inf
        verdict = UNRESOLVED if abs(gap) <= noise else REPRODUCED if gap > 0 else NOT_REPRODUCED
        out.append(
            claim(
                f"Detection: a residual backbone detects better (ResNet-{depth} vs plain-{depth}, C4)",
                f"COCO mAP {paper.COCO_MAP['resnet101']:.1f} (ResNet-101) vs {paper.COCO_MAP['vgg16']:.1f} "
                "(VGG-16), Table 8",
                f"mAP {res['mAP@[.5,.95]']:.2f} vs {plain['mAP@[.5,.95]']:.2f} "
                f"({seeds} seed{'s' if seeds > 1 else ''})",
                verdict,
                f"gap {gap:+.2f}, noise {noise:.2f}" if seeds > 1 else "one seed: no noise estimate",
            )
        )
    return out


def verdict(table: list[dict[str, Any]], floor: float, seeds: int) -> list[str]:
    """The comparison in words, per depth: ResNet's mAP against its plain twin's, beside the paper's gap. With
    several seeds a gap counts when it exceeds twice its standard error; with one seed it is reported as measured."""
    by_net = {r["net"]: r for r in table if "net" in r}
    lines = []
    for depth in sorted({r["depth"] for r in by_net.values()}):
        res, plain = by_net[f"ResNet-{depth}"], by_net[f"plain-{depth}"]
        gap = res["mAP@[.5,.95]"] - plain["mAP@[.5,.95]"]
        side = "higher" if gap > 0 else "lower" if gap < 0 else "apart: equal"
        if seeds > 1:
            noise = 2 * math.hypot(res["mAP std"], plain["mAP std"]) / math.sqrt(seeds)
            side += " (beyond noise)" if abs(gap) > noise else f" (within noise: 2 standard errors are {noise:.2f})"
        lines.append(f"- **{depth} layers:** the ResNet backbone's detector reaches {res['mAP@[.5,.95]']:.2f} mAP "
                     f"against the plain backbone's {plain['mAP@[.5,.95]']:.2f}: {abs(gap):.2f} points {side} "
                     f"(the paper: ResNet-101 {paper.COCO_MAP['resnet101']:.1f} against VGG-16 "
                     f"{paper.COCO_MAP['vgg16']:.1f} on COCO). At mAP@.5: {res['mAP@.5']:.2f} against "
                     f"{plain['mAP@.5']:.2f} (the paper: {paper.COCO_MAP50['resnet101']:.1f} against "
                     f"{paper.COCO_MAP50['vgg16']:.1f}).")  # fmt: skip
        # The backbones come as trained, so they differ in classification too; so did the paper's.
        top1 = paper.IMAGENET_TOP1_10CROP
        lines.append(f"- The two backbones also differ as classifiers: {res['backbone test error (%)']:.2f}% against "
                     f"{plain['backbone test error (%)']:.2f}% test error (their classification runs). The paper's "
                     f"did too (ImageNet top-1 error, 10-crop: ResNet-101 {top1['resnet101']:.2f}%, VGG-16 "
                     f"{top1['vgg16']:.2f}%): a detection gap measures the backbone as a whole, not the shortcuts "
                     "apart from the accuracy they bring.")  # fmt: skip
    above = [f"{r['net']} {r['mAP@[.5,.95]'] - floor:+.2f}" for r in by_net.values()]
    lines.append(f"- Before any detection training (the ResNet-{table[0]['depth']} backbone, heads random) the "
                 f"detector scores {floor:.2f} mAP@[.5,.95]; detection training added (points): {', '.join(above)}"
                 + ("" if all(r["mAP@[.5,.95]"] > floor for r in by_net.values()) else
                    " (a detector **not above the untrained one** has learnt nothing measurable)") + ".")  # fmt: skip
    if seeds == 1:
        lines.append("- One seed per detector: a gap of a point or two is within what another seed could move; read "
                     "it as a measurement, not a verdict (`--seeds 2` or more decides).")  # fmt: skip
    return lines


def run(ctx: Context) -> Path:
    s = SETTINGS[ctx.budget.name]
    # ResNet first (the table's order); the runs are degradation's, so a shared --out trains them once.
    backbone_specs = sorted(degradation.specs(ctx, s.depths), key=lambda spec: not spec.model.startswith("resnet"))
    backbones = ctx.runner.run_all(backbone_specs)
    data = canvases(ctx, s)
    detector_runs = [detector_config(ctx, s, spec, data) for spec in backbone_specs]
    detectors = train_detectors(ctx, detector_runs)
    train_set, test_set = open_coco(data)
    first = detector_runs[0][1]
    floor = untrained_map(ctx, first, test_set, len(train_set.classes))
    groups: dict[str, list[RunResult]] = {}
    backbone_of: dict[str, list[RunResult]] = {}
    for spec, det in zip(backbone_specs, detectors, strict=True):
        net = degradation.label(spec.model)
        groups.setdefault(net, []).append(det)
        backbone_of.setdefault(net, []).append(backbones[spec.name])
    table = [row(net, runs, backbone_of[net]) for net, runs in groups.items()]
    table.append(
        {
            "detector": f"untrained ({degradation.label(backbone_specs[0].model)} backbone, heads random)",
            "mAP@[.5,.95]": floor["mAP"],
            "mAP@.5": floor["mAP50"],
            "mAP@.75": floor["mAP75"],
        }
    )
    ctx.out.mkdir(parents=True, exist_ok=True)
    curves(ctx.out / "detection_curves.png", groups, ctx.data_label)
    boxes_figure(ctx.out / "detection_boxes.png", {net: runs[0].path for net, runs in groups.items()}, test_set,
                 ctx.runner.device)  # fmt: skip
    shown = ["detector", "seeds", "backbone test error (%)", "mAP@[.5,.95]", "mAP std", "mAP@.5", "mAP@.75",
             "mAP small", "mAP medium", "mAP large", "training (min)"]  # fmt: skip
    sizes = len(train_set.gt["annotations"]), len(test_set.gt["annotations"])
    r = first.recipe
    sections = [
        f"## The detection set\n\n{len(train_set)} training and {len(test_set)} test canvases of {s.size}x{s.size} "
        f"pixels ({sizes[0]} and {sizes[1]} objects, sides {s.scale[0]}-{s.scale[1]} pixels, {len(train_set.classes)} "
        f"classes) made from {ctx.data_label} by `reslab.detection.canvas` (training canvases from training images, "
        "test canvases from test images), in `canvases/`.",
        f"## Detectors\n\nFaster R-CNN C4 (Sec. 4.3, Appendix A; `reslab.detection.model`) on each backbone's "
        f"classification run (the `degradation` runs: the budget line above describes them). Recipe `detection` cut to "
        f"{s.iterations} iterations of {s.batch_size} canvases ({s.iterations * s.batch_size / len(train_set):.1f} "
        f"epochs; lr {r.lr:g} /{1 / r.gamma:g} at {', '.join(f'{m:.0%}' for m in r.milestones)} of the run, "
        f"momentum {r.momentum:g}, weight decay {r.weight_decay:g}, a linear warm-up over the first "
        f"{r.warmup_fraction:.0%}, horizontal flips), images kept at {s.size} pixels, {s.rois_per_image} sampled RoIs "
        "per image, 300 proposals at test; BN frozen everywhere, the stem's weights too (`trainable_stages=3`). mAP "
        "is pycocotools' COCOeval on the test canvases, in percent; `mAP std` is over seeds (0 with one seed).",
        "## Results\n\n" + markdown_table(table, shown),
        "![mAP and loss curves](detection_curves.png)",
        "Predicted boxes (score at least 0.5) on the first test canvases; top row: ground truth.\n\n"
        "![predicted boxes](detection_boxes.png)",
        "## Does the residual backbone transfer better?\n\n" + "\n".join(verdict(table, floor["mAP"], ctx.seeds)),
    ]
    write_results(ctx, table, {"untrained": floor, "setting": asdict(s), "claims": claims(table, ctx.seeds)})
    return write_report(ctx, f"Detection with ResNet and plain backbones on canvases of {ctx.data_label}",
                        "Sec. 4.3 and Appendix A", sections, [*backbones.values(), *detectors])  # fmt: skip
