"""Parameter sweeps: one notebook executed over a grid of parameters, N points at a time.

    python -m workbench sweep NOTEBOOK -p lr 1e-3 3e-4 -p rank 8 32 --parallel 2

Every point is a papermill execution (`workbench.notebook.run_notebook`) in a process of its own,
so a point that crashes, leaks memory or hangs its kernel cannot take the others with it. The run
store keeps the sweep as a group the dashboard can show:

- one run of kind "sweep" (the whole grid, its axes, and at the end how many points finished),
  tagged `sweep = <sweep id>`;
- per point one run of kind "sweep_point": the point's parameters, its status (a failed point keeps
  papermill's `ename: evalue`), its executed notebook and its HTML copy as artifacts (the dashboard's
  Run page links both), and in its summary the final numbers of the runs the notebook itself wrote;
  tagged `sweep = <sweep id>/<point index>`;
- the notebook's own runs carry the same `<sweep id>/<point index>` tag: the point executes the
  notebook with `run_notebook(..., sweep=tag)`, whose `setup()` makes the kernel's runs join it.

Ctrl-C stops a sweep cleanly: running points get SIGINT (their notebooks stop, their runs are
marked interrupted), finished points stay, points not yet started are not run.

`backend="ray"` hands the same points to a Ray cluster (`$RAY_ADDRESS`, else a single-machine
Ray), one task per point with one GPU where the cluster has GPUs: Ray then sets
CUDA_VISIBLE_DEVICES for the task, and the kernel inherits it. Ray's scheduling by GPU is why Ray
and not Dask (which needs dask-cuda for the same). No shared disk is needed: each point runs
against a store of its own on its worker and its rows, metrics and files come home to this store
(`workbench.sweep_ray`).
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from .errors import WorkbenchError
from .notebook import check_parameters, check_profile, check_settings, find_notebook, notebook_parameters
from .paths import home
from .runs import RunStore, sweep_group  # noqa: F401 -- sweep_group: part of this module's API
from .runs import store as default_store

BACKENDS = ("local", "ray")
INTERRUPT_GRACE_S = 30.0  # how long stopped points may take to shut their kernels down


def grid(axes: dict[str, list]) -> list[dict]:
    """Every combination of the axes' values, the last axis varying fastest."""
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*(axes[name] for name in names))]


def load_points(path: str | Path) -> list[dict]:
    """Parameter sets from a file: a JSON list of objects, or JSON lines (one object per line)."""
    path = Path(path)
    if not path.is_file():
        raise WorkbenchError(f"no points file {str(path)!r}: give a JSON file with a list of parameter objects")
    text = path.read_text()
    try:
        points = json.loads(text)
    except json.JSONDecodeError:
        try:
            points = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            raise WorkbenchError(
                f'{path} is neither a JSON list nor JSON lines ({error}): write [{{"lr": 0.001}}, ...]'
            ) from None
    if not isinstance(points, list) or not points or not all(isinstance(p, dict) for p in points):
        raise WorkbenchError(f"{path} must hold a non-empty list of objects such as [{{\"lr\": 0.001, \"rank\": 8}}]")
    return points


def point_tag(sweep_id: str, index: int) -> str:
    return f"{sweep_id}/{index}"


def point_name(stem: str, params: dict) -> str:
    return " ".join([stem, *(f"{k}={v}" for k, v in params.items())])


# -- one point, in its own process ------------------------------------------------------------

