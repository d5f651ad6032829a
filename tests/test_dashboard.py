"""The dashboard's pieces without a browser: incremental reads, parameters kept apart from metrics,
differences to a chosen baseline, sweeps, curves, run pages, and the Panel view following filter and selection."""

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from workbench.dashboard import Dashboard, StoreFeed
from workbench.dashboard.curves import curves_figure
from workbench.dashboard.runpage import artifact_views, run_summary
from workbench.dashboard.sweeps import parallel_figure, sweep_default_metric, sweep_figure, sweep_groups, sweep_points
from workbench.dashboard.views import (
    compare_table,
    final_metrics,
    newest_experiment,
    params_table,
    reference_run,
    runs_table,
)
from workbench.runs import RunKind

PROBE = RunKind("probe", headline="ppl", goal="min")


def logged(store, name, losses, summary=None, kind=PROBE, params=None, sweep=None, reference=False):
    with store.start_run(kind, name, params or {}, sweep=sweep) as run:
        for step, loss in enumerate(losses):
            run.log({"loss": loss}, step=step)
        if reference:
            run.mark_reference()
        run.finish(summary=summary)
    return run.id


def test_settings_are_not_metrics_and_delta_percent_is_blank_on_a_zero_baseline(store):
    teacher = logged(
        store,
        "teacher",
        [3.0, 2.0],
        {"ppl": 10.0, "errors": 0.0, "world_size": 2, "train_config": {"steps": 2}},
        params={"lr": 1e-3},
        reference=True,
    )
    student = logged(store, "student", [4.0, 2.5], {"ppl": 12.5, "errors": 3.0, "note": "text"}, params={"lr": 3e-4})
    runs, metrics = store.runs(), store.metrics()
    finals = final_metrics(runs, metrics)
    assert finals.loc[teacher, "loss"] == 2.0 and finals.loc[student, "ppl"] == 12.5
    assert not {"world_size", "lr", "note", "reference"} & set(
        finals.columns
    )  # settings, flags and text are no metrics
    assert reference_run(runs, [student, teacher]) == teacher  # the experiment's reference, though it is not first
    table = compare_table(runs, finals, [student, teacher], baseline=teacher, kinds=store.kinds()).set_index("run")
    assert list(table.index) == [f"#{teacher} teacher (baseline)", f"#{student} student"]  # the baseline first
    assert list(table.columns) == ["ppl", "loss", "errors"]  # the declared headline first; no settings, no run_id
    assert table.loc[f"#{student} student", "ppl"] == 12.5
    delta = compare_table(runs, finals, [student, teacher], baseline=teacher, kinds=store.kinds(), delta=True)
    delta = delta.set_index("run")
    assert delta.loc[f"#{student} student", "Δ% ppl"] == pytest.approx(25.0)
    assert math.isnan(delta.loc[f"#{student} student", "Δ% errors"])  # blank on a zero baseline, never inf
    chosen = compare_table(runs, finals, [student, teacher], baseline=student, delta=True).set_index("run")
    assert chosen.loc[f"#{teacher} teacher", "Δ% ppl"] == pytest.approx(-20.0)  # a baseline the user picks
    params = params_table(runs, [teacher, student]).set_index("parameter")
    assert list(params.index) == ["lr"] and params.loc["lr", f"#{student} student"] == "0.0003"


def test_runs_table_keeps_parameters_and_metrics_in_their_own_columns_and_hides_bookkeeping(store):
    logged(store, "a", [1.0], {"ppl": 5.0}, params={"lr": 1e-3, "rank": 8})
    logged(store, "b", [2.0], {"ppl": 6.0}, params={"lr": 3e-4, "rank": 8})
    with store.start_run("sweep_point", "p0", {"lr": 1.0}, sweep="s/0") as run:
        run.finish(summary={"ppl": 1.0})
    runs = store.runs()
    from workbench.dashboard.views import visible

    table = runs_table(visible(runs), final_metrics(runs, store.metrics()), store.kinds())
    assert list(table["name"]) == ["b", "a"]  # the sweep point is bookkeeping
    assert [c for c in table.columns if c.startswith(("params.", "metrics."))] == [
        "params.lr",
        "metrics.ppl",
        "metrics.loss",
    ]


