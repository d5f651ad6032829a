"""The live comparison dashboard: the runs table and its tabs, all drawn from one `State`.

    python -m workbench dashboard          # a Panel server on 127.0.0.1 (see `server.serve`)
    Dashboard().view()                     # the same view in a notebook cell, after pn.extension("plotly", "tabulator")

Laid out as W&B and MLflow users expect: a filterable runs table (kind, status, text, a filter
expression such as `params.lr > 1e-3`; a sweep's bookkeeping runs and archived runs hidden unless
asked for; CSV export), and tabs that all draw the same runs: **Curves**, **Compare**, **Sweeps**,
**Run** (`?run=ID` in the address opens it) and **Frontier**.

Every change (a filter, a tick, a baseline, new rows in the store) goes through `State.update`, and
the table and the tab in view are redrawn from the snapshot it returns. A tick is a click on a row's
☐ cell, kept as a run id; the ☑ shown is the state's, never the browser's own selection (Tabulator's
row selection is echoed back by the browser when the rows are replaced, which dropped ticks). A click
names a row by its position, read against the rows the server holds; a refresh that changes only values
(a running run's duration and status) keeps every row where it was, so a click sent meanwhile still
names the row it named.

Live: every `REFRESH_MS` a periodic callback reads the runs table and only the metric rows logged
since the last read. The store is SQLite in WAL mode: these reads never block the writers.
"""

from __future__ import annotations

import time

import pandas as pd

from ..runs import RunStore
from ..runs import store as default_store
from . import views
from .compare import CompareTab
from .curves import CurvesTab
from .frontier import FrontierTab
from .runpage import RunTab
from .state import Filter, Snapshot, State, StoreFeed
from .sweeps import SweepsTab
from .widgets import csv_button

REFRESH_MS = 1000
TABS = ("Curves", "Compare", "Sweeps", "Run", "Frontier")
RUN_TAB = TABS.index("Run")
IN_VIEW = "●"  # the table's mark of the runs every tab draws
TICK, TICKED, UNTICKED = "tick", "☑", "☐"


