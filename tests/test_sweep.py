"""Sweeps: a grid run as papermill executions N at a time; a failing point; Ctrl-C; the Ray hand-off.

The points execute tests/notebooks/sweep_probe.ipynb: a real notebook that loads no model and logs
a deterministic loss (x - 2)^2 + 1/(step + 1), so a point takes seconds.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from workbench.dashboard import Dashboard
from workbench.errors import WorkbenchError
from workbench.runs import RunStore
from workbench.sweep import grid, load_points, run_sweep, sweep_group

PROBE = Path(__file__).parent / "notebooks" / "sweep_probe.ipynb"


def sweep_cli(home, *args, **popen):
    env = {**os.environ, "WORKBENCH_HOME": str(home)}
    return subprocess.Popen(
        [sys.executable, "-m", "workbench", "sweep", str(PROBE), *args],
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        **popen,
    )


def test_grid_and_points_file(tmp_path):
    assert grid({"lr": [1e-3, 3e-4], "rank": [8, 32]}) == [
        {"lr": 1e-3, "rank": 8},
        {"lr": 1e-3, "rank": 32},
        {"lr": 3e-4, "rank": 8},
        {"lr": 3e-4, "rank": 32},
    ]
    listed = tmp_path / "points.json"
    listed.write_text(json.dumps([{"x": 1.0}, {"x": 2.0, "fail": True}]))
    lines = tmp_path / "points.jsonl"
    lines.write_text('{"x": 1.0}\n{"x": 2.0, "fail": true}\n')
    assert load_points(listed) == load_points(lines) == [{"x": 1.0}, {"x": 2.0, "fail": True}]
    (tmp_path / "bad.json").write_text('{"x": 1}')
    with pytest.raises(WorkbenchError, match="list of objects"):
        load_points(tmp_path / "bad.json")


def test_bad_parameter_is_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    with pytest.raises(WorkbenchError, match="no sweepable parameter learning_rate.*x, fail, steps, delay"):
        run_sweep(PROBE, [{"learning_rate": 1e-3}])
    assert not (tmp_path / "runs.db").exists() or RunStore(tmp_path / "runs.db").runs().empty


@pytest.mark.slow
def test_command_line_refuses_a_sweep_without_points(tmp_path):
    process = sweep_cli(tmp_path, "--parallel", "2")
    out, err = process.communicate(timeout=120)
    assert process.returncode == 2 and err.count("\n") == 1 and "give the grid with -p" in err, err


@pytest.mark.slow
def test_grid_of_four_two_in_parallel_one_fails(tmp_path):
    points = tmp_path / "points.json"
    points.write_text(json.dumps([{"x": 0.0}, {"x": 1.0}, {"x": 2.0, "fail": True}, {"x": 3.0}]))
    process = sweep_cli(tmp_path, "--points", str(points), "--parallel", "2")
    out, err = process.communicate(timeout=300)
    assert process.returncode == 1, err  # a failed point: the sweep says so, after running all of them
    assert "3 finished, 1 failed" in out, out

    store = RunStore(tmp_path / "runs.db")
    frame = store.runs()
    (sweep,) = frame.loc[frame["kind"] == "sweep", "sweep"]
    assert frame["sweep"].map(sweep_group).eq(sweep).all()
    sweep_row = frame[frame["kind"] == "sweep"].iloc[0]
    assert (
        sweep_row["status"] == "finished"
        and sweep_row["summary"]["finished"] == 3
        and sweep_row["summary"]["failed"] == 1
    )
    assert sweep_row["params"]["axes"] == {"x": [0.0, 1.0, 2.0, 3.0], "fail": [True]}

    points_runs = frame[frame["kind"] == "sweep_point"].set_index("sweep").sort_index()
    dashboard = Dashboard(store, file_urls=True)
    assert list(points_runs["status"]) == ["finished", "finished", "failed", "finished"]
    failed = points_runs.loc[f"{sweep}/2"]
    assert failed["error"].startswith("ValueError: failed on purpose at x=2.0"), failed["error"]
    for tag, row in points_runs.iterrows():
        x = row["params"]["x"]
        notebook_runs = frame[(frame["sweep"] == tag) & (frame["kind"] == "probe")]
        assert len(notebook_runs) == 1 and notebook_runs.iloc[0]["params"]["x"] == x  # the kernel inherited the tag
        # the point's final numbers, from its notebook
        assert row["summary"]["loss"] == pytest.approx((x - 2.0) ** 2 + 1 / 5)
        executed = store.artifacts(int(row["id"]))["sweep_probe.ipynb"]
        assert json.loads(executed.read_text())["cells"]  # the executed notebook is kept, error and all
        # its HTML copy too, offline, in the point's folder, with the executed output; the notebook's run links it
        copy = store.artifacts(int(row["id"]))["sweep_probe.html"]
        text = copy.read_text()
        assert copy.parent == store.artifact_dir / str(row["id"]) and "<script src=" not in text
        assert (f"x={x}: final loss" if x != 2.0 else "failed on purpose at x=2.0") in text
        assert store.artifacts(int(notebook_runs.iloc[0]["id"]))["sweep_probe.html"] == copy
        dashboard.open_run(int(row["id"]))
        links = dashboard.run_page.links.object
        assert f"[HTML copy: sweep_probe.html](/artifacts/{row['id']}/sweep_probe.html)" in links, links
    # two at a time: some points overlapped in time, never more than two
    spans = sorted(zip(points_runs["started_at"], points_runs["ended_at"]))
    overlaps = [sum(s <= start < e for s, e in spans) for start, _ in spans]
    assert max(overlaps) == 2, spans


@pytest.mark.slow
def test_ctrl_c_keeps_finished_points_and_marks_running_ones_interrupted(tmp_path):
    process = sweep_cli(
        tmp_path, "-p", "x", "1.0", "2.0", "3.0", "-p", "steps", "600", "-p", "delay", "0.05", "--parallel", "2"
    )
    store_path = tmp_path / "runs.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until both running notebooks have logged
        if store_path.exists():
            metrics = RunStore(store_path).metrics()
            probes = RunStore(store_path).runs(kind="probe")
            if len(probes) == 2 and metrics["run_id"].isin(probes["id"]).sum() >= 4:
                break
        time.sleep(0.5)
    else:
        process.kill()
        pytest.fail("the sweep's notebooks did not start logging within 2 minutes")
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "0 finished, 0 failed, 2 interrupted, 1 not started" in out, out
    frame = RunStore(store_path).runs()
    assert set(frame["status"]) == {"interrupted"}, frame[["kind", "name", "status"]]
    assert len(frame[frame["kind"] == "sweep_point"]) == 2  # the third point never started
    logged = RunStore(store_path).metrics(list(frame.loc[frame["kind"] == "probe", "id"]))
    assert len(logged) >= 4  # nothing a stopped point logged is lost


@pytest.mark.slow
def test_a_point_whose_process_dies_fails_and_the_sweep_goes_on(tmp_path):
    points = tmp_path / "points.json"
    points.write_text(json.dumps([{"x": 1.0, "steps": 600, "delay": 0.05}, {"x": 3.0}]))
    process = sweep_cli(tmp_path, "--points", str(points))
    store_path = tmp_path / "runs.db"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the first point's notebook is logging: kill its point process
        if store_path.exists() and len(RunStore(store_path).metrics()) >= 2:
            break
        time.sleep(0.5)
    point = RunStore(store_path).runs(kind="sweep_point").iloc[0]
    os.kill(int(point["pid"]), signal.SIGKILL)
    out, err = process.communicate(timeout=180)
    assert "1 finished, 1 failed" in out, (out, err)
    frame = RunStore(store_path).runs(kind="sweep_point").sort_values("id")
    assert list(frame["status"]) == ["failed", "finished"]
    assert frame.iloc[0]["error"].startswith("the point's process died: exit code -9"), frame.iloc[0]["error"]


@pytest.mark.slow
def test_ray_backend_single_machine(tmp_path, monkeypatch):
    pytest.importorskip(
        "ray", reason="Ray is an optional extra (pip install 'workbench[ray]'); the ray backend is not tested here"
    )
    # In a process of its own: a Ray session started and shut down in this process would stay half-alive
    # in it and make a later `ray.init(address=...)` of the cluster tests fail.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"WORKBENCH_HOME": str(tmp_path)}
    code = (
        "import json, sys; from workbench.sweep import run_sweep; "
        "result = run_sweep(sys.argv[1], [{'x': 1.0}, {'x': 3.0, 'fail': True}], parallel=2, backend='ray', "
        "progress=False); print(json.dumps([[o['status'], o.get('error') or ''] for o in result.outcomes]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(PROBE)], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    outcomes = json.loads(done.stdout.strip().splitlines()[-1])
    assert [status for status, _ in outcomes] == ["finished", "failed"]
    assert outcomes[1][1].startswith("ValueError: failed on purpose at x=3.0")
    frame = RunStore(tmp_path / "runs.db").runs()
    points = frame[frame["kind"] == "sweep_point"].sort_values("sweep")
    assert points.iloc[0]["summary"]["final_loss"] == pytest.approx(1.0 + 1 / 5)
    assert points["pid"].ne(os.getpid()).all()  # each point ran in a Ray worker process
