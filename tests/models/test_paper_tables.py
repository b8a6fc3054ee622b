"""Golden tests: the networks have the paper's sizes (Table 6 params, Table 1 multiply-adds)."""

import pytest
import torch

from reslab import complexity, create_model, paper
from reslab.models.blocks import ZeroPadShortcut
from reslab.models.resnet import ResNet


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("depth", sorted(paper.CIFAR_PARAMS_M))
def test_cifar_params_match_table6(depth):
    params = n_params(create_model(f"resnet{depth}"))
    assert params / 1e6 == pytest.approx(paper.CIFAR_PARAMS_M[depth], rel=0.02)


@pytest.mark.parametrize("depth", sorted(paper.IMAGENET_GMACS))
def test_imagenet_macs_match_table1(depth):
    macs = complexity(create_model(f"resnet{depth}"), (3, 224, 224))["macs"]
    assert macs / 1e9 == pytest.approx(paper.IMAGENET_GMACS[depth], rel=0.03)


@pytest.mark.parametrize("depth", sorted(paper.PREACT_PARAMS_M))
def test_preact_params_match_identity_mappings(depth):
    params = n_params(create_model(f"preact_resnet{depth}"))
    assert params / 1e6 == pytest.approx(paper.PREACT_PARAMS_M[depth], rel=0.02)


def test_stride_placement_changes_only_compute():
    paper_net, v15 = create_model("resnet50"), create_model("resnet50", stride_in_1x1=False)
    assert n_params(paper_net) == n_params(v15)
    assert paper_net.layer2[0].conv1.stride == (2, 2) and paper_net.layer2[0].conv2.stride == (1, 1)
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)
    # torchvision's ResNet-50 is the well-known 4.1 GMACs; the paper's placement gives Table 1's 3.8.
    assert complexity(v15)["macs"] / 1e9 == pytest.approx(4.09, abs=0.02)


def test_cifar_feature_map_sizes_and_widths():
    """Sec. 4.2: 16/32/64 filters on 32/16/8 maps, then a 10-way FC."""
    import torch

    model = create_model("resnet20").eval()
    shapes = []
    x = model.relu(model.bn1(model.conv1(torch.zeros(1, 3, 32, 32))))
    for name in model.stage_names:
        x = getattr(model, name)(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]
    assert model.fc.out_features == 10 and model.conv1.kernel_size == (3, 3) and model.conv1.out_channels == 16


def shortcut_param_modules(model: ResNet) -> int:
    return sum(1 for u in model.units() if u.downsample is not None and any(True for _ in u.downsample.parameters()))


@pytest.mark.parametrize("name", ["resnet32", "resnet34"])
def test_shortcut_options(name):
    a, b, c = (create_model(name, shortcut=o) for o in "ABC")
    plain = create_model(name, mode="plain")
    n_units = len(a.units())
    assert shortcut_param_modules(a) == 0
    assert all(isinstance(u.downsample, ZeroPadShortcut) or u.downsample is None for u in a.units())
    # B: a projection exactly where the shape changes (the first unit of stages 2..k); C: on every unit.
    assert shortcut_param_modules(b) == len(a.stage_names) - 1
    assert shortcut_param_modules(c) == n_units
    assert n_params(a) < n_params(b) < n_params(c)
    assert n_params(plain) == n_params(a)
    assert all(u.downsample is None for u in plain.units())


def test_plain_twin_is_the_same_classes():
    res, plain = create_model("resnet56"), create_model("plain56")
    assert type(res) is type(plain)
    assert [type(u) for u in res.units()] == [type(u) for u in plain.units()]
    assert [k for k in plain.state_dict()] == [k for k in res.state_dict()]


def test_zero_pad_shortcut_subsamples_and_pads():
    import torch

    x = torch.randn(2, 16, 8, 8)
    y = ZeroPadShortcut(2, 16)(x)
    assert y.shape == (2, 32, 4, 4)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(y[:, 16:]) == 0


def test_highway_gate_starts_near_carry():
    model = create_model("highway20")
    gates = [u.gate for u in model.units()]
    assert all(g is not None and float(g.bias.detach().mean()) == -1.0 for g in gates)
    assert n_params(model) > n_params(create_model("resnet20"))


@pytest.mark.parametrize("depth", [20, 56])
def test_single_layer_units_keep_the_layers_and_parameters(depth):
    """Sec. 3.1's one-layer residual function: twice the units, the same 3x3 layers and parameters as ResNet-depth."""
    one, two = create_model(f"resnet{depth}_1layer"), create_model(f"resnet{depth}")
    convs = lambda m: [c for c in m.modules() if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    assert len(convs(one)) == len(convs(two)) == depth - 1  # plus the FC layer: depth weighted layers
    assert len(one.units()) == 2 * len(two.units()) == depth - 2
    assert n_params(one) == n_params(two)
    assert all(u.downsample is None or isinstance(u.downsample, ZeroPadShortcut) for u in one.units())
    x = torch.randn(2, 16, 32, 32)
    unit = one.units()[0].eval()
    with torch.no_grad():
        torch.testing.assert_close(unit(x), torch.relu(unit.bn1(unit.conv1(x)) + x))  # y = relu(BN(W1 x) + x)


@pytest.mark.parametrize("name", ["resnet20", "plain56", "resnet50", "highway20", "preact_resnet164", "vgg19"])
def test_layer_counts_equal_torchs_flop_counter(name):
    """`complexity` counts each conv/linear layer's multiply-adds with a hook; torch's FlopCounterMode, which sees
    every operator, gives the same total (its FLOPs are 2 per multiply-add)."""
    import torchvision
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = getattr(torchvision.models, name)() if name == "vgg19" else create_model(name)
        size = (3, 224, 224) if name in ("resnet50", "vgg19") else (3, 32, 32)
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model.eval()(torch.zeros(1, *size))
        assert complexity(model, size)["macs"] == counter.get_total_flops() // 2
