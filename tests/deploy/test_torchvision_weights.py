"""torchvision's ImageNet weights by name, offline: a randomly initialised torchvision ResNet's state dict is written
to the file torchvision's own weights API says it caches (under a temporary TORCH_HOME), then read back by name
through every way in: create_model, load_trained, `reslab predict/export/eval` and `reslab train --init`."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from reslab import create_model
from reslab.cli import main
from reslab.deploy.predict import Predictor
from reslab.errors import ModelError
from reslab.models.trained import load_trained
from reslab.weights.torchvision import parse
from tests.models.test_torchvision_compat import randomize_bn


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """``cache(name) -> torchvision model``: its state dict written where torchvision's API caches ``name``."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def write(name: str) -> torch.nn.Module:
        tv = parse(name)
        torch.manual_seed(0)
        model = getattr(torchvision.models, tv.model)(weights=None).eval()
        randomize_bn(model, torch.Generator().manual_seed(0))
        assert tv.file == Path(torch.hub.get_dir()) / "checkpoints" / Path(tv.weights.url).name
        tv.file.parent.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), tv.file)
        return model

    return write


def _photo(path: Path, size: tuple[int, int] = (300, 400)) -> Path:
    h, w = size
    x = np.zeros((h, w, 3))
    x[..., 0] = np.linspace(0, 255, w)[None, :]
    x[..., 1] = np.linspace(0, 255, h)[:, None]
    x[..., 2] = 128
    Image.fromarray(x.astype("uint8")).save(path, quality=95)
    return path


@pytest.mark.parametrize("spelling", ["torchvision:resnet50", "torchvision:resnet50.IMAGENET1K_V2",
                                      "torchvision:ResNet50_Weights.IMAGENET1K_V2", "torchvision:IMAGENET1K_V2",
                                      "torchvision:DEFAULT"])  # fmt: skip
def test_every_spelling_names_the_same_weights(spelling):
    assert parse(spelling, "resnet50").ref == "torchvision:resnet50.IMAGENET1K_V2"


def test_reslab_computes_torchvisions_function_with_its_classes_and_view(cache):
    theirs = cache("torchvision:resnet50.IMAGENET1K_V2")
    ours = create_model("resnet50", weights="torchvision:IMAGENET1K_V2").eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max() <= 1e-5  # the v1.5 bottleneck: stride on the 3x3
    loaded = load_trained("torchvision:resnet50.IMAGENET1K_V2")
    meta = torchvision.models.ResNet50_Weights.IMAGENET1K_V2.meta
    assert loaded.classes == meta["categories"] and len(loaded.classes) == 1000
    assert loaded.preprocessing.view["test_short"] == 232 and loaded.preprocessing.view["crop"] == 224
    assert loaded.preprocessing.view["normalization"] == "channel"
    with pytest.raises(ModelError, match="stride_in_1x1=True"):
        create_model("resnet50", weights="torchvision:IMAGENET1K_V2", stride_in_1x1=True)


def test_predict_sees_what_torchvisions_transforms_give(cache, tmp_path):
    cache("torchvision:resnet18.IMAGENET1K_V1")
    loaded = load_trained("torchvision:resnet18")
    assert loaded.preprocessing.view["test_short"] == 256  # V1's resize
    predictor = Predictor(loaded, precision="fp32", device="cpu")
    photo = _photo(tmp_path / "photo.jpg")
    ours = predictor.normalizer(predictor.view(photo.read_bytes())[None].to(predictor.device))
    with Image.open(photo) as img:
        theirs = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.transforms()(img.convert("RGB"))
    assert ours.shape == theirs[None].shape
    assert (ours - theirs).abs().max() < 0.05  # decoder and resize rounding: about one grey level in std units


