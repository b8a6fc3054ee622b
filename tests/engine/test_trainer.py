"""The training loop: outputs, exact resume, NaN stop, atomic checkpoints, configuration checks."""

import dataclasses
import json
import os

import pytest
import torch

from reslab.engine.checkpoint import load_checkpoint, save_atomic
from reslab.engine.trainer import Trainer, TrainingDiverged, train
from reslab.errors import ConfigError, ReslabError


def test_run_writes_config_metrics_checkpoint_summary(tiny_config, tmp_path):
    summary = train(tiny_config())
    run = tmp_path / "run"
    info = json.loads((run / "config.json").read_text())
    assert info["seed"] == 0 and info["config"]["model"] == "cifar_resnet" and "git_commit" in info
    assert info["torch"] == torch.__version__
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records if "train_error" in r] == [4, 8, 12]
    assert [r["iter"] for r in records if r.get("split") == "test"] == [6, 12]
    assert json.loads((run / "summary.json").read_text())["test_error"] == summary["test_error"]
    assert 0 <= summary["test_error"] <= 100 and len(summary["test_per_class_accuracy"]) == 10
    assert load_checkpoint(run / "checkpoint.pt")["iteration"] == 12


def test_training_learns_the_synthetic_task(tiny_config):
    summary = train(tiny_config(recipe={"iterations": 60, "batch_size": 32}, eval_every=60))
    assert summary["test_error"] < 50  # chance is 90%


def weights(path):
    return load_checkpoint(path)["model"]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_stop_and_resume_is_bit_identical(tiny_config, tmp_path, precision):
    """N steps straight == N/2, stop (as if killed after the checkpoint), resume, N/2: the same bits."""
    straight = tiny_config(out=str(tmp_path / "straight"), precision=precision)
    train(straight)
    split = tiny_config(out=str(tmp_path / "split"), precision=precision, stop_at=6)
    assert train(split) == {}  # stopped early: no summary yet
    first = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    summary = train(tiny_config(out=str(tmp_path / "split"), precision=precision), resume=True)
    # the clocks carry over: the summary counts both sessions
    assert summary["train_seconds"] > first["train_seconds"] > 0
    assert summary["wall_seconds"] >= summary["train_seconds"] and summary["wall_seconds"] > first["loop_seconds"]
    assert 0 <= summary["overhead_fraction"] < 1
    a, b = weights(tmp_path / "straight" / "checkpoint.pt"), weights(tmp_path / "split" / "checkpoint.pt")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    logged = lambda d: [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    strip = lambda rs: [{k: v for k, v in r.items() if k != "img_per_s"} for r in rs]  # noqa: E731
    assert strip(logged("straight")) == strip(logged("split"))


def test_resume_refuses_a_different_configuration(tiny_config, tmp_path):
    train(tiny_config(stop_at=6))
    with pytest.raises(ConfigError, match="different 'seed'"):
        Trainer(tiny_config(seed=1)).fit(resume=True)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path, monkeypatch):
    # Logging every 100 and evaluating never: the first boundary after the NaN is the checkpoint at 12, so it is
    # the checkpoint's own check that must stop the run.
    cfg = tiny_config(log_every=100, eval_every=100, checkpoint_every=6)
    train(dataclasses.replace(cfg, stop_at=6))  # a good checkpoint at iteration 6
    ckpt = tmp_path / "run" / "checkpoint.pt"
    before = ckpt.read_bytes()
    trainer = Trainer(cfg)
    real = trainer.criterion

    def poisoned(logits, y):  # NaN from iteration 8 on
        loss = real(logits, y)
        return loss * float("nan") if trainer.iteration >= 7 else loss

    trainer.criterion = poisoned
    with pytest.raises(TrainingDiverged, match="nan"):
        trainer.fit(resume=True)
    assert ckpt.read_bytes() == before
    assert load_checkpoint(ckpt)["iteration"] == 6


def test_a_finished_run_is_not_overwritten_without_resume(tiny_config):
    train(tiny_config())
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_config())


def test_resume_survives_a_torn_metrics_line(tiny_config, tmp_path):
    train(tiny_config(stop_at=6))
    with open(tmp_path / "run" / "metrics.jsonl", "a") as f:
        f.write('{"iter": 7, "train_lo')  # killed mid-write
    assert train(tiny_config(), resume=True)["iterations"] == 12
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line)["iter"] <= 12 for line in lines)


def _state(w):
    return {"model": {"w": w}, "config": {}, "iteration": 0, "mean": torch.zeros(3, 2, 2), "classes": ["a"]}


