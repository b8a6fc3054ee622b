"""Error paths that used to end in a traceback, a silent wrong answer or a misleading hint (issue #23, part 3): each
is one line naming the problem, with a non-zero exit, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from reslab.cli import _one_line_warning, main
from reslab.engine.rundir import RunDir
from reslab.engine.trainer import stop_at_once
from reslab.errors import ReslabError, TrainingInterrupted, class_mismatch
from reslab.weights.checkpoint import read_checkpoint

TINY = ["--model", "resnet20", "--data", "synthetic:128", "--iterations", "4", "--batch-size", "16",
        "--precision", "fp32", "--log-every", "2", "--quiet"]  # fmt: skip


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_out_of_memory_while_preparing_a_batch_is_one_line(tmp_path, capsys, monkeypatch):
    import reslab.data.batches as batches

    def fail(*args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: can't allocate memory: you "
                           "tried to allocate 9999999999 bytes")  # fmt: skip

    monkeypatch.setattr(batches, "apply_crops_flips", fail)
    assert main(["train", *TINY, "--out", str(tmp_path / "r")]) == 2
    assert one_line(capsys) == ("reslab: error: out of memory preparing a training batch at batch size 16 on cpu: "
                                "lower --batch-size")  # fmt: skip
    assert not (tmp_path / "r").exists()


def test_class_mismatch_names_the_counts_and_the_first_difference():
    msg = class_mismatch(["a", "b", "c", "d", "e"], [*"abcdefghij"])
    assert "5 in the data, 10 in the model" in msg and "'f'" in msg
    assert "class 1: 'x' in the data, 'b' in the model" in class_mismatch(["a", "x"], ["a", "b"])


def test_resume_of_a_finished_run_with_another_model_is_refused(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["train", *TINY, "--out", out]) == 0
    capsys.readouterr()
    assert main(["train", *TINY, "--model", "resnet32", "--out", out, "--resume"]) == 2
    assert "holds a finished run with another 'model' ('resnet20', not 'resnet32')" in one_line(capsys)
    assert main(["train", *TINY, "--out", out]) == 2  # starting into it again: what to do instead
    assert "it is finished: evaluate it with `reslab eval`" in one_line(capsys)
    assert main(["train", *TINY, "--lr", "0.05", "--out", out, "--resume"]) == 2  # a recipe flag: named as such
    assert "another 'recipe.lr' (0.1, not 0.05)" in one_line(capsys)


def test_resume_of_an_unfinished_run_with_another_flag_names_it(tmp_path, capsys):
    out = str(tmp_path / "r")
    assert main(["train", *TINY, "--stop-at", "1", "--out", out]) == 0
    capsys.readouterr()
    assert main(["train", *TINY, "--weight-decay", "0.001", "--out", out, "--resume"]) == 2
    assert "it was trained with another 'recipe.weight_decay' (0.0001, not 0.001)" in one_line(capsys)


def test_a_failed_resume_into_an_empty_folder_leaves_no_lock(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["train", *TINY, "--out", str(tmp_path / "empty"), "--resume"]) == 2
    assert "--resume: no checkpoint in" in one_line(capsys)
    assert list((tmp_path / "empty").iterdir()) == []


def test_out_naming_a_file_says_so(tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    assert main(["train", *TINY, "--out", str(tmp_path / "f")]) == 2
    assert "it is a file; choose a folder for --out" in one_line(capsys)


def test_metrics_never_hold_bare_nan(tmp_path):
    run = RunDir(tmp_path)
    run.log({"iter": 1, "train_loss": float("nan"), "lr": float("inf")})

    def refuse(name: str) -> None:
        raise AssertionError(f"not JSON: {name}")

    record = json.loads((tmp_path / "metrics.jsonl").read_text(), parse_constant=refuse)
    assert record == {"iter": 1, "train_loss": None, "lr": None}


def test_a_signal_during_the_final_evaluation_says_what_was_kept():
    with pytest.raises(TrainingInterrupted) as e, stop_at_once("the checkpoint at iteration 4 of 4 is complete"):
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0.5) if hasattr(signal, "sigtimedwait") else None
    assert e.value.exit_code == 143 and "SIGTERM: the checkpoint at iteration 4 of 4 is complete" in str(e.value)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))


def test_mixed_image_sizes_point_to_the_flag(tmp_path, capsys):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for i, size in enumerate((32, 40)):
            (tmp_path / "d" / split / "c").mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(tmp_path / "d" / split / "c"
                                                                                        / f"{i}.png")  # fmt: skip
    code = main(["train", *TINY, "--data", str(tmp_path / "d"), "--out", str(tmp_path / "r"),
                 "--data-dir", str(tmp_path / "cache")])  # fmt: skip
    assert code == 2 and "pass --image-size S" in one_line(capsys)


def test_reading_a_pickle_with_code_warns_nothing_before_the_refusal(tmp_path):
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"model": Evil()}, protocol=2))
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        with pytest.raises(ReslabError, match="not a valid reslab checkpoint"):
            read_checkpoint(tmp_path / "evil.pt")
    assert said == []


def test_warnings_are_one_line_without_a_source_line():
    text = _one_line_warning(UserWarning("weights recognised"), UserWarning, "x.py", 3, line="code()")
    assert text == "reslab: warning: weights recognised\n"


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    return out


def test_top_k_above_the_classes_is_refused(small_run, tmp_path, capsys):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    assert main(["predict", str(small_run), str(tmp_path / "a.png"), "--top-k", "11"]) == 2
    assert "--top-k 11 is more than the model's 10 classes" in one_line(capsys)


def test_predict_prints_names_that_are_not_utf8_on_a_strict_terminal(small_run, tmp_path):
    folder = os.fsencode(tmp_path / "imgs")
    os.mkdir(folder)
    Image.new("RGB", (32, 32)).save(os.path.join(folder, b"caf\xe9.png").decode("utf-8", "surrogateescape"))
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "LC_ALL": "C.UTF-8"}
    for extra in ([], ["--json"]):
        argv = [sys.executable, "-m", "reslab.cli", "predict", str(small_run), str(tmp_path / "imgs"), "--top-k", "1"]
        proc = subprocess.run([*argv, *extra], capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        path = json.loads(proc.stdout)["path"] if extra else proc.stdout.split("\t")[0]
        assert path.endswith("caf\\xe9.png")


def test_a_decompression_bomb_is_named_in_full():
    from reslab.deploy.predict import _why

    why = _why(Image.DecompressionBombError("Image size (200000000 pixels) exceeds limit of 178956970 pixels, could "
                                            "be decompression bomb DOS attack."))  # fmt: skip
    assert why == "too many pixels to decode safely (over Pillow's decompression-bomb limit)"
    long = _why(ValueError("word " * 40))
    assert long.endswith("word ...")


def test_a_dead_peer_is_one_line_on_the_surviving_rank(monkeypatch, capsys):
    """What gloo raises on the rank that survives (here without a real second process): one line, exit 1."""
    import argparse

    import torch.distributed as dist

    import reslab.cli as cli

    def fails(args):
        raise RuntimeError("[../third_party/gloo/gloo/transport/tcp/pair.cc:534] Connection closed by peer "
                           "[127.0.0.1]:29500\n" + "\n".join(f"frame #{i}" for i in range(40)))  # fmt: skip

    parser = argparse.ArgumentParser()
    parser.set_defaults(func=fails)
    monkeypatch.setattr(cli, "build_parser", lambda *args, **kwargs: parser)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setenv("RANK", "1")
    assert cli.main([]) == 1
    err = one_line(capsys)
    assert err.startswith("reslab: error: rank 1 stopped: another process of the job died") and "--resume" in err
