"""Every registered model, timm-style: shape, finite output, every parameter learns, export works."""

import pytest
import torch

from reslab import ModelError, create_model, list_models
from reslab.models import family_and_depth, model_spec

ALL = list_models()
DEEP = {"resnet1202", "preact_resnet1001"}


def small_input(name: str) -> torch.Tensor:
    torch.manual_seed(0)
    size = 32 if model_spec(name).family == "cifar" else 64
    return torch.randn(2, 3, size, size)


def test_registry_lists_the_paper():
    for name in ["resnet20", "resnet32", "resnet44", "resnet56", "resnet110", "resnet1202", "plain20", "plain110",
                 "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "plain18", "plain34", "plain152",
                 "preact_resnet110", "preact_resnet164", "preact_resnet1001", "highway20", "highway56"]:  # fmt: skip
        assert name in ALL
    assert list_models("plain*") == [n for n in ALL if n.startswith("plain")]


@pytest.mark.parametrize("name", ALL)
def test_forward_backward(name, device):
    model = create_model(name, num_classes=7).to(device)
    x = small_input(name).to(device)
    out = model(x)
    assert out.shape == (2, 7)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, f"parameters without a finite gradient: {missing[:5]}"
    assert all(p.grad.abs().sum() > 0 for p in model.parameters()), "some parameter got an all-zero gradient"


def calibrate_bn(model: torch.nn.Module, x: torch.Tensor) -> None:
    """Set BN running stats from one batch: at init, eval-mode BN (mean 0, var 1) overflows a 1000-layer net."""
    moms = {m: m.momentum for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    for m in moms:
        m.momentum = 1.0
    model.train()
    with torch.no_grad():
        model(x)
    for m, mom in moms.items():
        m.momentum = mom
    model.eval()


# The 1202- and 1001-layer nets repeat the units of resnet110 and preact_resnet164, which are exported here; tracing
# 1000+ layers took 32 s of the suite's 10 minutes, and their forward pass is tested with every other model.
@pytest.mark.parametrize("name", [n for n in ALL if n not in DEEP])
def test_torch_export(name):
    model = create_model(name)
    x = small_input(name)
    calibrate_bn(model, x)
    program = torch.export.export(model, (x,))
    torch.testing.assert_close(program.module()(x), model(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: create_model("resnet57"), "did you mean"),
        (lambda: create_model("resent20"), "resnet20"),
        (lambda: create_model("cifar_resnet", depth=21), r"6n\+2"),
        (lambda: create_model("cifar_resnet", depth=2), r"6n\+2"),
        (lambda: create_model("cifar_preact_resnet", depth=165), r"9n\+2"),
        (lambda: create_model("imagenet_resnet", depth=42), "Table 1"),
        (lambda: create_model("resnet20", shortcut="D"), "unknown shortcut option"),
        (lambda: create_model("cifar_resnet", depth=20, widths=(64, 32, 16)), "option A cannot reduce channels"),
        (lambda: create_model("resnet20", num_classes=0), "num_classes"),
        (lambda: create_model("resnet20", mode="gated"), "unknown unit mode"),
        # a plain unit builds no shortcut: another option would be accepted and do nothing
        (lambda: create_model("plain20", shortcut="B"), "plain20 is a plain net"),
        (lambda: create_model("cifar_resnet", depth=20, mode="plain", shortcut="C"), "is a plain net"),
        (lambda: create_model("imagenet_resnet", depth=34, mode="plain", shortcut="A"), "is a plain net"),
        # family_and_depth answers for any builder keywords a config holds (TrainConfig's warm-up check)
        (lambda: family_and_depth("cifar_resnet", depth="x"), "depth must be an integer"),
        (lambda: family_and_depth("imagenet_resnet", depth=2.5), "depth must be an integer"),
    ],
)
def test_bad_input_is_a_clear_error(call, message):
    with pytest.raises(ModelError, match=message):
        call()


def test_generic_depth():
    model = create_model("cifar_resnet", depth=74)
    assert len(model.units()) == 36
    assert create_model("cifar_resnet", depth=74, mode="plain").units()[0].mode == "plain"


def test_zero_init_residual_only_where_an_identity_carries_the_signal():
    model = create_model("resnet20", zero_init_residual=True)
    assert all(float(u.last_bn().weight.detach().abs().sum()) == 0 for u in model.units())
    for name in ("plain20", "preact_resnet110", "highway20"):
        with pytest.raises(ModelError, match="zero_init_residual needs residual units"):
            create_model(name, zero_init_residual=True)
