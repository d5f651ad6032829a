"""The run store: every run's parameters, metrics over steps, artifacts and final results.

One SQLite database in WAL mode under the workbench home, so two notebooks can write at once and
a dashboard can poll while they do: WAL lets readers proceed while a writer commits. The API is
the one users know from experiment trackers:

    run = start_run("echoatt", "n=6 similarity", params={"lr": 3e-4})
    run.log({"loss": 2.1}, step=10)
    run.log_artifact("similarity.npy", array)
    run.finish(summary={"ppl": 21.3})

A run whose process dies never says so itself. A daemon thread beats the run's heart every few
seconds; readers show a "running" run as "interrupted" once its process is gone (same host) or
its heart has not beaten for `STALE_AFTER_S`. Every metric committed before the crash stays.

Every write is one transaction that Ctrl-C cannot split (`RunStore.write`): an interrupted
notebook kernel lives on, and a transaction it left open would hold the database's write lock,
blocking every other process and losing whatever the kernel wrote afterwards.

(Over 400 lines on purpose: the store's schema and every statement that reads or writes it live in
this one module, so that no other module writes SQL against the runs table.)
"""

from __future__ import annotations

import atexit
import errno
import io
import json
import math
import os
import platform
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Self

import numpy as np
import pandas as pd

from .errors import WorkbenchError
from .paths import home