def test_feed_reads_only_new_metric_rows(store):
    first = logged(store, "a", [1.0, 0.5])
    feed = StoreFeed(store)
    changed, touched = feed.poll()
    assert changed and touched == {first} and len(feed.metrics) == 2
    assert feed.poll() == (False, set())  # nothing new: nothing read
    second = logged(store, "b", [2.0])
    changed, touched = feed.poll()
    assert changed and touched == {second} and list(feed.metrics["run_id"]) == [first, first, second]


def test_every_run_is_drawn_and_identical_runs_stay_distinguishable(store):
    ids = [logged(store, f"seed{i}", [3.0, 2.0, 1.5]) for i in range(8)]  # eight runs logging the very same numbers
    figure = curves_figure(store.runs(), store.metrics(), ids, "loss")
    assert len(figure.data) == 8 and len({t.name for t in figure.data}) == 8
    assert len({(t.line.color, t.line.dash) for t in figure.data}) == 8  # no two lines look alike
    once = [logged(store, f"eval{i}", [float(i)]) for i in range(3)]  # a metric logged once per run is a number: bars
    bars = curves_figure(store.runs(), store.metrics(), once, "loss")
    assert [t.type for t in bars.data] == ["bar"] and list(bars.data[0].y) == [0.0, 1.0, 2.0]


def test_compare_without_selection_takes_one_experiment_never_two(store):
    old = [logged(store, f"old{i}", [1.0], sweep="exp-1", params={"lr": i}) for i in range(2)]
    new = [logged(store, f"new{i}", [1.0], sweep="exp-2", reference=i == 1, params={"lr": i}) for i in range(3)]
    logged(store, "tour", [1.0], sweep="notebook-1", params={"layer": 5})  # a notebook's one run: no sweep
    logged(store, "same", [1.0], sweep="twins-1", params={"lr": 1})
    logged(store, "same", [1.0], sweep="twins-1", params={"lr": 1})  # two points, nothing varied: no sweep
    runs = store.runs()
    experiment = newest_experiment(runs[runs["sweep"].str.startswith("exp")])
    assert experiment == new and not set(old) & set(experiment)
    assert reference_run(store.runs(), new) == new[1]
    assert sweep_groups(store.runs()) == ["exp-2", "exp-1"]  # real sweeps only, newest first


def test_cli_sweep_points_default_metric_and_parallel_coordinates(store):
    for index, (lr, rank, status) in enumerate([(1e-3, 8, "finished"), (1e-3, 32, "finished"), (1e-4, 8, "failed")]):
        with store.start_run("sweep_point", f"p{index}", {"lr": lr, "rank": rank}, sweep=f"s1/{index}") as run:
            summary = {"load_s": 1.0, "ppl": 20.0 + index, "world_size": 1} if status == "finished" else None
            run.finish(status, summary=summary, error="boom" if status == "failed" else None)
        with store.start_run(PROBE, "inner", {}, sweep=f"s1/{index}") as inner:  # what the point's notebook wrote
            inner.finish()
    logged(store, "elsewhere", [1.0], kind="sweep_point", sweep="s2/0", params={"lr": 1.0})
    runs = store.runs()
    points = sweep_points(runs, "s1")
    assert list(points["point"]) == [0, 1, 2] and list(points["status"]) == ["finished", "finished", "failed"]
    inner = runs[(runs["sweep"] == "s1/0") & (runs["kind"] == "probe")]["id"].item()
    assert points.loc[0, "runs"] == f"#{inner}"  # the experiment run the point's notebook wrote, not its bookkeeping
    assert (
        list(points["param lr"]) == [1e-3, 1e-3, 1e-4]
        and points.loc[2, "error"] == "boom"
        and "world_size" not in points
    )
    assert sweep_default_metric(points, runs, "s1", store.kinds()) == "ppl"  # the kind's headline, not the first column
    undeclared = points.assign(n_texts=4.0, seconds=[1.0, 2.0, 3.0])
    undeclared = undeclared[["point", "runs", "kind", "status", "error", "param lr", "n_texts", "seconds", "ppl"]]
    assert sweep_default_metric(undeclared, runs, "s2", {}) == "ppl"  # no headline: the first number that moves
    figure = sweep_figure(points, "ppl")
    assert [a.text for a in figure.layout.annotations] == ["lr", "rank"]  # one panel per swept parameter
    assert [list(t.y) for t in figure.data] == [[20.0, 21.0], [20.0, 21.0]]  # the failed point has no ppl
    parallel = parallel_figure(points, "ppl", "min")
    assert [d.label for d in parallel.data[0].dimensions] == ["lr", "rank", "ppl"] and parallel.data[
        0
    ].line.reversescale


