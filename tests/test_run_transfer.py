"""Moving runs between stores (`RunStore.export_runs` / `import_runs`): how a sweep point that ran
on another machine comes home, live and at the end, without a shared disk."""

import subprocess
import sys

import numpy as np
import pytest

from workbench.runs import RunKind, RunStore


@pytest.fixture
def worker(tmp_path):
    return RunStore(tmp_path / "worker" / "runs.db")


@pytest.fixture
def home(tmp_path):
    store = RunStore(tmp_path / "home" / "runs.db")
    store.start_run("other", "already here").finish()  # so imported runs get ids that differ from the worker's
    return store


def test_a_stream_of_exports_arrives_once_with_times_tags_and_files(worker, home):
    run = worker.start_run(RunKind("probe", headline="loss", goal="min"), "x=1", {"x": 1.0}, sweep="s-1/0")
    run.log({"loss": 2.0}, step=0)
    run.log({"loss": 1.5, "lr": 0.1}, step=1)
    first = worker.export_runs()
    ids = home.import_runs(first)
    assert ids == {run.id: 2}
    live = home.run(2)
    assert live["status"] == "running" and live["sweep"] == "s-1/0" and live["params"] == {"x": 1.0}

    run.log({"loss": 1.0}, step=2)
    run.log_artifact("curve.npy", np.arange(4.0))
    run.finish(summary={"loss": 1.0})
    last = worker.export_runs(after_metric=first["last_metric"])
    assert [row[2] for row in last["metrics"]] == [2]  # only what the first export did not carry
    assert home.import_runs(last, ids) == ids

    history = home.history(2)
    assert list(history["step"]) == [0, 1, 2] and list(history["loss"]) == [2.0, 1.5, 1.0]
    theirs, ours = worker.run(run.id), home.run(2)
    for column in ("status", "summary", "error", "started_at", "ended_at", "host", "pid", "kind", "name"):
        assert ours[column] == theirs[column], column
    assert home.kinds()["probe"] == RunKind("probe", headline="loss", goal="min")
    copied = home.artifacts(2)["curve.npy"]
    assert copied.is_relative_to(home.artifact_dir)
    assert np.array_equal(home.load_artifact(2, "curve.npy"), np.arange(4.0))


def test_files_listed_by_several_runs_are_copied_once_and_missing_ones_skipped(worker, home, tmp_path):
    notebook = tmp_path / "executed.ipynb"
    notebook.write_text('{"cells": []}')
    point, inner = worker.start_run("sweep_point", "p"), worker.start_run("probe", "q")
    for run in (point, inner):
        with worker.write() as db:  # as run_notebook links a notebook's runs to its executed copy
            db.execute("INSERT INTO artifacts (run_id, name, path, created_at) VALUES (?, ?, ?, 0)",
                       (run.id, notebook.name, str(notebook)))
            db.execute("INSERT INTO artifacts (run_id, name, path, created_at) VALUES (?, 'gone.html', ?, 0)",
                       (run.id, str(tmp_path / "gone.html")))
        run.finish()
    exported = worker.export_runs()
    assert {a["name"] for a in exported["artifacts"]} == {"executed.ipynb"}
    for entry in exported["artifacts"]:
        entry["data"] = notebook.read_bytes()  # shipped as bytes, as the Ray backend does
    ids = home.import_runs(exported)
    paths = {home.artifacts(ids[run.id])["executed.ipynb"] for run in (point, inner)}
    assert len(paths) == 1 and next(iter(paths)).read_text() == '{"cells": []}'


def test_a_run_whose_process_died_exports_as_interrupted(worker):
    run = worker.start_run("probe", "dies")
    command = [sys.executable, "-c", "import os; print(os.getpid())"]
    dead = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    with worker.write() as db:  # the run's process is gone (a killed kernel): it never said so itself
        db.execute("UPDATE runs SET pid = ? WHERE id = ?", (int(dead), run.id))
    (row,) = worker.export_runs()["runs"]
    assert row["status"] == "interrupted"
    run.finish()
