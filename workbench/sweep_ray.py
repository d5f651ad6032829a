"""Sweep points on a Ray cluster with no shared disk: each point runs against its own store and comes home.

The run store is one SQLite file in WAL mode, and WAL needs every writer on one host (readers and
writers share a memory-mapped index); over a network file system SQLite's locking is unsafe too.
So no Ray worker ever writes the user's store:

1. the driver hands each point to a Ray task: one CPU, and one GPU where the cluster has GPUs
   (Ray then sets CUDA_VISIBLE_DEVICES, and the point's kernel inherits it);
2. the task runs the point exactly as the local backend does (`workbench.sweep.run_point`), with
   WORKBENCH_HOME a fresh folder on its own node (`<that node's home>/remote/<sweep>-<point>-*`);
3. while the point runs, a thread in the task sends the store's new rows every `POLL_S` seconds
   to the sweep's `Mirror` actor, which lives on the driver's node; the driver drains it and
   merges the rows into the user's store (`RunStore.import_runs`), so the dashboard's live curves
   move for remote points as they do for local ones;
4. at the end the task returns the last rows, with every artifact (the executed notebook and its
   HTML copy among them) as a `ray.put` reference: files travel through Ray's object store, not
   inside the returned rows. The driver merges them under new run ids, keeping the sweep tags,
   statuses, errors and times, and the point's folder on the worker is deleted.

A node that dies takes its task with it (`max_retries=0`: a point is not silently re-run): the
driver marks that point failed with Ray's error, what its notebook had logged stays, and the
other points go on. Ctrl-C asks every running point to stop through the same actor (the task
raises KeyboardInterrupt in itself, as SIGINT does to a local point), so stopped points still come
home with their partly executed notebooks. One code path serves `ray.init()` on one machine and a
cluster at $RAY_ADDRESS.
"""

from __future__ import annotations

import _thread
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

from .errors import WorkbenchError
from .runs import RunStore

POLL_S = 1.0  # how often a running point sends its new rows
INTERRUPT_GRACE_S = 30.0  # how long stopped points may take to send their results home
CONNECT_S = 20.0  # how long $RAY_ADDRESS may take to accept a connection (ray.init itself retries for minutes)


class Mirror:
    """The sweep's mailbox on the driver's node (a Ray actor): points push rows, the driver takes them.

    `push` answers whether the sweep is stopping, so a point learns of Ctrl-C within `POLL_S`.
    """

    def __init__(self) -> None:
        self.chunks: list[tuple[int, dict]] = []
        self.stopping = False

    def push(self, index: int, chunk: dict) -> bool:
        self.chunks.append((index, chunk))
        return self.stopping

    def take(self) -> list[tuple[int, dict]]:
        chunks, self.chunks = self.chunks, []
        return chunks

    def stop(self) -> None:
        self.stopping = True


class _Stream(threading.Thread):
    """In the task: sends the point store's new rows to the Mirror until stopped; stops the point on request."""

    def __init__(self, path: Path, mirror, index: int):
        super().__init__(name=f"sweep-point-{index}-stream", daemon=True)
        self.path, self.mirror, self.index = path, mirror, index
        self.last_metric = 0
        self.done = threading.Event()
        self.asked_to_stop = False

    def run(self) -> None:
        import ray

        store = None
        while not self.done.wait(POLL_S):
            if store is None and self.path.is_file():
                store = RunStore(self.path)
            if store is None:
                continue
            chunk = store.export_runs(after_metric=self.last_metric)
            chunk["artifacts"] = []  # files come home once, with the result
            stopping = ray.get(self.mirror.push.remote(self.index, chunk))  # waited for: pushes arrive in order
            self.last_metric = chunk["last_metric"]
            if stopping and not self.asked_to_stop:
                self.asked_to_stop = True
                _thread.interrupt_main()  # KeyboardInterrupt in the point, as SIGINT gives a local one
        if store is not None:
            store.db.close()

    def stop(self) -> None:
        self.done.set()
        self.join()


def remote_point(spec: dict, mirror) -> dict:
    """One point in a Ray task, against a store of its own on this node; returns its rows and artifact refs."""
    import ray

    from .sweep import run_point

    saved = {name: os.environ.get(name) for name in ("WORKBENCH_HOME", "WORKBENCH_SWEEP", "WORKBENCH_NOTEBOOK")}
    node_home = Path(saved["WORKBENCH_HOME"] or Path.home() / ".workbench").expanduser()
    (node_home / "remote").mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{spec['sweep']}-{spec['index']}-", dir=node_home / "remote"))
    stream = _Stream(folder / "runs.db", mirror, spec["index"])
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler) if in_main else None
    stream.start()
    try:
        outcome = run_point({**spec, "home": str(folder)})
    finally:
        stream.stop()  # joined: every push has arrived before the result leaves
        if in_main:
            signal.signal(signal.SIGINT, previous)
        for name, value in saved.items():  # Ray reuses this worker process for other points
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    store = RunStore(folder / "runs.db")
    rows = store.export_runs(after_metric=stream.last_metric)
    shipped: dict[str, object] = {}
    for entry in rows["artifacts"]:  # one object per file, however many runs list it
        if entry["path"] not in shipped:
            shipped[entry["path"]] = ray.put(Path(entry["path"]).read_bytes())
        entry["data"] = shipped[entry["path"]]
    store.db.close()
    shutil.rmtree(folder, ignore_errors=True)
    return {**outcome, "rows": rows, "node": ray.get_runtime_context().get_node_id(), "worker_home": str(node_home)}