def test_an_experiment_sweep_is_its_arms(store):
    for arm, ppl in (("teacher", 10.0), ("student", 12.0)):
        logged(store, arm, [2.0], {"ppl": ppl}, params={"arm": arm}, sweep="echo-1", reference=arm == "teacher")
    points = sweep_points(store.runs(), "echo-1")
    assert list(points["param arm"]) == ["teacher", "student"] and list(points["ppl"]) == [10.0, 12.0]
    parallel = parallel_figure(points, "ppl")
    assert list(parallel.data[0].dimensions[0].ticktext) == ["teacher", "student"]  # a category axis


def test_run_summary_separates_recorded_settings(store):
    run_id = logged(store, "r", [1.0], {"ppl": 3.0, "world_size": 2, "train_config": {"steps": 5}}, params={"lr": 1e-3})
    params, summary = run_summary(store.run(run_id))
    assert set(params["parameter"]) == {"lr", "(recorded) world_size", "(recorded) train_config.steps"}
    assert set(summary["summary"]) == {"ppl"}


def test_artifacts_are_shown_by_what_they_hold(store):
    with store.start_run("echoatt", "similarity") as run:
        run.log_artifact("similarity.npy", np.eye(4))
        run.log_artifact("table.json", [{"arm": "teacher", "ppl": 10.0}, {"arm": "student", "ppl": 12.0}])
        run.log_artifact("sample.txt", "The cat sat on the mat.")
    views = dict(artifact_views(store, run.id))
    assert isinstance(views["similarity"], go.Figure) and views["similarity"].data[0].type == "heatmap"
    assert list(views["table"]["arm"]) == ["teacher", "student"]
    assert views["sample"] == "The cat sat on the mat."


@pytest.mark.slow  # 0.9 s quiet: too long for test-fast's minute
def test_view_follows_new_rows_the_filter_and_the_selection(store):
    old = logged(store, "old", [3.0, 2.0], reference=True)
    other = logged(store, "other-kind", [9.0], kind="tour")
    dashboard = Dashboard(store)
    assert list(dashboard.table.value["name"]) == ["other-kind", "old"]
    with store.start_run(PROBE, "new", {}) as run:
        run.log({"loss": 5.0}, step=0)
        dashboard.refresh()
        assert list(dashboard.table.value["status"]) == ["running", "finished", "finished"]
        run.log({"loss": 4.0}, step=1)
        run.log({"loss": 3.5}, step=2)
        dashboard.refresh()
        traces = {t.name: list(t.y) for t in dashboard.curves.figure.object.data}
        # nothing ticked: the newest experiment (the newest run's kind, no sweep), never two kinds mixed
        assert traces == {f"#{run.id} new": [5.0, 4.0, 3.5], f"#{old} old": [3.0, 2.0]}
    dashboard.refresh()
    assert list(dashboard.table.value["status"]) == ["finished", "finished", "finished"]  # the rows, replaced
    dashboard.kinds.value = ["tour"]  # the filter: every view follows it
    assert dashboard.names()["curves"] == dashboard.names()["table"] == [f"#{other} other-kind"]
    dashboard.kinds.value = ["probe"]
    dashboard.tabs.active = 1  # the compare tab (each tab is brought up to date when opened)
    assert dashboard.compare.baseline.value == old  # marked as reference, though "new" is newer
    dashboard.tabs.active = 0
    dashboard.tick(old)  # only "old"
    assert list(dashboard.table.value["tick"]) == ["☐", "☑"]
    assert dashboard.names()["curves"] == dashboard.names()["table"] == [f"#{old} old"]
    assert dashboard.run_page.select.value == old  # the run page follows the last run ticked
    dashboard.tick(run.id)
    dashboard.tabs.active = 1
    dashboard.compare.baseline.value = run.id  # the user picks the baseline
    assert dashboard.compare.run_labels() == [f"#{run.id} new", f"#{old} old"]
    assert dashboard.compare.table.value["run"][0] == f"#{run.id} new (baseline)"
    dashboard.kinds.value = []  # the ticks are run ids: a new row on top does not move them
    logged(store, "newest", [1.0])
    dashboard.refresh()
    names = dashboard.names()
    assert set(names["table"]) == set(names["compare"]) == {f"#{run.id} new", f"#{old} old"}


