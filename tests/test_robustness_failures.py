"""A notebook that fails records `failed` with the exception and the cell: under papermill (the
command line) and in a live kernel that goes on running, as JupyterLab's does."""

import json
import secrets

import nbformat
import pytest

from workbench.cli import main
from workbench.runs import store as default_store

CELLS = [
    "import workbench.notebook\nfrom workbench import runs\nworkbench.notebook.setup()",
    "run = runs.start_run(KIND, 'opened in one cell', {})\nrun.log({'loss': 1.0}, 0)",
    "layer = [0, 1, 2][99]  # the failing cell",
    "run.finish()",
]


def notebook(path, kind: str):
    cells = [nbformat.v4.new_code_cell(f"KIND = {kind!r}\nprofile = 'smoke'", metadata={"tags": ["parameters"]})]
    cells += [nbformat.v4.new_code_cell(source) for source in CELLS]
    nb = nbformat.v4.new_notebook(
        cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_failed_notebook_is_recorded_failed_with_cell_and_path(tmp_path, capfd):
    kind = f"fails-{secrets.token_hex(3)}"
    code = main(["run", str(notebook(tmp_path / "fails.ipynb", kind)), "--output-dir", str(tmp_path / "out")])
    err = capfd.readouterr().err  # the kernel's own stderr too
    assert code == 1 and "without encryption" not in err
    # papermill counts its injected-parameters cell
    assert "cell 5" in err and "IndexError: list index out of range" in err
    partly = tmp_path / "out" / err.split("the partly executed notebook: ")[1].split()[0].rsplit("/", 1)[-1]
    assert partly.is_file() and "IndexError" in partly.read_text()
    row = default_store().runs(kind=kind).iloc[0]
    assert row["status"] == "failed"
    assert (
        row["error"].startswith("IndexError: list index out of range in cell [5]") and "[0, 1, 2][99]" in row["error"]
    )


@pytest.mark.slow
def test_live_kernel_fails_open_runs_and_lives_on(tmp_path):
    from jupyter_client.manager import start_new_kernel

    kind = f"live-{secrets.token_hex(3)}"
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        def execute(code: str) -> str:
            reply = client.execute_interactive(code, timeout=120, output_hook=lambda msg: None)
            return reply["content"]["status"]

        assert execute(f"KIND = {kind!r}") == "ok"
        for source in CELLS[:2]:
            assert execute(source) == "ok"
        assert default_store().runs(kind=kind).iloc[0]["status"] == "running"
        assert execute(CELLS[2]) == "error"
        row = default_store().runs(kind=kind).iloc[0]
        assert manager.is_alive() and row["status"] == "failed"
        assert row["error"].startswith("IndexError: list index out of range in cell [")
        # Ctrl-C (the stop button) in a later run's cell reads "interrupted"; a cell that works fails nothing
        assert execute("run2 = runs.start_run(KIND, 'second', {})\nprint(1)") == "ok"
        assert execute("raise KeyboardInterrupt") == "error"
        statuses = json.loads(default_store().runs(kind=kind)[["name", "status"]].set_index("name")["status"].to_json())
        assert statuses == {"opened in one cell": "failed", "second": "interrupted"}
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