class Dashboard:
    """The dashboard of one store, for one browser session or one notebook cell.

    `file_urls`: the server also serves the home's notebooks and artifacts (`serve` does), so the
    run page links to a run's executed notebook and HTML copy; in a notebook cell it shows their paths.
    """

    def __init__(self, store: RunStore | None = None, kind: str | None = None, refresh_ms: int = REFRESH_MS,
                 file_urls: bool = False):
        import panel as pn

        self.feed = StoreFeed(store or default_store())
        self.feed.poll()
        self.state = State(self.feed, Filter(kinds=(kind,) if kind else ()))
        self.refresh_ms = refresh_ms
        self._syncing = False

        self.kinds = pn.widgets.MultiChoice(label="kind", value=[kind] if kind else [], width=260,
                                            options=sorted(set(self.feed.runs["kind"]) | ({kind} if kind else set())))
        self.statuses = pn.widgets.MultiChoice(label="status", options=list(views.STATUS_COLORS), width=260)
        self.search = pn.widgets.TextInput(label="name or sweep contains", width=220)
        self.expression = pn.widgets.TextInput(label="filter expression", width=420,
                                               placeholder='params.lr > 1e-3 and "seed" in name')
        self.bookkeeping = pn.widgets.Checkbox(label="show sweep bookkeeping runs")
        self.archived = pn.widgets.Checkbox(label="show archived runs")
        self.problem = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.columns = pn.widgets.MultiChoice(label="table columns", width=640)
        self.table = pn.widgets.Tabulator(
            pd.DataFrame(), selectable=False, show_index=False, disabled=True, pagination="local",
            page_size=12, sizing_mode="stretch_width", layout="fit_data_table",
            formatters={"id": {"type": "link", "urlPrefix": "?run=", "target": "_blank"}},
        )
        self.table.style.map(_status_style, subset=["status"]).apply(_ticked_style, axis=None)
        self.table.on_click(self._clicked)
        self.curves = CurvesTab(on_change=lambda: self.curves.render(self.state.snapshot, self.feed))
        self.compare = CompareTab(on_baseline=lambda run_id: self._apply(baseline=run_id))
        self.sweeps = SweepsTab()
        self.run_page = RunTab(self.feed.store, file_urls, on_labels=self.refresh, on_delete=self._deleted)
        self.frontier = FrontierTab(self.feed.store)
        self.status = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.tabs = pn.Tabs(*zip(TABS, (t.panel for t in self._tabs())), sizing_mode="stretch_width", dynamic=False)

        for widget in (self.kinds, self.statuses, self.search, self.expression, self.bookkeeping, self.archived):
            widget.param.watch(lambda _: self._filter_changed(), "value")
        self.columns.param.watch(lambda _: self._syncing or self._sync_table(self.state.snapshot), "value")
        self.run_page.select.param.watch(lambda _: self.tabs.active == RUN_TAB and self._render_tab(), "value")
        self.tabs.param.watch(lambda _: self._render_tab(), "active")
        self._apply()
        self._status()

    def _tabs(self) -> tuple:
        return self.curves, self.compare, self.sweeps, self.run_page, self.frontier

    # -- every change goes through here -------------------------------------------------------------
    def _apply(self, **changes) -> Snapshot:
        snapshot = self.state.update(**changes)
        self.problem.object = f"<span style='color:#d62728'>{snapshot.problem}</span>" if snapshot.problem else ""
        self._sync_table(snapshot)
        self._render_tab()
        return snapshot

    def _filter_changed(self) -> None:
        if self._syncing:
            return
        self._apply(kinds=tuple(self.kinds.value), statuses=tuple(self.statuses.value), text=self.search.value,
                    expression=self.expression.value, bookkeeping=self.bookkeeping.value,
                    archived=self.archived.value)

    def _render_tab(self, force: bool = False) -> None:
        self._tabs()[self.tabs.active].render(self.state.snapshot, self.feed, force)

    def refresh(self) -> None:
        """The periodic callback: read what is new; redraw only where something changed."""
        started = time.perf_counter()
        changed, touched = self.feed.poll()
        if changed:
            options = sorted(set(self.feed.runs["kind"]) | set(self.kinds.value))
            if options != self.kinds.options:
                self._syncing = True
                try:
                    self.kinds.options = options
                finally:
                    self._syncing = False
        if changed or touched:
            self._apply()
        self._status(started)

    def _status(self, started: float | None = None) -> None:
        runs = self.feed.runs
        active = int((runs["status"] == "running").sum()) if not runs.empty else 0
        took = f" in {1e3 * (time.perf_counter() - started):.0f} ms" if started else ""
        self.status.object = (
            f"**{len(runs)} runs** ({active} running) · {len(self.feed.metrics)} metric rows · "
            f"store `{self.feed.store.path}` · read at {time.strftime('%H:%M:%S')}{took}"
            if not runs.empty
            else f"**no runs yet** in `{self.feed.store.path}`: start a notebook or a sweep, they appear here live"
        )

    # -- the runs table -----------------------------------------------------------------------------
    def _table_columns(self) -> list[str]:
        """The chosen columns; offered: those of every run the table may show (not only the filter's), so
        that a filter changes the rows and never the columns (see `widgets`: a Tabulator whose columns
        change is rebuilt in the browser)."""
        everything = views.visible(self.feed.runs)
        default, offered = views.table_columns(everything, self.feed.finals(), self.feed.kinds)
        if offered != self.columns.options:
            self._syncing = True
            try:
                keep = [c for c in self.columns.value if c in offered]
                self.columns.options = offered
                self.columns.value = keep if self.columns.options and keep else default
            finally:
                self._syncing = False
        return list(self.columns.value)

    def _sync_table(self, snapshot: Snapshot) -> None:
        """The table shows `snapshot.shown`, its ticks `snapshot.ticks`, sent when a value or a row changed;
        its columns are changed only by the column chooser.

        Sent as a new `value`, never as a `Tabulator.patch`: Panel's browser side applies a patch by calling
        Tabulator's `setData` at once, even on a table that is still being built (Tabulator builds a table
        on a timer after Panel renders it, at the first view of a page), and Tabulator then throws "Cannot
        read properties of null" from `adjustTableSize`: a live run's duration, patched every refresh, hit
        that window in 1 of 8 browser-test runs. A new value goes through Panel's data handler, which leaves
        a table being built alone. A patch saved nothing: the browser replaced all rows for it too."""
        frame = views.runs_table(snapshot.shown, self.feed.finals(), self.feed.kinds, self._table_columns())
        marks = {"view": [IN_VIEW if i in snapshot.chosen else "" for i in frame["id"]],
                 TICK: [TICKED if i in snapshot.ticks else UNTICKED for i in frame["id"]]}
        for column, values in marks.items():  # text even with no rows: a column's kind is part of the table's setup
            frame.insert(0, column, pd.Series(values, index=frame.index, dtype="str"))
        if frame.equals(self.table.value):
            return
        self._syncing = True
        try:
            self.table.value = frame
        finally:
            self._syncing = False

    def _clicked(self, event) -> None:
        """A click on a row's ☐/☑ cell ticks or unticks that run (`event.row`: its position in the table)."""
        if event.column == TICK and 0 <= event.row < len(self.table.value):
            self.tick(int(self.table.value["id"].iloc[event.row]))

    def tick(self, run_id: int) -> None:
        """Tick run `run_id` (untick it if ticked); the run page follows the last run ticked. Ticks the
        filter hides stay ticked, and come back with their rows."""
        ticks = list(self.state.ticks)
        if run_id in ticks:
            ticks.remove(run_id)
        else:
            ticks.append(run_id)
            self.run_page.options(self.feed, set(self.state.snapshot.shown["id"]))
            self.run_page.select.value = run_id
        self._apply(ticks=ticks)

    def _deleted(self, run_id: int) -> None:
        self.state.forget({run_id})
        self.refresh()

    # -- one run's page -----------------------------------------------------------------------------
    def open_run(self, run_id: int) -> None:
        """Show run `run_id`'s page (also what `?run=ID` in the address does)."""
        self.run_page.options(self.feed, set(self.state.snapshot.shown["id"]) | {run_id})
        if run_id in self.run_page.select.options.values():
            self.run_page.select.value = run_id
            self.tabs.active = RUN_TAB

    # -- layout -------------------------------------------------------------------------------------
    def view(self, live: bool = True):
        """The whole dashboard; `live` adds the periodic refresh (stopped with the session)."""
        import panel as pn

        if live:
            pn.state.add_periodic_callback(self.refresh, period=self.refresh_ms)
        return pn.Column(
            pn.pane.Markdown("## workbench runs: compare outcomes live"),
            self.status,
            pn.Row(self.kinds, self.statuses, self.search),
            pn.Row(self.expression, self.bookkeeping, self.archived),
            self.problem,
            self.columns,
            self.table,
            csv_button(self.table, "runs.csv"),
            self.tabs,
            sizing_mode="stretch_width",
        )

    # -- what the browser test reads ----------------------------------------------------------------
    def names(self) -> dict[str, list[str]]:
        """The runs each view names now: the table's marked rows, Curves' legend, Compare's rows."""
        table = self.table.value
        marked = [views.label({"id": i, "name": n}) for i, n, v in zip(table["id"], table["name"], table["view"]) if v]
        return {"table": marked, "curves": self.curves.legend(), "compare": self.compare.run_labels()}


def _ticked_style(frame: pd.DataFrame) -> pd.DataFrame:
    """Ticked rows on a pale blue ground."""
    styles = pd.DataFrame("", index=frame.index, columns=frame.columns)
    if TICK in frame:
        styles.loc[frame[TICK] == TICKED, :] = "background-color: #e8f0fb"
    return styles


def _status_style(status: str) -> str:
    return f"color: {views.STATUS_COLORS.get(status, 'black')}; font-weight: bold"