def run_point(spec: dict) -> dict:
    """Execute one point (in a worker process): its run, its notebook, its outcome.

    `spec`: sweep id, index, notebook path, profile, params, home (the store's folder). The point
    keeps its executed notebook and its HTML copy (written by `run_notebook`, as a single run's) in
    its run's folder, both registered as its artifacts. Returns {index, run_id, status, error,
    seconds}; never raises for a failing notebook.
    """
    from .notebook import NotebookFailed, run_notebook

    tag = point_tag(spec["sweep"], spec["index"])
    os.environ["WORKBENCH_HOME"] = spec["home"]
    notebook = Path(spec["notebook"])
    store = RunStore(Path(spec["home"]) / "runs.db")
    run = store.start_run("sweep_point", point_name(notebook.stem, spec["params"]), spec["params"], sweep=tag)
    output = run.folder / f"{notebook.stem}.ipynb"
    status, error, start = "finished", None, time.perf_counter()
    try:
        run_notebook(
            notebook,
            spec["params"],
            profile=spec["profile"],
            output_dir=output.parent,
            output_name=output.name,
            progress=False,
            sweep=tag,
        )
    except NotebookFailed as failure:
        status, error = "failed", f"{failure.error} (cell {failure.cell})"
    except KeyboardInterrupt:
        status, error = "interrupted", _stop_reason[0]
    # a kernel that died, a notebook that cannot be read: the point failed, the sweep goes on
    except Exception as failure:
        status, error = "failed", f"{type(failure).__name__}: {failure}"
    seconds = time.perf_counter() - start
    for path in (output, output.with_suffix(".html")):
        if path.is_file():
            run.log_artifact(path.name, path)  # already in place: registers it
    run.finish(
        status, summary={**point_results(store, tag, exclude=run.id), "notebook_s": round(seconds, 2)}, error=error
    )
    return {"index": spec["index"], "run_id": run.id, "status": status, "error": error, "seconds": seconds}


