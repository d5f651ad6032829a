"""Sweeps across machines, on this one machine: a Ray head and a second Ray node as separate
`ray start` processes (`workbench.ray_nodes.LocalCluster`, one CPU each), each node's workers with
a WORKBENCH_HOME of their own, and the driver's home a third folder no worker is told of. Every
point, its metrics, artifacts and executed notebook must arrive in the driver's store; a node
killed mid-point fails that point and the others finish.

The points execute tests/notebooks/sweep_probe.ipynb (a deterministic loss, no model).
"""

import json
import sys
import threading
import time
from pathlib import Path

import pytest

from workbench.runs import RunStore

pytest.importorskip("ray", reason="Ray has no wheel for this platform (pip install 'workbench[ray]'): untested here")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(sys.platform != "linux", reason="LocalCluster ends its nodes' processes through /proc"),
]

from workbench.ray_nodes import LocalCluster, session_processes  # noqa: E402 -- only once Ray is known to import
from workbench.sweep import run_sweep  # noqa: E402

PROBE = Path(__file__).parent / "notebooks" / "sweep_probe.ipynb"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cluster")
    with LocalCluster([folder / "node0", folder / "node1"]) as running:  # stopped (every process killed) on exit
        yield running


@pytest.fixture
def driver(cluster, tmp_path, monkeypatch):
    """The driver's environment: the cluster's address and token, and a home of its own."""
    for name, value in cluster.driver_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path / "driver"))
    return tmp_path / "driver"


class Watch(threading.Thread):
    """Polls the driver's store while a sweep runs: what the dashboard would see, every 0.25 s."""

    def __init__(self, home: Path):
        super().__init__(daemon=True)
        self.home, self.done, self.live = home, threading.Event(), []

    def run(self) -> None:
        while not self.done.wait(0.25):
            if not (self.home / "runs.db").is_file():
                continue
            store = RunStore(self.home / "runs.db")
            probes = store.runs(kind="probe")
            for row in probes[probes["status"] == "running"].itertuples():
                self.live.append((row.sweep, len(store.metrics([row.id]))))


def test_a_sweep_on_two_nodes_comes_home_whole(cluster, driver):
    points = [{"x": 0.0, "steps": 20, "delay": 0.25}, {"x": 1.0, "fail": True}, {"x": 2.0}, {"x": 3.0}]
    watch = Watch(driver)
    watch.start()
    result = run_sweep(PROBE, points, parallel=2, backend="ray", progress=False)
    watch.done.set()
    watch.join()

    assert [o["status"] for o in result.outcomes] == ["finished", "failed", "finished", "finished"], result.outcomes
    assert result.outcomes[1]["error"].startswith("ValueError: failed on purpose at x=1.0")
    homes = [str(h) for h in cluster.homes]
    assert {o["worker_home"] for o in result.outcomes} == set(homes)  # both nodes ran points, each with its own home
    for home in homes:  # the points' own stores lived on their nodes, and were cleared once home
        assert not (Path(home) / "runs.db").exists() and list((Path(home) / "remote").iterdir()) == []
    assert not (driver / "remote").exists()

    store = RunStore(driver / "runs.db")
    frame = store.runs()
    (sweep,) = frame.loc[frame["kind"] == "sweep", "sweep"]
    assert {"finished": 3, "failed": 1}.items() <= frame.loc[frame["kind"] == "sweep", "summary"].iloc[0].items()
    points_runs = frame[frame["kind"] == "sweep_point"].set_index("sweep").sort_index()
    assert list(points_runs.index) == [f"{sweep}/{i}" for i in range(4)]
    assert list(points_runs["status"]) == ["finished", "failed", "finished", "finished"]
    assert points_runs.loc[f"{sweep}/1", "error"].startswith("ValueError: failed on purpose at x=1.0")
    for outcome in result.outcomes:  # the outcome names the driver's run, not the worker's
        assert points_runs.loc[f"{sweep}/{outcome['index']}", "id"] == outcome["run_id"]
    for tag, row in points_runs.iterrows():
        x, steps = row["params"]["x"], row["params"].get("steps", 5)
        (probe,) = frame[(frame["sweep"] == tag) & (frame["kind"] == "probe")].itertuples()
        history = store.history(probe.id)
        assert list(history["step"]) == list(range(steps))  # every metric row, once
        assert list(history["loss"]) == pytest.approx([(x - 2.0) ** 2 + 1 / (s + 1) for s in range(steps)])
        assert probe.status == ("failed" if row["params"].get("fail") else "finished")
        assert row["summary"]["loss"] == pytest.approx((x - 2.0) ** 2 + 1 / steps)
        assert row["started_at"] <= probe.started_at <= probe.ended_at <= row["ended_at"]  # the worker's times, kept
        assert row["duration_s"] >= row["summary"]["notebook_s"]
        files = store.artifacts(int(row["id"]))
        assert set(files) == {"sweep_probe.ipynb", "sweep_probe.html"}
        assert all(path.is_relative_to(driver) for path in files.values())
        executed = json.loads(files["sweep_probe.ipynb"].read_text())
        text = json.dumps(executed["cells"])
        assert f"x = {x}" in text and (f"failed on purpose at x={x}" in text) == bool(row["params"].get("fail"))
        assert "<html" in files["sweep_probe.html"].read_text()[:2000].lower()
    # live: while point 0 ran, the driver's store showed its run "running" with part of its curve
    partial = [n for tag, n in watch.live if tag == f"{sweep}/0" and 0 < n < 20]
    assert partial, watch.live


