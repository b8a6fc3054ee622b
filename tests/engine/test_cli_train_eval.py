"""``reslab train`` / ``reslab eval`` end to end on tiny data, and their error paths (one line, exit code 2)."""

import json

import pytest

from reslab.cli import main

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
    assert main(["eval", str(out / "checkpoint.pt"), "--tta"]) == 0
    assert "top-1 error" in capsys.readouterr().out
    assert main(["eval", str(out / "checkpoint.pt"), "--tta", "--tta-shift", "1"]) == 0
    assert "6 views" in capsys.readouterr().out


def test_recipe_tta_shift_is_reported(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", *TINY, "--out", str(out), "--tta-flip", "true", "--tta-shift", "2"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["reported_test_error"] == summary["test_error_tta_shift"]


def test_runs_table_reads_finished_runs(tmp_path, capsys):
    out = tmp_path / "r1"
    assert main(["train", *TINY, "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert main(["runs", str(out)]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].startswith("| run | model | recipe | data |") and len(table) == 3
    cells = [c.strip() for c in table[2].strip("|").split("|")]
    assert cells[:3] == ["r1", "resnet20", "paper"] and float(cells[4]) == round(summary["test_error"], 2)
    assert cells[5].endswith("(1 view)") and cells[6] == "6"


def test_optional_recipe_fields_take_none(tmp_path, capsys):
    out = tmp_path / "run"
    # the paper's warm-up rule for every depth, then cleared again: `none` resets an optional field
    assert main(["train", *TINY, "--out", str(out), "--paper-warmup-min-depth", "none", "--epochs", "none"]) == 0
    recipe = json.loads((out / "config.json").read_text())["config"]["recipe"]
    assert recipe["paper_warmup_min_depth"] is None and recipe["iterations"] == 6
    assert main(["train", *TINY, "--out", str(tmp_path / "r2"), "--paper-warmup-min-depth", "20"]) == 0
    recipe = json.loads((tmp_path / "r2" / "config.json").read_text())["config"]["recipe"]
    assert recipe["paper_warmup_min_depth"] == 20


def test_train_on_an_image_folder_tar(tmp_path, capsys):
    import io
    import tarfile

    from PIL import Image

    tar_path = tmp_path / "tiny.tar"
    with tarfile.open(tar_path, "w") as tar:
        for split, n in (("train", 8), ("test", 2)):
            for cls in ("cat", "dog"):
                for i in range(n):
                    buf = io.BytesIO()
                    Image.new("RGB", (32, 32), (40 * i, 200 if cls == "cat" else 20, 90)).save(buf, "PNG")
                    info = tarfile.TarInfo(f"{split}/{cls}/{i}.png")
                    info.size = buf.tell()
                    buf.seek(0)
                    tar.addfile(info, buf)
    args = ["train", "--data", str(tar_path), "--data-dir", str(tmp_path / "cache"), "--iterations", "2",
            "--batch-size", "8", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["iterations"] == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "--model", "resnet21", "--data", "synthetic"], "unknown model 'resnet21'"),
        (["train", "--data", "/does/not/exist"], "data not found"),
        (["train", "--data", "synthetic", "--lr", "-1"], "bad value for lr"),
        (["train", "--data", "synthetic", "--lr", "abc"], "invalid float value"),
        (["train", "--data", "synthetic", "--recipe", "slow"], "invalid choice"),
        (["train", "--data", "synthetic", "--precision", "fp16", "--device", "cpu"], "fp16 is for CUDA"),
        (["train", "--data", "synthetic", "--sync-bn"], "sync-bn needs"),
        (["train", "--data", "synthetic:64", "--batch-size", "128"], "batch size"),
        (["eval", "/no/such/checkpoint.pt"], "checkpoint not found"),
        (["runs", "/no/such/run"], "is not a finished run"),
        (["eval", "/no/such/checkpoint.pt", "--tta-shift", "1"], "needs --tta"),
        (["train", "--data", "synthetic", "--tta-shift", "1"], "bad value for tta_shift"),
        (["train", "--data", "synthetic", "--device", "tpu"], "unknown device"),
        (["train", "--data", "synthetic", "--device", "cuda:7"], "no such CUDA device"),
        (["train", "--data", "synthetic", "--seed", "-1"], "seed must be"),
        (["train", "--data", "synthetic", "--paper-warmup-min-depth", "1.5"], "invalid int or none value"),
        (["train", "--data", "synthetic", "--nesterov", "maybe"], "expected true/false"),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        code = main([*args, "--out", str(tmp_path / "r")] if args[0] == "train" else args)
        raise SystemExit(code)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err