class _Merge:
    """The driver's side: each point's rows into the user's store, each point with its own id map."""

    def __init__(self, store: RunStore):
        self.store = store
        self.ids: dict[int, dict[int, int]] = {}

    def chunks(self, chunks: list[tuple[int, dict]]) -> None:
        for index, chunk in chunks:
            self.ids[index] = self.store.import_runs(chunk, self.ids.get(index))

    def result(self, outcome: dict) -> dict:
        import ray

        rows = outcome.pop("rows")
        for entry in rows["artifacts"]:
            entry["data"] = ray.get(entry["data"])
        ids = self.ids[outcome["index"]] = self.store.import_runs(rows, self.ids.get(outcome["index"]))
        return {**outcome, "run_id": ids[outcome["run_id"]]}

    def lost(self, spec: dict, reason: str, status: str) -> dict:
        """A point whose task died: the point run reads `status`; its notebook's open runs read interrupted."""
        from .sweep import _outcome_from_store

        outcome = _outcome_from_store(self.store, spec, reason, status=status)
        ours = list(self.ids.get(spec["index"], {}).values())
        for run_id in ours:
            self.store.end_orphan(run_id, "interrupted", f"its sweep point's Ray task ended: {reason}")
        return outcome


def check_address(address: str | None) -> None:
    """A one-line error within `CONNECT_S` if `address` ($RAY_ADDRESS: "host:port", "ray://host:port")
    accepts no connection; "auto", "local" or none are left to Ray, which answers those at once."""
    if not address or address in ("auto", "local"):
        return
    target = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise WorkbenchError(f"RAY_ADDRESS={address!r} is not host:port (e.g. 10.0.0.5:6379, or ray://10.0.0.5:10001)")
    deadline, problem = time.monotonic() + CONNECT_S, "no answer"
    while True:
        try:
            with socket.create_connection((host, int(port)), timeout=max(0.1, min(5.0, deadline - time.monotonic()))):
                return
        except OSError as error:
            problem = error.strerror or type(error).__name__
        if time.monotonic() + 1.0 > deadline:
            break
        time.sleep(1.0)
    raise WorkbenchError(f"no Ray cluster answers at RAY_ADDRESS={address} ({problem}, tried for {CONNECT_S:.0f} s): "
                         "start it (ray start --head), fix RAY_ADDRESS, or unset it for a single-machine Ray")


def run_ray(specs: list[dict], parallel: int, store: RunStore, done) -> None:
    """The points as Ray tasks, `parallel` in flight; each outcome (and its rows) reaches `done` as it lands."""
    try:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    except ImportError:
        raise WorkbenchError("the ray backend needs Ray: pip install 'workbench[ray]' (or use --backend local)") \
            from None
    address = os.environ.get("RAY_ADDRESS")
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else parallel, include_dashboard=False, log_to_driver=False)
    mirror, merge, pending, in_flight = None, _Merge(store), deque(specs), {}

    def land(ref, spec: dict, status: str = "failed") -> None:
        merge.chunks(ray.get(mirror.take.remote()))  # everything it streamed comes before its result
        try:
            done(merge.result(ray.get(ref)))
        except Exception as failure:  # noqa: BLE001 -- its worker or node died, or it was cancelled: the others go on
            done(merge.lost(spec, f"the Ray task failed: {type(failure).__name__}: {_first_line(failure)}", status))

    try:
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        mirror = ray.remote(num_cpus=0)(Mirror).options(scheduling_strategy=here).remote()
        gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
        task = ray.remote(num_cpus=1, num_gpus=gpus, max_retries=0)(remote_point)
        while pending or in_flight:
            while pending and len(in_flight) < parallel:
                spec = pending.popleft()
                in_flight[task.remote(spec, mirror)] = spec
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=POLL_S)
            merge.chunks(ray.get(mirror.take.remote()))
            for ref in ready:
                land(ref, in_flight.pop(ref))
    except KeyboardInterrupt:
        if mirror is None:
            raise
        ray.get(mirror.stop.remote())  # each running point raises KeyboardInterrupt in itself, and comes home
        finished, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=INTERRUPT_GRACE_S)
        for ref in in_flight:
            if ref not in finished:
                ray.cancel(ref, force=True)
        for ref, spec in in_flight.items():
            land(ref, spec, status="interrupted")
        raise
    finally:
        if mirror is not None:
            ray.kill(mirror)
        if started:
            ray.shutdown()


def _first_line(failure: Exception) -> str:
    text = str(failure).strip()
    return text.splitlines()[0] if text else "no message"
