"""``reslab reproduce``: every experiment end to end at the smoke budget, run caching, resume and reuse of runs.

These check that reports, figures and tables exist with the expected series and rows, not the errors: smoke runs
are a few iterations on 256 synthetic images. All experiments share one results folder, as a user's would, so
``responses``, ``highway`` and ``shortcuts`` reuse ``degradation``'s runs.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from reslab.cli import main
from reslab.engine.run import train
from reslab.experiments.runner import Context, Runner, RunResult, RunSpec, by_key, get_budget

DATA = "synthetic:256"
FIG6_NETS = [*(f"plain-{d}" for d in (20, 32, 44, 56)), *(f"ResNet-{d}" for d in (20, 32, 44, 56, 110))]


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("reproduce")


def reproduce(out: Path, name: str, *extra: str) -> Path:
    argv = ["reproduce", name, "--data", DATA, "--out", str(out), "--budget", "smoke", "--quiet", *extra]
    assert main(argv) == 0
    return out / name


def results(folder: Path) -> dict:
    assert (folder / "report.md").is_file() and (folder / "results.csv").is_file()
    return json.loads((folder / "results.json").read_text())


def run_state(out: Path) -> dict[str, int]:
    """Every run folder with the modification time of its summary (unchanged = not trained again)."""
    return {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/summary.json")}


def assert_png(path: Path) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def smoke_runner(out: Path) -> Runner:
    return Runner(DATA, out, get_budget("smoke"), progress=False)


def test_degradation_report_and_cached_rerun(out: Path) -> None:
    from reslab.experiments.degradation import compare, specs

    folder = reproduce(out, "degradation")
    res = results(folder)
    assert [r["net"] for r in res["rows"]] == FIG6_NETS
    # The report's numbers and verdicts are the runs' own, recomputed here from their run folders.
    runner = smoke_runner(out)
    groups = by_key({s.name: runner.result(s) for s in specs(Context("degradation", runner, folder))})
    for row, key in zip(res["rows"], groups, strict=True):
        assert row["final train error (%)"] == pytest.approx(groups[key][0].final_train_error(0.1))
        assert float(row["test error (%)"]) == pytest.approx(groups[key][0].summary["test_error"], abs=5e-3)
    assert res["plain56_vs_plain20_train_error"] == compare(groups["plain56"], groups["plain20"])[2]
    assert res["resnet56_vs_resnet20_train_error"] == compare(groups["resnet56"], groups["resnet20"])[2]
    report = (folder / "report.md").read_text()
    assert_png(folder / "fig6_degradation.png")
    assert "![Fig. 6](fig6_degradation.png)" in report and "(`synthetic:256`" in report
    assert "the degradation problem is **" in report and "- **ResNets:** ResNet-56 ends with" in report
    assert "last 10% of the iterations" in report and "| ResNet-56 | 56 |" in report
    assert sorted(run_state(out)) == sorted(
        [*(f"{k}{d}-s0" for k in ("plain", "resnet") for d in (20, 32, 44, 56)), "resnet110-s0"]
    )  # the smoke budget reaches ResNet-110, as fast does
    assert "- **ResNet-110:** training error" in report
    before = run_state(out)
    reproduce(out, "degradation")  # everything is cached: nothing is trained again
    assert run_state(out) == before


def test_responses_reads_degradation_checkpoints(out: Path) -> None:
    reproduce(out, "degradation")  # cached if the test above ran
    before = run_state(out)
    res = results(reproduce(out, "responses"))
    assert run_state(out) == before  # no new run folder, no retraining
    # one std per 3x3 layer: the stem plus two per unit, 6n+1 for a 6n+2-layer net
    assert {k: len(v) for k, v in res["stds"].items()} == {"plain-20": 19, "plain-56": 55, "ResNet-20": 19,
                                                           "ResNet-56": 55, "ResNet-110": 109}  # fmt: skip
    assert_png(out / "responses" / "fig7_responses.png")
    assert "![Fig. 7](fig7_responses.png)" in (out / "responses" / "report.md").read_text()


def test_depth_table6(out: Path) -> None:
    res = results(reproduce(out, "depth"))
    assert [r["net"] for r in res["rows"]] == [f"ResNet-{d}" for d in (20, 32, 44, 56, 110)]
    runner = smoke_runner(out)
    for row, d in zip(res["rows"], (20, 32, 44, 56, 110), strict=True):
        run = runner.result(RunSpec(f"resnet{d}", variant="val", val_split=64))
        assert row["val error (%)"] == pytest.approx(run.summary["val_error"])  # the held-out split, not the test set
        assert row["test mean (%)"] == pytest.approx(run.summary["test_error"])
        below = [i for i, e in zip(*run.train_curve(), strict=True) if e < 80]  # the paper's warm-up threshold
        assert row["iteration train error < 80%"] == (str(below[0]) if below else "never")
    report = (out / "depth" / "report.md").read_text()
    assert "iteration train error < 80%" in report and "slightly too large to start converging" in report
    assert "6.43 (6.61±0.16)" in report and "| ResNet-110 |" in report
    assert all("(test-set sampling, paired)" in c["margin"] for c in res["claims"][1:])  # each step and the trend
    drift = float(report.split("Here the largest difference is ")[1].split(" points")[0])
    assert drift == 0, drift  # the mistakes compared are those the tabled models' final evaluations recorded
    assert_png(out / "depth" / "table6_depth.png")
    assert {f"resnet{d}-val-s0" for d in (20, 32, 44, 56, 110)} <= set(run_state(out))


def test_test_mistakes_are_recorded_evaluated_again_for_older_runs_and_checked(out: Path, tmp_path: Path) -> None:
    from reslab.engine.rundir import RunDir
    from reslab.errors import ConfigError

    reproduce(out, "degradation")
    shutil.copytree(out / "runs" / "resnet20-s0", tmp_path / "runs" / "resnet20-s0")
    runner = smoke_runner(tmp_path)
    run, folder = runner.result(RunSpec("resnet20")), RunDir(tmp_path / "runs" / "resnet20-s0")
    recorded, how = folder.mistakes("test")
    assert how["source"] == "final evaluation" and how["views"] == 1
    assert 100 * sum(recorded) / len(recorded) == pytest.approx(run.summary["test_error"], abs=1e-9)
    assert runner.test_mistakes(run) == recorded
    (run.path / "mistakes.json").unlink()  # a run older than the record: its model is evaluated again, once
    again = runner.test_mistakes(run)
    assert sum(a != b for a, b in zip(again, recorded, strict=True)) <= 2  # same model, same precision
    assert folder.mistakes("test")[1]["source"].startswith("re-evaluated") and runner.test_mistakes(run) == again
    wrong = [sum(again) < len(again) / 2] * len(again)  # another model's mistakes: far from the recorded error
    folder.write_mistakes({"source": "elsewhere", "splits": {"test": wrong}})
    with pytest.raises(ConfigError, match="not this run's final model"):
        runner.test_mistakes(run)
    (run.path / "mistakes.json").unlink()
    other = dataclasses.replace(run, summary={**run.summary, "test_error": 100.0 * wrong[0]})
    with pytest.raises(ConfigError, match="its checkpoint or this data is not what the run was tested with"):
        runner.test_mistakes(other)  # evaluated again, and still not the recorded error
    assert folder.mistakes("test") is None  # a refused evaluation is not kept
    folder.write_mistakes({"source": "final evaluation", "splits": {"test": recorded[:-1]}})
    with pytest.raises(ConfigError, match="not this run's final model"):
        runner.test_mistakes(run)  # another test set's
    one_off = [not recorded[0], *recorded[1:]]  # one image: within what an evaluation again may flip, not a record
    folder.write_mistakes({"source": "final evaluation", "splits": {"test": one_off}})
    with pytest.raises(ConfigError, match="not this run's final model"):
        runner.test_mistakes(run)
    folder.write_mistakes({"source": "re-evaluated", "precision": run.summary["precision"],
                           "splits": {"test": one_off}})  # fmt: skip
    assert runner.test_mistakes(run) == one_off


def test_shortcuts_reuse_option_a(out: Path) -> None:
    reproduce(out, "degradation")
    before = run_state(out)
    res = results(reproduce(out, "shortcuts"))
    new = set(run_state(out)) - set(before)
    assert new == {f"resnet{d}-{o}-s0" for d in (32, 56) for o in "BC"}  # option A is degradation's run
    rows = {(r["net"], r["option"]): r for r in res["rows"]}
    assert sorted(rows) == [(f"ResNet-{d}", o) for d in (32, 56) for o in "ABC"]
    for d in (32, 56):
        params = [rows[f"ResNet-{d}", o]["params"] for o in "ABC"]
        assert params == sorted(set(params))  # B adds projections where shapes change, C everywhere
    margins = [c["margin"] for c in res["claims"]]
    assert len(margins) == 2 and all(m.count("(test-set sampling, paired)") == 2 for m in margins)  # C/B, B/A


def test_highway(out: Path) -> None:
    res = results(reproduce(out, "highway"))
    assert [r["net"] for r in res["rows"]] == [f"{k}-{d}" for d in (20, 56) for k in ("plain", "ResNet", "highway")]
    report = (out / "highway" / "report.md").read_text()
    assert "At 20 layers the test errors rank" in report and "The highway gates add" in report
    assert_png(out / "highway" / "highway_curves.png")


def test_table1_needs_no_training(tmp_path: Path) -> None:
    assert main(["reproduce", "table1", "--out", str(tmp_path), "--budget", "smoke"]) == 0
    rows = {r["model"]: r for r in results(tmp_path / "table1")["rows"]}
    assert rows["resnet50"]["paper GMACs (Table 1)"] == 3.8
    assert rows["resnet1202"]["paper params (M) (Table 6)"] == 19.4
    assert abs(rows["resnet50"]["GMACs"] - 3.8) < 0.1 and not (tmp_path / "runs").exists()
    # VGG-19 counted by the same function, beside the paper's 19.6 GFLOPs and the 34-layer nets
    assert rows["vgg19"]["paper GMACs"] == 19.6 and abs(rows["vgg19"]["GMACs"] - 19.6) < 0.1
    assert rows["vgg19"]["GMACs / resnet34"] == round(rows["vgg19"]["GMACs"] / rows["resnet34"]["GMACs"], 2)


@pytest.mark.parametrize("argv", [["reproduce", "fig99"], ["reproduce", "depth", "--budget", "huge"]])
def test_user_mistakes_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(tmp_path), "--data", DATA])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reslab reproduce") and "invalid choice" in err and "\n" not in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["depth", "--budget", "cpu", "--with-1202"], "--with-1202 goes with a budget that trains ResNet-110"),
        (["all", "--budget", "smoke", "--scorecard-only", "--jobs", "2"], "--jobs does not apply"),
        (["all", "--budget", "smoke", "--scorecard-only", "--seeds", "3"], "--seeds does not apply"),
        (["all", "--budget", "smoke", "--scorecard-only", "--strict"], "--strict does not apply"),
        (["all", "--budget", "smoke", "--scorecard-only", "--data", "synthetic"], "--data does not apply"),
        (["all", "--budget", "smoke", "--scorecard-only"], "nothing is reported under"),
    ],
)
def test_options_that_cannot_apply_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                               says: str) -> None:  # fmt: skip
    """An option that would be ignored is refused in one line, before anything is trained or written."""
    out = tmp_path / "missing"
    data = [] if "--scorecard-only" in argv else ["--data", DATA]  # --data trains: not with --scorecard-only
    assert main(["reproduce", *argv, "--out", str(out), *data]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reslab: error:") and says in err and "\n" not in err
    assert not out.exists()


def test_reproduce_offers_no_workers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The experiments hold their data in memory: --workers (streamed images' loaders) would change nothing."""
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "depth", "--budget", "smoke", "--workers", "2", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "unrecognized arguments: --workers" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["signals", "construction", "table1"])
def test_one_seed_experiments_take_no_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> None:
    """Sec. 4.1's signals, the construction and Table 1 use one run of each net: --seeds is not offered (it was
    accepted and ignored, while the report listed the seeds)."""
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", name, "--seeds", "2", "--out", str(tmp_path)])
    assert exc.value.code == 2 and "unrecognized arguments: --seeds" in capsys.readouterr().err


