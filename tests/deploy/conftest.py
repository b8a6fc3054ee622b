"""Trained runs for the deployment tests, trained once per session: a few steps are enough, since the tests
compare paths through the code (predict, export, reload) with the model's own outputs, not accuracies."""

from pathlib import Path

import pytest

from reslab.engine.config import TrainConfig
from reslab.engine.recipes import get_recipe
from reslab.engine.run import train


@pytest.fixture(scope="session")
def small_run(tmp_path_factory) -> Path:
    """A ResNet-8 trained for 4 steps on 256 synthetic 32x32 images held in memory (10 classes)."""
    out = tmp_path_factory.mktemp("deploy") / "run"
    train(TrainConfig(model="cifar_resnet", model_kwargs={"depth": 8}, data="synthetic:256", precision="fp32",
                      recipe=get_recipe("paper", iterations=4, batch_size=32), device="cpu", out=str(out),
                      log_every=2, eval_every=4, progress=False))  # fmt: skip
    return out


@pytest.fixture(scope="session")
def large_run(tmp_path_factory, large_dataset_maker) -> tuple[Path, Path]:
    """(run folder, data folder): a ResNet-18 trained for 2 steps on streamed large images (3 classes, 32-pixel
    crops)."""
    root = tmp_path_factory.mktemp("deploy-large")
    data = large_dataset_maker(root / "data", "folder")
    out = root / "run"
    recipe = get_recipe("imagenet-paper", iterations=2, batch_size=8)
    train(TrainConfig(model="resnet18", data=str(data), image_size=32, recipe=recipe, precision="fp32", workers=0,
                      device="cpu", out=str(out), log_every=2, eval_every=2, progress=False,
                      eval_batch_size=4))  # fmt: skip
    return out, data
