"""Writing a trained model in a form other programs run (`reslab export`), checked before it is kept.

Three formats:

* ``onnx``: the network as an ONNX graph (input ``images``, float32 [N, 3, H, W], any N; output ``logits``
  [N, classes]), with the class names and the preprocessing in the model's ``metadata_props`` (`onnx_metadata`), for
  onnxruntime, TensorRT and the like. Needs the ``export`` extra (onnx, onnxruntime, onnxscript).
* ``safetensors``: the weights, with the configuration, classes and preprocessing as metadata
  (`reslab.weights.tensorfile`); `reslab.models.trained.load_trained` reads it back without the run folder.
* ``pt2``: a ``torch.export`` program (any batch size): PyTorch without reslab, ``torch.export.load(f).module()``.

Every export is checked before it is kept: the file as written is read back and run on a random batch, and its
outputs are compared with the PyTorch model's (onnxruntime within 1e-4, pt2 within 1e-5, both per unit of the
largest |logit| when that exceeds 1; safetensors bit for bit). The ONNX and pt2 files are traced with one batch size
and checked with another, which proves the batch dimension is free. The file is written under a temporary name
beside ``out`` and renamed only after the check passed, so a failed or interrupted export leaves nothing behind and an
earlier ``out`` intact.

Exports run on the CPU in fp32 and in eval mode (BN uses its running statistics), whatever device the model is on:
the files do not depend on the machine that wrote them.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reslab.choices import EXPORT_FORMATS
from reslab.errors import ReslabError
from reslab.files import atomic_path
from reslab.models.registry import INPUT_SIDE, family_and_depth
from reslab.models.trained import load_tensorfile
from reslab.weights.tensorfile import write_tensorfile
from reslab.weights.trained import TrainedModel

FORMATS = EXPORT_FORMATS
INPUT, OUTPUT = "images", "logits"  # the ONNX graph's input and output names
EXTRA = 'pip install "reslab[export]"'
# The largest difference a check accepts, per logit unit: logits of a trained network reach tens, and fp32 kernels
# that sum in another order (onnxruntime's) differ in the last bits of each, so the bound scales with the largest
# |logit| once that exceeds 1. pt2 runs PyTorch's own kernels: it is expected to agree exactly, 1e-5 is slack.
TOLERANCE = {"onnx": 1e-4, "pt2": 1e-5, "safetensors": 0.0}
TRACE_BATCH, CHECK_BATCH = 2, 3  # traced with one batch size, checked with another: the batch dimension is free


@dataclass(frozen=True)
class Exported:
    """What `export_model` wrote and how its check went."""

    path: Path
    format: str
    size: int  # bytes
    max_abs_diff: float | None  # the check's largest |exported - PyTorch| logit; None: not checked
    detail: str = ""  # e.g. "opset 20, torch.export exporter"

    def describe(self) -> str:
        """One line for the user: the file, its size, and the check's result."""
        what = f"{self.format}{', ' + self.detail if self.detail else ''}"
        if self.max_abs_diff is None:
            check = "not checked"
        else:
            by = {"onnx": "onnxruntime", "pt2": "torch.export.load", "safetensors": "reslab.load_trained"}
            check = f"checked with {by[self.format]}: max abs diff from PyTorch {self.max_abs_diff:.2g}"
        return f"wrote {self.path} ({_size(self.size)}, {what}); {check}"


def input_size(loaded: TrainedModel) -> tuple[int, int]:
    """The (height, width) the model was trained on (its preprocessing says), else the model family's usual size
    (32 for CIFAR networks, 224 for ImageNet ones)."""
    size = loaded.preprocessing.input_size
    if size is not None:
        return size
    family, _ = family_and_depth(loaded.arch.name, **loaded.arch.kwargs)  # a named model or a generic builder
    return INPUT_SIDE[family], INPUT_SIDE[family]


