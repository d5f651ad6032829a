"""The repository passes `ruff check` with its own configuration (pyproject.toml: line length 120, E F I W B UP)."""

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def ruff() -> list[str]:
    beside = Path(sys.executable).parent / "ruff"  # the venv's, installed with the test extra
    return [str(beside)] if beside.is_file() else [shutil.which("ruff") or "ruff"]


def test_ruff_check_is_clean():
    result = subprocess.run(
        [*ruff(), "check", "--output-format", "concise", "."], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
