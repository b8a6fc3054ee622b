"""Inference speed on this CPU: the usual eager fp32 loop against reslab's predict path and onnxruntime, one run.

    python benchmarks/inference.py --cifar-model resnet56 --data ../shared/data/cifar10-jpeg.tar \
        [--batches 1,32] [--seconds 5] [--out docs/results/benchmarks/inference]

Models: ResNet-50 at 224x224 (random weights: speed does not depend on them) and a trained CIFAR model at 32x32
(``--cifar-model``: a shipped name, a checkpoint, a run folder or a reslab safetensors file). For each, at each
batch size, images/s of
  * reference: ``model.eval()`` in fp32, contiguous NCHW, ``torch.no_grad`` (what a torchvision tutorial does);
  * reslab: `reslab.deploy.predict.Predictor.probabilities` on uint8 views, the path ``reslab predict`` runs
    (normalisation, channels_last, bf16 autocast where the CPU has native bf16, ``inference_mode``);
  * onnxruntime: the file ``reslab export --format onnx`` writes, on the CPU execution provider (fp32);
and each one's ratio to the reference. Then, on the CIFAR data's test split, the share of top-1 predictions on
which reslab's path (bf16 where native) agrees with fp32. Rates are the best of ``--rounds`` alternating
measurements, each timed for ``--seconds`` after a warm-up.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from results import Results  # benchmarks/ is on the path when run as a script

from reslab import create_model
from reslab.data import load_dataset
from reslab.data.loader import channel_stats
from reslab.data.views import preset
from reslab.deploy.export import export
from reslab.deploy.predict import Predictor
from reslab.models.trained import load_trained
from reslab.weights.trained import Arch, Preprocessing, TrainedModel


def timed(fn: Callable[[], object], batch: int, seconds: float) -> float:
    for _ in range(3):
        fn()
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        fn()
        n += batch
    return n / (time.perf_counter() - t)


def imagenet_loaded() -> TrainedModel:
    """ResNet-50 with random weights, as a `TrainedModel` with torchvision's preprocessing (224 crop)."""
    mean, std = channel_stats()
    pre = Preprocessing(mean, std, asdict(preset("imagenet-torchvision")))
    return TrainedModel(
        create_model("resnet50").eval(),
        Arch("resnet50"),
        [str(i) for i in range(1000)],
        pre,
        0,
        "resnet50 (random weights)",
    )


def rates(loaded: TrainedModel, batch: int, seconds: float, onnx_file: Path) -> dict[str, float]:
    import onnxruntime as ort

    predictor = Predictor(loaded, device="cpu", batch_size=batch)
    views = torch.randint(0, 256, (batch, 3, predictor.size, predictor.size), dtype=torch.uint8)
    x = views.float().div(255)
    reference = load_trained_copy(loaded)

    def ref() -> None:
        with torch.no_grad():
            reference(x)

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    return {"reference": timed(ref, batch, seconds), "reslab": timed(lambda: predictor.probabilities(views), batch,
            seconds), "onnxruntime": timed(lambda: session.run(None, feed), batch, seconds)}  # fmt: skip


def load_trained_copy(loaded: TrainedModel) -> torch.nn.Module:
    return copy.deepcopy(loaded.model).float().to(memory_format=torch.contiguous_format).eval()


def agreement(loaded: TrainedModel, data: str) -> tuple[float, int, str]:
    """Share of test images whose top-1 class is the same in reslab's path and in fp32."""
    ds = load_dataset(data)
    fast = Predictor(loaded, device="cpu", batch_size=500)
    exact = Predictor(loaded, device="cpu", batch_size=500, precision="fp32")
    same = 0
    for lo in range(0, len(ds.test_images), 500):
        views = ds.test_images[lo : lo + 500]
        same += int((fast.probabilities(views).argmax(1) == exact.probabilities(views).argmax(1)).sum())
    return same / len(ds.test_images), len(ds.test_images), fast.precision


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cifar-model", default="resnet56", help="shipped name, checkpoint, run folder or safetensors")
    p.add_argument("--data", required=True, help="the CIFAR data the model was trained on (for the agreement)")
    p.add_argument("--batches", default="1,32")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--out", default=None)
    a = p.parse_args()
    res = Results("inference", a.out)
    res.print(f"machine: {res.info['machine']}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    models = {"ResNet-50 (224)": imagenet_loaded(), f"{a.cifar_model} (32)": load_trained(a.cifar_model)}
    with tempfile.TemporaryDirectory() as tmp:
        for label, loaded in models.items():
            onnx_file = export(loaded, "onnx", Path(tmp) / "model.onnx")
            for batch in map(int, a.batches.split(",")):
                best: dict[str, float] = {}
                for _ in range(a.rounds):
                    for k, v in rates(loaded, batch, a.seconds, onnx_file).items():
                        best[k] = max(best.get(k, 0.0), v)
                ref = best["reference"]
                res.print(f"{label}, batch {batch}: " + ", ".join(f"{k} {v:.1f} img/s ({v / ref:.2f}x)"
                                                                  for k, v in best.items()))  # fmt: skip
                res.row({"model": label, "batch": batch, **{f"{k}_img_per_s": v for k, v in best.items()},
                         **{f"{k}_ratio": v / ref for k, v in best.items()}})  # fmt: skip
    share, n, precision = agreement(models[f"{a.cifar_model} (32)"], a.data)
    res.print(f"top-1 agreement of reslab's path ({precision}) with fp32 on the {n} test images: {share:.2%}")
    res.row({"agreement": share, "images": n, "precision": precision})
    res.save()


if __name__ == "__main__":
    main()
