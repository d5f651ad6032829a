"""`python -m workbench`: listing notebooks, and one-line errors for bad input."""

import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # each test starts `python -m workbench` in a process of its own


def workbench(*args):
    return subprocess.run([sys.executable, "-m", "workbench", *args], capture_output=True, text=True, timeout=120)


def test_list_shows_notebooks_and_parameters():
    result = workbench("list")
    assert result.returncode == 0
    assert "00_tour" in result.stdout and "profile = 'smoke'" in result.stdout


def test_unknown_notebook_is_one_line():
    result = workbench("run", "no_such_notebook")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "no notebook 'no_such_notebook'" in result.stderr


def test_unknown_parameter_is_one_line():
    result = workbench("run", "00_tour", "-p", "learning_rate", "1e-3")
    assert result.returncode == 2
    assert "has no parameter learning_rate" in result.stderr and "model_name" in result.stderr
