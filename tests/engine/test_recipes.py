"""The paper's schedule and its warm-up rule, the fast recipe's shape, and recipe validation."""

import itertools

import pytest
import torch

from reslab.engine.recipes import PAPER, PaperWarmup, get_recipe, scheduled_lr
from reslab.errors import ConfigError


def test_paper_recipe_is_sec_4_2():
    r = get_recipe("paper")
    assert (r.batch_size, r.lr, r.momentum, r.weight_decay, r.iterations) == (128, 0.1, 0.9, 1e-4, 64_000)
    lr = {it: scheduled_lr(r, it, 64_000) for it in (0, 31_999, 32_000, 47_999, 48_000, 63_999)}
    assert lr[0] == lr[31_999] == pytest.approx(0.1)
    assert lr[32_000] == lr[47_999] == pytest.approx(0.01)
    assert lr[48_000] == lr[63_999] == pytest.approx(0.001)


def test_paper_warmup_rule_only_for_110_and_deeper():
    assert not PaperWarmup(PAPER, 56).active
    w = PaperWarmup(PAPER, 110)
    assert w.active and w.apply(0.1) == pytest.approx(0.01)
    w.observe(0.85)  # still above 80% training error: keep warming up
    assert w.apply(0.1) == pytest.approx(0.01)
    w.observe(0.79)
    assert not w.active and w.apply(0.1) == pytest.approx(0.1)
    w.observe(0.95)  # once done, never again
    assert w.apply(0.1) == pytest.approx(0.1)
    restored = PaperWarmup(PAPER, 110)
    restored.load_state_dict(w.state_dict())
    assert not restored.active


def test_onecycle_and_cosine_shapes():
    r = get_recipe("fast")
    total = 1000
    lrs = [scheduled_lr(r, i, total) for i in range(total)]
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(r.lr, rel=1e-3)
    assert all(a <= b for a, b in itertools.pairwise(lrs[: peak + 1]))  # rises
    assert all(a >= b for a, b in itertools.pairwise(lrs[peak:]))  # then falls
    assert lrs[-1] < 0.01 * r.lr
    cos = get_recipe("paper", schedule="cosine")
    assert scheduled_lr(cos, 0, total) == pytest.approx(0.1) and scheduled_lr(cos, 500, total) == pytest.approx(0.05)


def test_linear_warmup_then_step_schedule():
    r = get_recipe("paper", iterations=2000, warmup_fraction=0.05)  # the cpu budget of `reslab reproduce`
    assert scheduled_lr(r, 0, 2000) == pytest.approx(0.1 / 100)
    assert scheduled_lr(r, 49, 2000) == pytest.approx(0.05)
    assert scheduled_lr(r, 99, 2000) == pytest.approx(0.1)
    assert scheduled_lr(r, 999, 2000) == pytest.approx(0.1)
    assert scheduled_lr(r, 1000, 2000) == pytest.approx(0.01)
    assert scheduled_lr(r, 1500, 2000) == pytest.approx(0.001)
    # without a warm-up the paper schedule starts at full lr
    assert scheduled_lr(get_recipe("paper"), 0, 64_000) == pytest.approx(0.1)


def test_a_run_has_one_length():
    two = get_recipe("paper", epochs=2)
    assert two.iterations is None and two.resolve_iterations(50_000) == 782  # ceil(2 * 50000 / 128)
    ten = get_recipe("fast", iterations=10)  # an iteration count replaces a recipe defined in epochs
    assert ten.epochs is None and ten.resolve_iterations(50_000) == 10
    with pytest.raises(ConfigError, match="exactly one of them"):
        get_recipe("fast", epochs=None)
    with pytest.raises(ConfigError, match="not both"):
        get_recipe("paper", epochs=2, iterations=10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"lr": 0}, "lr"), ({"lr": float("inf")}, "lr: inf"), ({"weight_decay": float("nan")}, "weight_decay: nan"),
     ({"momentum": 1.0}, "momentum"), ({"schedule": "poly"}, "schedule"), ({"flip": "mirror"}, "flip mode"),
     ({"milestones": (0.75, 0.5)}, "milestones"), ({"bogus": 1}, "unknown recipe field"),
     ({"low_res_fraction": 0.5}, "low_res_fraction"), ({"tta_shift": 1}, "needs the flip views")],
)  # fmt: skip
def test_bad_recipe_values(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        get_recipe("paper", **kwargs)


def test_unknown_recipe():
    with pytest.raises(ConfigError, match="unknown recipe"):
        get_recipe("slow")


def test_fused_sgd_gives_the_same_bits_as_the_loop():
    from reslab import create_model
    from reslab.engine.recipes import build_optimizer

    recipe = get_recipe("fast")  # nesterov, weight decay without BN/bias decay: every branch of the update
    weights = []
    for fused in (True, False):
        torch.manual_seed(0)
        model = create_model("resnet20")
        opt = build_optimizer(model, recipe)
        assert opt.defaults["fused"] is True
        if not fused:  # the same optimizer, per-tensor loop
            groups = [{"params": g["params"], "weight_decay": g["weight_decay"]} for g in opt.param_groups]
            opt = torch.optim.SGD(groups, **{**opt.defaults, "fused": False, "foreach": False})
            assert not any(g["fused"] for g in opt.param_groups)
        g = torch.Generator().manual_seed(1)
        for _ in range(3):
            for p in model.parameters():
                p.grad = torch.randn(p.shape, generator=g)
            opt.step()
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(weights[0], weights[1])


@pytest.mark.parametrize("total", [1, 4, 7, 1001, 4922])
def test_the_warm_up_never_exceeds_the_peak_lr(total):
    from reslab.engine.recipes import scheduled_lr

    for name in ("fast", "detection"):
        recipe = get_recipe(name)
        lrs = [scheduled_lr(recipe, it, total) for it in range(total)]
        assert max(lrs) <= recipe.lr and lrs[0] > 0
