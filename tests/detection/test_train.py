"""Detection runs on the shared engine: a run folder with COCO mAP in its summary, exact resume, one-line errors."""

import dataclasses

import pytest
import torch

from reslab.detection.canvas import make_canvases
from reslab.engine.config import TrainConfig
from reslab.engine.recipes import get_recipe
from reslab.engine.run import train
from reslab.errors import ReslabError
from reslab.weights.checkpoint import read_checkpoint


@pytest.fixture(scope="module")
def canvases(tmp_path_factory, colour_tar_maker):
    """8 training and 4 test canvases of 96 pixels from a tar of 3 flat-colour classes."""
    root = tmp_path_factory.mktemp("canvas")
    tar = colour_tar_maker(root / "tiny.tar", per_class=3)
    return make_canvases(tar, root / "set", {"train": 8, "test": 4}, size=96, scale=(24, 40))


def _config(data, out, **kw) -> TrainConfig:
    recipe = get_recipe("detection", batch_size=2, iterations=4, epochs=None)
    base = dict(model="fasterrcnn_resnet20_c4", model_kwargs={"min_size": 96, "max_size": 96}, data=str(data),
                init="resnet20",  # the shipped weights: a detector's backbone starts trained (Sec. 4.3)
                recipe=recipe, precision="fp32", device="cpu", out=str(out), log_every=2, eval_every=2,
                progress=False)  # fmt: skip
    return TrainConfig(**{**base, **kw})


def test_a_detection_run_trains_evaluates_and_resumes_exactly(canvases, tmp_path):
    summary = train(_config(canvases, tmp_path / "straight"))
    assert summary["iterations"] == 4 and 0 <= summary["test_mAP"] <= 100 and summary["test_images"] == 4
    assert summary["reported_error"] == pytest.approx(100 - summary["test_mAP"])
    split = _config(canvases, tmp_path / "split", stop_at=2)
    assert train(split) == {}
    train(dataclasses.replace(split, stop_at=None), resume=True)
    a, b = (read_checkpoint(tmp_path / n / "checkpoint.pt") for n in ("straight", "split"))
    assert a["classes"] == ["blue", "green", "red"] and a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_a_detectors_init_brings_its_backbones_keywords(canvases):
    """torchvision's weights need their bottleneck built as torchvision's: the keyword goes to the backbone."""
    config = _config(canvases, "unused", model="fasterrcnn_resnet50_c4", init="torchvision:resnet50")
    assert config.model_kwargs["backbone_kwargs"] == {"stride_in_1x1": False}
    assert "stride_in_1x1" not in config.model_kwargs  # not a keyword of the detector itself


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"model": "resnet20"}, "unknown detector 'resnet20'"),
        ({"recipe": get_recipe("paper")}, "fasterrcnn_resnet20_c4 is a detector: train it with --recipe detection"),
        ({"val_split": 2}, "detection runs have no --val-split"),
        ({"image_size": 48}, "detection runs do not use --image-size: their images are read at --min-size"),
        ({"head_lr_scale": 10.0}, "do not use --head-lr-scale"),
        ({"recipe": get_recipe("detection", label_smoothing=0.1)}, "do not use --label-smoothing"),
        ({"recipe": get_recipe("detection", tta_flip=True)}, "do not use --tta-flip"),
        ({"recipe": get_recipe("detection", low_res_size=16, low_res_fraction=0.5)}, "do not use --low-res-size"),
        ({"recipe": get_recipe("detection", paper_warmup_min_depth=20)}, "--paper-warmup-min-depth: the paper's warm"),
        ({"sync_bn": True}, "--sync-bn: a detector's BN layers are frozen"),
    ],
)
def test_detection_configuration_errors_are_one_line(canvases, tmp_path, kw, message):
    with pytest.raises(ReslabError, match=message):
        _config(canvases, tmp_path / "x", **kw)


