"""torchvision state dicts load into ours (strict) and give the same outputs."""

import pytest
import torch
import torchvision

from reslab import create_model


def randomize_bn(model: torch.nn.Module, gen: torch.Generator) -> None:
    # Non-trivial BN statistics and affine parameters, so that a mis-mapped BN cannot hide.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.25)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.1)


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_torchvision_weights_give_identical_outputs(depth):
    gen = torch.Generator().manual_seed(depth)
    torch.manual_seed(depth)
    theirs = getattr(torchvision.models, f"resnet{depth}")(weights=None).eval()
    randomize_bn(theirs, gen)
    ours = create_model(f"resnet{depth}", stride_in_1x1=False).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(2, 3, 96, 96, generator=gen)
    with torch.no_grad():
        diff = (ours(x) - theirs(x)).abs().max().item()
    assert diff <= 1e-5


def test_paper_stride_placement_differs_from_torchvision():
    torch.manual_seed(0)
    theirs = torchvision.models.resnet50(weights=None).eval()
    ours = create_model("resnet50").eval()  # stride on the first 1x1: same keys, different function
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert (ours(x) - theirs(x)).abs().max() > 1e-3
