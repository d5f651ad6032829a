"""The dashboard's pieces without a browser: incremental reads, final numbers, differences to a
baseline, sweep points, artifacts, and the Panel view reacting to new rows and to a selection."""

import numpy as np
import plotly.graph_objects as go
import pytest

from workbench.dashboard import Dashboard, StoreFeed, artifact_views, compare_table, final_metrics, sweep_figure, sweep_points


def logged(store, name, losses, summary=None, kind="probe", params=None, sweep=None):
    with store.start_run(kind, name, params or {}, sweep=sweep) as run:
        for step, loss in enumerate(losses):
            run.log({"loss": loss}, step=step)
        run.finish(summary=summary)
    return run.id


def test_final_numbers_side_by_side_with_differences_to_the_baseline(store):
    teacher = logged(store, "teacher", [3.0, 2.0], {"ppl": 10.0, "note": "text is not a number"})
    student = logged(store, "student", [4.0, 2.5], {"ppl": 12.5})
    runs, metrics = store.runs(), store.metrics()
    finals = final_metrics(runs, metrics)
    assert finals.loc[teacher, "loss"] == 2.0 and finals.loc[student, "ppl"] == 12.5 and "note" not in finals
    table = compare_table(runs, finals, [student, teacher], baseline=teacher).set_index("metric")
    assert table.loc["ppl", f"#{teacher} teacher (baseline)"] == 10.0
    assert table.loc["ppl", f"Δ #{student}"] == pytest.approx(2.5) and table.loc["ppl", f"Δ% #{student}"] == pytest.approx(25.0)
    assert table.loc["loss", f"Δ #{student}"] == pytest.approx(0.5)


def test_feed_reads_only_new_metric_rows(store):
    first = logged(store, "a", [1.0, 0.5])
    feed = StoreFeed(store)
    changed, touched = feed.poll()
    assert changed and touched == {first} and len(feed.metrics) == 2
    assert feed.poll() == (False, set())  # nothing new: nothing read
    second = logged(store, "b", [2.0])
    changed, touched = feed.poll()
    assert changed and touched == {second} and list(feed.metrics["run_id"]) == [first, first, second]


def test_sweep_points_and_figure(store):
    for index, (lr, rank, status) in enumerate([(1e-3, 8, "finished"), (1e-3, 32, "finished"), (1e-4, 8, "failed")]):
        with store.start_run("sweep_point", f"p{index}", {"lr": lr, "rank": rank}, sweep=f"s1/{index}") as run:
            run.finish(status, summary={"ppl": 20.0 + index} if status == "finished" else None, error="boom" if status == "failed" else None)
    logged(store, "elsewhere", [1.0], kind="sweep_point", sweep="s2/0", params={"lr": 1.0})
    points = sweep_points(store.runs(), "s1")
    assert list(points["point"]) == [0, 1, 2] and list(points["status"]) == ["finished", "finished", "failed"]
    assert list(points["param lr"]) == [1e-3, 1e-3, 1e-4] and points.loc[2, "error"] == "boom"
    figure = sweep_figure(points, "ppl")
    assert [a.text for a in figure.layout.annotations] == ["lr", "rank"]  # one panel per swept parameter
    assert [list(t.y) for t in figure.data] == [[20.0, 21.0], [20.0, 21.0]]  # the failed point has no ppl


def test_artifacts_are_shown_by_what_they_hold(store):
    with store.start_run("echoatt", "similarity") as run:
        run.log_artifact("similarity.npy", np.eye(4))
        run.log_artifact("table.json", [{"arm": "teacher", "ppl": 10.0}, {"arm": "student", "ppl": 12.0}])
        run.log_artifact("sample.txt", "The cat sat on the mat.")
    views = dict(artifact_views(store, run.id))
    assert isinstance(views["similarity.npy"], go.Figure) and views["similarity.npy"].data[0].type == "heatmap"
    assert list(views["table.json"]["arm"]) == ["teacher", "student"]
    assert views["sample.txt"] == "The cat sat on the mat."


def test_view_follows_new_rows_and_the_selection(store):
    old = logged(store, "old", [3.0, 2.0])
    dashboard = Dashboard(store)
    assert list(dashboard.table.value["name"]) == ["old"]
    with store.start_run("probe", "new", {}) as run:
        run.log({"loss": 5.0}, step=0)
        dashboard.refresh()
        assert list(dashboard.table.value["name"]) == ["new", "old"] and list(dashboard.table.value["status"]) == ["running", "finished"]
        run.log({"loss": 4.0}, step=1)
        run.log({"loss": 3.5}, step=2)
        dashboard.refresh()
        traces = {t.name: list(t.y) for t in dashboard.curves.object.data}
        assert traces == {f"#{run.id} new": [5.0, 4.0, 3.5], f"#{old} old": [3.0, 2.0]}
    dashboard.refresh()
    dashboard.table.selection = [1]  # only "old"
    assert [t.name for t in dashboard.curves.object.data] == [f"#{old} old"]
    assert dashboard.baseline.value == old
