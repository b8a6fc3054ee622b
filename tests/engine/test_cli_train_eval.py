"""``reslab train`` / ``eval`` / ``runs`` end to end on tiny data, their output and their error paths."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from reslab.cli import main
from reslab.weights.checkpoint import read_checkpoint

TINY = ["--model", "resnet20", "--data", "synthetic:128", "--iterations", "6", "--batch-size", "16",
        "--precision", "fp32", "--log-every", "3"]  # fmt: skip


def test_train_then_eval(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out), "--lr", "0.05", "--nesterov", "true"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["iterations"] == 6
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["recipe"]["lr"] == 0.05 and config["recipe"]["nesterov"] is True
    assert main(["eval", str(out / "checkpoint.pt"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["error"] == pytest.approx(summary["test_error"])
    saved = json.loads((out / "summary.json").read_text())
    assert result["per_class_error"] == pytest.approx(saved["test_per_class_error"])
    assert main(["eval", str(out), "--tta"]) == 0  # a run folder works as well as its checkpoint
    assert "test split: 32 images, flip (2 views);" in capsys.readouterr().out
    assert main(["eval", str(out), "--tta", "--tta-shift", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # The header names the data by its content (as every report does), then errors, then labelled per-class errors.
    assert lines[0] == (f"synthetic (128 train / 32 test), test split: 32 images, 6 views (flip x shifts 0, +-1 px); "
                        f"{out / 'checkpoint.pt'} (iteration 6)")  # fmt: skip
    assert lines[1].startswith("top-1 error ") and "top-5 error" in lines[1]
    assert lines[2] == "per-class top-1 error (%):" and len(lines) == 3 + 10 and lines[3].split()[0] == "class0"


def test_recipe_tta_shift_is_reported(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out), "--tta-flip", "true", "--tta-shift", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["reported_test_error"] == summary["test_error_tta_shift"]
    assert summary["reported_views"] == "6 views (flip x shifts 0, +-2 px)"


def test_runs_table_lists_finished_runs_and_marks_the_others(tmp_path, capsys):
    done, half = tmp_path / "r1", tmp_path / "r2"
    assert main(["train", *TINY, "--out", str(done)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert main(["train", *TINY, "--out", str(half), "--stop-at", "3"]) == 0
    (tmp_path / "empty").mkdir()
    capsys.readouterr()
    assert main(["runs", str(done), str(half), str(tmp_path / "empty")]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| run | model | recipe | data |") and table[1].startswith("|---")
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[:3] == ["r1", "resnet20", "paper"] and float(cells[4]) == round(summary["test_error"], 2)
    assert cells[5].endswith("(1 view)") and cells[6] == "6"
    assert table[3:] == ["", "Not in the table:", f"- {half}: unfinished: checkpoint at iteration 3 of 6",
                         f"- {tmp_path / 'empty'}: not a reslab run folder"]  # fmt: skip


def test_optional_recipe_fields_take_none(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out), "--paper-warmup-min-depth", "none"]) == 0
    recipe = json.loads((out / "config.json").read_text())["config"]["recipe"]
    assert recipe["paper_warmup_min_depth"] is None and recipe["iterations"] == 6 and recipe["epochs"] is None
    assert main(["train", *TINY, "--out", str(tmp_path / "r2"), "--paper-warmup-min-depth", "20"]) == 0
    recipe = json.loads((tmp_path / "r2" / "config.json").read_text())["config"]["recipe"]
    assert recipe["paper_warmup_min_depth"] == 20


def test_eval_from_another_folder_finds_the_training_data(tmp_path, capsys, monkeypatch, tiny_tar_maker):
    """The run records its data path resolved; if the data moved, the error says to pass --data."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    tiny_tar_maker(tmp_path / "a" / "tiny.tar")
    monkeypatch.chdir(tmp_path / "a")
    args = ["train", "--data", "tiny.tar", "--data-dir", "cache", "--iterations", "2", "--batch-size", "8", "--out",
            "run"]  # fmt: skip
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["iterations"] == 2
    monkeypatch.chdir(tmp_path / "b")
    assert main(["eval", "../a/run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 4
    shutil.move(tmp_path / "a" / "tiny.tar", tmp_path / "b" / "moved.tar")
    assert main(["eval", "../a/run"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"reslab: error: data not found: {tmp_path / 'a' / 'tiny.tar'}") and "pass --data" in err
    assert main(["eval", "../a/run", "--data", "moved.tar", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 4


def test_output_into_a_closed_pipe_ends_quietly(tmp_path):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out), "--quiet"]) == 0
    for args in (["eval", str(out)], ["runs", str(out)], ["models", "resnet2*"]):
        proc = subprocess.Popen([sys.executable, "-m", "reslab.cli", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)  # fmt: skip
        proc.stdout.close()  # the reader is gone before the first line (`reslab ... | head -0`)
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 141 and err == "", args


def test_help_shows_defaults_recipes_and_each_experiment(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")  # one help entry per line
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    recipes = "(paper: 0.1; fast: 0.2; imagenet-paper: 0.1; imagenet-torchvision: 0.1; detection: 0.01)"
    assert "--lr LR " in text and recipes in text and "R_LR" not in text
    assert "(paper: 64000; fast: none; imagenet-paper: 600000; imagenet-torchvision: none; detection: none)" in text
    assert "(paper: none; fast: 28; imagenet-paper: none; imagenet-torchvision: 90; detection: 12)" in text
    assert "seed of the initial weights and of the data order and augmentation (default: 0)" in text
    assert "(default: 5.0)" in text and "SIGTERM" in text
    helps = {}
    for name in ("degradation", "depth"):
        with pytest.raises(SystemExit):
            main(["reproduce", name, "--help"])
        helps[name] = capsys.readouterr().out
    assert "Fig. 6 (Sec. 4.2): the degradation problem" in helps["degradation"]
    assert "Table 6 (Sec. 4.2)" in helps["depth"] and "--with-1202" in helps["depth"]
    assert "--with-1202" not in helps["degradation"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--model", "resnet21", "--data", "synthetic"], "unknown model 'resnet21'"),
        (["train", "--data", "/does/not/exist"], "data not found"),
        (["train", "--data", "synthetic", "--lr", "-1"], "bad value for lr"),
        (["train", "--data", "synthetic", "--lr", "inf"], "bad value for lr: inf (must be a finite number)"),
        (
            ["train", "--model", "resnet18", "--data", "synthetic", "--paper-warmup-min-depth", "18"],
            "--paper-warmup-min-depth: the paper's warm-up rule is for its CIFAR nets",
        ),
        (["train", "--data", "synthetic", "--momentum", "nan"], "bad value for momentum: nan"),
        (["train", "--data", "synthetic", "--lr", "abc"], "invalid float value"),
        (["train", "--data", "synthetic", "--recipe", "slow"], "invalid choice"),
        (["train", "--data", "synthetic", "--precision", "fp16", "--device", "cpu"], "fp16 is for CUDA"),
        (["train", "--data", "synthetic", "--sync-bn"], "sync-bn needs"),
        (["train", "--data", "synthetic", "--compile-mode", "reduce-overhead"], "is a mode of --compile, which is off"),
        (["train", "--data", "synthetic", "--compile", "--compile-mode", "fast"], "invalid choice"),
        (["train", "--data", "synthetic:64", "--batch-size", "128"], "batch size"),
        (["train", "--data", "synthetic", "--iterations", "5", "--epochs", "2"], "not both"),
        (["train", "--data", "synthetic", "--recipe", "fast", "--epochs", "none"], "exactly one of them"),
        (["train", "--data", "synthetic", "--checkpoint-minutes", "-1"], "checkpoint_minutes must be"),
        (["train", "--data", "synthetic", "--resume"], "--resume: no checkpoint in"),
        (["eval", "/no/such/checkpoint.pt"], "no such file, run folder or model name"),
        (["runs", "/no/such/run"], "no reslab run folder among /no/such/run"),
        (["eval", "/no/such/checkpoint.pt", "--tta-shift", "1"], "needs the flip views too"),
        (["train", "--data", "synthetic", "--tta-shift", "1"], "needs the flip views too"),
        (["train", "--data", "synthetic", "--device", "tpu"], "unknown device"),
        (["train", "--data", "synthetic", "--device", "cuda:7"], "no such CUDA device"),
        (["train", "--data", "synthetic", "--seed", "-1"], "seed must be"),
        (["train", "--data", "synthetic", "--paper-warmup-min-depth", "1.5"], "invalid int or none value"),
        (["train", "--data", "synthetic", "--nesterov", "maybe"], "expected true/false"),
        (["train", "--data", "synthetic:2"], "bad synthetic dataset spec"),
        (["train", "--data", "synthetic", "--nesterov", "true", "--momentum", "0"], "bad value for momentum: 0.0"),
        (["train", "--data", "synthetic", "--paper-warmup-error", "80"], "bad value for paper_warmup_error"),
        (["train", "--data", "synthetic", "--recipe", "fast", "--milestones", "0.3"], "--milestones shapes the step"),
        (["train", "--data", "synthetic", "--plateau-patience", "2"], "shapes the plateau schedule only"),
        (["train", "--data", "synthetic", "--final-lr-fraction", "0.1"], "the run's is step (--schedule chooses"),
        (["train", "--data", "synthetic", "--schedule", "cosine", "--gamma", "0.5"], "--gamma shapes the step and"),
        (["train", "--data", "synthetic:256", "--iterations", "3", "--stop-at", "4"], "beyond the run's last"),
        (["train", "--data", "synthetic", "--workers", "2"], "--workers sets the data-loading processes of streamed"),
        # flags that would change nothing, or read the test set, in the run they are given to
        (["train", "--data", "synthetic", "--schedule", "plateau"], "needs --val-split N"),
        (["train", "--data", "synthetic", "--paper-warmup-lr", "0.05"], "which is off for resnet20 (20 layers"),
        (
            ["train", "--data", "synthetic", "--recipe", "fast", "--model", "resnet110", "--paper-warmup-error", "0.5"],
            "--paper-warmup-min-depth, none here",
        ),
        (["train", "--data", "synthetic", "--low-res-size", "24"], "fraction is 0: give --low-res-fraction too"),
        (["train", "--data", "synthetic", "--strict"], "'synthetic' has none"),
        (["train", "--data", "synthetic", "--data-dir", "x"], "'synthetic' is generated in memory"),
        (["train", "--data", "synthetic", "--model", "plain20", "--shortcut", "B"], "plain20 is a plain net"),
        (
            ["train", "--recipe", "imagenet-torchvision", "--model", "resnet18", "--data", "FOLDER", "--data-dir", "x"],
            "--data-dir is the download cache of in-memory data",
        ),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(args, message, tmp_path, capsys):
    (tmp_path / "images" / "train" / "a").mkdir(parents=True)
    args = [str(tmp_path / "images") if a == "FOLDER" else a for a in args]
    with pytest.raises(SystemExit) as exc:
        code = main([*args, "--out", str(tmp_path / "r")] if args[0] == "train" else args)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "r").exists()  # a refused start leaves nothing behind


def test_out_of_memory_is_one_line_naming_the_batch_size(tmp_path):
    """A batch too large for the machine: the CPU allocator fails (here under an address-space limit)."""
    code = """
        import resource, sys
        import torch  # loaded before the limit: the command imports it lazily, after
        from reslab.cli import main
        size = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmSize"))) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (size + 2 * 2**30, size + 2 * 2**30))  # 2 GiB more than now
        sys.exit(main(sys.argv[1:]))
    """
    import textwrap

    args = ["train", "--model", "resnet20", "--data", "synthetic:4096", "--batch-size", "4096", "--iterations", "2",
            "--precision", "fp32", "--out", str(tmp_path / "run"), "--quiet"]  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == ("reslab: error: out of memory in a training step at batch size 4096 on cpu: lower "
                           "--batch-size\n")  # fmt: skip
    assert not (tmp_path / "run").exists()  # the next attempt, with a smaller batch, may use the same --out


def test_a_finished_run_resumed_prints_its_summary(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    first = capsys.readouterr().out
    assert main(["train", *TINY, "--out", str(out), "--resume"]) == 0
    captured = capsys.readouterr()
    assert captured.out == first and "is finished (summary.json): nothing to resume" in captured.err
    assert read_checkpoint(out / "checkpoint.pt")["iteration"] == 6


def test_every_reproduce_flag_reaches_reproduce(monkeypatch, tmp_path):
    """Each `reslab reproduce NAME` flag is one of reproduce()'s parameters (the CLI drops nothing silently), and the
    values typed arrive there."""
    import inspect

    from reslab.cli import build_parser
    from reslab.experiments import ALL, EXPERIMENTS
    from reslab.experiments.reproduce import reproduce

    accepted = set(inspect.signature(reproduce).parameters)
    parser = build_parser()
    for name in [*EXPERIMENTS, ALL]:
        dests = set(vars(parser.parse_args(["reproduce", name, "--out", "x"]))) - {"experiment", "func"}
        assert dests <= accepted, (name, dests - accepted)
    seen = {}

    def fake(name, **kw):
        seen.update(kw, name=name)
        return "report"

    fake.__signature__ = inspect.signature(reproduce)  # the CLI passes what the real one accepts
    monkeypatch.setattr("reslab.experiments.reproduce.reproduce", fake)
    argv = ["reproduce", "depth", "--out", str(tmp_path), "--data", "synthetic:64", "--budget", "smoke", "--seeds", "2",
            "--jobs", "3", "--device", "cpu", "--with-1202", "--data-dir", str(tmp_path), "--quiet"]  # fmt: skip
    assert main(argv) == 0
    assert {k: seen[k] for k in ("name", "data", "budget", "seeds", "jobs", "device", "with_1202", "progress")} == {
        "name": "depth", "data": "synthetic:64", "budget": "smoke", "seeds": 2, "jobs": 3, "device": "cpu",
        "with_1202": True, "progress": False}  # fmt: skip
    assert seen["data_dir"] == str(tmp_path)
    assert seen["command"].endswith("--seeds 2 --jobs 3 --device cpu --with-1202")  # the report's command reruns it


def test_no_help_states_a_default_twice(monkeypatch):
    """The help formatter adds "(default: X)" unless the help says it in its own words: never both."""
    import argparse

    from reslab.cli import build_parser

    monkeypatch.setenv("COLUMNS", "1000")  # one entry per line

    def walk(parser: argparse.ArgumentParser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from walk(sub)

    parsers = list(walk(build_parser()))
    assert len(parsers) > 20
    for parser in parsers:
        for line in parser.format_help().splitlines():
            assert line.count("(default") <= 1, (parser.prog, line)
