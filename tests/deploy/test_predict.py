"""`reslab predict` and loading trained models for it: the model's own preprocessing, files that cannot be read,
the output formats, and every way of naming a model (checkpoint, run folder, safetensors, shipped name)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reslab import create_model
from reslab.cli import main
from reslab.data import load_dataset
from reslab.data.batches import normalize
from reslab.data.loader import Normalizer
from reslab.data.views import LargeAugment, center_view
from reslab.deploy.predict import Predictor, inference_model
from reslab.errors import ModelError, ReslabError
from reslab.models.trained import load_trained
from reslab.weights.shipped import manifest
from reslab.weights.tensorfile import write_tensorfile


def _write_test_images(folder: Path, n: int = 12) -> tuple[list[Path], torch.Tensor]:
    """The first ``n`` synthetic test images as PNG files (lossless: the pixels the model was evaluated on)."""
    ds = load_dataset("synthetic:256")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"img{i:02d}.png"
        Image.fromarray(ds.test_images[i].permute(1, 2, 0).numpy()).save(path)
        paths.append(path)
    return paths, ds.test_images[:n]


def _predicted(stdout: str) -> dict[str, str]:
    """path -> top-1 class from predict's text lines."""
    return {line.split("\t")[0]: line.split("\t")[1].rsplit(" ", 1)[0] for line in stdout.strip().splitlines()}


def test_predict_applies_the_training_preprocessing(small_run, tmp_path, capsys):
    paths, images = _write_test_images(tmp_path / "imgs")
    loaded = load_trained(small_run)
    with torch.no_grad():
        expected = loaded.model(normalize(images, loaded.preprocessing.mean)).argmax(1)
    assert main(["predict", str(small_run), str(tmp_path / "imgs"), "--precision", "fp32", "--device", "cpu"]) == 0
    got = _predicted(capsys.readouterr().out)
    assert got == {str(p): loaded.classes[i] for p, i in zip(paths, expected.tolist(), strict=True)}


def test_predict_on_large_images_uses_the_centre_view_of_eval(large_run):
    run, data = large_run
    files = sorted((data / "val").rglob("*.*"))[:5]
    loaded = load_trained(run)
    aug = LargeAugment(**loaded.preprocessing.view)
    views = torch.stack([center_view(f.read_bytes(), aug) for f in files])
    with torch.no_grad():
        x = Normalizer(loaded.preprocessing.mean, loaded.preprocessing.std, torch.device("cpu"))(views)
        expected = loaded.model(x).softmax(1)
    preds = list(Predictor(loaded, device="cpu", precision="fp32", batch_size=2).predict(files, top_k=3))
    for pred, p in zip(preds, expected, strict=True):
        assert pred.top[0][0] == loaded.classes[int(p.argmax())]
        assert pred.top[0][1] == pytest.approx(float(p.max()), abs=1e-5)


