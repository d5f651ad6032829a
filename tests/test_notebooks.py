"""Every notebook: stored clean, parameterised, and executed headlessly in the smoke profile."""

import json
from pathlib import Path

import pytest

from workbench import notebook, runs

NOTEBOOKS = sorted(notebook.NOTEBOOK_DIR.glob("*.ipynb"))
READ_ONLY: set[str] = set()  # notebooks that write no run of their own (07_compare now records its DDP run)


def test_there_are_notebooks():
    assert any(p.stem == "00_tour" for p in NOTEBOOKS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs_with_parameters_and_kernel(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c["outputs"] and c["execution_count"] is None for c in code), "commit notebooks without outputs"
    tagged = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1 and "profile = " in "".join(tagged[0]["source"])
    assert nb["cells"][0]["cell_type"] == "markdown"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
@pytest.mark.slow
def test_smoke_profile_executes_and_records_runs(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the runner works from anywhere; the kernel runs in the notebook's folder
    before = runs.store().runs()["id"].max() if not runs.store().runs().empty else 0
    result = notebook.run_notebook(path, profile="smoke", output_dir=tmp_path, progress=False)
    executed = json.loads(Path(result.notebook).read_text())
    errors = [o for c in executed["cells"] for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    assert result.html.is_file() and "plotly" in result.html.read_text()
    after = runs.store().runs()
    new = after[after["id"] > before]
    if path.stem not in READ_ONLY:
        assert len(new) >= 1 and set(new["status"]) == {"finished"}, new[["kind", "name", "status", "error"]]