def test_a_filter_that_matches_nothing_changes_the_rows_and_not_the_tables_setup(store):
    """The browser tears down and rebuilds a Tabulator whose setup changes (its columns, or a column's kind: a
    number sorts as one), and a live update reaching a table still being built throws in Tabulator."""
    for lr in (1e-4, 1e-2):
        logged(store, f"lr{lr}", [1.0], {"ppl": 10.0}, params={"lr": lr})
    dashboard = Dashboard(store)
    model = dashboard.table.get_root()
    setup = (model.configuration, [c.field for c in model.columns])
    dashboard.expression.value = "params.lr > 1"
    assert dashboard.table.value.empty and (model.configuration, [c.field for c in model.columns]) == setup
    dashboard.expression.value = ""
    assert len(dashboard.table.value) == 2 and (model.configuration, [c.field for c in model.columns]) == setup


def test_ticks_hidden_by_the_filter_come_back_and_a_bad_expression_says_why(store):
    ids = [logged(store, f"lr{lr}", [1.0], {"ppl": 10.0 + lr}, params={"lr": lr}) for lr in (1e-4, 1e-3, 1e-2)]
    dashboard = Dashboard(store)
    dashboard.tick(ids[2])
    dashboard.tick(ids[0])
    assert set(dashboard.state.ticks) == {ids[2], ids[0]}
    dashboard.expression.value = "params.lr > 5e-4"
    assert list(dashboard.table.value["id"]) == [ids[2], ids[1]]
    assert dashboard.names()["curves"] == [f"#{ids[2]} lr0.01"]  # the tick the filter still shows
    dashboard.expression.value = "params.lr > "
    assert "filter: cannot read" in dashboard.problem.object and len(dashboard.table.value) == 3
    dashboard.expression.value = ""
    assert set(dashboard.names()["table"]) == {f"#{ids[2]} lr0.01", f"#{ids[0]} lr0.0001"}


@pytest.mark.slow  # 0.6 s quiet: too long for test-fast's minute
def test_tags_note_rename_archive_and_delete_from_the_run_page(store):
    keep = logged(store, "keep", [1.0], {"ppl": 3.0})
    gone = logged(store, "gone", [2.0], {"ppl": 4.0})
    (store.artifact_dir / str(gone)).mkdir(parents=True)
    dashboard = Dashboard(store)
    dashboard.open_run(keep)
    page = dashboard.run_page
    page.name.value, page.tags.value, page.note.value = "kept run", "best, seed 0", "the one to cite"
    page.save.clicks += 1
    row = store.run(keep)
    assert (row["name"], row["tags"], row["note"]) == ("kept run", ["best", "seed 0"], "the one to cite")
    assert dashboard.table.value.loc[keep, "tags"] == "best, seed 0"
    page.archive.clicks += 1  # archived: hidden, not deleted
    assert keep not in dashboard.table.value.index and store.run(keep)["archived"]
    dashboard.archived.value = True
    assert keep in dashboard.table.value.index
    dashboard.open_run(gone)
    page.delete.clicks += 1  # asks first
    assert page.confirm.visible and gone in set(store.runs()["id"])
    page.confirm.clicks += 1
    assert gone not in set(store.runs()["id"]) and not (store.artifact_dir / str(gone)).exists()
    assert gone not in dashboard.table.value.index