@pytest.mark.parametrize("name", ["resnet20", "plain20", "resnet18"])
def test_the_inference_copy_folds_bn_and_computes_the_same_function(name):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).eval()
    for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # statistics that are not 0/1
        bn.running_mean.uniform_(-0.5, 0.5), bn.running_var.uniform_(0.5, 2.0), bn.weight.data.uniform_(0.5, 1.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = model(x)
        fast = inference_model(model, torch.device("cpu"), "fp32")
        got = fast(x.contiguous(memory_format=torch.channels_last))
        half = inference_model(model, torch.device("cpu"), "bf16")
        bf16 = half(x.to(torch.bfloat16)).float()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    scale = float(expected.abs().max())
    assert float((got - expected).abs().max()) < 1e-4 * scale
    assert float((bf16 - expected).abs().max()) < 0.1 * scale  # bf16 keeps 8 bits of mantissa
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # the original is left alone


def test_unreadable_files_are_reported_and_skipped(small_run, tmp_path, capsys):
    _write_test_images(tmp_path / "imgs", n=3)
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (tmp_path / "imgs" / "notes.txt").write_text("not an image, not even looked at")
    assert main(["predict", str(small_run), str(tmp_path / "imgs"), "--json", "--top-k", "2"]) == 0
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.strip().splitlines()]
    assert len(records) == 3 and all(len(r["top"]) == 2 for r in records)
    assert all(0 <= t["probability"] <= 1 for r in records for t in r["top"])
    assert err.count("\n") == 1 and "skipped" in err and "broken.jpg" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["predict", "RUN", "/no/such/image.jpg"], "no such file or folder: /no/such/image.jpg"),
        (["predict", "/no/such/run", "IMGS"], "no such file, run folder or model name: /no/such/run"),
        (["predict", "resnet1202", "IMGS"], "reslab ships no weights for 'resnet1202'"),
        (["predict", "RUN", "EMPTY"], "no image files found"),
        (["predict", "RUN", "BAD"], "no image could be classified (1 skipped)"),
        (["predict", "RUN", "IMGS", "--top-k", "0"], "must be a positive integer"),
    ],
)
def test_bad_input_is_one_line(small_run, tmp_path, capsys, args, message):
    _write_test_images(tmp_path / "imgs", n=1)
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"garbage")
    where = {"RUN": str(small_run), "IMGS": str(tmp_path / "imgs"), "EMPTY": str(tmp_path / "empty"),
             "BAD": str(tmp_path / "bad")}  # fmt: skip
    assert _exit_code([where.get(a, a) for a in args]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()  # the error, after one "skipped" line per unreadable file
    assert message in lines[-1] and all(line.startswith("reslab") for line in lines) and "Traceback" not in err


def _exit_code(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as e:  # argparse's own errors
        return int(e.code)


def test_safetensors_carry_everything_predict_needs(small_run, tmp_path):
    loaded = load_trained(small_run)
    path = write_tensorfile(loaded, tmp_path / "m.safetensors")
    again = load_trained(path)
    assert again.classes == loaded.classes and torch.equal(again.preprocessing.mean, loaded.preprocessing.mean)
    assert again.arch == loaded.arch and again.config["seed"] == loaded.config["seed"]
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again.model(x), loaded.model(x), rtol=0, atol=0)
    # the same file is also plain weights for create_model
    model = create_model("cifar_resnet", depth=8, weights=path).eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), loaded.model(x), rtol=0, atol=0)


def test_weights_from_torch_save_with_a_module_prefix(small_run, tmp_path):
    loaded = load_trained(small_run)
    state = {f"module.{k}": v for k, v in loaded.model.state_dict().items()}
    torch.save(state, tmp_path / "ddp.pt")
    model = create_model("cifar_resnet", depth=8, weights=tmp_path / "ddp.pt").eval()  # num_classes from the file
    assert model.fc.out_features == len(loaded.classes)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), loaded.model(x), rtol=0, atol=0)
    with pytest.raises(ModelError, match="do not fit"):
        create_model("resnet20", weights=tmp_path / "ddp.pt")


def test_foreign_files_are_one_line_errors(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "plain.safetensors")
    with pytest.raises(ModelError, match=r"without reslab's metadata .*create_model\(NAME, weights=FILE\)"):
        load_trained(tmp_path / "plain.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"junk")
    with pytest.raises(ModelError, match="not a safetensors file"):
        load_trained(tmp_path / "junk.safetensors")
    torch.save({"w": torch.zeros(2)}, tmp_path / "state.pt")
    with pytest.raises(ReslabError, match="not a reslab checkpoint"):
        load_trained(tmp_path / "state.pt")
    with pytest.raises(ModelError, match="pretrained=True or weights=PATH, not both"):
        create_model("resnet20", pretrained=True, weights=tmp_path / "state.pt")


def test_torch_hub_loads_every_entry_from_a_local_checkout():
    root = Path(__file__).resolve().parents[2]
    model = torch.hub.load(str(root), "resnet20", source="local", num_classes=3)
    assert model.fc.out_features == 3
    with pytest.raises(ModelError, match="ships no weights for 'resnet1202'"):
        torch.hub.load(str(root), "resnet1202", source="local", pretrained=True)
    assert np.isfinite(model(torch.randn(1, 3, 32, 32)).detach().numpy()).all()


@pytest.fixture
def shipped(small_run, tmp_path, monkeypatch):
    """A weights folder holding small_run as the shipped weights of "cifar_resnet" (a generic builder name)."""
    import hashlib

    from reslab.weights import shipped as mod

    path = write_tensorfile(load_trained(small_run), tmp_path / "cifar_resnet.safetensors")
    entry = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "test_error": 12.5}
    (tmp_path / "manifest.json").write_text(json.dumps({"models": {"cifar_resnet": entry}}))
    monkeypatch.setattr(mod, "WEIGHTS", tmp_path)
    mod.manifest.cache_clear()
    yield path
    mod.manifest.cache_clear()