def default_out(loaded: TrainedModel, fmt: str) -> Path:
    """``<model name>.<format>`` in the current folder."""
    return Path(f"{loaded.arch.name}.{fmt}")


def onnx_metadata(loaded: TrainedModel) -> dict[str, str]:
    """What a deployer needs beside the graph, as ONNX ``metadata_props`` (strings; JSON where structured).

    ``classes``: the class names in logit order. ``input_size``: [3, H, W]. ``preprocessing``: how an image becomes
    the input, in words; ``normalization`` ("pixel": a per-pixel mean image, the paper's; "channel": per-channel mean
    and std), ``mean`` (nested lists, shape ``mean_shape``, RGB in [0, 1] units), ``channel_mean`` (its per-channel
    average, what a different-sized image subtracts), ``std`` (or null) and ``resize`` (or null).
    """
    h, w = input_size(loaded)
    pre = loaded.preprocessing
    large = pre.view or {}
    std = pre.std
    normalization = large.get("normalization", "pixel")
    mean = pre.mean
    if large:
        resize = (f"shorter side to {large['test_short']} px, then the central {large['crop']}x{large['crop']} "
                  "crop")  # fmt: skip
    elif pre.image_size:
        resize = f"shorter side to {pre.image_size} px, then the central square"
    else:
        resize = None
    steps = "RGB pixels scaled to [0, 1], minus `mean`" + (", divided by `std`" if std is not None else "")
    meta = {
        "model": loaded.arch.name,
        "model_kwargs": json.dumps(loaded.arch.kwargs),
        "classes": json.dumps(loaded.classes),
        "input_size": json.dumps([3, h, w]),
        "input": f"{INPUT}: float32 [N, 3, {h}, {w}], any N; output {OUTPUT}: float32 [N, {len(loaded.classes)}]",
        "preprocessing": f"{steps}; resize: {resize or 'none (images of the input size as they are)'}",
        "normalization": normalization,
        "resize": json.dumps(resize),
        "mean_shape": json.dumps(list(mean.shape) if mean is not None else None),
        # 7 decimals: far below a pixel step (1/255), and a shorter JSON than float32's full digits.
        "mean": json.dumps(_rounded(mean)),
        "channel_mean": json.dumps(_rounded(mean.reshape(3, -1).mean(1)) if mean is not None else None),
        "std": json.dumps(_rounded(std.reshape(-1)) if isinstance(std, torch.Tensor) else None),
        "iteration": str(loaded.iteration),
        "source": str(loaded.source),
        "reslab_version": _version(),
    }
    return meta


def export(loaded: TrainedModel, fmt: str, out: str | Path, *, check: bool = True) -> Path:
    """Write ``loaded`` as ``fmt`` (one of `FORMATS`) to ``out`` and, with ``check``, verify it (module docstring);
    a failure is a one-line `ReslabError` and leaves no file. Returns the path written."""
    return export_model(loaded, fmt, out, check=check).path


def export_model(loaded: TrainedModel, fmt: str, out: str | Path, *, check: bool = True) -> Exported:
    """`export`, returning what was written, its size and the check's largest difference (`Exported`)."""
    if fmt not in FORMATS:
        raise ReslabError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if fmt == "onnx":
        require_onnx()  # before any work: a missing extra should not cost an export first
    folder = str(out).endswith(("/", os.sep))  # `--out exports/`: a folder, made if missing (Path drops the slash)
    out = Path(out)
    if folder or out.is_dir():
        out = out / default_out(loaded, fmt).name
    with contextlib.suppress(OSError):
        if out.resolve() == Path(loaded.source).resolve():
            raise ReslabError(f"--out {out} is the model being exported: choose another file")
    if out.suffix != f".{fmt}":  # reslab (load_trained, predict, --init) and other tools tell a format by its suffix
        raise ReslabError(f"--out {out}: a {fmt} file's name ends in .{fmt}")
    model = _cpu_fp32(loaded.model)
    h, w = input_size(loaded)
    gen = torch.Generator().manual_seed(0)
    example = torch.randn(TRACE_BATCH, 3, h, w, generator=gen)
    probe = torch.randn(CHECK_BATCH, 3, h, w, generator=gen)
    writers: dict[str, Callable[..., tuple[float | None, str]]] = {
        "onnx": _write_onnx, "safetensors": _write_safetensors, "pt2": _write_pt2}  # fmt: skip
    with _eval_mode(model), atomic_path(out) as tmp:
        diff, detail = writers[fmt](loaded, model, example, probe if check else None, tmp)
        size = tmp.stat().st_size
    return Exported(out, fmt, size, diff, detail)


