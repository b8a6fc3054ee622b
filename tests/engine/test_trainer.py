"""The training run: outputs, exact resume, divergence, checkpoints on a timer, custom data and models."""

import dataclasses
import json

import pytest
import torch
from torch import nn

from reslab import create_model
from reslab.data import load_dataset
from reslab.data.batches import normalize
from reslab.engine.recipes import get_recipe
from reslab.engine.run import build_trainer, train
from reslab.engine.rundir import RUN_FILES, RunDir
from reslab.engine.trainer import TrainingDiverged
from reslab.errors import ConfigError, ModelError
from reslab.models.trained import load_trained
from reslab.tasks.classification import ClassificationData
from reslab.weights.checkpoint import read_checkpoint


def records(run, kind="train_error"):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if kind in line]


def test_run_writes_config_metrics_checkpoint_summary(tiny_config, tmp_path):
    summary = train(tiny_config())
    run = tmp_path / "run"
    info = json.loads((run / "config.json").read_text())
    assert info["seed"] == 0 and info["config"]["model"] == "cifar_resnet" and "git_commit" in info
    assert info["torch"] == torch.__version__ and info["iterations"] == 12 and "bf16" in info["machine"]
    assert [r["iter"] for r in records(run)] == [4, 8, 12]
    assert [r["iter"] for r in records(run, '"split"')] == [6, 12]
    assert json.loads((run / "summary.json").read_text())["test_error"] == summary["test_error"]
    assert read_checkpoint(run / "checkpoint.pt")["iteration"] == 12
    # The summary's test error is the checkpoint's, recomputed here by hand: argmax over the mean-subtracted images.
    loaded = load_trained(run)
    ds = load_dataset("synthetic:256")
    with torch.no_grad():
        logits = loaded.model.eval()(normalize(ds.test_images, loaded.preprocessing.mean))
    wrong = (logits.argmax(1) != ds.test_labels).float()
    assert summary["test_error"] == pytest.approx(100 * wrong.mean().item())
    per_class = [100 * wrong[ds.test_labels == k].mean().item() for k in range(10)]
    assert summary["test_per_class_error"] == pytest.approx(per_class)


def test_training_learns_the_synthetic_task(tiny_config):
    summary = train(tiny_config(recipe={"iterations": 60, "batch_size": 32}, eval_every=60))
    assert summary["test_error"] < 50  # chance is 90%


