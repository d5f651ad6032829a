"""The run store owns its tables and folders: staleness, interruption by a runner, checkpoint folders, sweep tags."""

import time

import pytest

from workbench import runs
from workbench.runs import ACTIVE, STALE_AFTER_S, join_sweep, sweep_group


def stop_heart(run: runs.Run, beat_at: float) -> None:
    """Silence a run's heartbeat (as a frozen or partitioned process would) and set its last beat."""
    run._done.set()
    run._heart.join()
    with run.store.write() as db:
        db.execute("UPDATE runs SET heartbeat_at = ? WHERE id = ?", (beat_at, run.id))


def test_a_run_whose_heart_stopped_beating_reads_interrupted(store):
    """Our own process is alive, so only the heartbeat's age can tell a hung run from a running one."""
    fresh, stale = store.start_run("probe", "fresh"), store.start_run("probe", "stale")
    stop_heart(fresh, time.time() - STALE_AFTER_S / 2)
    stop_heart(stale, time.time() - STALE_AFTER_S - 1)
    status = store.runs().set_index("name")["status"]
    assert status["fresh"] == ACTIVE and status["stale"] == "interrupted"
    (stored,) = store.db.execute("SELECT status FROM runs WHERE id = ?", (stale.id,)).fetchone()
    assert stored == ACTIVE  # a reading, not a write: the run may still come back and finish


def test_mark_interrupted_ends_a_sweeps_running_runs_only(store):
    driver = store.start_run("sweep", "grid", sweep="s1")
    point = store.start_run("sweep_point", "x=1", sweep="s1/0")
    done = store.start_run("sweep_point", "x=2", sweep="s1/1")
    done.finish("finished")
    other = store.start_run("sweep_point", "x=1", sweep="s10/0")  # another sweep whose id starts alike
    store.mark_interrupted("s1", "the sweep was stopped", keep=driver.id)
    frame = store.runs().set_index("id")
    assert frame.loc[point.id, "status"] == "interrupted" and frame.loc[point.id, "error"] == "the sweep was stopped"
    assert frame.loc[done.id, "status"] == "finished"
    assert frame.loc[driver.id, "status"] == ACTIVE and frame.loc[other.id, "status"] == ACTIVE
    for run in (driver, point, other):
        run._done.set()


def test_end_orphan_only_ends_a_run_still_running(store):
    run = store.start_run("sweep_point", "x=1", sweep="s/0")
    run._done.set()
    assert store.end_orphan(run.id, "failed", "the point's process died: killed")
    assert not store.end_orphan(run.id, "interrupted", "too late")  # already ended: kept as it was
    row = store.run(run.id)
    assert row["status"] == "failed" and row["error"] == "the point's process died: killed"


def test_checkpoint_dir_is_inside_the_runs_artifact_folder(store):
    with store.start_run("probe", "p") as run:
        assert run.checkpoint_dir == store.artifact_dir / str(run.id) / "checkpoint"


@pytest.fixture
def no_joined_sweep():
    yield
    join_sweep(None)


def test_joined_sweep_tags_runs_without_a_sweep_of_their_own(store, no_joined_sweep):
    join_sweep("s2/3")
    with store.start_run("probe", "joined") as joined, store.start_run("probe", "own", sweep="mine") as own:
        pass
    join_sweep(None)
    with store.start_run("probe", "alone") as alone:
        pass
    tags = store.runs().set_index("id")["sweep"]
    assert tags[joined.id] == "s2/3" and tags[own.id] == "mine" and sweep_group(tags[alone.id]) is None
    assert sweep_group("s2/3") == "s2" and sweep_group(float("nan")) is None and sweep_group(None) is None