# -- the formats ---------------------------------------------------------------------------------------------------
def _write_onnx(loaded: TrainedModel, model: nn.Module, example: torch.Tensor, probe: torch.Tensor | None,
                tmp: Path) -> tuple[float | None, str]:  # fmt: skip
    import onnx

    proto, exporter = _onnx_proto(model, example, loaded.arch.name)
    onnx.helper.set_model_props(proto, onnx_metadata(loaded))
    proto.doc_string = (f"reslab {loaded.arch.name}: {INPUT} float32 [N, 3, H, W] -> {OUTPUT} [N, "
                        f"{len(loaded.classes)}]; see metadata_props for the classes and preprocessing")  # fmt: skip
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    detail = f"opset {opset}, {exporter} exporter"
    if probe is not None:
        try:
            onnx.checker.check_model(proto, full_check=True)
        except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
            raise ReslabError(f"the ONNX export of {loaded.arch.name} is not a valid ONNX model: "
                              f"{_first_line(e)}") from e  # fmt: skip
    onnx.save_model(proto, str(tmp))
    if probe is None:
        return None, detail
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only: its notes on the graph are not the user's business
    try:
        session = ort.InferenceSession(str(tmp), options, providers=["CPUExecutionProvider"])
        got = session.run([OUTPUT], {INPUT: probe.numpy()})[0]
    except Exception as e:  # onnxruntime's own exception types (Fail, InvalidGraph, ...) share no public base
        raise ReslabError(f"onnxruntime cannot run the ONNX export of {loaded.arch.name}: "
                          f"{_first_line(e)}") from e  # fmt: skip
    return _compare("onnx", "onnxruntime", model, probe, torch.as_tensor(got)), detail


def _onnx_proto(model: nn.Module, example: torch.Tensor, name: str) -> tuple[Any, str]:
    """The ONNX graph of ``model`` with a free batch dimension, and which exporter made it.

    torch 2.14's default exporter (``dynamo=True``: torch.export, then onnxscript) handles every reslab network,
    option-A zero-padding shortcuts, highway gates and pre-activation units included, at its default opset (20);
    checked on ResNet-8 (CIFAR) and ResNet-18 (ImageNet). The TorchScript exporter (``dynamo=False``) stays as a
    fallback for a model it cannot capture.
    """
    batch = torch.export.Dim("batch", min=1)  # one image upwards (an empty batch is no use to a deployer)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's notes on the capture: the check below is what counts
            program = torch.onnx.export(model, (example,), None, input_names=[INPUT], output_names=[OUTPUT],
                                        dynamic_shapes=({0: batch},), dynamo=True, external_data=False,
                                        verbose=False)  # fmt: skip
            return program.model_proto, "torch.export"
    except Exception as e:  # the exporter raises many types; the fallback decides
        first = e
    import onnx

    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its deprecation notice: the fallback is deliberate
            torch.onnx.export(model, (example,), buf, input_names=[INPUT], output_names=[OUTPUT],
                              dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, dynamo=False)  # fmt: skip
    except Exception as e:
        raise ReslabError(f"cannot export {name} to ONNX: torch.export exporter: {_first_line(first)}; TorchScript "
                          f"exporter: {_first_line(e)}") from e  # fmt: skip
    return onnx.load_from_string(buf.getvalue()), "TorchScript"