def point_results(store: RunStore, tag: str, exclude: int | None = None) -> dict[str, float]:
    """The final numbers of the runs a point's notebook wrote: summaries and each metric's last value.

    Keys are the metric names; where two of the notebook's runs report the same name, the later
    one's key is prefixed with its kind (`student.ppl`), so points of one sweep line up.
    """
    frame = store.runs(sweep=tag).sort_values("id")
    frame = frame[frame["id"] != exclude]
    results: dict[str, float] = {}
    if frame.empty:
        return results
    metrics = store.metrics(list(frame["id"]))
    for row in frame.itertuples():
        last = metrics[metrics["run_id"] == row.id].groupby("key")["value"].last().to_dict()
        numbers = {
            k: v for k, v in {**last, **row.summary}.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        for key, value in numbers.items():
            for candidate in (key, f"{row.kind}.{key}"):
                if candidate not in results:
                    results[candidate] = float(value)
                    break
    return results


# Why a point's KeyboardInterrupt came: the driver's SIGINT (Ctrl-C or `kill`), unless the watcher below saw it die.
_stop_reason = ["the sweep was stopped (Ctrl-C or kill)"]


def _watch_parent() -> None:
    """A point whose sweep process died stops too (it runs in its own session, out of Ctrl-C's reach)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        _stop_reason[0] = f"the sweep's driver process ({parent}) died (killed?), so the point was stopped"
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=watch, name="sweep-parent-watch", daemon=True).start()


# -- the sweep ----------------------------------------------------------------------------------

@dataclass
class SweepResult:
    sweep: str
    run_id: int
    outcomes: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    interrupted: bool = False

    def counts(self) -> dict[str, int]:
        statuses = [o["status"] for o in self.outcomes]
        return {status: statuses.count(status) for status in ("finished", "failed", "interrupted")}


def run_sweep(
    notebook: str | Path,
    points: list[dict],
    parallel: int = 1,
    profile: str = "smoke",
    backend: str = "local",
    gpus: list[str] | None = None,
    progress: bool = True,
) -> SweepResult:
    """Run every point (a dict of notebook parameters), `parallel` at a time, each a run in the store.

    Bad input (unknown parameter, no points, unknown backend) is refused before anything runs.
    `gpus` (local backend): GPU ids handed out to the running points, one each, via CUDA_VISIBLE_DEVICES.
    On Ctrl-C the running points are stopped and marked interrupted, and the result says so.
    """
    path = find_notebook(notebook)
    check_profile(profile)
    if backend not in BACKENDS:
        raise WorkbenchError(f"unknown backend {backend!r}: use one of {', '.join(BACKENDS)}")
    if not points:
        raise WorkbenchError("a sweep needs at least one point: give -p NAME VALUE... or --points FILE")
    if parallel < 1:
        raise WorkbenchError(f"--parallel must be at least 1, not {parallel}")
    known = notebook_parameters(path)
    for point in points:
        unknown = sorted(set(point) - set(known) | ({"profile"} & set(point)))
        if unknown:
            raise WorkbenchError(
                f"{path.stem} has no sweepable parameter {', '.join(unknown)}: its parameters are "
                f"{', '.join(k for k in known if k != 'profile')} (set the profile with --profile)"
            )
        check_parameters(path.stem, point, known)
    for index, point in enumerate(points):  # every point's values, before any point starts
        try:
            check_settings(path, profile, point)
        except WorkbenchError as error:
            raise WorkbenchError(f"point {index} ({point_name(path.stem, point)}): {error}") from None
    if backend == "ray" and importlib.util.find_spec("ray") is None:  # before the sweep's run is written
        raise WorkbenchError("the ray backend needs Ray: pip install 'workbench[ray]' (or use --backend local)")
    if backend == "ray":
        from .sweep_ray import check_address

        check_address(os.environ.get("RAY_ADDRESS"))
    store = default_store()
    sweep_id = f"{path.stem}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}"
    names = dict.fromkeys(k for p in points for k in p)  # the swept parameters and their distinct values, in order
    axes = {
        name: [json.loads(v) for v in dict.fromkeys(json.dumps(p[name]) for p in points if name in p)] for name in names
    }
    sweep_run = store.start_run(
        "sweep",
        f"{path.stem} × {len(points)} points",
        {
            "notebook": str(path),
            "profile": profile,
            "axes": axes,
            "points": len(points),
            "parallel": parallel,
            "backend": backend,
        },
        sweep=sweep_id,
    )
    sweep_run.log_artifact("points.json", points)
    specs = [
        {
            "sweep": sweep_id,
            "index": i,
            "notebook": str(path),
            "profile": profile,
            "params": point,
            "home": str(store.path.parent),
        }
        for i, point in enumerate(points)
    ]
    result = SweepResult(sweep_id, sweep_run.id)
    start = time.perf_counter()
    bar = _progress(len(specs), sweep_id, progress)

    def done(outcome: dict) -> None:
        result.outcomes.append(outcome)
        bar.set_postfix(failed=result.counts()["failed"])
        bar.update(1)

    try:
        if backend == "local":
            _run_local(specs, parallel, gpus, store, done)
        else:
            _run_ray(specs, parallel, store, done)
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        bar.close()
    result.outcomes.sort(key=lambda o: o["index"])
    result.seconds = time.perf_counter() - start
    summary = {**result.counts(), "not_started": len(specs) - len(result.outcomes), "wall_s": round(result.seconds, 2)}
    if result.interrupted:
        _mark_interrupted(store, sweep_id, sweep_run.id)
    sweep_run.finish("interrupted" if result.interrupted else "finished", summary=summary,
                     error="stopped (Ctrl-C or kill)" if result.interrupted else None)
    return result


def _progress(total: int, sweep_id: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"sweep {sweep_id}", unit="point", disable=not enabled)


def _mark_interrupted(store: RunStore, sweep_id: str, sweep_run_id: int) -> None:
    """Whatever of this sweep still reads "running" (a point, a notebook's run) was cut short."""
    store.mark_interrupted(sweep_id, "the sweep was stopped (Ctrl-C or kill)", keep=sweep_run_id)


def _outcome_from_store(store: RunStore, spec: dict, reason: str, status: str = "failed") -> dict:
    """A point's outcome as its process left it, once that process is gone.

    A point whose process died without closing its run (killed, out of memory) or before opening
    one gets `status` ("failed"; "interrupted" when the sweep was stopped) with `reason` as its error.
    """
    tag = point_tag(spec["sweep"], spec["index"])
    rows = store.runs(kind="sweep_point", sweep=tag)
    if rows.empty:
        run = store.start_run(
            "sweep_point", point_name(Path(spec["notebook"]).stem, spec["params"]), spec["params"], sweep=tag
        )
        run.finish(status, error=f"the point's process ended before it recorded anything: {reason}")
        rows = store.runs(kind="sweep_point", sweep=tag)
    row = rows.iloc[0]
    # its process is gone, so a run still "running" will never be closed by it
    if store.end_orphan(int(row["id"]), status, f"the point's process died: {reason}"):
        row = store.runs(kind="sweep_point", sweep=tag).iloc[0]
    return {
        "index": spec["index"],
        "run_id": int(row["id"]),
        "status": row["status"],
        "error": row["error"],
        "seconds": row["duration_s"],
    }


def _run_local(specs: list[dict], parallel: int, gpus: list[str] | None, store: RunStore, done) -> None:
    """`parallel` point processes at a time on this machine; each in its own session (see `_stop`)."""
    folder = home() / "sweeps" / specs[0]["sweep"]
    folder.mkdir(parents=True, exist_ok=True)
    pending, running = deque(specs), {}
    slots = list(range(parallel))
    try:
        while pending or running:
            while pending and slots:
                spec, slot = pending.popleft(), slots.pop(0)
                env = {**os.environ, "WORKBENCH_HOME": spec["home"]}
                if gpus:
                    env["CUDA_VISIBLE_DEVICES"] = str(gpus[slot % len(gpus)])
                log = folder / f"point-{spec['index']}.log"
                with open(log, "w") as out:
                    process = subprocess.Popen([sys.executable, "-m", "workbench.sweep", json.dumps(spec)], stdout=out,
                                               stderr=subprocess.STDOUT, env=env, start_new_session=True)
                running[process] = (spec, slot, log)
            for process in [p for p in running if p.poll() is not None]:
                spec, slot, log = running.pop(process)
                slots.append(slot)
                done(_outcome_from_store(store, spec, _exit_reason(process, log)))
            time.sleep(0.1)
    except KeyboardInterrupt:
        _stop(running)
        for process, (spec, _, log) in running.items():
            done(_outcome_from_store(store, spec, _exit_reason(process, log), status="interrupted"))
        raise


def _exit_reason(process: subprocess.Popen, log: Path) -> str:
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
    return f"exit code {process.returncode}: {' '.join(tail) or 'no output'} (log: {log})"


def _stop(running: dict) -> None:
    """SIGINT to every running point (its notebook stops, its run reads interrupted); kill laggards.

    The points run in their own sessions so that a terminal's Ctrl-C reaches them once, from here,
    and not twice (a second KeyboardInterrupt would cut their clean-up short).
    """
    for process in running:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    deadline = time.monotonic() + INTERRUPT_GRACE_S
    try:
        for process in running:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
    except (subprocess.TimeoutExpired, KeyboardInterrupt):
        pass
    for process in running:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _run_ray(specs: list[dict], parallel: int, store: RunStore, done) -> None:
    """The points as Ray tasks, each against a store on its own worker, merged back here (see workbench.sweep_ray)."""
    from .sweep_ray import run_ray

    run_ray(specs, parallel, store, done)


if __name__ == "__main__":  # one point: python -m workbench.sweep SPEC_JSON (started by _run_local)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even where the sweep was started with SIGINT ignored
    _watch_parent()
    outcome = run_point(json.loads(sys.argv[1]))
    print(json.dumps(outcome, default=str))
    raise SystemExit({"finished": 0, "failed": 1}.get(outcome["status"], 130))