HEARTBEAT_S = 2.0
STALE_AFTER_S = 15.0
ACTIVE = "running"
TERMINAL = ("finished", "failed", "interrupted")

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL, name TEXT NOT NULL, sweep TEXT,
    status TEXT NOT NULL, params TEXT NOT NULL, summary TEXT NOT NULL DEFAULT '{}', error TEXT,
    git_commit TEXT, device TEXT, versions TEXT, host TEXT, pid INTEGER,
    started_at REAL NOT NULL, heartbeat_at REAL NOT NULL, ended_at REAL
);
CREATE TABLE IF NOT EXISTS metrics (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id INTEGER NOT NULL, step INTEGER NOT NULL, key TEXT NOT NULL, value REAL, time REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics (run_id, key, step);
CREATE TABLE IF NOT EXISTS kinds (
    name TEXT PRIMARY KEY, headline TEXT NOT NULL, goal TEXT NOT NULL, description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id INTEGER NOT NULL, name TEXT NOT NULL, path TEXT NOT NULL, created_at REAL NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS labels (
    run_id INTEGER PRIMARY KEY, tags TEXT NOT NULL DEFAULT '[]', note TEXT NOT NULL DEFAULT '',
    archived INTEGER NOT NULL DEFAULT 0
);
"""


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA busy_timeout=60000")
    return connection


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back SIGINT (Ctrl-C, a kernel interrupt) until the block ends, then deliver it.

    Python raises KeyboardInterrupt at any bytecode, e.g. between BEGIN and COMMIT. Signals only
    reach the main thread, so other threads need no deferral.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:  # None: not set from Python
        yield
        return
    received: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and previous is not signal.SIG_IGN:
            signal.raise_signal(signal.SIGINT)  # now handled as it would have been: KeyboardInterrupt here


def _plain(value: Any) -> Any:
    """`value` with every non-finite number as None: JSON has no NaN, and SQLite's json_extract
    refuses a row that holds one (the whole summary becomes unreadable to it)."""
    if isinstance(value, dict):
        return {key: _plain(v) for key, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if getattr(value, "ndim", None) == 0 and hasattr(value, "item"):  # numpy and torch scalars
        value = value.item()
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _json(value: Any) -> str:
    return json.dumps(_plain(value), default=lambda o: o.item() if hasattr(o, "item") else str(o))


def _non_finite(results: dict[str, Any]) -> dict[str, Any]:
    """The results that are NaN or infinite numbers, by key."""
    return {key: value for key, value in results.items() if value is not None and _plain(value) is None}


def disk_full(folder: Path) -> bool:
    """Whether the disk holding `folder` (or its nearest existing parent) has less than 1 MiB free."""
    folder = next((p for p in (folder, *folder.parents) if p.exists()), folder)
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def _environment() -> tuple[str, dict]:
    import torch
    import transformers

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    return device, versions


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class RunKind:
    """A kind of run, as the dashboard needs to know it: the summary key that is its headline
    metric (e.g. "ppl") and whether lower or higher is better. Each idea declares one; the store
    keeps it beside the runs, so a reader of the store alone can rank and plot them."""

    name: str
    headline: str
    goal: str = "min"  # "min": lower is better; "max": higher is better
    description: str = ""

    def __post_init__(self) -> None:
        if self.goal not in ("min", "max"):
            raise ValueError(f"goal must be 'min' or 'max', got {self.goal!r}")


class RunStore:
    """A handle on one run database (default: `runs.db` in the workbench home)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else home() / "runs.db"
        self.readonly = False
        self._lock = threading.RLock()  # one transaction at a time on the shared connection
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.db = _connect(self.path)
            self.db.executescript(SCHEMA)
        except sqlite3.OperationalError as error:
            if "disk is full" in str(error) or disk_full(self.path.parent):
                raise self._disk_full(error) from None
            if not any(words in str(error) for words in ("readonly", "read-only", "unable to open")):
                raise WorkbenchError(f"cannot open the run store {self.path} ({error}): retry, or stop the process "
                                     "holding it") from None
            self.db, self.readonly = self._open_readonly(error), True  # a read-only file or folder: still readable
        except sqlite3.DatabaseError as error:
            raise self._damaged(str(error)) from None
        except OSError as error:
            if error.errno == errno.ENOSPC:
                raise self._disk_full(error) from None
            raise WorkbenchError(f"cannot create the run store's folder {self.path.parent} ({error.strerror}): "
                                 "set WORKBENCH_HOME to a folder you can write") from None
        # sqlite notices damage only on the pages it touches: a store with garbage in the middle
        # would go on taking writes. One check per process that opens it, milliseconds for a store of MBs.
        try:
            check = self.db.execute("PRAGMA quick_check").fetchone()[0]
        except sqlite3.DatabaseError as error:
            check = str(error)
        if check != "ok":
            raise self._damaged(check)
        if not self.readonly:
            self._end_dead_runs()

    def _end_dead_runs(self) -> None:
        """Runs of this host whose process is gone (killed, out of memory) end "interrupted" in the file
        itself, so every reader of it (an export, sqlite3, another tool) agrees with `runs()`."""
        rows = self.db.execute("SELECT id, pid FROM runs WHERE status = ? AND host = ?",
                               (ACTIVE, socket.gethostname())).fetchall()
        dead = [run_id for run_id, pid in rows if pid and not _pid_alive(int(pid))]
        if not dead:
            return
        try:
            with self.write() as db:
                db.executemany(
                    "UPDATE runs SET status = 'interrupted', error = COALESCE(error, ?), ended_at = ?"
                    " WHERE id = ? AND status = ?",
                    [("its process ended without finishing it (killed?)", time.time(), run_id, ACTIVE)
                     for run_id in dead],
                )
        except sqlite3.OperationalError:  # busy or full: the reading rule still shows them interrupted
            pass

    def _disk_full(self, error: Exception) -> WorkbenchError:
        return WorkbenchError(f"the disk holding the run store {self.path} is full ({error}): free some space, "
                              "or set WORKBENCH_HOME to a folder on another disk")

    def _damaged(self, reason: str) -> WorkbenchError:
        return WorkbenchError(
            f"the run store {self.path} is damaged ({reason}): move it aside (mv {self.path} {self.path}.bad) to start "
            f"a new one, or salvage its rows with `sqlite3 {self.path} .recover | sqlite3 new.db`"
        )

    def _open_readonly(self, error: sqlite3.OperationalError) -> sqlite3.Connection:
        """The store read-only, for a dashboard or a listing."""
        if not self.path.is_file():
            raise WorkbenchError(f"cannot create the run store {self.path} ({error}): "
                                 "set WORKBENCH_HOME to a folder you can write") from None
        for mode in ("mode=ro", "immutable=1"):  # with its WAL if sqlite can read it, else the file alone
            try:
                uri = f"{self.path.resolve().as_uri()}?{mode}"
                connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
                connection.execute("SELECT COUNT(*) FROM runs").fetchone()
                return connection
            except sqlite3.DatabaseError as second:
                problem = str(second)
        raise self._damaged(problem)

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: committed whole, or rolled back; never left open, even by Ctrl-C."""
        if self.readonly:
            raise WorkbenchError(f"the run store {self.path} is read-only here: make it and its folder writable, "
                                 "or set WORKBENCH_HOME to another folder")
        with self._lock, _sigint_deferred():
            try:
                self.db.execute("BEGIN IMMEDIATE")
                yield self.db
                self.db.execute("COMMIT")
            finally:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")

    @property
    def artifact_dir(self) -> Path:
        return self.path.parent / "artifacts"

    def mark_interrupted(self, sweep: str, error: str, keep: int | None = None) -> None:
        """Every run of `sweep` (tagged `sweep` or `sweep/<point>`) that still reads "running", except
        run `keep`, ends "interrupted" with `error` (unless it has one): its runner stopped it."""
        with self.write() as db:
            db.execute(
                "UPDATE runs SET status = 'interrupted', error = COALESCE(error, ?), ended_at = ?"
                " WHERE (sweep = ? OR sweep LIKE ?) AND status = ? AND id != ?",
                (error, time.time(), sweep, f"{sweep}/%", ACTIVE, -1 if keep is None else keep),
            )

    def end_orphan(self, run_id: int, status: str, error: str) -> bool:
        """End run `run_id` with `status` if it still reads "running" although its process is gone
        (killed, out of memory); True if it did."""
        with self.write() as db:
            cursor = db.execute(
                "UPDATE runs SET status = ?, error = ?, ended_at = ? WHERE id = ? AND status = ?",
                (status, error, time.time(), run_id, ACTIVE),
            )
            return cursor.rowcount > 0

    def start_run(self, kind: str | RunKind, name: str, params: dict | None = None, sweep: str | None = None) -> Run:
        """A new run of `kind` (a `RunKind` also records the kind's headline metric)."""
        device, versions, commit = *_environment(), _git_commit()
        with self.write() as db:
            if isinstance(kind, RunKind):
                db.execute(
                    "INSERT OR REPLACE INTO kinds (name, headline, goal, description) VALUES (?, ?, ?, ?)",
                    (kind.name, kind.headline, kind.goal, kind.description),
                )
                kind = kind.name
            now = time.time()
            cursor = db.execute(
                "INSERT INTO runs (kind, name, sweep, status, params, git_commit, device, versions, host, pid, "
                "started_at, heartbeat_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, name, sweep or _joined_sweep, ACTIVE, _json(params or {}), commit, device,
                 _json(versions), socket.gethostname(), os.getpid(), now, now),
            )
            # set by run_notebook: the executed copy this run is part of
            notebook = os.environ.get("WORKBENCH_NOTEBOOK")
            for path in (Path(notebook), Path(notebook).with_suffix(".html")) if notebook else ():
                db.execute("INSERT OR REPLACE INTO artifacts (run_id, name, path, created_at) VALUES (?, ?, ?, ?)",
                           (cursor.lastrowid, path.name, str(path), now))
            return Run(self, cursor.lastrowid)

    # -- reading ---------------------------------------------------------------------------
    def runs(self, kind: str | None = None, sweep: str | None = None) -> pd.DataFrame:
        """All runs, newest first, with `status` resolved (dead "running" runs read "interrupted"), and
        the user's labels: `tags` (a list), `note`, `archived` (see `label_run`)."""
        labels = self.db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'labels'").fetchone()
        query, args = "SELECT * FROM runs WHERE 1=1", []
        if labels:  # a read-only store written before labels existed has none
            query = ("SELECT runs.*, COALESCE(l.tags, '[]') AS tags, COALESCE(l.note, '') AS note, "
                     "COALESCE(l.archived, 0) AS archived FROM runs LEFT JOIN labels l ON l.run_id = runs.id WHERE 1=1")
        if kind:
            query, args = query + " AND kind = ?", [*args, kind]
        if sweep:
            query, args = query + " AND sweep = ?", [*args, sweep]
        frame = pd.read_sql_query(query + " ORDER BY id DESC", self.db, params=args)
        frame["status"] = [self._resolve_status(row) for row in frame.itertuples()]
        for column in ("params", "summary", "versions"):
            frame[column] = frame[column].map(lambda text: json.loads(text) if text else {})
        frame["duration_s"] = frame["ended_at"].fillna(frame["heartbeat_at"]) - frame["started_at"]
        frame["tags"] = frame["tags"].map(json.loads) if labels else [[] for _ in range(len(frame))]
        frame["note"] = frame["note"] if labels else ""
        frame["archived"] = frame["archived"].astype(bool) if labels else False
        return frame

    def label_run(self, run_id: int, *, name: str | None = None, tags: list[str] | None = None,
                  note: str | None = None, archived: bool | None = None) -> None:
        """What a user says about a run, kept beside it: a new name, tags, a note, archived (hidden
        from the dashboard's table unless asked for; nothing is deleted). None leaves a label as it is."""
        with self.write() as db:
            if db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is None:
                raise WorkbenchError(f"no run {run_id} in {self.path}")
            if name is not None:
                if not name.strip():
                    raise WorkbenchError("a run's name cannot be empty")
                db.execute("UPDATE runs SET name = ? WHERE id = ?", (name.strip(), run_id))
            db.execute("INSERT OR IGNORE INTO labels (run_id) VALUES (?)", (run_id,))
            if tags is not None:
                clean = list(dict.fromkeys(t.strip() for t in tags if t.strip()))
                db.execute("UPDATE labels SET tags = ? WHERE run_id = ?", (_json(clean), run_id))
            if note is not None:
                db.execute("UPDATE labels SET note = ? WHERE run_id = ?", (note, run_id))
            if archived is not None:
                db.execute("UPDATE labels SET archived = ? WHERE run_id = ?", (int(archived), run_id))

    def delete_run(self, run_id: int) -> None:
        """Delete a run: its rows (metrics, artifacts, labels) and its artifact folder. A run whose
        process still runs is refused; a file outside the folder that it links to (an executed
        notebook other runs share) is kept."""
        import shutil

        if self.run(run_id)["status"] == ACTIVE:
            raise WorkbenchError(f"run {run_id} is still running: stop it before deleting it")
        with self.write() as db:
            for table in ("metrics", "artifacts", "labels"):
                db.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))
            db.execute("DELETE FROM runs WHERE id = ?", (run_id,))
        shutil.rmtree(self.artifact_dir / str(run_id), ignore_errors=True)

    def kinds(self) -> dict[str, RunKind]:
        """The declared run kinds, by name (kinds never declared are absent)."""
        rows = self.db.execute("SELECT name, headline, goal, description FROM kinds").fetchall()
        return {row[0]: RunKind(*row) for row in rows}

    def run(self, run_id: int) -> dict:
        frame = self.runs()
        rows = frame[frame["id"] == run_id]
        if rows.empty:
            raise KeyError(f"no run {run_id} in {self.path}")
        return rows.iloc[0].to_dict()

    def _resolve_status(self, row) -> str:
        if row.status != ACTIVE:
            return row.status
        if row.host == socket.gethostname() and not _pid_alive(int(row.pid)):
            return "interrupted"
        return "interrupted" if time.time() - row.heartbeat_at > STALE_AFTER_S else ACTIVE

    def metrics(
        self, run_ids: list[int] | None = None, keys: list[str] | None = None, after_id: int = 0
    ) -> pd.DataFrame:
        """Metric rows (id, run_id, step, key, value, time) in logging order.

        `after_id` returns only rows logged since a previous read: what a live view polls for.
        """
        query, args = "SELECT * FROM metrics WHERE id > ?", [after_id]
        if run_ids is not None:
            query += f" AND run_id IN ({','.join('?' * len(run_ids))})"
            args += list(run_ids)
        if keys is not None:
            query += f" AND key IN ({','.join('?' * len(keys))})"
            args += list(keys)
        return pd.read_sql_query(query + " ORDER BY id", self.db, params=args)

    def history(self, run_id: int) -> pd.DataFrame:
        """One run's metrics as a table: one row per step, one column per metric."""
        rows = self.metrics([run_id])
        if rows.empty:
            return pd.DataFrame()
        return rows.pivot_table(index="step", columns="key", values="value", aggfunc="last").reset_index()

    def notebook_runs(self, notebook: str | Path) -> list[int]:
        """The runs an executed notebook (`run_notebook`'s copy) wrote, oldest first."""
        rows = self.db.execute("SELECT run_id FROM artifacts WHERE path = ? ORDER BY run_id", (str(notebook),))
        return [run_id for (run_id,) in rows.fetchall()]

    def artifacts(self, run_id: int) -> dict[str, Path]:
        # int(): a run id read from a pandas table is a numpy integer, which sqlite binds as a BLOB (no row matches)
        rows = self.db.execute("SELECT name, path FROM artifacts WHERE run_id = ?", (int(run_id),)).fetchall()
        return {name: Path(path) for name, path in rows}

    def artifact_paths(self, name: str) -> dict[int, Path]:
        """Run id → path of every run's artifact called `name` (e.g. every model card), in one query."""
        rows = self.db.execute("SELECT run_id, path FROM artifacts WHERE name = ?", (name,)).fetchall()
        return {run_id: Path(path) for run_id, path in rows}

    def load_artifact(self, run_id: int, name: str) -> Any:
        """An artifact read back by its suffix: .npy → array, .json → object, else bytes."""
        path = self.artifacts(run_id)[name]
        if path.suffix == ".npy":
            return np.load(path)
        if path.suffix == ".json":
            return json.loads(path.read_text())
        return path.read_bytes()

    # -- moving runs between stores (a sweep point run on another machine comes home) ----------
    def export_runs(self, run_ids: list[int] | None = None, after_metric: int = 0) -> dict:
        """Runs as plain rows for `import_runs` into another store: {runs, metrics, artifacts, kinds, last_metric}.

        Statuses are resolved (a dead "running" run exports as "interrupted"). `after_metric`: only
        the metric rows logged since an earlier export's `last_metric`, so a live stream sends each
        row once. Artifacts are listed by path (only files that exist); the caller ships their bytes.
        """
        cursor = self.db.execute("SELECT * FROM runs ORDER BY id")
        names = [column[0] for column in cursor.description]
        runs = [dict(zip(names, row)) for row in cursor if run_ids is None or row[0] in run_ids]
        for run in runs:
            run["status"] = self._resolve_status(SimpleNamespace(**run))
        ids = [run["id"] for run in runs]
        marks = ",".join("?" * len(ids))
        metrics = self.db.execute(
            f"SELECT id, run_id, step, key, value, time FROM metrics WHERE id > ? AND run_id IN ({marks}) ORDER BY id",
            (after_metric, *ids),
        ).fetchall()
        artifacts = [
            {"run_id": r, "name": n, "path": p, "created_at": t}
            for r, n, p, t in self.db.execute(
                f"SELECT run_id, name, path, created_at FROM artifacts WHERE run_id IN ({marks})", ids
            )
            if Path(p).is_file()
        ]
        kinds = [list(row) for row in self.db.execute("SELECT name, headline, goal, description FROM kinds")]
        return {"runs": runs, "metrics": [list(m) for m in metrics], "artifacts": artifacts, "kinds": kinds,
                "last_metric": metrics[-1][0] if metrics else after_metric}

    def import_runs(self, exported: dict, ids: dict[int, int] | None = None) -> dict[int, int]:
        """Merge another store's `export_runs` into this one under new run ids; returns {their id: our id}.

        Pass the returned map back with later exports of the same store (a live stream): runs
        already imported are updated (status, summary, error, heartbeat, end), their new metric
        rows appended. Everything else is kept as exported: sweep tags, statuses, errors, times.
        An artifact entry carries its bytes as `data`, or a `path` to copy; entries that share a
        source path (a notebook's runs all point at its executed copy) share one copied file.
        """
        ids = {} if ids is None else ids
        written: dict[str, Path] = {}
        with self.write() as db:
            db.executemany("INSERT OR REPLACE INTO kinds (name, headline, goal, description) VALUES (?, ?, ?, ?)",
                           exported["kinds"])
            for row in exported["runs"]:
                columns = [c for c in row if c != "id"]
                values = [row[c] for c in columns]
                if row["id"] in ids:
                    db.execute(
                        f"UPDATE runs SET {', '.join(f'{c} = ?' for c in columns)} WHERE id = ?",
                        (*values, ids[row["id"]]),
                    )
                else:
                    cursor = db.execute(
                        f"INSERT INTO runs ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", values
                    )
                    ids[row["id"]] = cursor.lastrowid
            db.executemany(
                "INSERT INTO metrics (run_id, step, key, value, time) VALUES (?, ?, ?, ?, ?)",
                [(ids[run_id], step, key, value, t) for _, run_id, step, key, value, t in exported["metrics"]],
            )
            for entry in exported["artifacts"]:
                source = entry.get("path") or f"{entry['run_id']}/{entry['name']}"
                if source not in written:
                    folder = self.artifact_dir / str(ids[entry["run_id"]])
                    folder.mkdir(parents=True, exist_ok=True)
                    written[source] = folder / entry["name"]
                    data = entry["data"] if "data" in entry else Path(entry["path"]).read_bytes()
                    tmp = written[source].with_name(f".{entry['name']}.tmp")
                    tmp.write_bytes(data)
                    os.replace(tmp, written[source])
                db.execute("INSERT OR REPLACE INTO artifacts (run_id, name, path, created_at) VALUES (?, ?, ?, ?)",
                           (ids[entry["run_id"]], entry["name"], str(written[source]), entry["created_at"]))
        return ids


