"""benchmarks/ship_weights.py refuses what it would ignore or get wrong, in one line, before it trains or writes."""

import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "ship_weights.py"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--reproduce-out", "OUT", "--epochs", "3"], "--epochs goes with --work"),  # it ships runs, trains nothing
        (["--work", "OUT", "--epochs", "3", "--iterations", "9"], "--epochs or --iterations, not both"),
        (["--check-only", "--models", "resnet20"], "resnet20 is not shipped (no manifest entry)"),
    ],
)
def test_ship_weights_refuses_in_one_line(tmp_path: Path, args: list[str], says: str) -> None:
    args = [str(tmp_path / "out") if a == "OUT" else a for a in args]
    weights = tmp_path / "weights"
    weights.mkdir()
    done = subprocess.run([sys.executable, str(SCRIPT), "--data", "synthetic:64", "--weights-dir", str(weights), *args],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and says in done.stderr.strip().splitlines()[-1], done.stderr
    assert "Traceback" not in done.stderr and not any(weights.iterdir())
