"""Foreign weights: akamaster/pytorch_resnet_cifar10's format is recognised and computes what it computed there, and
weights whose file records another architecture are refused in one line instead of loading into the wrong network."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from reslab.data.presets import IMAGENET_MEAN, IMAGENET_STD
from reslab.engine.config import TrainConfig
from reslab.engine.finetune import read_init
from reslab.errors import ModelError
from reslab.models import create_model
from reslab.models.blocks import ZeroPadShortcut
from reslab.models.trained import load_trained
from reslab.weights.state import ForeignWeightsWarning

MEAN = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def test_zero_pad_both_is_akamasters_lambda_layer():
    """Their option A: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4)), planes the output width."""
    x = torch.randn(2, 16, 8, 8)
    planes = 32
    theirs = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, planes // 4, planes // 4), "constant", 0)
    assert torch.equal(ZeroPadShortcut(2, 16, "both")(x), theirs)
    assert torch.equal(ZeroPadShortcut(2, 16)(x)[:, :16], x[:, :, ::2, ::2])  # reslab's default: zeros after
    with pytest.raises(ModelError, match="unknown zero_pad"):
        ZeroPadShortcut(2, 16, "middle")


def akamaster_file(tmp_path, depth=20, wrapped=True, legacy=False):
    """A checkpoint laid out as akamaster's: DataParallel prefix, `linear` head, no num_batches_tracked, best_prec1;
    ``legacy``: in torch's format before 1.6, as their published files are (it cannot be memory-mapped)."""
    torch.manual_seed(0)
    source = create_model(f"resnet{depth}", zero_pad="both")
    for m in source.modules():  # trained-looking BN statistics, so that normalisation matters
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    state = {f"module.{k.replace('fc.', 'linear.')}": v for k, v in source.state_dict().items()
             if not k.endswith("num_batches_tracked")}  # fmt: skip
    path = tmp_path / f"resnet{depth}.th"
    obj = {"state_dict": state, "best_prec1": 91.73} if wrapped else state
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    return path, source.eval()


@pytest.mark.parametrize("wrapped", [True, False])
def test_create_model_builds_akamasters_network(tmp_path, wrapped):
    path, source = akamaster_file(tmp_path, wrapped=wrapped)
    with pytest.warns(ForeignWeightsWarning, match="akamaster/pytorch_resnet_cifar10.*zero_pad='both'"):
        model = create_model("resnet20", weights=path).eval()
    x = torch.randn(4, 3, 32, 32)
    torch.testing.assert_close(model(x), source(x))
    with pytest.warns(ForeignWeightsWarning):
        after = create_model("resnet20", weights=path, zero_pad="after").eval()  # the user's choice is kept
    assert not torch.allclose(after(x), source(x), atol=1e-3)


@pytest.mark.parametrize("legacy", [False, True])
def test_eval_predict_and_init_read_it_with_its_preprocessing(tmp_path, legacy):
    path, source = akamaster_file(tmp_path, depth=32, legacy=legacy)
    with pytest.warns(ForeignWeightsWarning):
        loaded = load_trained(path)
    assert loaded.arch.name == "resnet32" and loaded.arch.kwargs == {"zero_pad": "both"}
    assert loaded.classes[:2] == ["airplane", "automobile"] and loaded.preprocessing.mean.shape == (3, 32, 32)
    pixels = torch.rand(4, 3, 32, 32)
    ours = loaded.model.eval()(pixels - loaded.preprocessing.mean)  # reslab's preprocessing: the mean image subtracted
    torch.testing.assert_close(ours, source((pixels - MEAN) / STD), atol=1e-4, rtol=1e-4)
    # --init: the run's config gets the placement, its weights the folded stem, its mean the per-channel mean
    config = TrainConfig(model="resnet32", init=str(path), data="synthetic")
    assert config.model_kwargs == {"zero_pad": "both"}
    assert TrainConfig(model="resnet32", init=str(path), data="synthetic", model_kwargs={"zero_pad": "after"}) \
        .model_kwargs == {"zero_pad": "after"}  # fmt: skip
    model = create_model("resnet32", **config.model_kwargs)
    init = read_init(config.init)  # read once, as a run reads it
    model.load_state_dict(init.state())
    torch.testing.assert_close(model.eval()(pixels - init.mean), ours, atol=1e-5, rtol=1e-5)


def test_a_bare_state_dict_of_another_layout_is_not_taken_for_akamasters(tmp_path):
    state = create_model("resnet20").state_dict()
    torch.save(state, tmp_path / "plain.pt")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no foreign-weights warning
        create_model("resnet20", weights=tmp_path / "plain.pt")


