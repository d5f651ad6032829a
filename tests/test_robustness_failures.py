"""A notebook that fails records `failed` with the exception and the cell: under papermill (the
command line) and in a live kernel that goes on running, as JupyterLab's does."""

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from workbench.cli import main
from workbench.runs import RunStore
from workbench.runs import store as default_store

CELLS = [
    "import workbench.notebook\nfrom workbench import runs\nworkbench.notebook.setup()",
    "run = runs.start_run(KIND, 'opened in one cell', {})\nrun.log({'loss': 1.0}, 0)",
    "layer = [0, 1, 2][99]  # the failing cell",
    "run.finish()",
]


KERNELSPEC = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}


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


@pytest.mark.slow
def test_a_sweep_driver_killed_stops_its_points_without_saying_ctrl_c(tmp_path):
    """kill -9 of the sweep process: its points notice (parent gone), stop, and say what happened."""
    probe = Path(__file__).parent / "notebooks" / "sweep_probe.ipynb"
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path)}
    command = [sys.executable, "-m", "workbench", "sweep", str(probe), "-p", "x", "1.0", "-p", "steps", "600",
               "-p", "delay", "0.05"]
    driver = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (
        (tmp_path / "runs.db").exists() and len(RunStore(tmp_path / "runs.db").metrics()) >= 2
    ):
        time.sleep(0.5)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        point = RunStore(tmp_path / "runs.db").runs(kind="sweep_point").iloc[0]
        if point["status"] != "running":
            break
        time.sleep(1)
    assert point["status"] == "interrupted", point["error"]
    assert "driver process" in point["error"] and "Ctrl-C" not in point["error"], point["error"]


@pytest.mark.slow
def test_a_bad_notebook_parameter_is_one_line_and_exit_2(tmp_path, capfd):
    """A parameter only a library call inside the notebook can judge (a corpus that is not there):
    its WorkbenchError comes back as the command's one line, with the cell and the partly executed copy."""
    cells = [nbformat.v4.new_code_cell("corpus = 'python-docs'\nprofile = 'smoke'", metadata={"tags": ["parameters"]}),
             nbformat.v4.new_code_cell("import workbench.notebook\nfrom workbench import data\n"
                                       "workbench.notebook.setup()"),
             nbformat.v4.new_code_cell("text = data.load_corpus(corpus)")]
    path = tmp_path / "corpus.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata=KERNELSPEC), path)
    missing = str(tmp_path / "missing.txt")
    code = main(["run", str(path), "-p", "corpus", missing, "--output-dir", str(tmp_path / "out")])
    err = capfd.readouterr().err.split("\r")[-1]  # after papermill's progress bar
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: corpus ") and "not found" in line and "in cell 4 of the notebook" in line, err


def test_a_notebook_run_leaves_the_callers_environment_as_it_was_even_when_it_fails(monkeypatch):
    """The executed copy's link reaches the kernel only: a run started later in the caller's process
    (after a failed notebook too) must not be linked to that notebook."""
    from workbench.notebook import _environment

    monkeypatch.setenv("WORKBENCH_SWEEP", "outer/point-1")
    monkeypatch.delenv("WORKBENCH_NOTEBOOK", raising=False)
    with pytest.raises(RuntimeError), _environment({"WORKBENCH_NOTEBOOK": "/x.ipynb", "WORKBENCH_SWEEP": "s/p"}):
        assert os.environ["WORKBENCH_NOTEBOOK"] == "/x.ipynb" and os.environ["WORKBENCH_SWEEP"] == "s/p"
        raise RuntimeError("the notebook failed")
    assert "WORKBENCH_NOTEBOOK" not in os.environ and os.environ["WORKBENCH_SWEEP"] == "outer/point-1"