def test_predict_export_and_eval_by_name(cache, tmp_path, capsys):
    cache("torchvision:resnet18.IMAGENET1K_V1")
    photo = _photo(tmp_path / "photo.jpg")
    assert main(["predict", "torchvision:resnet18", str(photo), "--json", "--top-k", "2", "--device", "cpu"]) == 0
    line = json.loads(capsys.readouterr().out.splitlines()[0])
    names = set(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    assert len(line["top"]) == 2 and all(t["class"] in names for t in line["top"])
    out = tmp_path / "r18.safetensors"
    assert main(["export", "torchvision:resnet18", "--format", "safetensors", "--out", str(out)]) == 0
    again = load_trained(str(out))
    assert again.classes[0] == "tench" and again.preprocessing.view["test_short"] == 256
    capsys.readouterr()
    assert main(["eval", "torchvision:resnet18"]) == 2
    assert "pass --data" in capsys.readouterr().err
    assert main(["eval", str(out)]) == 2  # its export too: no run of it recorded its data (not cifar10's defaults)
    assert "records no training data: pass --data" in capsys.readouterr().err


def test_eval_takes_imagenets_folders_in_torchvisions_class_order_and_no_other_names():
    from types import SimpleNamespace

    from reslab.engine.evaluate import _check_classes
    from reslab.errors import DataError

    categories = list(torchvision.models.ResNet18_Weights.IMAGENET1K_V1.meta["categories"])
    loaded = SimpleNamespace(classes=categories, source="torchvision:resnet18",
                             preprocessing=SimpleNamespace(source="torchvision:resnet18.IMAGENET1K_V1"))  # fmt: skip
    for fine in (categories, [f"n{i:08d}" for i in range(1000)], [str(i) for i in range(1000)]):
        _check_classes(fine, loaded)
    for wrong in (sorted(categories), [f"c{i}" for i in range(1000)], [f"n{i:08d}" for i in range(999)]):
        with pytest.raises(DataError):
            _check_classes(wrong, loaded)


def test_missing_and_damaged_cache_files_are_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    photo = _photo(tmp_path / "photo.jpg", (40, 40))
    assert main(["predict", "torchvision:resnet34", str(photo)]) == 2
    err = capsys.readouterr().err.strip()
    expected = parse("torchvision:resnet34").file
    assert len(err.splitlines()) == 1 and expected.name in err and str(expected.parent) in err
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"PK\x03\x04 truncated")
    assert main(["predict", "torchvision:resnet34", str(photo)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "damaged" in err
    for bad, what in [("torchvision:resnet77", "resnet18, resnet34"), ("torchvision:resnet50.V9", "IMAGENET1K_V1"),
                      ("torchvision:Wide_ResNet50_2_Weights.IMAGENET1K_V1", "does not build")]:  # fmt: skip
        assert main(["predict", bad, str(photo)]) == 2
        assert what in capsys.readouterr().err


def test_torchvisions_own_file_by_path_is_refused_with_the_name_that_loads_it(tmp_path, monkeypatch, capsys):
    """Its keys fit reslab's network, whose bottleneck strides the first 1x1, not the 3x3 as torchvision's: loaded as a
    path it would compute another function without a word, so the path is refused with the torchvision: name."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    path = tmp_path / parse("torchvision:resnet50.IMAGENET1K_V1").file.name
    torch.save(torchvision.models.resnet50().state_dict(), path)
    with pytest.raises(ModelError, match=r"torchvision's resnet50 IMAGENET1K_V1 file: load it as torchvision:resnet50"):
        create_model("resnet50", weights=path)
    assert main(["predict", str(path), str(_photo(tmp_path / "photo.jpg", (40, 40)))]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(tmp_path / "home") in err
    renamed = tmp_path / "mine.pth"
    path.rename(renamed)
    create_model("resnet50", weights=renamed)  # any other name: a plain state dict, as the user says


def test_fine_tuning_from_torchvision_weights(cache, large_data, tmp_path, capsys):
    cache("torchvision:resnet18.IMAGENET1K_V1")
    data = large_data("folder", n_train=8, n_val=3)
    out = tmp_path / "run"
    args = [
        "train",
        "--init",
        "torchvision:resnet18",
        "--data",
        str(data),
        "--recipe",
        "imagenet-torchvision",
        "--image-size",
        "32",
        "--iterations",
        "2",
        "--epochs",
        "none",
        "--batch-size",
        "4",
        "--workers",
        "0",
        "--freeze",
        "stem,layer1",
        "--head-lr-scale",
        "10",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--quiet",
    ]
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["model"] == "resnet18" and config["model_kwargs"] == {"stride_in_1x1": False}  # from --init
    assert config["init"] == "torchvision:resnet18.IMAGENET1K_V1"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["preprocess"]["large"]["normalization"] == "channel"
    assert state["preprocess"]["large"]["test_short"] == round(256 * 32 / 224)  # V1's view, at the run's crop
    start = torchvision.models.resnet18().state_dict()  # not the weights: layer1 must equal the cached file's
    cached = torch.load(parse("torchvision:resnet18").file, weights_only=True)
    assert torch.equal(state["model"]["layer1.0.conv1.weight"], cached["layer1.0.conv1.weight"])
    assert not torch.equal(cached["layer1.0.conv1.weight"], start["layer1.0.conv1.weight"])
    capsys.readouterr()
    refused = ["train", "--init", "torchvision:resnet18", "--data", "synthetic:64", "--out", str(tmp_path / "x")]
    assert main(refused) == 2
    assert "--recipe imagenet-torchvision" in capsys.readouterr().err