def _write_pt2(loaded: TrainedModel, model: nn.Module, example: torch.Tensor, probe: torch.Tensor | None,
               tmp: Path) -> tuple[float | None, str]:  # fmt: skip
    batch = torch.export.Dim("batch", min=1)
    try:
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    except Exception as e:  # a capture failure (torch._dynamo / torch.export error types vary by version)
        raise ReslabError(f"torch.export cannot capture {loaded.arch.name}: {_first_line(e)}") from e
    # Through a buffer: torch.export.save and load treat a path whose name does not end in .pt2 (the temporary
    # name, or a user's --out) as another kind of archive.
    buf = io.BytesIO()
    torch.export.save(program, buf)
    tmp.write_bytes(buf.getvalue())
    if probe is None:
        return None, "dynamic batch"
    with open(tmp, "rb") as f:
        again = torch.export.load(f).module()
    with torch.no_grad():
        got = again(probe)
    return _compare("pt2", "torch.export.load", model, probe, got), "dynamic batch"


def _write_safetensors(loaded: TrainedModel, model: nn.Module, example: torch.Tensor, probe: torch.Tensor | None,
                       tmp: Path) -> tuple[float | None, str]:  # fmt: skip
    write_tensorfile(loaded, tmp)
    if probe is None:
        return None, "weights + metadata"
    again = load_tensorfile(tmp).model.eval()
    with torch.no_grad():
        got = again(probe)
    return _compare("safetensors", "load_trained", model, probe, got), "weights + metadata"


# -- checking ------------------------------------------------------------------------------------------------------
def _compare(fmt: str, by: str, model: nn.Module, probe: torch.Tensor, got: torch.Tensor) -> float:
    """The largest |got - model(probe)|; above the format's tolerance a one-line `ReslabError`."""
    with torch.no_grad():
        want = model(probe)
    if tuple(got.shape) != tuple(want.shape):
        raise ReslabError(f"{fmt} export check failed: {by} gives logits of shape {tuple(got.shape)} for a batch of "
                          f"{len(probe)}, PyTorch {tuple(want.shape)}")  # fmt: skip
    diff = (got.double() - want.double()).abs().max().item()
    bound = TOLERANCE[fmt] * max(1.0, want.abs().max().item())
    if not diff <= bound:  # `not <=`: a NaN fails too
        exact = "differ" if bound == 0 else f"differ by more than {bound:.2g}"
        raise ReslabError(f"{fmt} export check failed: {by}'s logits {exact} from PyTorch's (max abs diff "
                          f"{diff:.3g}); nothing was written")  # fmt: skip
    return diff


# -- helpers -------------------------------------------------------------------------------------------------------
def require_onnx() -> None:
    """Import the export extra's modules now, so that a missing one is a one-line error naming the extra."""
    for module in ("onnx", "onnxscript", "onnxruntime"):
        try:
            __import__(module)
        except ImportError as e:
            raise ReslabError(f"onnx export needs the export extra: {EXTRA} (cannot import {module})") from e


def _cpu_fp32(model: nn.Module) -> nn.Module:
    """``model`` itself if its tensors are fp32 on the CPU, else a copy that is (the caller's model stays put)."""
    tensors = [*model.parameters(), *model.buffers()]
    if all(t.device.type == "cpu" and (t.dtype == torch.float32 or not t.is_floating_point()) for t in tensors):
        return model
    return copy.deepcopy(model).to(device="cpu", dtype=torch.float32)


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the block (BN with running statistics, what a deployed model computes), then as it was."""
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def _rounded(t: torch.Tensor | None) -> Any:
    return None if t is None else torch.round(t.detach().cpu().double(), decimals=7).tolist()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:200]}" if text else type(e).__name__


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    return f"{n / 1024:.1f} KiB" if n < 2**20 else f"{n / 2**20:.1f} MiB"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reslab")
    except PackageNotFoundError:
        return "unknown"