def test_run_page_shows_error_code_device_and_notebook_links(store, tmp_path):
    with pytest.raises(ValueError), store.start_run(PROBE, "broken", {"lr": 1e-3}) as run:
        run.log({"loss": 1.0}, step=0)
        notebook = store.path.parent / "notebooks" / "x.ipynb"
        notebook.parent.mkdir(exist_ok=True)
        notebook.write_text("{}")
        run.log_artifact("x.ipynb", notebook)
        run.log_artifact("maps.npy", np.random.default_rng(0).random((9, 12, 12)))
        raise ValueError("the cell broke")
    dashboard = Dashboard(store, file_urls=True)
    dashboard.open_run(run.id)
    page = dashboard.run_page
    assert dashboard.tabs.active == 3
    assert "ValueError: the cell broke" in page.error.object and f"/artifacts/{run.id}/x.ipynb" in page.links.object
    assert {"device", "git commit", "version of torch"} <= set(page.overview.value["about"])
    assert page.params.value["parameter"].tolist() == ["lr"]  # once: not again as a recorded setting
    stack = page.artifacts.objects[0].objects[1].object  # a stack of 9 maps, drawn as 9 heatmaps
    assert [t.type for t in stack.data] == ["heatmap"] * 9 and "maps" in stack.layout.title.text


def stored_card(store, idea, arm, non_embedding, ppl, device_kind="cpu"):
    """A model card as `cards.write_card` stores it, with constructed numbers."""
    import dataclasses

    from workbench.cards import CARD, Card

    with store.start_run(idea, arm, {"arm": arm}) as run:
        card = Card(idea=idea, arm=arm, run_id=run.id, params=2 * non_embedding, non_embedding_params=non_embedding,
                    precision="float32", weight_bytes=8 * non_embedding, kv_bytes_per_token=64.0, code_ppl=ppl,
                    english_ppl=ppl + 5, quality_is_bound=False, eval_spec="4x64", device="cpu (2 cores)",
                    device_kind=device_kind, date="2026-12-02", speed={"decode_b1_tok_s": 1e6 / non_embedding},
                    corpus="python-code", profile="smoke")
        run.log_artifact(CARD, dataclasses.asdict(card))
    return run.id


def test_frontier_tab_draws_notebook_08s_figure_of_the_stored_cards(store):
    from workbench import frontier
    from workbench.cards import load_cards

    stored_card(store, "echoatt", "teacher", 1000, 20.0)
    stored_card(store, "echoatt", "student", 600, 24.0)
    stored_card(store, "recursive", "relaxed", 500, 22.0)  # beats the student on both axes
    dashboard = Dashboard(store)
    dashboard.tabs.active = 4
    tab = dashboard.frontier
    same = frontier.frontier_figure(frontier.select(load_cards(store)), x=tab.x.value, y=tab.y.value)
    assert tab.figure.object.to_json() == same.to_json()  # the one figure function, on the same cards
    assert set(tab.legend()) == {"echoatt", "recursive", "Pareto frontier"}
    assert list(tab.pareto.value["arm"]) == ["relaxed", "teacher"]
    tab.ideas.value = ["echoatt"]
    assert list(tab.pareto.value["arm"]) == ["student", "teacher"] and "echoatt" in tab.conclusion.object
    stored_card(store, "cpu", "int8", 400, 21.0)  # a card lands: the tab follows the store
    dashboard.refresh()
    assert "cpu" in tab.ideas.options and len(tab.table.value) == 2


