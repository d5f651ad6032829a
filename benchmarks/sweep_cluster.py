"""Sweeps across machines, on one machine: local backend against a two-node Ray cluster; a node killed mid-point.

    python benchmarks/sweep_cluster.py                      # the probe notebook, x = 0 1 2 3, 2 at a time

1. The same points with the local backend (`parallel` point processes) and on a Ray head plus a
   second Ray node (`workbench.ray_nodes.LocalCluster`, one CPU each, so 2 points run at once, one
   per node), every node with its own WORKBENCH_HOME and the driver's home a third folder. Wall
   time of `run_sweep`, and for Ray also the cluster's start, which a real cluster pays once. The
   local backend runs twice: as installed, and with `rfc3987_syntax` hidden as on the Ray nodes
   (`without_slow_imports`), so that the race compares backends and not Python environments.
2. Two slow points, one per node; once the second node's point has logged (seen live in the
   driver's store), that node is killed (SIGKILL to all its processes). Reported: how long until
   the driver's store says the point failed, its error text, and that the other point finished.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from workbench.ray_nodes import LocalCluster, session_processes, without_slow_imports
from workbench.runs import RunStore
from workbench.sweep import run_sweep

PROBE = Path(__file__).resolve().parent.parent / "tests" / "notebooks" / "sweep_probe.ipynb"


def timed_sweeps(points: list[dict], parallel: int, folder: Path) -> dict:
    os.environ["WORKBENCH_HOME"] = str(folder / "local")
    local = run_sweep(PROBE, points, parallel=parallel, progress=False)
    os.environ["WORKBENCH_HOME"] = str(folder / "local-shadowed")  # the Ray nodes' Python environment, for a fair race
    python_path = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = without_slow_imports(folder / "shadow")
    shadowed = run_sweep(PROBE, points, parallel=parallel, progress=False)
    if python_path is None:
        os.environ.pop("PYTHONPATH")
    else:
        os.environ["PYTHONPATH"] = python_path
    start = time.perf_counter()
    with LocalCluster([folder / "node0", folder / "node1"]) as cluster:
        started = time.perf_counter() - start
        os.environ["RAY_ADDRESS"], os.environ["WORKBENCH_HOME"] = cluster.address, str(folder / "driver")
        remote = run_sweep(PROBE, points, parallel=parallel, backend="ray", progress=False)
    return {"points": len(points), "parallel": parallel, "local_s": local.seconds, "local": local.counts(),
            "local_shadowed_s": shadowed.seconds, "local_shadowed": shadowed.counts(),
            "local_shadowed_point_s": [round(o["seconds"], 1) for o in shadowed.outcomes],
            "ray_s": remote.seconds, "ray": remote.counts(), "cluster_start_s": started,
            "nodes_used": sorted({o.get("worker_home", "?") for o in remote.outcomes}),
            "local_point_s": [round(o["seconds"], 1) for o in local.outcomes],  # each point's notebook, start to end
            "ray_point_s": [round(o["seconds"], 1) for o in remote.outcomes]}


def kill_mid_point(folder: Path) -> dict:
    slow = [{"x": 1.0, "steps": 300, "delay": 0.1}, {"x": 3.0, "steps": 300, "delay": 0.1}]  # 30 s of logging each
    with LocalCluster([folder / "node0", folder / "node1"]) as cluster:
        os.environ["RAY_ADDRESS"], os.environ["WORKBENCH_HOME"] = cluster.address, str(folder / "driver")
        outcome: dict = {}
        def sweep_in_background() -> None:
            outcome["result"] = run_sweep(PROBE, slow, parallel=2, backend="ray", progress=False)

        sweep = threading.Thread(target=sweep_in_background)
        sweep.start()
        store, victim = None, None
        while victim is None and sweep.is_alive():  # the point whose worker is on node 1, once its notebook logs
            time.sleep(0.5)
            if (folder / "driver" / "runs.db").is_file():
                store = store or RunStore(folder / "driver" / "runs.db")
                on_node1 = set(session_processes(cluster.processes[1].pid))
                points = store.runs(kind="sweep_point")
                for row in points[points["pid"].isin(on_node1)].itertuples():
                    probes = store.runs(kind="probe", sweep=row.sweep)
                    if not probes.empty and len(store.metrics(list(probes["id"]))) >= 3:
                        victim = row
        if victim is None:
            raise RuntimeError("no point ran on node 1")
        killed = time.time()
        cluster.kill(1)
        seen = None
        while sweep.is_alive():
            status = store.runs(kind="sweep_point", sweep=victim.sweep).iloc[0]["status"]
            if seen is None and status != "running":
                seen = time.time() - killed
            time.sleep(0.2)
        sweep.join()
    frame = store.runs().sort_values("id")
    victim_row = frame[(frame["kind"] == "sweep_point") & (frame["sweep"] == victim.sweep)].iloc[0]
    probes = frame.loc[(frame["sweep"] == victim.sweep) & (frame["kind"] == "probe"), "id"]
    return {"killed_point": victim.sweep, "seconds_to_status": seen, "status": victim_row["status"],
            "error": victim_row["error"], "metrics_kept": len(store.metrics(list(probes))),
            "all": frame[["kind", "sweep", "status"]].values.tolist(), "counts": outcome["result"].counts()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parallel", type=int, default=2)
    args = parser.parse_args()
    points = [{"x": float(x)} for x in range(4)]
    with tempfile.TemporaryDirectory() as folder:
        timing = timed_sweeps(points, args.parallel, Path(folder) / "timing")
        print(json.dumps(timing, indent=1))
        killed = kill_mid_point(Path(folder) / "kill")
        print(json.dumps(killed, indent=1, default=str))
    if os.environ.get("OUT"):
        result = json.dumps({"timing": timing, "kill": killed}, default=str)
        Path(os.environ["OUT"], "sweep_cluster.json").write_text(result)


if __name__ == "__main__":
    main()
