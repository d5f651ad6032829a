"""The run store: the tracker API, concurrent writers with a polling reader, a killed writer."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

WRITER = textwrap.dedent(
    """
    import sys, time
    from workbench.runs import RunStore
    path, name, steps, hang = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "hang"
    run = RunStore(path).start_run("probe", name, {"steps": steps})
    for step in range(steps):
        run.log({"loss": 1.0 / (step + 1), "step_sq": step * step}, step)
    print("logged", flush=True)
    if hang:
        time.sleep(600)
    run.finish(summary={"final": steps})
    """
)


def spawn(path, name, steps, hang=False):
    return subprocess.Popen([sys.executable, "-c", WRITER, str(path), name, str(steps), "hang" if hang else "done"],
                            stdout=subprocess.PIPE, text=True)


def test_tracker_api(store):
    with store.start_run("probe", "api", {"lr": 3e-4, "layers": [1, 2]}) as run:
        run.log({"loss": 2.0, "ppl": 7.4}, step=1)
        run.log({"loss": 1.5}, step=2)
        run.log_artifact("matrix.npy", np.eye(3))
        run.log_artifact("groups.json", [[3, 4], [7, 8]])
        run.update_summary(ppl=7.4)
    row = store.run(run.id)
    assert (
        row["status"] == "finished" and row["params"] == {"lr": 3e-4, "layers": [1, 2]} and row["summary"]["ppl"] == 7.4
    )
    assert row["versions"]["torch"] and row["device"]
    history = store.history(run.id)
    assert list(history["step"]) == [1, 2] and list(history["loss"]) == [2.0, 1.5]
    assert np.array_equal(store.load_artifact(run.id, "matrix.npy"), np.eye(3))
    assert store.load_artifact(run.id, "groups.json") == [[3, 4], [7, 8]]
    # a run id read from a pandas table is a numpy integer (sqlite binds it as a BLOB that matches no row)
    assert store.load_artifact(np.int64(run.id), "groups.json") == [[3, 4], [7, 8]]


def test_failed_run_records_error(store):
    try:
        with store.start_run("probe", "fails", {}):
            raise ValueError("bad input")
    except ValueError:
        pass
    row = store.runs(kind="probe").iloc[0]
    assert row["status"] == "failed" and "bad input" in row["error"]


@pytest.mark.slow
def test_two_writers_and_a_polling_reader(store):
    writers = [spawn(store.path, f"writer-{i}", 300) for i in range(2)]
    seen, last_id, polls = 0, 0, 0
    while any(w.poll() is None for w in writers):
        new = store.metrics(after_id=last_id)
        if not new.empty:
            last_id, seen = int(new["id"].max()), seen + len(new)
        polls += 1
        time.sleep(0.01)
    assert [w.wait() for w in writers] == [0, 0]
    seen += len(store.metrics(after_id=last_id))
    assert seen == 2 * 300 * 2  # every row read exactly once through incremental polling
    runs = store.runs(kind="probe")
    assert sorted(runs["status"]) == ["finished", "finished"]
    for run_id in runs["id"]:
        assert list(store.history(int(run_id))["step"]) == list(range(300))


@pytest.mark.slow
def test_killed_writer_is_interrupted_with_metrics_intact(store):
    writer = spawn(store.path, "doomed", 50, hang=True)
    assert writer.stdout.readline().strip() == "logged"
    assert store.runs(kind="probe").iloc[0]["status"] == "running"
    os.kill(writer.pid, signal.SIGKILL)
    writer.wait()
    row = store.runs(kind="probe").iloc[0]
    assert row["status"] == "interrupted"
    assert len(store.history(int(row["id"]))) == 50