def weights(path):
    return read_checkpoint(path)["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_stop_and_resume_is_bit_identical(tiny_config, tmp_path, precision):
    """N steps straight == N/2, stop (as if interrupted after the checkpoint), resume, N/2: the same bits."""
    straight = tiny_config(out=str(tmp_path / "straight"), precision=precision)
    train(straight)
    split = tiny_config(out=str(tmp_path / "split"), precision=precision, stop_at=6)
    assert train(split) == {}  # stopped early: no summary yet
    first = read_checkpoint(tmp_path / "split" / "checkpoint.pt")
    summary = train(tiny_config(out=str(tmp_path / "split"), precision=precision), resume=True)
    # the clocks carry over: the summary counts both sessions
    assert summary["train_seconds"] > first["train_seconds"] > 0
    assert summary["wall_seconds"] >= summary["train_seconds"] and summary["wall_seconds"] > first["loop_seconds"]
    assert 0 <= summary["overhead_fraction"] < 1
    assert_same_weights(weights(tmp_path / "straight" / "checkpoint.pt"), weights(tmp_path / "split" / "checkpoint.pt"))
    logged = lambda d: [json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    strip = lambda rs: [{k: v for k, v in r.items() if k != "img_per_s"} for r in rs]  # noqa: E731
    assert strip(logged("straight")) == strip(logged("split"))


def test_checkpoints_on_a_timer_whatever_the_evaluation_cadence(tiny_config, tmp_path, monkeypatch):
    """With no evaluation or checkpoint for 100 iterations, a checkpoint still comes every --checkpoint-minutes;
    resuming from one of them, in the middle of a logging interval, is exact."""
    saved = []
    real = RunDir.save_checkpoint
    monkeypatch.setattr(RunDir, "save_checkpoint", lambda self, state: saved.append(state["iteration"]) or
                        real(self, state))  # fmt: skip
    every = dict(eval_every=100, checkpoint_every=100, log_every=4)
    train(tiny_config(out=str(tmp_path / "never"), checkpoint_minutes=0, **every))
    assert saved == [0, 12]  # before the first step, and at the end
    saved.clear()
    train(tiny_config(out=str(tmp_path / "timed"), checkpoint_minutes=1e-9, stop_at=7, **every))
    assert saved == list(range(0, 8))  # the timer is always due: one per iteration
    train(tiny_config(out=str(tmp_path / "timed"), checkpoint_minutes=1e-9, **every), resume=True)
    assert_same_weights(weights(tmp_path / "never" / "checkpoint.pt"), weights(tmp_path / "timed" / "checkpoint.pt"))


def test_resume_refuses_a_different_configuration(tiny_config):
    train(tiny_config(stop_at=6))
    with pytest.raises(ConfigError, match="another 'seed'"):
        train(tiny_config(seed=1), resume=True)


class Poisoned(nn.Module):
    """A network whose training-mode output becomes NaN from its ``from_call``-th forward pass on."""

    def __init__(self, from_call: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = create_model("cifar_resnet", depth=8)
        self.calls, self.from_call = 0, from_call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += self.training
        out = self.net(x)
        return out * float("nan") if self.training and self.calls >= self.from_call else out


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path):
    # Logging every 100 and evaluating never: the first boundary after the NaN is the checkpoint at 12, so it is
    # the check before that checkpoint that must stop the run.
    cfg = tiny_config(log_every=100, eval_every=100, checkpoint_every=6)
    train(dataclasses.replace(cfg, stop_at=6), model=Poisoned(10**9))  # a good checkpoint at iteration 6
    ckpt = tmp_path / "run" / "checkpoint.pt"
    before = ckpt.read_bytes()
    with pytest.raises(TrainingDiverged, match=r"the loss became nan before iteration 12; stopped, the last good "
                       r"checkpoint \(.*\) is untouched: lower --lr$"):  # fmt: skip
        train(cfg, model=Poisoned(2), resume=True)
    assert ckpt.read_bytes() == before


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_divergence_checks_buffers_and_hints_what_fits(tiny_config, tmp_path, precision):
    """At lr 1e6 BN's running variance overflows while the loss can still look finite: no checkpoint may keep an
    Inf, and the hint suggests fp32 only to a run that is not already in fp32."""
    cfg = tiny_config(recipe={"iterations": 40, "batch_size": 32, "lr": 1e6}, precision=precision,
                      checkpoint_every=1, log_every=100)  # fmt: skip
    with pytest.raises(TrainingDiverged) as err:
        train(cfg)
    assert ("--precision fp32" in str(err.value)) == (precision != "fp32")
    assert "running_var became NaN/Inf" in str(err.value) and "last good checkpoint" in str(err.value)
    state = read_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


def test_a_finished_run_is_kept(tiny_config, tmp_path):
    summary = train(tiny_config())
    with pytest.raises(ConfigError, match=r"already holds a run \(finished\): it is finished: evaluate it"):
        train(tiny_config())
    run = tmp_path / "run"
    stamps = lambda: {name: (run / name).stat().st_mtime_ns for name in RUN_FILES}  # noqa: E731
    before = stamps()
    assert train(tiny_config(), resume=True) == summary  # --resume of a finished run: nothing is trained again
    assert stamps() == before


def test_resume_without_a_checkpoint_says_so(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match=r"--resume: no checkpoint in .*run \(check --out"):
        train(tiny_config(), resume=True)
    assert not (tmp_path / "run").exists()  # nothing is created by a refused start
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "metrics.jsonl").write_text('{"iter": 4}\n')  # killed before its first checkpoint
    with pytest.raises(ConfigError, match="stopped before its first checkpoint: delete it"):
        train(tiny_config(), resume=True)
    with pytest.raises(ConfigError, match="already holds a run"):
        train(tiny_config())
    assert (tmp_path / "run" / "metrics.jsonl").read_text() == '{"iter": 4}\n'  # never deleted


def test_resume_survives_a_torn_metrics_line_and_keeps_the_records(tiny_config, tmp_path):
    train(tiny_config(stop_at=6))
    run = tmp_path / "run"
    kept = (run / "metrics.jsonl").read_text()
    with open(run / "metrics.jsonl", "a") as f:
        f.write('{"iter": 7, "train_lo')  # killed mid-write
    assert train(tiny_config(), resume=True)["iterations"] == 12
    text = (run / "metrics.jsonl").read_text()
    assert text.startswith(kept) and all(json.loads(line)["iter"] <= 12 for line in text.splitlines())


def test_paper_warmup_runs_at_low_lr_first(tiny_config, tmp_path):
    """A 110+-layer net starts at lr 0.01 (Sec. 4.2); we check the logged lr with a lowered depth threshold."""
    train(tiny_config(recipe={"iterations": 8, "batch_size": 32, "paper_warmup_min_depth": 8}))
    assert records(tmp_path / "run")[0]["lr"] == pytest.approx(0.01)


def test_resume_refuses_another_precision(tiny_config, tmp_path):
    train(tiny_config(precision="bf16", stop_at=6))
    with pytest.raises(ConfigError, match="another 'precision'"):
        train(tiny_config(precision="fp32"), resume=True)
    # `auto` that resolves differently on this machine is caught too: pretend the run was trained in fp16
    run = RunDir(tmp_path / "run")
    state = run.load_checkpoint()
    state["precision"] = "fp16"
    run.save_checkpoint(state)
    with pytest.raises(ConfigError, match="trained in fp16"):
        train(tiny_config(precision="bf16"), resume=True)


def test_resumed_run_keeps_its_first_record_and_logs_plain_lines(tiny_config, tmp_path, capsys):
    train(tiny_config(stop_at=6, progress=True))
    first = json.loads((tmp_path / "run" / "config.json").read_text())
    train(tiny_config(progress=True), resume=True)
    info = json.loads((tmp_path / "run" / "config.json").read_text())
    assert info["date"] == first["date"] and [r["from_iteration"] for r in info["resumed"]] == [6]
    err = capsys.readouterr().err  # not a terminal: one plain line per logging interval, and the final evaluation
    assert "iter 4/12: loss" in err and "iter 8/12: loss" in err and "resumed" in err and "from iteration 6" in err
    assert "final evaluation, test set: flip (2 views) ..." in err
    assert "final evaluation, test set: error 1 view " in err and "%, 2 views " in err


class ListSource(list):
    """Model-ready batches from a custom source: a finite list, restarted at its end, without resumable state."""


def custom_data(n_batches: int = 5) -> ClassificationData:
    g = torch.Generator().manual_seed(0)
    batches = ListSource((torch.randn(32, 3, 32, 32, generator=g), torch.randint(0, 10, (32,), generator=g))
                         for _ in range(n_batches))  # fmt: skip
    return ClassificationData(batches, [f"c{i}" for i in range(10)], train_size=160, eval_sets={"test": batches[:2]},
                              name="custom list")  # fmt: skip


def test_a_custom_source_trains_without_loading_config_data(tiny_config, tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("config.data was loaded although the data was given")

    monkeypatch.setattr("reslab.tasks.classification_run.load_dataset", forbidden)
    data = custom_data()
    summary = train(tiny_config(data=str(tmp_path / "not-there")), data=data)
    assert summary["iterations"] == 12 and summary["dataset"] == "custom list"
    model = create_model("cifar_resnet", depth=8)
    model.load_state_dict(read_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"])
    with torch.no_grad():  # the test error is the given evaluation set's: two batches of the list
        wrong = sum(int((model.eval()(x).argmax(1) != y).sum()) for x, y in data.eval_sets["test"])
    assert summary["test_error"] == pytest.approx(100 * wrong / 64)
    assert read_checkpoint(tmp_path / "run" / "checkpoint.pt")["mean"] is None
    with pytest.raises(ConfigError, match="cannot resume exactly"):
        trainer = build_trainer(tiny_config(), data=custom_data())
        trainer.load_state_dict(RunDir(tmp_path / "run").load_checkpoint())


def test_a_custom_model_is_recorded_as_such(tiny_config, tmp_path):
    train(tiny_config(), model=Poisoned(10**9))
    with pytest.raises(Exception, match="holds a model passed in from Python \\(Poisoned\\)"):
        load_trained(tmp_path / "run")


def test_an_unwritable_run_folder_is_a_one_line_error(tiny_config, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", refuse)
    with pytest.raises(Exception, match=r"cannot write .*config\.json: Permission denied") as err:
        train(tiny_config())
    assert "\n" not in str(err.value)


def test_python_api_is_exported():
    import reslab

    assert reslab.train is train and reslab.build_trainer is build_trainer
    assert reslab.get_recipe("paper").batch_size == 128 and reslab.ClassificationData is ClassificationData


def training_input_sizes(trainer) -> list[int]:
    """Train to the end and return the image size of every training forward pass."""
    sizes: list[int] = []
    trainer.model.register_forward_pre_hook(lambda m, args: sizes.append(args[0].shape[-1]) if m.training else None)
    trainer.run()
    return sizes


def test_progressive_resizing_trains_small_first(tiny_config):
    recipe = {"iterations": 12, "batch_size": 32, "low_res_size": 16, "low_res_fraction": 0.5, "evaluations": 1}
    trainer = build_trainer(tiny_config(recipe=recipe, eval_every=0))
    assert trainer.eval_every == 12  # one evaluation per run, as the recipe asks
    assert training_input_sizes(trainer) == [16] * 6 + [32] * 6


def test_progressive_resizing_never_upsamples(tiny_config):
    """A low-res size above the images' own size (64 for 32x32 data) leaves them as they are."""
    recipe = {"iterations": 4, "batch_size": 32, "low_res_size": 64, "low_res_fraction": 0.5, "evaluations": 1}
    assert training_input_sizes(build_trainer(tiny_config(recipe=recipe, eval_every=0))) == [32] * 4


def test_recipe_length_is_recorded_as_run(tiny_config, tmp_path):
    """An epoch-based recipe records no stale iteration count (its config says epochs, config.json the result)."""
    fast = get_recipe("fast", epochs=1, batch_size=32)
    train(tiny_config(recipe=dataclasses.replace(fast, low_res_size=None, low_res_fraction=0.0)))
    info = json.loads((tmp_path / "run" / "config.json").read_text())
    assert info["config"]["recipe"]["iterations"] is None and info["config"]["recipe"]["epochs"] == 1
    assert info["iterations"] == 8  # 256 images / 32


def test_a_run_can_start_from_weights(tiny_config, tmp_path):
    """``init`` loads a run's (or any file's) weights before the first step; a resumed run does not need the file."""
    train(tiny_config(out=str(tmp_path / "first")))
    second = tiny_config(out=str(tmp_path / "second"), init=str(tmp_path / "first"), stop_at=6)
    start = build_trainer(second).model.state_dict()
    assert_same_weights({k: v for k, v in start.items()}, weights(tmp_path / "first" / "checkpoint.pt"))
    train(second)
    (tmp_path / "first" / "checkpoint.pt").unlink()
    assert train(dataclasses.replace(second, stop_at=None), resume=True)["iterations"] == 12
    assert json.loads((tmp_path / "second" / "config.json").read_text())["config"]["init"] == str(tmp_path / "first")


def test_a_start_that_fails_before_its_first_step_leaves_nothing(tiny_config, tmp_path):
    """Out of memory (here: a model that fails) in the first step: the folder does not block the next attempt."""

    class Failing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = create_model("cifar_resnet", depth=8)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 9 GB")

    with pytest.raises(Exception, match="out of memory in a training step at batch size 32 on cpu"):
        train(tiny_config(), model=Failing())
    assert not (tmp_path / "run").exists()
    assert train(tiny_config())["iterations"] == 12


def test_model_keywords_are_checked_before_any_data_is_loaded(tiny_config, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("data loaded before the model's keywords were checked")

    monkeypatch.setattr("reslab.tasks.classification_run.load_dataset", forbidden)
    with pytest.raises(ModelError, match=r"6n\+2"):
        train(tiny_config(model_kwargs={"depth": 21}))
    with pytest.raises(ModelError, match="unknown model 'resnet21'"):
        tiny_config(model="resnet21")
    with pytest.raises(ModelError, match="plain20 is a plain net"):  # the config refuses it, not only the model
        tiny_config(model="plain20", model_kwargs={"shortcut": "B"})


def test_stop_at_must_lie_ahead_of_a_resumed_run(tiny_config, tmp_path):
    train(tiny_config(stop_at=6))
    before = (tmp_path / "run" / "config.json").read_text()
    with pytest.raises(ConfigError, match=r"--stop-at 6: .* is at iteration 6 already"):
        train(tiny_config(stop_at=6), resume=True)
    assert (tmp_path / "run" / "config.json").read_text() == before  # no session recorded


def test_an_unreadable_checkpoint_is_named_not_deleted(tiny_config, tmp_path):
    train(tiny_config(stop_at=6))
    (tmp_path / "run" / "checkpoint.pt").write_bytes(b"torn")
    for resume in (False, True):
        with pytest.raises(ConfigError, match=r"cannot read checkpoint .* not a valid reslab checkpoint .*move the "
                           r"folder aside"):  # fmt: skip
            train(tiny_config(), resume=resume)
    assert (tmp_path / "run" / "checkpoint.pt").read_bytes() == b"torn"
