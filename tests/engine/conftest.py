import pytest

from reslab.engine.config import TrainConfig
from reslab.engine.recipes import Recipe, get_recipe


@pytest.fixture
def tiny_config(tmp_path, device):
    """A run of a few seconds: ResNet-8 (6n+2, n=1) on 256 synthetic images, fp32 so that results are exact."""

    def make(**kw):
        recipe = kw.pop("recipe", {"iterations": 12, "batch_size": 32})
        recipe = recipe if isinstance(recipe, Recipe) else get_recipe("paper", **recipe)
        base = dict(model="cifar_resnet", model_kwargs={"depth": 8}, data="synthetic:256", recipe=recipe,
                    precision="fp32", device=device, out=str(tmp_path / "run"), log_every=4, eval_every=6,
                    progress=False)  # fmt: skip
        return TrainConfig(**{**base, **kw})

    return make