def test_filter_expressions_are_parsed_never_evaluated(store):
    from workbench.dashboard.query import parse
    from workbench.dashboard.state import Filter, filter_runs
    from workbench.errors import WorkbenchError

    a = logged(store, "a seed 0", [1.0], {"ppl": 10.0}, params={"lr": 1e-4, "profile": {"steps": 4}})
    b = logged(store, "b seed 1", [1.0], {"ppl": 30.0}, params={"lr": 3e-3})
    store.label_run(b, tags=["best"])
    runs, finals = store.runs(), final_metrics(store.runs(), store.metrics())

    def matches(text: str) -> list[int]:
        return sorted(filter_runs(runs, finals, Filter(expression=text))[0]["id"])

    assert matches("params.lr > 1e-3") == [b] and matches("metrics.ppl < 20 and params.lr < 1") == [a]
    assert matches('"seed 1" in name or params.profile.steps == 4') == [a, b]
    assert matches('"best" in tags') == [b] and matches('kind in ["probe", "x"]') == [a, b]
    assert matches("not params.lr > 1e-3") == [a] and matches("params.missing > 0") == []
    for hostile in ("__import__('os').system('touch /tmp/x')", "params.lr.__class__", "[x for x in name]",
                    "params['lr'] > 0", "lambda: 1", "lr > 1"):
        with pytest.raises(WorkbenchError, match="^filter: "):
            parse(hostile)
    assert filter_runs(runs, finals, Filter(expression="params.lr >"))[1].startswith("filter: cannot read")


def test_curves_smoothing_grouping_and_panels(store):
    from workbench.dashboard.curves import curves_figure, smooth
    from workbench.dashboard.views import seed_groups

    assert list(smooth(pd.Series([1.0, 3.0]), 0.5)) == [1.0, pytest.approx(7 / 3)]  # debiased: starts at the first
    ids = [logged(store, f"s{seed}", [4.0 + seed, 3.0 + seed, 2.0 + seed], params={"arm": "x", "seed": seed})
           for seed in (0, 1, 2)]
    other = logged(store, "y", [9.0, 8.0, 7.0], params={"arm": "y", "seed": 0})
    groups = seed_groups(store.runs(), [*ids, other])
    assert groups == {"arm=x": ids, "arm=y": [other]}
    figure = curves_figure(store.runs(), store.metrics(), [*ids, other], ["loss"], groups=groups)
    mean = next(t for t in figure.data if t.name == "arm=x (3 runs)")
    band = next(t for t in figure.data if t.name == "arm=x (3 runs) min-max")
    assert list(mean.y) == [5.0, 4.0, 3.0] and list(band.y) == [6.0, 5.0, 4.0, 2.0, 3.0, 4.0]  # max, then min back
    with store.start_run(PROBE, "two metrics", {}) as run:
        for step in range(3):
            run.log({"loss": 1.0 / (step + 1), "acc": 0.1 * step}, step=step)
    panels = curves_figure(store.runs(), store.metrics(), [run.id], ["loss", "acc"])
    assert [a.text for a in panels.layout.annotations] == ["loss", "acc"] and len(panels.data) == 2


def test_compare_colours_by_goal_and_means_over_seeds(store):
    from workbench.dashboard.views import compare_styles, metric_goal

    goals = [metric_goal(m) for m in ("ppl", "tokens_per_s", "eval.cloze_acc", "n_layers")]
    assert goals == ["min", "max", "max", None]
    base = logged(store, "base", [2.0], {"ppl": 10.0, "tokens_per_s": 100.0}, params={"arm": "a", "seed": 0},
                  reference=True)
    other = [logged(store, f"b{seed}", [2.0], {"ppl": 9.0 + seed, "tokens_per_s": 90.0},
                    params={"arm": "b", "seed": seed}) for seed in (0, 2)]
    runs, finals = store.runs(), final_metrics(store.runs(), store.metrics())
    table = compare_table(runs, finals, [base, *other], base, store.kinds(), metrics=["ppl", "tokens_per_s"])
    styles = compare_styles(table, store.kinds())
    assert list(styles["ppl"]) == ["", "background-color: #d9f2d9", "background-color: #f8d7d7"]  # 9 better, 11 worse
    assert list(styles["tokens_per_s"])[1:] == ["background-color: #f8d7d7"] * 2  # slower is worse
    means = compare_table(runs, finals, [base, *other], base, store.kinds(), metrics=["ppl"], mean_over_seeds=True)
    assert list(means["run"]) == ["arm=a (1 runs) (baseline)", "arm=b (2 runs)"] and list(means["ppl"]) == [10.0, 10.0]
