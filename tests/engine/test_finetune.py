"""Fine-tuning: start from trained weights on data with other classes, frozen parts, frozen BN statistics and the
classifier's own learning rate (`reslab.engine.finetune`)."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reslab.cli import main
from reslab.engine.run import build_trainer, train
from reslab.errors import ConfigError, ModelError
from reslab.models.parts import FrozenStatsBatchNorm2d
from reslab.weights.checkpoint import read_checkpoint


def _three_classes(root: Path, per_class: int = 16) -> Path:
    """An ImageFolder of 32x32 PNGs in 3 classes (a colour each), train/ and test/."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for c, colour in enumerate(([200, 60, 60], [60, 200, 60], [60, 60, 200])):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = np.clip(np.array(colour) + rng.normal(0, 40, (32, 32, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


@pytest.fixture
def pretrained(tiny_config, tmp_path) -> Path:
    """A ResNet-8 trained on the 10 synthetic classes."""
    train(tiny_config(out=str(tmp_path / "pre")))
    return tmp_path / "pre"


def test_new_classes_replace_the_classifier_and_keep_the_rest(tiny_config, pretrained, tmp_path, capsys):
    data = _three_classes(tmp_path / "three")
    cfg = tiny_config(data=str(data), init=str(pretrained), out=str(tmp_path / "ft"))
    start = build_trainer(dataclasses.replace(cfg, out=None)).model.state_dict()
    source = read_checkpoint(pretrained / "checkpoint.pt")["model"]
    assert start["fc.weight"].shape == (3, source["fc.weight"].shape[1])
    assert all(torch.equal(start[k], v) for k, v in source.items() if not k.startswith("fc."))
    summary = train(dataclasses.replace(cfg, progress=True))
    assert "classifier replaced: 10 classes" in capsys.readouterr().err
    assert summary["iterations"] == 12 and len(read_checkpoint(tmp_path / "ft" / "checkpoint.pt")["classes"]) == 3


