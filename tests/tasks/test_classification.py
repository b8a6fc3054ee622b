"""The classification task: test-time views (exact shifts with mean-grey fill), the averaged softmax they feed."""

import pytest
import torch
from torch import nn

from reslab.errors import ConfigError
from reslab.tasks.classification import EvalBatches, count_views, evaluate, shift_image, tta_views


def test_shift_moves_content_and_fills_with_zeros():
    x = torch.arange(1.0, 17.0).reshape(1, 1, 4, 4)
    y = shift_image(x, 1, 2)
    assert torch.equal(y[0, 0, 1:, 2:], x[0, 0, :3, :2])  # content moved down 1, right 2
    assert (y[0, 0, 0] == 0).all() and (y[0, 0, :, :2] == 0).all()
    assert torch.equal(shift_image(y, -1, -2)[0, 0, :3, :2], x[0, 0, :3, :2])


def test_views_count_and_content():
    x = torch.randn(2, 3, 8, 8)
    assert len(tta_views(x, flip=False)) == 1
    flip = tta_views(x, flip=True)
    assert len(flip) == 2 and torch.equal(flip[1], x.flip(3))
    six = tta_views(x, flip=True, shift=1)
    assert len(six) == 6 == count_views(True, 1)
    assert torch.equal(six[2], shift_image(x, 1, 1)) and torch.equal(six[5], shift_image(x.flip(3), -1, -1))


class _PixelProbe(nn.Module):
    """Logits from the top-left pixel: a model that tells the views apart."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x[:, 0, 0, 0], -x[:, 0, 0, 0]], 1) * 10


def test_evaluate_averages_the_softmax_over_views():
    images = torch.full((4, 3, 4, 4), 255, dtype=torch.uint8)
    labels = torch.zeros(4, dtype=torch.long)
    mean = torch.full((3, 4, 4), 0.5)
    batches = EvalBatches(images, labels, mean, batch_size=2)
    assert evaluate(_PixelProbe(), batches, 2)["error"] == 0.0
    # 6 views: 4 keep the bright pixel at (0, 0); the two shifted by (+1, +1) see the zero fill there (a tie
    # broken towards class 0), so the averaged softmax still favours class 0 and the loss grows.
    six = evaluate(_PixelProbe(), batches, 2, flip=True, shift=1)
    assert six["error"] == 0.0 and six["n"] == 4
    assert six["loss"] > evaluate(_PixelProbe(), batches, 2)["loss"]


@pytest.mark.parametrize(("flip", "shift"), [(False, 1), (True, -1), (True, 1.5)])
def test_bad_views_are_refused(flip, shift):
    with pytest.raises(ConfigError, match="test-time shift"):
        count_views(flip, shift)


def test_one_pass_gives_the_errors_of_every_prefix_of_the_views():
    """The final evaluation's single 6-view pass gives exactly what 1, 2 and 6 views give separately."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Flatten(), nn.Linear(4 * 8 * 8, 5))
    images = torch.randint(0, 256, (20, 3, 8, 8), dtype=torch.uint8)
    batches = EvalBatches(images, torch.arange(20) % 5, torch.full((3, 8, 8), 0.5), batch_size=7)
    together = evaluate(model, batches, 5, flip=True, shift=1, prefixes=(1, 2, 6))
    apart = {1: evaluate(model, batches, 5), 2: evaluate(model, batches, 5, flip=True),
             6: evaluate(model, batches, 5, flip=True, shift=1)}  # fmt: skip
    for k in (1, 2, 6):
        assert together[k]["error"] == apart[k]["error"]
        assert together[k]["per_class_error"] == apart[k]["per_class_error"]
        assert together[k]["loss"] == pytest.approx(apart[k]["loss"], rel=1e-6)