def test_a_node_killed_mid_point_fails_that_point_and_the_others_finish(cluster, driver):
    import ray

    slow = {"steps": 150, "delay": 0.1}  # 15 s of logging
    points = [{"x": 1.0, **slow}, {"x": 3.0, **slow}, {"x": 2.0}]
    outcome: dict = {}
    sweep = threading.Thread(target=lambda: outcome.update(result=run_sweep(PROBE, points, parallel=2, backend="ray",
                                                                            progress=False)))
    sweep.start()
    deadline, victim = time.monotonic() + 120, None
    while victim is None and sweep.is_alive() and time.monotonic() < deadline:
        time.sleep(0.5)
        if not ray.is_initialized() or not (driver / "runs.db").is_file():
            continue
        here = ray.get_runtime_context().get_node_id()  # the driver's node (and its Mirror) must live
        (other,) = [n for n in ray.nodes() if n["Alive"] and n["NodeID"] != here]
        node = next(j for j in (0, 1) if f"node{j}" in other["Resources"])
        store = RunStore(driver / "runs.db")
        on_node = set(session_processes(cluster.processes[node].pid))
        running = store.runs(kind="sweep_point")
        for row in running[running["pid"].isin(on_node)].itertuples():
            probes = store.runs(kind="probe", sweep=row.sweep)
            if not probes.empty and len(store.metrics(list(probes["id"]))) >= 3:
                victim = (node, row.sweep)
    assert victim is not None, "no point was seen logging on the node the driver is not on"
    cluster.kill(victim[0])
    sweep.join(timeout=150)
    assert not sweep.is_alive(), "the sweep did not end after a node died"

    result = outcome["result"]
    assert result.counts() == {"finished": 2, "failed": 1, "interrupted": 0}, result.outcomes
    frame = RunStore(driver / "runs.db").runs()
    killed = frame[(frame["kind"] == "sweep_point") & (frame["sweep"] == victim[1])].iloc[0]
    assert killed["status"] == "failed" and "the Ray task failed" in killed["error"], killed["error"]
    probe = frame[(frame["kind"] == "probe") & (frame["sweep"] == victim[1])].iloc[0]
    assert probe["status"] == "interrupted"  # what it had logged stays, streamed before the node died
    assert len(RunStore(driver / "runs.db").metrics([int(probe["id"])])) >= 3
    others = frame[(frame["kind"] == "sweep_point") & (frame["sweep"] != victim[1])]
    assert list(others["status"]) == ["finished", "finished"]