def test_frozen_parts_and_bn_statistics_do_not_move(tiny_config, pretrained, tmp_path):
    cfg = tiny_config(init=str(pretrained), out=str(tmp_path / "ft"), freeze=("stem", "layer1"), freeze_bn=True)
    before = read_checkpoint(pretrained / "checkpoint.pt")["model"]
    train(cfg)
    after = read_checkpoint(tmp_path / "ft" / "checkpoint.pt")["model"]
    frozen = [k for k in before if k.startswith(("conv1.", "bn1.", "layer1."))]
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen + stats)
    trained = [k for k in before if k.startswith(("layer2.", "layer3.", "fc.")) and not k.endswith(
        ("running_mean", "running_var", "num_batches_tracked"))]  # fmt: skip
    assert all(not torch.equal(before[k], after[k]) for k in trained if k.endswith("conv1.weight") or k == "fc.weight")
    # frozen BN layers stay in inference mode through the trainer's net.train(), and resuming freezes them again
    trainer = build_trainer(dataclasses.replace(cfg, stop_at=None, out=None))
    trainer.net.train()
    bns = [m for m in trainer.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert all(isinstance(m, FrozenStatsBatchNorm2d) and not m.training for m in bns)


def test_the_classifier_gets_its_own_learning_rate(tiny_config, pretrained):
    trainer = build_trainer(tiny_config(init=str(pretrained), head_lr_scale=10.0, out=None))
    trainer.run(1)
    head = {id(p) for p in trainer.model.fc.parameters()}
    for group in trainer.optimizer.param_groups:
        in_head = {id(p) for p in group["params"]} <= head
        assert group["lr"] == pytest.approx(trainer.schedule.lr(0) * (10.0 if in_head else 1.0))
    assert any({id(p) for p in g["params"]} <= head for g in trainer.optimizer.param_groups)


def test_fine_tuning_mistakes_are_one_line(tiny_config, pretrained, tmp_path, capsys):
    with pytest.raises(ConfigError, match="cannot freeze 'layer4': this model's parts are stem, layer1, layer2, la"):
        build_trainer(tiny_config(init=str(pretrained), freeze=("layer4",), out=None))
    with pytest.raises(ConfigError, match="they need --init"):
        tiny_config(freeze_bn=True)
    with pytest.raises(ConfigError, match="frozen BN statistics have nothing to sync"):
        tiny_config(init=str(pretrained), freeze_bn=True, sync_bn=True)
    with pytest.raises(ConfigError, match="head_lr_scale must be"):
        tiny_config(head_lr_scale=0.0)
    with pytest.raises(ModelError, match=r"--init: the weights in .* were trained as cifar_resnet with depth=8; "
                       "resnet20 here has depth=20"):  # fmt: skip
        build_trainer(tiny_config(model="resnet20", model_kwargs={}, init=str(pretrained), out=None))
    with pytest.raises(ModelError, match="reslab ships no weights for 'resnet1202'"):
        build_trainer(tiny_config(init="resnet1202", out=None))
    code = main(
        [
            "train",
            "--data",
            "synthetic:256",
            "--batch-size",
            "32",
            "--init",
            str(tmp_path / "no.pt"),
            "--out",
            str(tmp_path / "x"),
        ]
    )
    assert code == 2 and "weights not found" in capsys.readouterr().err


def test_init_brings_the_keywords_its_run_recorded(tiny_config, pretrained):
    """Weights trained as cifar_resnet(depth=8) build that net again when --init names them and the keywords are not
    given (as --model defaults to the model they were trained as); another model takes none of them."""
    assert tiny_config(init=str(pretrained), model_kwargs={}).model_kwargs == {"depth": 8}
    assert tiny_config(init=str(pretrained), model_kwargs={"depth": 14}).model_kwargs == {"depth": 14}  # given wins
    assert tiny_config(init=str(pretrained), model="resnet20", model_kwargs={}).model_kwargs == {}


def test_init_weights_of_another_architecture_with_the_same_keys_are_refused(tmp_path, capsys):
    """Plain-20 and ResNet-20 have the same keys: --init resnet20 into plain20 would train another function than the
    weights computed, so it is refused in one line (as create_model refuses it), before anything is written."""
    argv = ["train", "--model", "plain20", "--init", "resnet20", "--data", "synthetic:64", "--iterations", "2",
            "--batch-size", "8", "--out", str(tmp_path / "p"), "--quiet"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reslab: error: --init: the weights in shipped:resnet20 were trained as resnet20")
    assert "plain20 here has mode='plain'" in err and "\n" not in err
    assert not (tmp_path / "p" / "checkpoint.pt").exists()


def test_fine_tuning_normalises_with_the_init_weights_mean(tiny_config, pretrained, tmp_path, monkeypatch):
    """The features were trained on inputs minus the pre-training mean image: the fine-tuned run keeps it (where
    the shapes agree), and a resumed run keeps whatever mean it started with."""
    data = _three_classes(tmp_path / "three")
    source = read_checkpoint(pretrained / "checkpoint.pt")["mean"]
    cfg = tiny_config(data=str(data), init=str(pretrained), out=str(tmp_path / "ft"), stop_at=6)
    train(cfg)
    assert torch.equal(read_checkpoint(tmp_path / "ft" / "checkpoint.pt")["mean"], source)
    (pretrained / "checkpoint.pt").unlink()  # resuming needs neither the weights nor their mean any more
    train(dataclasses.replace(cfg, stop_at=None), resume=True)
    assert torch.equal(read_checkpoint(tmp_path / "ft" / "checkpoint.pt")["mean"], source)
    scratch = train(tiny_config(data=str(data), out=str(tmp_path / "scratch")))
    assert scratch and not torch.equal(read_checkpoint(tmp_path / "scratch" / "checkpoint.pt")["mean"], source)


def test_a_shipped_name_is_recorded_as_such(tiny_config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = tiny_config(init="resnet56")
    assert cfg.init == "shipped:resnet56"
    (tmp_path / "resnet56").mkdir()  # a folder of that name appearing later (the run's own --out) changes nothing
    assert type(cfg).from_dict(cfg.to_dict()).init == "shipped:resnet56"
    assert tiny_config(init="resnet56").init == str(tmp_path / "resnet56")  # an existing path is a path


def test_streamed_fine_tuning_normalises_as_the_init_weights_were(tmp_path, large_data):
    """A reslab run's weights keep the normalisation they were trained with, whatever --recipe says: per channel with
    their mean and std, their mean image at the same crop size, else a mean image of the new data (never divided by
    a std they did not see); weights normalised per channel are refused on the in-memory path."""
    from reslab.engine import distributed as D
    from reslab.engine.config import TrainConfig
    from reslab.engine.recipes import get_recipe
    from reslab.tasks.classification_run import classification_parts

    data = str(large_data())

    def config(recipe: str, size: int = 32, **kw) -> TrainConfig:
        return TrainConfig(model="resnet20", data=data, image_size=size, precision="fp32", workers=0, progress=False,
                           recipe=get_recipe(recipe, iterations=1, batch_size=8), eval_batch_size=4, **kw)  # fmt: skip

    def source(cfg: TrainConfig, logs: list[str]):
        return classification_parts(cfg, data=None, model=None, device=torch.device("cpu"), dist=D.DistInfo(),
                                    log=logs.append, load_init=True, mean=None).source  # fmt: skip

    train(config("imagenet-torchvision", out=str(tmp_path / "channel")))
    train(config("imagenet-paper", out=str(tmp_path / "pixel")))
    channel, pixel = (read_checkpoint(tmp_path / name) for name in ("channel", "pixel"))
    logs: list[str] = []
    got = source(config("imagenet-paper", init=str(tmp_path / "channel")), logs)
    assert got.preprocess["large"]["normalization"] == "channel" and torch.equal(got.mean, channel["mean"])
    assert torch.equal(got.preprocess["std"], channel["preprocess"]["std"]) and "per channel as the --init" in logs[0]
    got = source(config("imagenet-torchvision", init=str(tmp_path / "pixel")), logs)
    assert got.preprocess["large"]["normalization"] == "pixel" and got.preprocess["std"] is None
    assert torch.equal(got.mean, pixel["mean"]) and "mean image of the --init weights" in logs[-1]
    got = source(config("imagenet-torchvision", 48, init=str(tmp_path / "pixel")), logs)
    assert got.preprocess["large"]["normalization"] == "pixel" and tuple(got.mean.shape) == (3, 48, 48)
    assert "normalised with their own mean image" in logs[-1]
    in_memory = TrainConfig(model="resnet20", data="synthetic:64", recipe=get_recipe("paper", iterations=1),
                            init=str(tmp_path / "channel"))  # fmt: skip
    with pytest.raises(ConfigError, match="weights trained on large images normalised per channel"):
        source(in_memory, logs)