def test_eval_and_predict_a_detection_run(canvases, tmp_path, capsys):
    import json

    from reslab.cli import main

    train(_config(canvases, tmp_path / "run", recipe=get_recipe("detection", batch_size=2, iterations=2, epochs=None)))
    assert main(["detect", "eval", str(tmp_path / "run"), "--json", "--precision", "fp32"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert main(["detect", "eval", str(tmp_path / "run"), "--precision", "fp32"]) == 0  # the table, not a traceback
    assert "4 test images, COCO box statistics (%):" in capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert stats["images"] == 4 and stats["mAP"] * 100 == pytest.approx(summary["test_mAP"], abs=1e-6)
    images = canvases / "test" / "images"
    (tmp_path / "bad.jpg").write_bytes(b"junk")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "000000.jpg").write_bytes((images / "000000.jpg").read_bytes())  # the same file name
    assert main(["detect", "predict", str(tmp_path / "run"), str(images), str(tmp_path / "bad.jpg"),
                 str(tmp_path / "other"), "--out", str(tmp_path / "drawn"), "--threshold", "0", "--precision",
                 "fp32"]) == 0  # fmt: skip
    out, err = capsys.readouterr()
    records = [json.loads(line) for line in out.strip().splitlines()]
    assert len(records) == 5 and all((tmp_path / "drawn" / f"{i:06d}.png").is_file() for i in range(4))
    assert records[-1]["drawn"].endswith("000000-1.png") and (tmp_path / "drawn" / "000000-1.png").is_file()
    assert (tmp_path / "drawn" / "detections.jsonl").read_text().splitlines() == out.strip().splitlines()
    found = [d for r in records for d in r["detections"]]
    assert all(d["class"] in ("blue", "green", "red") and 0 <= d["score"] <= 1 for d in found)
    assert "skipped" in err and "bad.jpg" in err
    assert main(["detect", "eval", str(tmp_path / "none")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    assert main(["detect", "predict", str(tmp_path / "run"), str(images), "--out", str(tmp_path / "a-file")]) == 2
    assert "cannot write to --out" in capsys.readouterr().err
    assert main(["detect", "predict", str(tmp_path / "none"), str(images), "--out", str(tmp_path / "d2")]) == 2
    assert not (tmp_path / "d2").exists()  # a failed load leaves no folder behind
    capsys.readouterr()
    for bad in ("5", "nan", "-1"):
        with pytest.raises(SystemExit):
            main(["detect", "predict", str(tmp_path / "run"), str(images), "--out", "x", "--threshold", bad])
        assert "must be a number in [0, 1]" in capsys.readouterr().err
    relabelled = tmp_path / "relabelled" / "test"  # the test images under other class names, and no train split
    relabelled.mkdir(parents=True)
    (relabelled / "images").symlink_to(canvases / "test" / "images")
    gt = json.loads((canvases / "test" / "instances.json").read_text())
    gt["categories"] = [{**c, "name": c["name"].upper()} for c in gt["categories"]]
    (relabelled / "instances.json").write_text(json.dumps(gt))
    relabelled = relabelled.parent
    assert main(["detect", "eval", str(tmp_path / "run"), "--data", str(relabelled)]) == 2  # test split alone
    assert "are not the ones" in capsys.readouterr().err
    assert main(["runs", str(tmp_path / "run")]) == 0
    assert "| fasterrcnn_resnet20_c4 | detection |" in capsys.readouterr().out
    assert main(["eval", str(tmp_path / "run")]) == 2  # the classification commands point the way
    assert "is a detection run (fasterrcnn_resnet20_c4): use reslab detect eval" in capsys.readouterr().err


def test_detect_train_from_the_command_line(canvases, tmp_path, capsys):
    from reslab.cli import main

    args = ["detect", "train", "--backbone", "resnet20", "--init", "resnet20", "--data", str(canvases), "--iterations",
            "2", "--epochs",
            "none", "--batch-size", "2", "--min-size", "96", "--max-size", "96", "--precision", "fp32", "--device",
            "cpu", "--quiet", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(args) == 0
    assert '"test_mAP"' in capsys.readouterr().out
    assert main([*args[:4], "--shortcut", "B", *args[4:]]) == 2
    assert "--shortcut is for classification" in capsys.readouterr().err
    assert main([*args[:4], *args[6:]]) == 2  # no --init
    assert "a detector's backbone starts from trained weights (Sec. 4.3): pass --init" in capsys.readouterr().err


def test_a_split_without_objects_is_one_line(canvases, tmp_path):
    import json

    from reslab.errors import DataError

    data = tmp_path / "no-objects"
    for split in ("train", "test"):
        (data / split).mkdir(parents=True)
        (data / split / "images").symlink_to(canvases / split / "images")
        gt = json.loads((canvases / split / "instances.json").read_text())
        if split == "test":
            gt["annotations"] = []
        (data / split / "instances.json").write_text(json.dumps(gt))
    with pytest.raises(DataError, match="the test split has no objects"):
        train(_config(data, tmp_path / "run"))
