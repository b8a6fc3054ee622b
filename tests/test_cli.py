"""The command line: tables print, user mistakes are one line and exit code 2."""

import subprocess
import sys

from reslab.cli import main


def test_models_table_prints_paper_figures(capsys):
    assert main(["models", "resnet5*"]) == 0
    out = capsys.readouterr().out
    assert "resnet56" in out and "0.85" in out and "resnet50" in out and "3.8" in out


def test_unknown_pattern_is_one_line_exit_2(capsys):
    assert main(["models", "nope*"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("reslab: error:") and "\n" not in err


def test_console_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "reslab.cli", "models", "resnet20"], capture_output=True, text=True)
    assert proc.returncode == 0 and "resnet20" in proc.stdout
