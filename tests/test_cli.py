"""The command line: tables print, user mistakes are one line and exit code 2."""

import subprocess
import sys

from reslab.cli import main


def test_models_table_prints_paper_figures(capsys):
    from reslab import paper
    from reslab.models.table import COLUMNS

    assert main(["models", "resnet5*"]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == len(COLUMNS):
            rows[cells[0]] = dict(zip(COLUMNS, cells))
    assert float(rows["resnet56"]["paper params (M)"]) == paper.CIFAR_PARAMS_M[56]
    assert float(rows["resnet50"]["paper GMACs"]) == paper.IMAGENET_GMACS[50]
    assert abs(float(rows["resnet56"]["params (M)"]) - 0.853) < 1e-3


def test_unknown_pattern_is_one_line_exit_2(capsys):
    assert main(["models", "nope*"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reslab: error:") and "\n" not in err


def test_console_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "reslab.cli", "models", "resnet20"], capture_output=True, text=True)
    assert proc.returncode == 0 and "resnet20" in proc.stdout


def test_help_a_mistyped_command_and_bad_flags_import_no_torch():
    """`reslab --help`, `reslab nope` and every subcommand's --help and bad flags answer without loading torch
    (benchmarks/cli_startup.py times them)."""
    from reslab.cli.parser import COMMANDS

    cases = [["--help"], ["nope"], *([name, "--help"] for name in COMMANDS), ["train", "--bad-flag"]]
    code = ("import sys\nfrom reslab.cli import main\n"
            f"for argv in {cases!r}:\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\n"
            "print('torch' in sys.modules)")  # fmt: skip
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().endswith("False"), proc.stdout + proc.stderr


def test_ctrl_c_while_starting_is_one_line(monkeypatch, capsys):
    import reslab.cli as cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert main(["train"]) == 130
    assert capsys.readouterr().err == "reslab: interrupted while starting\n"