class Run:
    """A run being written. Use as a context manager, or call `finish` yourself."""

    def __init__(self, store: RunStore, run_id: int):
        self.store, self.id = store, run_id
        self._done = threading.Event()
        self._non_finite: dict[str, float] = {}  # summary keys given as NaN or infinite (stored as null)
        _open_runs[run_id] = self
        self._heart = threading.Thread(target=self._beat, name=f"run-{run_id}-heartbeat", daemon=True)
        self._heart.start()
        atexit.register(self._at_exit)

    def _beat(self) -> None:
        connection = None
        while not self._done.wait(HEARTBEAT_S):
            try:  # a full disk or a busy store costs a beat, not a traceback from this thread
                connection = connection or _connect(self.store.path)
                connection.execute(
                    "UPDATE runs SET heartbeat_at = ? WHERE id = ? AND status = ?", (time.time(), self.id, ACTIVE)
                )
            except sqlite3.OperationalError:
                continue
        if connection is not None:
            connection.close()

    def log(self, metrics: dict[str, float], step: int) -> None:
        now = time.time()
        rows = [(self.id, int(step), key, float(value), now) for key, value in metrics.items()]
        with self.store.write() as db:  # one transaction (one fsync) for all of a step's metrics
            db.executemany("INSERT INTO metrics (run_id, step, key, value, time) VALUES (?, ?, ?, ?, ?)", rows)

    def log_artifact(self, name: str, value: Any) -> Path:
        """Keep a file with the run: a path to copy, an array (.npy), an object (.json), text or bytes."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / name
        if isinstance(value, (str, Path)) and Path(value).is_file():
            data = Path(value).read_bytes()
        elif isinstance(value, np.ndarray):
            buffer = io.BytesIO()
            np.save(buffer, value)
            data = buffer.getvalue()
        elif name.endswith(".json"):
            data = _json(value).encode()
        else:
            data = value.encode() if isinstance(value, str) else bytes(value)
        tmp = path.with_name(f".{name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        with self.store.write() as db:
            db.execute(
                "INSERT OR REPLACE INTO artifacts (run_id, name, path, created_at) VALUES (?, ?, ?, ?)",
                (self.id, name, str(path), time.time()),
            )
        return path

    def update_summary(self, **results: Any) -> None:
        """Merge final results into the run's summary (readable while it still runs); a NaN or
        infinite number is stored as null, and a non-finite headline fails the run (`finish`)."""
        self._non_finite.update(_non_finite(results))
        with self.store.write() as db:  # read and write in one transaction: no other writer's keys lost
            (text,) = db.execute("SELECT summary FROM runs WHERE id = ?", (self.id,)).fetchone()
            db.execute("UPDATE runs SET summary = ? WHERE id = ?", (_json({**json.loads(text), **results}), self.id))

    @property
    def folder(self) -> Path:
        """This run's artifact folder (the store owns it: write there through `log_artifact`, or let a
        tool write a file there and register it with `log_artifact(name, path)`)."""
        return self.store.artifact_dir / str(self.id)

    @property
    def checkpoint_dir(self) -> Path:
        """Where this run's model checkpoint goes (inside its artifact folder)."""
        return self.folder / "checkpoint"

    def mark_reference(self) -> None:
        """Mark this run as its experiment's reference (the teacher, the AdamW baseline): the
        dashboard compares the other runs of its sweep against it by default."""
        self.update_summary(reference=True)

    def finish(self, status: str = "finished", summary: dict | None = None, error: str | None = None) -> None:
        if status not in TERMINAL:
            raise ValueError(f"status must be one of {TERMINAL}")
        if summary:
            self.update_summary(**summary)
        self._done.set()
        _open_runs.pop(self.id, None)
        with self.store.write() as db:
            row = db.execute("SELECT k.headline FROM runs r LEFT JOIN kinds k ON k.name = r.kind WHERE r.id = ?",
                             (self.id,)).fetchone()  # None: its start never committed (a full disk)
            headline = row[0] if row else None
            if status == "finished" and headline in self._non_finite:  # a diverged or damaged result is no result
                status, error = "failed", f"its {headline} is {float(self._non_finite[headline])}, not a finite number"
            db.execute(
                "UPDATE runs SET status = ?, error = ?, ended_at = ? WHERE id = ? AND status = ?",
                (status, error, time.time(), self.id, ACTIVE),
            )

    def _at_exit(self) -> None:
        """The process ends with this run still open: it did not finish, so it was interrupted."""
        if not self._done.is_set():
            self.finish("interrupted")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.finish("finished")
        elif issubclass(kind, KeyboardInterrupt):
            self.finish("interrupted", error="KeyboardInterrupt")
        else:
            self.finish("failed", error=f"{kind.__name__}: {error}")