def test_atomic_save_leaves_the_old_checkpoint_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_atomic(_state(torch.ones(2)), path)

    def crash(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(ReslabError, match=r"cannot write .*disk full"):  # one line for the user, not a traceback
        save_atomic(_state(torch.zeros(2)), path)
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    assert os.listdir(tmp_path) == ["c.pt"]  # no temp file left behind


def test_checkpoint_with_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"model": Evil(), "config": {}}, path)
    with pytest.raises(ReslabError, match="not a valid reslab checkpoint"):
        load_checkpoint(path)


def test_paper_warmup_runs_at_low_lr_first(tiny_config, tmp_path):
    """A 110+-layer net starts at lr 0.01 (Sec. 4.2); we check the logged lr with a lowered depth threshold."""
    cfg = tiny_config(recipe={"iterations": 8, "batch_size": 32, "paper_warmup_min_depth": 8})
    train(cfg)
    lrs = [json.loads(x)["lr"] for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if '"lr"' in x]
    assert lrs[0] == pytest.approx(0.01)


def test_checkpoint_without_required_entries_is_refused(tmp_path):
    state = _state(torch.ones(2))
    del state["mean"]
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(ReslabError, match="no 'mean' entry"):
        load_checkpoint(tmp_path / "c.pt")


def test_unknown_config_fields_are_refused():
    from reslab.engine.config import TrainConfig

    d = TrainConfig().to_dict()
    assert TrainConfig.from_dict(d) == TrainConfig()
    d["recipe"]["lookahead"] = True
    with pytest.raises(ConfigError, match="unknown configuration field 'lookahead'"):
        TrainConfig.from_dict(d)


def test_resume_refuses_another_precision(tiny_config):
    train(tiny_config(precision="bf16", stop_at=6))
    with pytest.raises(ConfigError, match="different 'precision'"):
        Trainer(tiny_config(precision="fp32")).fit(resume=True)
    # `auto` that resolves differently on this machine is caught too: pretend the run was trained in fp16
    from reslab.engine.checkpoint import load_checkpoint as load

    path = Trainer(tiny_config(precision="bf16")).out / "checkpoint.pt"
    state = load(path)
    state["precision"] = "fp16"
    save_atomic(state, path)
    with pytest.raises(ConfigError, match="trained in fp16"):
        Trainer(tiny_config(precision="bf16")).fit(resume=True)


def test_resumed_run_keeps_its_first_record_and_logs_plain_lines(tiny_config, tmp_path, capsys):
    train(tiny_config(stop_at=6, progress=True))
    first = json.loads((tmp_path / "run" / "config.json").read_text())
    train(tiny_config(progress=True), resume=True)
    info = json.loads((tmp_path / "run" / "config.json").read_text())
    assert info["date"] == first["date"] and [r["from_iteration"] for r in info["resumed"]] == [6]
    err = capsys.readouterr().err  # not a terminal: one plain line per logging interval
    assert "iter 4/12: loss" in err and "iter 8/12: loss" in err and "resumed from iteration 6" in err


def test_any_iterable_of_batches_can_feed_the_trainer(tiny_config):
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g)) for _ in range(5)]
    trainer = Trainer(tiny_config(), batches=batches)  # a finite list: restarted at its end
    summary = trainer.fit()
    assert summary["iterations"] == 12 and trainer.batches_per_epoch is None
    with pytest.raises(ConfigError, match="cannot resume exactly"):
        Trainer(tiny_config(stop_at=6), batches=batches).load_state_dict(trainer.state_dict())


def test_read_only_run_folder_is_a_one_line_error(tiny_config, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("pathlib.Path.write_text", refuse)
    with pytest.raises(ReslabError, match=r"cannot write .*config\.json: Permission denied"):
        train(tiny_config())


def test_python_api_is_exported():
    import reslab

    assert reslab.train is train and reslab.Trainer is Trainer
    assert reslab.get_recipe("paper").batch_size == 128


def training_input_sizes(trainer: Trainer) -> list[int]:
    """Train to the end and return the image size of every training forward pass."""
    sizes: list[int] = []
    trainer.model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[-1]) if m.training else None)
    trainer.fit()
    return sizes


def test_progressive_resizing_trains_small_first(tiny_config):
    recipe = {"iterations": 12, "batch_size": 32, "low_res_size": 16, "low_res_fraction": 0.5, "evaluations": 1}
    trainer = Trainer(tiny_config(recipe=recipe, eval_every=0))
    assert training_input_sizes(trainer) == [16] * 6 + [32] * 6
    assert trainer.eval_every == 12  # one evaluation per run, as the recipe asks


def test_progressive_resizing_never_upsamples(tiny_config):
    """A low-res size above the images' own size (64 for 32x32 data) leaves them as they are."""
    recipe = {"iterations": 4, "batch_size": 32, "low_res_size": 64, "low_res_fraction": 0.5, "evaluations": 1}
    assert training_input_sizes(Trainer(tiny_config(recipe=recipe, eval_every=0))) == [32] * 4
