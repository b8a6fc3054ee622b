"""`create_model(name, features_only=True)`: every registered network's stem and stage outputs, with the channels
and strides `feature_info` states, computed by the classification network's own modules."""

from __future__ import annotations

import pytest
import torch

from reslab.errors import ModelError
from reslab.models import create_model, list_models, model_spec
from reslab.models.features import FeatureNet
from reslab.models.resnet import ResNet

# 1202 and 1001 layers: the same code as resnet20 and preact_resnet164, many times the time
NAMES = [n for n in list_models() if n not in ("resnet1202", "preact_resnet1001")]


@pytest.mark.parametrize("name", NAMES)
def test_every_model_gives_its_stage_outputs(name):
    with torch.device("meta"):  # shapes only: no weights to initialise, no arithmetic (values: the tests below)
        full = create_model(name).eval()
        assert isinstance(full, ResNet)
        net = FeatureNet(full).eval()  # what create_model(name, features_only=True) wraps (tested below)
        size = 16 if model_spec(name).family == "cifar" else 32
        outs = net(torch.empty(2, 3, size, size))
    info = net.feature_info
    assert len(outs) == len(info) == len(full.stage_names) + 1 and [f.index for f in info] == list(range(len(info)))
    for out, f in zip(outs, info, strict=True):
        assert out.shape == (2, f.num_chs, -(-size // f.reduction), -(-size // f.reduction)), (name, f)
    assert info.reduction()[-1] == (4 if model_spec(name).family == "cifar" else 32)
    # its parameters are the classifier's, under the same names, less fc (and a pre-activation net's final BN)
    assert set(net.state_dict()) == {k for k in full.state_dict() if not k.startswith(("fc.", "final_bn."))}


@pytest.mark.parametrize("name", ["resnet20", "plain20", "highway20", "preact_resnet164", "resnet18"])
def test_create_model_features_only_loads_the_classifiers_weights(name, tmp_path):
    full = create_model(name)
    torch.save(full.state_dict(), tmp_path / "w.pt")
    net = create_model(name, features_only=True, weights=tmp_path / "w.pt")
    assert isinstance(net, FeatureNet)
    assert all(torch.equal(v, full.state_dict()[k]) for k, v in net.state_dict().items())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        last = full.eval().forward_features(x)
        outs = net.eval()(x)
    if not full.preact:  # a pre-activation net's features stop before its final BN-ReLU
        torch.testing.assert_close(outs[-1], last)


def test_out_indices_choose_and_weights_load_first(tmp_path):
    full = create_model("resnet50")
    torch.save(full.state_dict(), tmp_path / "w.pt")
    net = create_model("resnet50", features_only=True, out_indices=(2, 4), weights=tmp_path / "w.pt").eval()
    assert net.feature_info.channels() == [512, 2048] and net.feature_info.reduction() == [8, 32]
    assert net.feature_info.module_name() == ["layer2", "layer4"]
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x)[1], full.eval().forward_features(x))
    three = create_model("resnet50", features_only=True, out_indices=(1, 2, 3))
    assert not hasattr(three, "layer4")  # stages after the last index are not kept


@pytest.mark.parametrize("kwargs", [{"out_indices": (0, 9)}, {"out_indices": (2, 1)}, {"out_indices": ()}])
def test_bad_out_indices_are_one_line(kwargs):
    with pytest.raises(ModelError, match="out_indices must be"):
        create_model("resnet20", features_only=True, **kwargs)
    with pytest.raises(ModelError, match="out_indices chooses the feature maps of features_only=True"):
        create_model("resnet20", out_indices=(1,))
