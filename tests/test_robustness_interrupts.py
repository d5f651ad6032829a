"""Ctrl-C (SIGINT) and kill -9 against the run store, with real processes and real signals.

A notebook kernel that is interrupted gets SIGINT and IPython catches the KeyboardInterrupt, so
the process lives on with whatever the interrupted write left behind. A write must therefore be
atomic with respect to the signal: committed whole or rolled back, never left as an open
transaction holding the database's write lock (which blocks every other process's `start_run`).
"""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from workbench.runs import RunStore

# The reproduction: `with start_run(...) as run: while True: run.log(...)`, KeyboardInterrupt
# caught (as IPython does), then the kernel lives on. Prints one line per interrupt and a total.
LOGGER = textwrap.dedent(
    """
    import json, sqlite3, sys
    from workbench.runs import RunStore, _environment
    _environment()  # imports torch once, as a notebook has: the probe interrupts writes, not an import
    store, tries = RunStore(sys.argv[1]), int(sys.argv[2])
    returned, interrupts, left_open, errors = {}, 0, 0, []
    print("ready", flush=True)
    while interrupts < tries:
        try:
            with store.start_run("probe", f"sigint-{interrupts}") as run:
                returned[run.id] = 0
                while True:
                    run.log({"loss": 1.0, "ppl": 2.0, "lr": 3.0}, returned[run.id])
                    returned[run.id] += 1
        except KeyboardInterrupt:
            interrupts += 1
            left_open += store.db.in_transaction
            print("interrupted", flush=True)
        except sqlite3.Error as error:  # what a transaction left open causes: count it, recover, go on
            errors.append(str(error))
            if store.db.in_transaction:
                store.db.execute("ROLLBACK")
    outcome = {"left_open": left_open, "errors": errors[:3], "n_errors": len(errors), "returned": returned}
    print(json.dumps(outcome), flush=True)
    sys.stdin.readline()  # stay alive (as a kernel does) until the parent has tried to write
    """
)

PROMPT_WRITER = textwrap.dedent(
    """
    import sys, time
    from workbench.runs import RunStore, _environment
    _environment()
    store = RunStore(sys.argv[1])
    store.db.execute("PRAGMA busy_timeout=3000")  # a held write lock fails this within 3 s ("database is locked")
    start = time.monotonic()
    with store.start_run("probe", "other process") as run:
        run.log({"x": 1.0}, 0)
    print(time.monotonic() - start, flush=True)
    """
)


def sigint_probe(path, tries: int, seed: int = 0) -> dict:
    """SIGINT every 50-150 ms into a process logging in a loop; returns what the issue counts."""
    import json

    rng = random.Random(seed)
    child = subprocess.Popen([sys.executable, "-c", LOGGER, str(path), str(tries)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        for _ in range(tries):
            time.sleep(rng.uniform(0.05, 0.15))
            child.send_signal(signal.SIGINT)
            assert child.stdout.readline().strip() == "interrupted"
        report = json.loads(child.stdout.readline())
        # while the interrupted process lives on, another process starts a run and logs
        other = subprocess.run([sys.executable, "-c", PROMPT_WRITER, str(path)], capture_output=True, text=True,
                               timeout=120, check=False)
        report["other_writer_s"] = float(other.stdout) if other.returncode == 0 else None
        report["other_writer_error"] = other.stderr.strip().splitlines()[-1:] if other.returncode else None
        child.stdin.close()
        assert child.wait(timeout=30) == 0
    finally:
        child.kill()
    store = RunStore(path)
    counts = store.db.execute("SELECT run_id, COUNT(DISTINCT step) FROM metrics GROUP BY run_id").fetchall()
    stored = dict(counts)
    report["rows_lost"] = sum(max(0, n - stored.get(int(run_id), 0)) for run_id, n in report["returned"].items())
    report["statuses"] = sorted(set(store.runs(kind="probe")["status"]))
    return report


@pytest.mark.slow
def test_sigint_never_leaves_a_transaction_open(tmp_path):
    report = sigint_probe(tmp_path / "runs.db", tries=60)
    assert report["left_open"] == 0 and report["n_errors"] == 0, report["errors"]
    assert report["other_writer_s"] is not None and report["other_writer_s"] < 3, report["other_writer_error"]
    assert report["rows_lost"] == 0
    assert report["statuses"] == ["finished", "interrupted"]  # the other process's run, and every interrupted one


def test_write_rolls_back_on_interrupt_and_stays_usable(store):
    """KeyboardInterrupt raised inside a write (as a signal would): rolled back, the next write works."""
    run = store.start_run("probe", "x")
    with pytest.raises(KeyboardInterrupt), store.write() as db:
        db.execute("INSERT INTO metrics (run_id, step, key, value, time) VALUES (?, 0, 'a', 1.0, 0)", (run.id,))
        raise KeyboardInterrupt
    assert not store.db.in_transaction and store.metrics([run.id]).empty
    run.log({"a": 2.0}, 1)
    run.finish()
    assert list(store.metrics([run.id])["value"]) == [2.0] and store.run(run.id)["status"] == "finished"


def test_sigint_during_a_write_is_delivered_after_it(store):
    """A real SIGINT arriving mid-write waits for the commit, then raises as usual."""
    run = store.start_run("probe", "x")
    with pytest.raises(KeyboardInterrupt), store.write() as db:
        db.execute("INSERT INTO metrics (run_id, step, key, value, time) VALUES (?, 0, 'a', 1.0, 0)", (run.id,))
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # a plain handler would raise here, inside the transaction
        db.execute("INSERT INTO metrics (run_id, step, key, value, time) VALUES (?, 0, 'b', 2.0, 0)", (run.id,))
    assert not store.db.in_transaction
    assert sorted(store.metrics([run.id])["key"]) == ["a", "b"]  # committed whole
    run.finish()