@pytest.mark.parametrize("option", [["--data", DATA], ["--device", "cpu"], ["--jobs", "2"]])
def test_table1_takes_no_training_options(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          option: list[str]) -> None:  # fmt: skip
    """Table 1 counts on freshly built modules: data, device and jobs would be ignored, so they are not offered."""
    with pytest.raises(SystemExit) as exc:
        main(["reproduce", "table1", *option, "--out", str(tmp_path)])
    assert exc.value.code == 2 and f"unrecognized arguments: {option[0]}" in capsys.readouterr().err


def test_out_that_is_a_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    assert main(["reproduce", "table1", "--out", str(tmp_path / "file"), "--budget", "smoke"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reslab: error: cannot write") and "\n" not in err


def _jpeg_tar(path: Path) -> Path:
    """A tiny ImageFolder tar (4 train / 2 test quality-75 JPEGs per CIFAR-10 class), like the shared copy."""
    rng = np.random.default_rng(0)
    with tarfile.open(path, "w") as tar:
        for split, n in (("train", 4), ("test", 2)):
            for c in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"):
                for i in range(n):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG", quality=75)
                    info = tarfile.TarInfo(f"{split}/{c}/{i}.jpg")
                    info.size = len(buf.getvalue())
                    tar.addfile(info, io.BytesIO(buf.getvalue()))
    return path


def test_killed_run_resumes_and_jpeg_copy_is_labelled(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reslab.experiments.report import header

    data = str(_jpeg_tar(tmp_path / "tiny.tar"))  # the label comes from the files, not from the name
    runner = Runner(data, tmp_path / "out", get_budget("smoke"), data_dir=str(tmp_path / "cache"), progress=False)
    spec = RunSpec("resnet20")
    train(dataclasses.replace(runner.config(spec), stop_at=3), data=runner.dataset)  # as if killed at 3 of 6
    assert not runner.is_done(spec) and (runner.run_dir(spec) / "checkpoint.pt").exists()
    result = runner.run_all([spec])[spec.name]
    assert "resnet20-s0 resumed" in capsys.readouterr().err
    assert result.summary["iterations"] == 6 and result.train_curve()[0] == [2, 4, 6]
    lines = "\n".join(header(Context("degradation", runner, tmp_path / "out" / "degradation"), "t", "Fig. 6"))
    assert f"- Data: **CIFAR-10 (JPEG q75 copy)** (`{data}`" in lines and "not the paper's exact" in lines


def _fake_run(errors: list[float]) -> RunResult:
    metrics = [{"iter": 10 * (i + 1), "train_error": e} for i, e in enumerate(errors)]
    return RunResult(RunSpec("resnet20"), Path("."), {}, metrics)


def test_fig6_verdict_needs_a_gap_beyond_noise() -> None:
    from reslab.experiments.degradation import compare

    flat = [50.0] * 90
    noisy = lambda centre: [*flat, *(centre + d for d in (-1.0, 1.0) * 5)]  # noqa: E731  10 tail records, sd ~1
    assert compare([_fake_run(noisy(30.0))], [_fake_run(noisy(25.0))])[2] == "higher"
    assert compare([_fake_run(noisy(25.0))], [_fake_run(noisy(30.0))])[2] == "lower"
    assert compare([_fake_run(noisy(25.3))], [_fake_run(noisy(25.0))])[2] == "within noise"


def test_noise_margins_count_seeds_but_never_below_the_test_sets_sampling() -> None:
    """Two seeds that agree by chance do not shrink a margin below the test set's binomial noise (the same 10k images
    test every seed); seeds that disagree widen it (in quadrature); Fig. 6's training margin takes the spread over
    seeds too."""
    from reslab.experiments.degradation import compare, margin
    from reslab.experiments.report import test_noise

    sampling, how = test_noise([13.0], [12.0])
    assert how == "test-set sampling" and 0.9 < sampling < 0.97
    agree, how = test_noise([13.0, 13.01], [12.0, 12.01])
    assert how == "test-set sampling, and seeds" and sampling < agree < sampling + 1e-3
    wide, how = test_noise([11.0, 15.0], [12.0, 12.2])
    seeds = 2 * math.sqrt(8 / 2 + 0.02 / 2)
    assert how == "test-set sampling, and seeds" and wide == pytest.approx(math.hypot(seeds, 0.95), abs=0.02)
    shallow, deep = [[i < 1300 for i in range(10_000)]], [[i < 1200 for i in range(10_000)]]
    paired, how = test_noise([13.0], [12.0], mistakes=(shallow, deep))
    assert how == "test-set sampling, paired" and paired == pytest.approx(200 * math.sqrt(0.01 * 0.99 / 9_999))
    tail = lambda centre: [*[50.0] * 90, *(centre + d for d in (-0.1, 0.1) * 5)]  # noqa: E731
    agree = [_fake_run(tail(20.0)), _fake_run(tail(20.2))]
    spread = [_fake_run(tail(15.0)), _fake_run(tail(25.0))]
    assert margin(agree, agree) < 0.3 and margin(spread, agree) > 6
    assert compare(spread, agree)[2] == "within noise" and compare([_fake_run(tail(25.0))], agree)[2] == "higher"


def test_table6_rows_are_steps_and_the_trend_from_the_shallowest_to_the_deepest() -> None:
    from reslab.experiments.depth import claims
    from reslab.experiments.report import NOT_REPRODUCED, REPRODUCED, UNRESOLVED

    def group(depth: int, *tests: float) -> list[RunResult]:
        return [RunResult(RunSpec(f"resnet{depth}", s), Path("."), {"test_error": t}, []) for s, t in enumerate(tests)]

    rows = claims({"resnet20": group(20, 13.0, 13.4), "resnet56": group(56, 12.6), "resnet110": group(110, 11.0)})
    assert [r["verdict"] for r in rows] == ["baseline", UNRESOLVED, REPRODUCED, REPRODUCED]
    assert rows[0]["reslab"] == "13.00 (13.20±0.28) (2 seeds)" and "(test-set sampling)" in rows[1]["margin"]
    assert rows[3]["claim"] == "Table 6: deeper ResNets test better, ResNet-110 below ResNet-20"
    assert rows[3]["reslab"] == "11.00 (mean of 1) vs 13.20 (mean of 2)" and "gap -2.20" in rows[3]["margin"]
    worse = claims({"resnet20": group(20, 11.0), "resnet32": group(32, 11.2), "resnet44": group(44, 13.0)})
    assert worse[-1]["verdict"] == NOT_REPRODUCED and len(claims({"resnet20": group(20, 9.0)})) == 1


def test_table6_steps_use_the_paired_noise_of_the_same_test_images() -> None:
    """Nets that miss mostly the same images: a 0.6-point step is within the unpaired binomial noise of 10k images
    (about 0.9) and beyond the paired one, which the image-by-image mistakes give."""
    from reslab.experiments.depth import claims
    from reslab.experiments.report import REPRODUCED, UNRESOLVED, paired_noise

    shallow = [i < 1300 for i in range(10_000)]  # 13.0% error
    deep = [i < 1240 for i in range(10_000)]  # 12.4%, its mistakes a subset of the shallower's
    groups = {f"resnet{d}": [RunResult(RunSpec(f"resnet{d}"), Path("."), {"test_error": e}, [])]
              for d, e in ((20, 13.0), (32, 12.4))}  # fmt: skip
    unpaired = claims(groups)
    paired = claims(groups, mistakes={"resnet20-s0": shallow, "resnet32-s0": deep})
    assert unpaired[1]["verdict"] == UNRESOLVED and "(test-set sampling)" in unpaired[1]["margin"]
    assert paired[1]["verdict"] == REPRODUCED and "(test-set sampling, paired)" in paired[1]["margin"]
    # 60 images differ, all one way: 2 * sqrt(0.006 * 0.994 / 10k) * 100
    assert paired_noise([deep], [shallow]) == (pytest.approx(200 * math.sqrt(0.006 * 0.994 / 9_999)), 0.0)
    assert paired_noise([shallow, shallow], [shallow]) == (0.0, 0.0)
    with pytest.raises(ValueError, match="different numbers of test images"):
        paired_noise([shallow], [shallow[:-1]])  # not the same images


def test_seeds_disagreeing_image_by_image_are_counted_once() -> None:
    """Two seeds that disagree on some images move both the per-image differences (the paired term) and each seed's
    error rate (the spread over seeds): the margin counts that part once, so it lies between the paired term alone
    and the two added whole."""
    from reslab.experiments.report import paired_noise, seed_noise, test_noise

    n = 10_000
    a = [[i < 1300 for i in range(n)], [i < 1200 or 5000 <= i < 5200 for i in range(n)]]  # 13.0%, 14.0%
    b = [[i < 1250 for i in range(n)], [i < 1250 for i in range(n)]]  # 12.5% twice
    paired, shared = paired_noise(a, b)
    # per image, a's two seeds disagree on 300 images: variance 1/2 there, so 4e4 * (300 / n / 2) / (n * 2)
    assert shared == pytest.approx(4e4 * 0.015 / (n * 2))
    seeds = seed_noise([13.0, 14.0], [12.5, 12.5])
    noise, how = test_noise([13.0, 14.0], [12.5, 12.5], mistakes=(a, b))
    assert how == "test-set sampling, paired, and seeds"
    assert noise == pytest.approx(math.sqrt(paired**2 + seeds**2 - shared))
    assert paired < noise < math.hypot(paired, seeds)


def test_fig7_observations_count_beyond_the_spread_over_seeds() -> None:
    from reslab.experiments.report import REPRODUCED, UNRESOLVED
    from reslab.experiments.responses import claims

    one = claims({"plain-20": [1.09], "ResNet-20": [0.934], "plain-56": [1.07], "ResNet-56": [0.925],
                  "ResNet-110": [0.695]})  # fmt: skip
    assert [c["verdict"] for c in one] == [UNRESOLVED, UNRESOLVED] and "no estimate of the spread" in one[0]["margin"]
    assert one[1]["reslab"] == "ResNet-20 0.934 > ResNet-56 0.925 > ResNet-110 0.695"
    rising = claims({"ResNet-20": [0.879], "ResNet-56": [0.893]})
    assert rising[1]["reslab"] == "ResNet-20 0.879 < ResNet-56 0.893"  # the relation measured, not the paper's
    two = claims({"plain-20": [1.09, 1.10], "ResNet-20": [0.934, 0.90], "plain-56": [1.07, 1.08],
                  "ResNet-56": [0.925, 0.95], "ResNet-110": [0.695, 0.70]})  # fmt: skip
    assert [c["verdict"] for c in two] == [REPRODUCED, UNRESOLVED]  # 20 -> 56 is within the seeds' spread
    # the margin names the comparison nearest to deciding the verdict: the seeds' 0.95 against 0.90 at 20 -> 56
    assert two[1]["margin"] == "twice the SE over 2 seeds; narrowest: ResNet-56 vs ResNet-20, gap +0.0205, noise 0.0422"


def test_an_interrupted_experiment_says_how_to_continue(tmp_path: Path, capsys, monkeypatch) -> None:
    from reslab.errors import TrainingInterrupted

    def interrupted(*args, **kwargs):
        raise TrainingInterrupted("SIGINT", 2, "stopped at iteration 3 of 6; checkpoint written to X")

    monkeypatch.setattr("reslab.experiments.runner.train", interrupted)
    assert main(["reproduce", "degradation", "--data", DATA, "--out", str(tmp_path), "--budget", "smoke"]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == ("reslab: SIGINT: stopped at iteration 3 of 6; checkpoint "
                                                         "written to X; run the same `reslab reproduce` command "
                                                         "again to continue")  # fmt: skip


def test_construction_equals_the_shallow_net_and_trains_on(out: Path) -> None:
    res = results(reproduce(out, "construction"))
    assert res["max_abs_logit_difference"] < 1e-5 and res["errors_equal"] is True
    rows = {r["net"]: r for r in res["rows"]}
    built, shallow = rows["plain-56 constructed"], rows["plain-20"]
    for column in ("training error (%)", "test error (%)"):
        assert built[column] == shallow[column]
    assert "plain56-constructed-s0" in run_state(out)  # SGD let loose on it, a run of its own
    init = json.loads((out / "runs" / "plain56-constructed-s0" / "config.json").read_text())["config"]["init"]
    assert init == str(out / "construction" / "plain56-constructed-init.pt")
    assert_png(out / "construction" / "construction.png")


def test_constructed_plain56_computes_plain20_on_real_images() -> None:
    """The construction on CIFAR-10 images (the JPEG copy, if present): identity units change no logit."""
    import torch

    from reslab import create_model
    from reslab.data import load_dataset
    from reslab.data.batches import normalize, pixel_mean
    from reslab.experiments.construction import construct

    real = Path(__file__).resolve().parents[3] / "shared" / "data" / "cifar10-jpeg.tar"
    ds = load_dataset(str(real), train_subset=512, test_subset=256) if real.exists() else load_dataset(DATA)
    torch.manual_seed(0)
    shallow = create_model("plain20")
    shallow.train()
    with torch.no_grad():  # non-trivial BN statistics: a few batches in training mode
        for chunk in normalize(ds.train_images, pixel_mean(ds.train_images)).split(128):
            shallow(chunk)
    shallow.eval()
    deep = construct(shallow, 56)
    assert len(deep.units()) == 27 and type(deep) is type(shallow)
    x = normalize(ds.test_images, pixel_mean(ds.train_images))
    with torch.no_grad():
        torch.testing.assert_close(deep(x), shallow(x), rtol=0, atol=1e-5)


def test_signals_has_a_row_per_conv_layer(out: Path) -> None:
    res = results(reproduce(out, "signals"))
    counts: dict[tuple[str, str], int] = {}
    for row in res["layers"]:
        counts[row["net"], row["state"]] = counts.get((row["net"], row["state"]), 0) + 1
        assert row["‖dL/dW‖"] > 0 and row["response std"] > 0
    assert counts == {(f"{k}-{d}", s): d - 1 for k in ("plain", "ResNet") for d in (20, 56)
                      for s in ("initialisation", "end of training")}  # fmt: skip
    summary = {(r["net"], r["state"]): r for r in res["rows"]}
    first = next(r for r in res["layers"] if r["net"] == "plain-56" and r["state"] == "initialisation")
    assert summary["plain-56", "initialisation"]["first layer ‖dL/dW‖"] == first["‖dL/dW‖"]
    assert "Yang et al. (2019)" in (out / "signals" / "report.md").read_text()


def test_single_layer_units_beside_plain_and_two_layer(out: Path) -> None:
    res = results(reproduce(out, "single-layer"))
    rows = {r["net"]: r for r in res["rows"]}
    for d in (20, 56):
        params = {rows[f"{k}-{d}"]["params"] for k in ("plain", "one-layer units", "two-layer units")}
        assert len(params) == 1  # the same layers and parameters, three ways of wiring them
    assert {f"resnet{d}_1layer-s0" for d in (20, 56)} <= set(run_state(out))
    from reslab.experiments.degradation import compare

    runner = smoke_runner(out)
    result = lambda model: [runner.result(RunSpec(model))]  # noqa: E731
    gains = [d for d in (20, 56) if compare(result(f"resnet{d}_1layer"), result(f"plain{d}"))[2] == "lower"]
    for d in (20, 56):  # the report's comparisons are the runs' own, recomputed from their folders
        assert res[f"one_vs_plain_{d}"] == compare(result(f"resnet{d}_1layer"), result(f"plain{d}"))[2]
        assert res[f"one_vs_two_{d}"] == compare(result(f"resnet{d}_1layer"), result(f"resnet{d}"))[2]
    assert res["verdict"] == {0: "consistent", 2: "not reproduced"}.get(len(gains), "mixed")


def test_detection_compares_resnet_and_plain_backbones(out: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Sec. 4.3's comparison: the degradation runs as backbones, Faster R-CNN C4 on canvases of the same data."""
    folder = reproduce(out, "detection")
    rows = results(folder)["rows"]
    assert [r["detector"] for r in rows] == ["Faster R-CNN C4, ResNet-20", "Faster R-CNN C4, plain-20",
                                             "untrained (ResNet-20 backbone, heads random)"]  # fmt: skip
    assert all(0 <= r["mAP@[.5,.95]"] <= 100 for r in rows)
    for kind in ("resnet", "plain"):
        config = json.loads((out / "runs" / f"fasterrcnn_{kind}20_c4-s0" / "config.json").read_text())["config"]
        assert config["init"] == str(out / "runs" / f"{kind}20-s0") and config["recipe"]["name"] == "detection"
    gt = json.loads((folder / "canvases" / "test" / "instances.json").read_text())
    assert len(gt["images"]) == 8 and gt["annotations"] and len(gt["categories"]) == 10
    assert_png(folder / "detection_curves.png")
    assert_png(folder / "detection_boxes.png")
    report = (folder / "report.md").read_text()
    assert "## Does the residual backbone transfer better?" in report and "**20 layers:**" in report
    before = run_state(out)
    reproduce(out, "detection")  # cached: nothing trains again
    assert run_state(out) == before
    made = folder / "canvases" / "made.json"
    record = made.read_text()
    made.write_text(record.replace('"size": 64', '"size": 65'))  # as if made at another budget
    argv = ["reproduce", "detection", "--data", DATA, "--out", str(out), "--budget", "smoke", "--quiet"]
    assert main(argv) == 2 and "canvases made with other settings" in capsys.readouterr().err
    made.write_text(record)


def test_detection_verdict_reads_seeds_and_the_floor() -> None:
    from reslab.experiments.detection import verdict

    def net(name: str, m: float, std: float) -> dict:
        return {
            "net": name,
            "depth": 20,
            "mAP@[.5,.95]": m,
            "mAP std": std,
            "mAP@.5": 2 * m,
            "backbone test error (%)": 100 - m,
        }

    one = verdict([net("ResNet-20", 30.0, 0.0), net("plain-20", 30.0, 0.0)], floor=0.1, seeds=1)
    assert "0.00 points apart: equal" in one[0] and "70.00% against 70.00%" in one[1]
    assert "ResNet-20 +29.90" in one[2] and "One seed" in one[3]
    two = verdict([net("ResNet-20", 31.0, 0.3), net("plain-20", 30.0, 0.3)], floor=0.1, seeds=2)
    assert "1.00 points higher (beyond noise)" in two[0] and "69.00% against 70.00%" in two[1] and len(two) == 3
    noisy = verdict([net("ResNet-20", 31.0, 2.0), net("plain-20", 30.0, 2.0)], floor=40.0, seeds=2)
    assert "within noise" in noisy[0] and "not above the untrained one" in noisy[2]


def test_scorecard_only_reports_what_is_there_and_trains_nothing(out: Path, tmp_path: Path) -> None:
    """`reslab reproduce all --scorecard-only`: the scorecard of the experiments the tests above reported under the
    shared folder, the others `not run`, without training; an experiment of another budget is refused."""
    before = run_state(out)
    argv = ["reproduce", "all", "--out", str(out), "--budget", "smoke", "--scorecard-only"]
    assert main(argv) == 0
    assert run_state(out) == before
    card = (out / "README.md").read_text()
    claims = json.loads((out / "scorecard.json").read_text())["claims"]
    assert "[depth](depth/report.md)" in {c["report"] for c in claims} and "--scorecard-only" in card
    missing = sum(c["verdict"] == "not run" for c in claims)
    assert (f"- Partial: {missing} experiments are not reported" in card) == (missing > 0)
    assert main([*argv[:-3], "--budget", "cpu", "--scorecard-only"]) == 2  # smoke's results are not cpu's


def test_an_interrupted_all_writes_the_scorecard_so_far(tmp_path: Path, monkeypatch) -> None:
    from reslab.errors import TrainingInterrupted

    def interrupted(*args, **kwargs):
        raise TrainingInterrupted("SIGINT", 2, "stopped at iteration 3 of 6; checkpoint written to X")

    monkeypatch.setattr("reslab.experiments.runner.train", interrupted)
    argv = ["reproduce", "all", "--data", DATA, "--out", str(tmp_path), "--budget", "smoke", "--quiet"]
    assert main(argv) == 130
    claims = json.loads((tmp_path / "scorecard.json").read_text())["claims"]
    assert claims[0]["report"] == "[table1](table1/report.md)"  # table1 trains nothing: it finished first
    assert all(c["verdict"] == "not run" for c in claims if "table1" not in c["report"])
    assert "- Partial: 9 experiments are not reported" in (tmp_path / "README.md").read_text()


def test_all_runs_every_experiment_and_writes_the_scorecard(out: Path) -> None:
    """`reslab reproduce all`: every experiment in order on the shared runs (those the tests above trained are
    reused; a rerun trains nothing, as test_degradation_report_and_cached_rerun checks), then OUT/README.md with
    one row per claim and a link to each report."""
    from reslab.experiments.report import NOT_REPRODUCED, REPRODUCED, UNRESOLVED
    from reslab.experiments.scorecard import ORDER

    argv = ["reproduce", "all", "--data", DATA, "--out", str(out), "--budget", "smoke", "--quiet"]
    assert main(argv) == 0
    card = (out / "README.md").read_text()
    data = json.loads((out / "scorecard.json").read_text())
    claims = data["claims"]
    assert {c["report"] for c in claims} == {f"[{n}]({n}/report.md)" for n in ORDER}  # every experiment has rows
    assert all(c["verdict"] in (REPRODUCED, NOT_REPRODUCED, UNRESOLVED, "baseline", "exact") for c in claims)
    names = [c["claim"] for c in claims]
    for expected in ("Degradation: the deeper plain net trains worse", "Deeper ResNets train better",
                     "Table 6: ResNet-20", "Fig. 7: ResNets respond less than their plain twins",
                     "Fig. 7: deeper ResNets respond less", "Plain nets with BN: signals do not vanish",
                     "ResNet-34 costs 18% of VGG-19", "Highway-56 trains worse than ResNet-56"):  # fmt: skip
        assert expected in names, expected
    table1 = next(c for c in claims if c["claim"].startswith("Table 1"))
    assert table1["verdict"] == REPRODUCED  # a computation: it holds at every budget
    construction = next(c for c in claims if c["claim"].startswith("Construction: plain-20"))
    assert construction["verdict"] == "exact"
    assert "# Scorecard: the paper's claims at the `smoke` budget" in card and "reslab reproduce all" in card


def test_fast_budget_is_the_fast_recipe_and_its_runs_are_the_shipped_ones(tmp_path: Path) -> None:
    """`--budget fast` trains the `fast` recipe on the whole training set, Table 6 shares Fig. 6's runs, and a run of
    it computes exactly what the shipped weights' run computed (so benchmarks/adopt_shipped.py may reuse them)."""
    from reslab.engine.config import TrainConfig
    from reslab.engine.recipes import get_recipe
    from reslab.experiments import depth
    from reslab.models.trained import load_trained
    from reslab.weights.shipped import manifest

    budget = get_budget("fast")
    assert budget.recipe() == get_recipe("fast") and budget.train_subset is None
    assert budget.depths() == (20, 32, 44, 56, 110) and budget.depths(plain=True) == (20, 32, 44, 56)
    runner = Runner(str(tmp_path / "data"), tmp_path / "out", budget, progress=False)
    ctx = Context("depth", runner, tmp_path / "out" / "depth")
    assert [s.name for s in depth.specs(ctx)] == [f"resnet{d}-s0" for d in (20, 32, 44, 56, 110)]
    for name in manifest():
        shipped = TrainConfig.from_dict(load_trained(name).config)
        wanted = runner.config(RunSpec(name, shipped.seed))
        assert wanted.differences(dataclasses.replace(shipped, data=wanted.data)) == [], name
