"""`reslab export`: each format written through the CLI, read back by its own runtime and compared with the
checkpoint's model; a failed check, a missing extra or a bad argument is one line and leaves no file."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from torch import nn

from reslab.cli import main
from reslab.data.views import LargeAugment
from reslab.deploy.export import export, export_model, input_size, onnx_metadata
from reslab.errors import ReslabError
from reslab.models.trained import load_trained
from reslab.weights.trained import Arch, Preprocessing, TrainedModel


@pytest.fixture(scope="module")
def run(small_run) -> Path:
    """The export's source: conftest's ResNet-8 trained for 4 steps on synthetic images (10 classes)."""
    return small_run


@pytest.fixture(scope="module")
def model(run) -> TrainedModel:
    return load_trained(run)


@pytest.fixture(scope="module")
def onnx_file(run, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 0
    return out


def logits(model: TrainedModel, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.model(x)


def batch(n: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_onnx_runs_in_onnxruntime_at_any_batch_size(onnx_file, model):
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["images"]
    assert [o.name for o in session.get_outputs()] == ["logits"]
    for n in (1, 5):  # it was traced with 2 and checked with 3
        x = batch(n)
        (got,) = session.run(["logits"], {"images": x.numpy()})
        assert got.shape == (n, 10)
        assert (torch.from_numpy(got) - logits(model, x)).abs().max().item() < 1e-4


def test_onnx_metadata_holds_classes_and_preprocessing(onnx_file, model):
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(onnx.load(str(onnx_file)), full_check=True)
    meta = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"]).get_modelmeta()
    props = meta.custom_metadata_map
    assert json.loads(props["classes"]) == model.classes
    assert props["model"] == "cifar_resnet"
    assert json.loads(props["model_kwargs"]) == {"depth": 8}
    assert json.loads(props["input_size"]) == [3, 32, 32]
    assert props["normalization"] == "pixel" and json.loads(props["std"]) is None
    assert json.loads(props["mean_shape"]) == [3, 32, 32]
    mean = torch.tensor(json.loads(props["mean"]))
    assert (mean - model.preprocessing.mean).abs().max().item() < 1e-6
    assert len(json.loads(props["channel_mean"])) == 3


def test_pt2_round_trip_prints_one_line(run, model, tmp_path, capsys):
    out = tmp_path / "model.pt2"
    assert main(["export", str(run), "--format", "pt2", "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and line.startswith(f"wrote {out} (") and "max abs diff" in line
    program = torch.export.load(out).module()
    for n in (1, 5):
        x = batch(n)
        with torch.no_grad():
            got = program(x)
        assert (got - logits(model, x)).abs().max().item() <= 1e-5


def test_safetensors_round_trip_is_exact(run, model, tmp_path, capsys):
    out = tmp_path / "model.safetensors"
    assert main(["export", str(run), "--format", "safetensors", "--out", str(out)]) == 0
    assert "max abs diff from PyTorch 0" in capsys.readouterr().out
    again = load_trained(out)
    assert again.classes == model.classes and torch.equal(again.preprocessing.mean, model.preprocessing.mean)
    x = batch(4)
    with torch.no_grad():
        assert torch.equal(again.model(x), logits(model, x))


def test_out_defaults_to_the_model_name_in_the_current_folder(run, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["export", str(run), "--format", "safetensors"]) == 0
    assert [p.name for p in tmp_path.iterdir()] == ["cifar_resnet.safetensors"]
    assert main(["export", str(run), "--format", "safetensors", "--out", "exports/"]) == 0  # a folder: made
    assert [p.name for p in (tmp_path / "exports").iterdir()] == ["cifar_resnet.safetensors"]


def test_failed_onnx_check_is_one_line_and_leaves_no_file(model, tmp_path, monkeypatch):
    import onnxruntime as ort

    run_session = ort.InferenceSession.run

    def off_by_a_little(self, *args, **kwargs):
        return [y + 1e-3 for y in run_session(self, *args, **kwargs)]

    monkeypatch.setattr(ort.InferenceSession, "run", off_by_a_little)
    out = tmp_path / "model.onnx"
    out.write_text("an earlier export")
    with pytest.raises(ReslabError, match="onnx export check failed") as e:
        export(model, "onnx", out)
    assert "\n" not in str(e.value)
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temporary file left
    assert out.read_text() == "an earlier export"  # and the earlier file intact


def test_onnx_falls_back_to_the_torchscript_exporter(model, tmp_path, monkeypatch):
    real_export = torch.onnx.export

    def without_dynamo(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("torch.export cannot capture this model")
        return real_export(*args, dynamo=False, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", without_dynamo)

    result = export_model(model, "onnx", tmp_path / "model.onnx")
    assert "TorchScript exporter" in result.detail and result.max_abs_diff is not None
    assert result.max_abs_diff < 1e-4 and result.path.is_file()


def test_missing_export_extra_names_it(run, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` now raises ImportError
    out = tmp_path / "model.onnx"
    assert main(["export", str(run), "--format", "onnx", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "reslab[export]"' in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/no-such-run"], "no such file, run folder or model name"),
        (["resnet1202"], "ships no weights for 'resnet1202'"),
        (["{run}", "--out", "{tmp}/a-file/model.pt2"], "cannot write"),  # the out folder is a file
        (["{run}", "--out", "{run}/checkpoint.pt"], "is the model being exported"),
        (["{run}", "--out", "{tmp}/model.safetensors"], "a pt2 file's name ends in .pt2"),  # read back as another
    ],
)
def test_bad_input_is_one_line(run, tmp_path, capsys, args, message):
    (tmp_path / "a-file").write_text("")
    argv = ["export", *(a.format(tmp=tmp_path, run=run) for a in args), "--format", "pt2"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("reslab: error: ") and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"]


def test_unknown_format_is_refused_by_the_parser(run, capsys):
    with pytest.raises(SystemExit) as e:
        main(["export", str(run), "--format", "tflite"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid choice: 'tflite'" in err


def test_input_size_and_metadata_of_a_large_image_run():
    aug = LargeAugment.for_crop(48, style="rrc", lighting=0.0, normalization="channel")
    std = torch.tensor([0.229, 0.224, 0.225]).reshape(3, 1, 1)
    loaded = TrainedModel(nn.Identity(), Arch("resnet18"), ["a", "b"],
                          Preprocessing(torch.full((3, 1, 1), 0.5), std, asdict(aug)), 0, Path("run"))  # fmt: skip
    assert input_size(loaded) == (48, 48)
    meta = onnx_metadata(loaded)
    assert json.loads(meta["input_size"]) == [3, 48, 48]
    assert meta["normalization"] == "channel"
    assert json.loads(meta["std"]) == pytest.approx([0.229, 0.224, 0.225])
    assert "55 px" in json.loads(meta["resize"]) and "divided by `std`" in meta["preprocessing"]


@pytest.mark.parametrize(("name", "size"), [("resnet18", (224, 224)), ("resnet20", (32, 32)),
                                            ("cifar_resnet", (32, 32))])  # fmt: skip
def test_input_size_without_a_mean_image_follows_the_family(name, size):
    loaded = TrainedModel(nn.Identity(), Arch(name), ["a"], Preprocessing(None), 0, Path("x"))
    assert input_size(loaded) == size
