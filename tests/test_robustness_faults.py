"""Faults that used to lose or hide a run (issue 28): non-finite results, killed runs, a full disk,
an unreachable Ray cluster, two runs started in the same second, and Ctrl-C during a notebook.
The fast tests drive each rule directly; the slow ones run the command line with real kernels."""

import errno
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from workbench import notebook, runs, sweep_ray
from workbench.errors import WorkbenchError
from workbench.runs import RunKind, RunStore

ROOT = Path(__file__).resolve().parent.parent
KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def dead_pid() -> int:
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                              check=True).stdout)


def test_non_finite_results_are_stored_as_null_and_fail_a_run_on_its_headline(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    kind = RunKind("probe", headline="ppl")
    with store.start_run(kind, "diverged") as run:
        run.update_summary(ppl=float("nan"), loss=float("inf"), steps=3, curve=[1.0, float("-inf")])
    with store.start_run(kind, "side metric only") as other:
        other.update_summary(ppl=12.5, speedup=float("nan"))
    rows = store.db.execute("SELECT id, status, error, json_extract(summary, '$.ppl') FROM runs ORDER BY id").fetchall()
    assert rows[0][1] == "failed" and "its ppl is nan, not a finite number" in rows[0][2] and rows[0][3] is None
    assert rows[1][1:] == ("finished", None, 12.5)
    summaries = [json.loads(text) for (text,) in store.db.execute("SELECT summary FROM runs ORDER BY id")]
    assert summaries[0] == {"ppl": None, "loss": None, "steps": 3, "curve": [1.0, None]}
    assert store.db.execute("SELECT COUNT(*) FROM runs WHERE json_valid(summary)").fetchone()[0] == 2


def test_runs_of_a_dead_process_are_written_interrupted_when_the_store_next_opens(tmp_path):
    store = RunStore(tmp_path / "runs.db")
    killed, alive = store.start_run("probe", "killed"), store.start_run("probe", "still running")
    with store.write() as db:  # as if a process that is gone had started it (what kill -9 leaves)
        db.execute("UPDATE runs SET pid = ? WHERE id = ?", (dead_pid(), killed.id))
    killed._done.set()
    store.db.close()
    RunStore(tmp_path / "runs.db").db.close()
    raw = sqlite3.connect(tmp_path / "runs.db")  # any reader of the file, not only RunStore.runs()
    statuses = dict(raw.execute("SELECT id, status FROM runs").fetchall())
    assert statuses == {killed.id: "interrupted", alive.id: "running"}
    error = raw.execute("SELECT error FROM runs WHERE id = ?", (killed.id,)).fetchone()[0]
    assert "process ended without finishing it" in error
    alive._done.set()  # its handle's store is closed: nothing more to write


def test_a_full_disk_is_named_as_such_by_the_store(tmp_path, monkeypatch):
    def full(path):
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(runs, "_connect", full)
    monkeypatch.setattr(runs, "disk_full", lambda folder: True)
    with pytest.raises(WorkbenchError, match="the disk holding the run store .* is full .*free some space"):
        RunStore(tmp_path / "runs.db")


def test_a_full_disk_leaves_no_partial_notebook_or_html(tmp_path, monkeypatch):
    import papermill

    source = tmp_path / "small.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1")],
                                            metadata={"kernelspec": KERNELSPEC}),
                   source)

    def fills_the_disk(source, output, **kwargs):
        Path(output).write_text('{"cells": [')  # what a write cut short leaves
        Path(output).with_suffix(".html").write_text("<html><bo")
        raise OSError(errno.ENOSPC, "No space left on device", output)

    monkeypatch.setattr(papermill, "execute_notebook", fills_the_disk)
    with pytest.raises(OSError):
        notebook.run_notebook(source, output_dir=tmp_path / "out", progress=False)
    assert list((tmp_path / "out").iterdir()) == []


def test_executed_notebooks_started_in_the_same_second_get_their_own_files(tmp_path):
    paths = [notebook._new_output(tmp_path, "03_recursive_transformers-smoke") for _ in range(20)]
    assert len(set(paths)) == 20 and all(path.is_file() for path in paths)
    assert len({path.name.rsplit("-", 1)[0] for path in paths}) <= 2  # one second (or two, at a boundary)