def test_shipped_weights_load_by_name_and_are_checked(shipped, small_run, tmp_path, capsys):
    expected = load_trained(small_run).model
    model = create_model("cifar_resnet", pretrained=True).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected(x), rtol=0, atol=0)
    _write_test_images(tmp_path / "imgs", n=2)
    assert main(["predict", "cifar_resnet", str(tmp_path / "imgs")]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 2
    with pytest.raises(ModelError, match="fix its architecture"):
        create_model("cifar_resnet", pretrained=True, depth=20)
    shipped.write_bytes(shipped.read_bytes()[:-1] + b"\0")
    with pytest.raises(ModelError, match="are damaged"):
        create_model("cifar_resnet", pretrained=True)


def test_a_model_trained_on_non_square_images_predicts_any_image(tmp_path, capsys):
    """Same-size 48x32 training images need no --image-size; predict covers and centre-crops to 32x48."""
    from reslab.engine.config import TrainConfig
    from reslab.engine.recipes import get_recipe
    from reslab.engine.run import train

    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c in range(2):
            (tmp_path / "data" / split / f"c{c}").mkdir(parents=True)
            for i in range(8):
                pixels = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(tmp_path / "data" / split / f"c{c}" / f"{i}.png")
    train(TrainConfig(model="cifar_resnet", model_kwargs={"depth": 8}, data=str(tmp_path / "data"), precision="fp32",
                      recipe=get_recipe("paper", iterations=2, batch_size=8), device="cpu", out=str(tmp_path / "run"),
                      log_every=2, progress=False))  # fmt: skip
    Image.fromarray(rng.integers(0, 256, (100, 70, 3), dtype=np.uint8)).save(tmp_path / "odd.png")
    assert main(["predict", str(tmp_path / "run"), str(tmp_path / "odd.png"), "--top-k", "1"]) == 0
    assert capsys.readouterr().out.split("\t")[1].split()[0] in ("c0", "c1")


REAL_TAR = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-jpeg.tar"


@pytest.fixture(scope="module")
def real_cifar():
    if not REAL_TAR.exists():
        pytest.skip("shared/data/cifar10-jpeg.tar not present")
    return load_dataset(str(REAL_TAR))


@pytest.mark.parametrize("name", sorted(manifest()))
def test_shipped_weights_reproduce_their_manifest_error(name, real_cifar):
    """Golden test: each shipped model, loaded by name (sha256 checked), makes on every 5th of the copy's test images
    the fp32 error its manifest's ``check`` states. benchmarks/ship_weights.py measured that number when it shipped the
    file, in the same pass that found the file's whole-test-set error equal to its training run's ``test_error``
    (within 0.3 points); a fifth of the test set keeps the nine models' test near a minute."""
    entry = manifest()[name]
    check = entry["check"]
    stride = check["test_stride"]
    predictor = Predictor(load_trained(name), device="cpu", batch_size=1000, precision="fp32")
    wrong = predictor.count_wrong(real_cifar.test_images[::stride], real_cifar.test_labels[::stride])
    assert abs(100 * wrong / check["images"] - check["test_error"]) < 0.3, (wrong, check)
    assert abs(check["test_error"] - entry["test_error"]) < 3, "the subset's error is near the whole set's"
