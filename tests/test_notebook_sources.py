"""One source form for notebooks: every .ipynb is paired with a percent .py that says the same, and
the git filter that keeps outputs out of git is what `make install` configures."""

import json
import re
import subprocess
from pathlib import Path

import jupytext
import nbformat
import pytest
from jupytext.compare import compare_notebooks

from workbench import notebook

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(notebook.NOTEBOOK_DIR.glob("*.ipynb"))


def test_no_hand_written_notebook_builders():
    assert not (notebook.NOTEBOOK_DIR / "builders").exists()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_is_a_pair_that_agrees(path):
    script = path.with_suffix(".py")
    assert script.is_file(), f"{path.name} has no paired {script.name}: jupytext --set-formats ipynb,py:percent {path}"
    stored = nbformat.read(path, as_version=4)
    assert stored.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent"
    # jupytext's own comparison of the cells (sources, types, tags); raises on the first difference
    compare_notebooks(jupytext.read(script), stored, fmt="py:percent", compare_outputs=False)


def test_the_comparison_catches_a_drifted_pair(tmp_path):
    path = NOTEBOOKS[0]
    drifted = jupytext.reads(path.with_suffix(".py").read_text().replace("import ", "import  ", 1), fmt="py:percent")
    with pytest.raises(Exception, match="differ|not the same|Cell content"):
        compare_notebooks(drifted, nbformat.read(path, as_version=4), fmt="py:percent", compare_outputs=False)


def test_make_install_configures_the_output_stripping_filter():
    """CI runs `make test`, whose install step must set the filter that .gitattributes names."""
    attributes = (REPO / ".gitattributes").read_text()
    assert re.search(r"^\*\.ipynb\s+filter=nbstripout", attributes, re.M)
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^install:.*\bgit-filter\b", makefile, re.M)
    recipe = makefile.split("\ngit-filter:", 1)[1].split("\n\n", 1)[0]
    assert 'git config filter.nbstripout.clean "$(abspath $(VENV))/bin/nbstripout' in recipe
    assert "git config filter.nbstripout.smudge cat" in recipe
    assert re.search(r"^test: install\b", makefile, re.M) and "make test" in (REPO / ".ci" / "run").read_text()


@pytest.mark.slow  # 1.7 s quiet: too long for test-fast's minute
def test_the_filter_strips_outputs(tmp_path):
    """What the filter command does to a notebook executed with outputs: no outputs, no counts, same cells."""
    path = NOTEBOOKS[0]
    executed = json.loads(path.read_text())
    for cell in executed["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": ["5.5 MB of plotly\n"]}]
            cell["execution_count"] = 7
    nbstripout = REPO / ".venv" / "bin" / "nbstripout"
    command = [str(nbstripout)] if nbstripout.is_file() else ["nbstripout"]
    cleaned = subprocess.run([*command, "--keep-id"], input=json.dumps(executed), capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    cleaned = json.loads(cleaned)
    code = [c for c in cleaned["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert [c["source"] for c in cleaned["cells"]] == [c["source"] for c in executed["cells"]]