def test_tuples_reach_papermill_as_lists():
    assert notebook._as_papermill({"a": (2, (3, 4))}) == {"a": [2, [3, 4]]}
    assert notebook._as_papermill((2,)) == [2] and notebook._as_papermill("(2,)") == "(2,)"


def test_an_unreachable_ray_address_fails_in_bounded_time(monkeypatch):
    monkeypatch.setattr(sweep_ray, "CONNECT_S", 0.5)
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    start = time.monotonic()
    with pytest.raises(WorkbenchError, match=f"no Ray cluster answers at RAY_ADDRESS=127.0.0.1:{port}"):
        sweep_ray.check_address(f"127.0.0.1:{port}")
    assert time.monotonic() - start < 5
    with pytest.raises(WorkbenchError, match="is not host:port"):
        sweep_ray.check_address("no-port-here")
    with socket.create_server(("127.0.0.1", 0)) as server:
        sweep_ray.check_address(f"ray://127.0.0.1:{server.getsockname()[1]}")  # answers: no error
    sweep_ray.check_address("auto")


# -- the command line with real kernels ------------------------------------------------------------

SLEEPER = [
    ("seconds = 60\nloops = None", ["parameters"]),
    ("import time\nimport workbench.notebook\nfrom workbench import runs\nworkbench.notebook.setup()\n"
     "run = runs.start_run('probe', 'sleeper')", []),
    ("time.sleep(seconds)\nrun.finish()", []),
]
TUPLES = [
    ("profile = 'smoke'\nloops = None", ["parameters"]),
    ("from workbench.recursive.profile import RecursiveProfile\n"
     "settings = RecursiveProfile.resolve(profile, loops=loops)\nassert settings.loops == (2,), settings.loops", []),
]


def write_notebook(path: Path, cells) -> Path:
    made = [nbformat.v4.new_code_cell(source, metadata={"tags": tags}) for source, tags in cells]
    nbformat.write(nbformat.v4.new_notebook(cells=made, metadata={"kernelspec": KERNELSPEC}), path)
    return path


def cli(args, home: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "workbench", *args], cwd=ROOT, text=True,
                            env=dict(os.environ, WORKBENCH_HOME=str(home)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kwargs)


@pytest.mark.slow
def test_ctrl_c_is_one_line_exit_130_and_the_kernel_is_shut_down(tmp_path):
    source = write_notebook(tmp_path / "sleeper.ipynb", SLEEPER)
    process = cli(["run", str(source)], tmp_path, start_new_session=True,
                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as a terminal starts it
    deadline = time.time() + 180
    while time.time() < deadline and process.poll() is None:
        if (tmp_path / "runs.db").is_file() and RunStore(tmp_path / "runs.db").runs().shape[0]:
            break
        time.sleep(0.5)
    time.sleep(1.0)
    os.killpg(process.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends
    _, err = process.communicate(timeout=120)
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "Executing" not in line]
    assert process.returncode == 130, err
    assert len(lines) == 1 and lines[0].startswith("interrupted: sleeper, run #1 kept as interrupted"), err
    assert "Traceback" not in err and "ZMQError" not in err
    row = RunStore(tmp_path / "runs.db").run(1)
    assert row["status"] == "interrupted" and "KeyboardInterrupt" in row["error"]
    with pytest.raises(ProcessLookupError):
        os.kill(int(row["pid"]), 0)  # the kernel (the run's process) is gone


@pytest.mark.slow
def test_two_runs_in_the_same_second_keep_both_notebooks_and_a_tuple_arrives_as_one(tmp_path):
    source = write_notebook(tmp_path / "tuples.ipynb", TUPLES)
    processes = [cli(["run", str(source), "-p", "loops", "(2,)"], tmp_path) for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [p.returncode for p in processes] == [0, 0], outputs
    executed = sorted((tmp_path / "notebooks").glob("tuples-smoke-*.ipynb"))
    assert len(executed) == 2 and all(nbformat.read(path, as_version=4).cells for path in executed)