def test_weights_recorded_as_another_architecture_are_refused(tmp_path):
    """A reslab checkpoint records its architecture: loading plain-20's weights into ResNet-20 (same keys), or
    weights with zeros placed otherwise, is one line instead of a network that computes something else."""
    from reslab.weights.tensorfile import write_tensorfile
    from reslab.weights.trained import Arch, Preprocessing, TrainedModel

    plain = create_model("plain20")
    loaded = TrainedModel(plain, Arch("plain20"), [str(i) for i in range(10)], Preprocessing(torch.zeros(3, 32, 32)),
                          0, tmp_path, TrainConfig(model="plain20", data="synthetic").to_dict())  # fmt: skip
    write_tensorfile(loaded, tmp_path / "plain20.safetensors")
    with pytest.raises(ModelError, match="trained as plain20 with mode='plain'; resnet20 here has the default mode"):
        create_model("resnet20", weights=tmp_path / "plain20.safetensors")
    create_model("plain20", weights=tmp_path / "plain20.safetensors")  # the right network loads
    both = TrainedModel(create_model("resnet20", zero_pad="both"), Arch("resnet20", {"zero_pad": "both"}),
                        loaded.classes, loaded.preprocessing, 0, tmp_path)  # fmt: skip
    write_tensorfile(both, tmp_path / "both.safetensors")
    with pytest.raises(ModelError, match="zero_pad='both'"):
        create_model("resnet20", weights=tmp_path / "both.safetensors")


def test_streamed_images_fine_tune_it_with_its_own_channel_statistics(tmp_path, large_data, monkeypatch):
    """Streamed images divide by a std themselves: the foreign weights load as they are (not folded) and the images
    are normalised with the statistics those weights saw; a resumed run keeps the statistics it recorded."""
    from reslab.engine import distributed as D
    from reslab.engine import finetune
    from reslab.engine.recipes import get_recipe
    from reslab.engine.run import train
    from reslab.tasks.classification_run import classification_parts
    from reslab.weights import state as state_module
    from reslab.weights.checkpoint import read_checkpoint

    path, source = akamaster_file(tmp_path, legacy=True)
    recipe = get_recipe("imagenet-paper", iterations=2, batch_size=8)
    config = TrainConfig(model="resnet20", init=str(path), data=str(large_data()), image_size=32, recipe=recipe,
                         precision="fp32", workers=0, out=str(tmp_path / "run"), progress=False,
                         eval_batch_size=4)  # fmt: skip
    logs: list[str] = []
    reads: list[str] = []
    monkeypatch.setattr(finetune, "read_weights", lambda ref: reads.append(ref) or state_module.read_weights(ref))
    parts = classification_parts(config, data=None, model=None, device=torch.device("cpu"), dist=D.DistInfo(),
                                 log=logs.append, load_init=True, mean=None)  # fmt: skip
    assert reads == [str(path)]  # the weights, their format and their statistics from one read of the file
    assert torch.equal(parts.model.conv1.weight, source.conv1.weight)  # unfolded: the data divides by the std
    torch.testing.assert_close(parts.source.mean.view(1, 3, 1, 1), MEAN)
    assert any("normalised per channel as the --init weights were (akamaster" in line for line in logs)
    train(config)
    state = read_checkpoint(tmp_path / "run")
    torch.testing.assert_close(state["preprocess"]["std"].view(1, 3, 1, 1), STD)
    resumed = classification_parts(config, data=None, model=None, device=torch.device("cpu"), dist=D.DistInfo(),
                                   log=logs.append, load_init=False, mean=state["mean"],
                                   preprocess=state["preprocess"])  # fmt: skip
    assert resumed.source.mean is state["mean"] and resumed.source.preprocess["std"] is state["preprocess"]["std"]


def test_an_export_of_foreign_weights_records_no_run(tmp_path, capsys):
    """Exported to reslab's safetensors, weights trained elsewhere keep only their architecture: loaded back they
    have no run configuration, so `reslab eval` asks for the data instead of taking the defaults' (cifar10)."""
    from reslab.cli import main
    from reslab.weights.tensorfile import write_tensorfile

    path, _ = akamaster_file(tmp_path)
    with pytest.warns(ForeignWeightsWarning):
        loaded = load_trained(str(path))
    assert loaded.config == {}
    write_tensorfile(loaded, tmp_path / "exported.safetensors")
    again = load_trained(str(tmp_path / "exported.safetensors"))
    assert again.config == {} and again.arch == loaded.arch
    assert main(["eval", str(tmp_path / "exported.safetensors")]) == 2
    assert "records no training data: pass --data" in capsys.readouterr().err