_open_runs: dict[int, Run] = {}  # this process's runs not finished yet


def finish_open_runs(status: str, error: str) -> list[int]:
    """Finish every run this process started and has not finished (a notebook cell failed).

    A run opened in one cell and finished in a later one has no `with` block to close it when a
    cell in between raises; the kernel lives on, so without this it would read "running" forever.
    """
    ids = list(_open_runs)
    for run in list(_open_runs.values()):
        run.finish(status, error=error)
    return ids


def sweep_group(tag: str | float | None) -> str | None:
    """The sweep a run belongs to, from its `sweep` tag (`<sweep id>` or `<sweep id>/<point>`).

    Untagged runs read back from pandas as None or NaN: both mean "no sweep".
    """
    return tag.split("/", 1)[0] if isinstance(tag, str) and tag else None


_joined_sweep: str | None = None  # the sweep tag every run of this process gets unless given one


def join_sweep(tag: str | None) -> None:
    """Tag every run this process starts from now on (without a `sweep` of its own) with `tag`:
    a notebook executed as a sweep point joins its point (see `workbench.notebook.setup`)."""
    global _joined_sweep
    _joined_sweep = tag or None


_default_store: RunStore | None = None


def store() -> RunStore:
    """The store under the current workbench home (reopened if $WORKBENCH_HOME changed)."""
    global _default_store
    if _default_store is None or _default_store.path != home() / "runs.db":
        _default_store = RunStore()
    return _default_store


def start_run(kind: str | RunKind, name: str, params: dict | None = None, sweep: str | None = None) -> Run:
    return store().start_run(kind, name, params, sweep)
