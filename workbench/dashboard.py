"""The live comparison dashboard: the run store as tables, curves, comparisons, sweeps and run pages.

    python -m workbench dashboard          # a Panel server on 127.0.0.1 (what `panel serve` runs: dashboard_app.py)
    Dashboard().view()                     # the same view in a notebook cell, after pn.extension("plotly", "tabulator")

Laid out as W&B and MLflow users expect: a filterable runs table (parameters and metrics in their
own columns, a sweep's bookkeeping runs hidden), and tabs that all follow the table's filter and
selection: **Curves** (every selected run, else the newest of the filter), **Compare** (metrics
side by side with Δ and Δ% to a baseline run the user picks; by default the run the experiment
marked as reference), **Sweeps** (newest first, the metric the runs' kind declares as headline,
parallel coordinates of the parameters against it) and **Run** (one run's page; `?run=ID` in the
address opens it).

Live: every `REFRESH_MS` a periodic callback reads the runs table (one row per run, so the status
of every run is current: one whose process died reads "interrupted") and only the metric rows
logged since the last read (`RunStore.metrics(after_id=...)`). The store is SQLite in WAL mode:
these reads never block the processes writing runs. The frames and figures themselves come from
`workbench.dashboard_views`.

(Over 400 lines: one Panel layout and its callbacks, which share the widgets' state; what they draw
is in `dashboard_views`, testable without Panel.)
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from . import dashboard_views as views
from .errors import WorkbenchError
from .runs import RunStore
from .runs import store as default_store

REFRESH_MS = 1000
X_AXES = {"step": "step", "wall time (s)": "time_s"}
RUN_TAB = 3  # Curves, Compare, Sweeps, Run
FILE_ROUTES = ("notebooks", "artifacts")  # folders of the workbench home the server serves, for the run page's links


class StoreFeed:
    """What the dashboard knows of a store, advanced by `poll` reading only what is new."""

    def __init__(self, store: RunStore):
        self.store = store
        self.runs = store.runs().iloc[0:0]
        self.metrics = pd.DataFrame(columns=["id", "run_id", "step", "key", "value", "time"])
        self.kinds = {}
        self.last_id = 0

    def poll(self) -> tuple[bool, set[int]]:
        """Read the runs and the new metric rows; returns (did the runs change, runs with new rows)."""
        runs = self.store.runs()
        changed = not runs.equals(self.runs)  # a running run changes with each heartbeat: its duration grows
        self.runs = runs
        if changed:
            self.kinds = self.store.kinds()
        new = self.store.metrics(after_id=self.last_id)
        if not new.empty:
            self.last_id = int(new["id"].iloc[-1])
            self.metrics = new if self.metrics.empty else pd.concat([self.metrics, new], ignore_index=True)
        return changed, set(new["run_id"].tolist())

    def finals(self) -> pd.DataFrame:
        return views.final_metrics(self.runs, self.metrics)


class Dashboard:
    """The dashboard of one store, for one browser session or one notebook cell.

    `file_urls`: the server also serves the home's notebooks and artifacts (`serve` does), so the
    run page links to a run's executed notebook and HTML copy; in a notebook cell it shows their paths.
    """

    def __init__(
        self,
        store: RunStore | None = None,
        kind: str | None = None,
        refresh_ms: int = REFRESH_MS,
        file_urls: bool = False,
    ):
        import panel as pn

        self.feed = StoreFeed(store or default_store())
        self.refresh_ms = refresh_ms
        self.file_urls = file_urls
        self.selected: list[int] = []
        self._syncing = False
        self._shown: dict[str, tuple] = {}

        self.kinds = pn.widgets.MultiChoice(
            label="kind", value=[kind] if kind else [], options=[kind] if kind else [], width=260
        )
        self.statuses = pn.widgets.MultiChoice(label="status", options=list(views.STATUS_COLORS), width=260)
        self.search = pn.widgets.TextInput(label="name or sweep contains", width=220)
        self.bookkeeping = pn.widgets.Checkbox(label="show sweep bookkeeping runs", value=False)
        self.table = pn.widgets.Tabulator(
            pd.DataFrame(),
            selectable="checkbox",
            show_index=False,
            disabled=True,
            pagination="local",
            page_size=12,
            sizing_mode="stretch_width",
            formatters={"id": {"type": "link", "urlPrefix": "?run=", "target": "_blank"}},
        )
        self.table.style.map(_status_style, subset=["status"])
        self.metric = pn.widgets.Select(label="metric", width=220)
        self.x_axis = pn.widgets.RadioButtonGroup(label="x", options=list(X_AXES), value="step")
        self.log_y = pn.widgets.Checkbox(label="log y")
        self.curves_note = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.curves = pn.pane.Plotly(go.Figure(), sizing_mode="stretch_width", height=460, name="curves")
        self.baseline = pn.widgets.Select(label="baseline run", width=340)
        self.compare_note = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.compare = pn.widgets.Tabulator(
            pd.DataFrame(), show_index=False, disabled=True, sizing_mode="stretch_width"
        )
        self.compare_params = pn.widgets.Tabulator(
            pd.DataFrame(), show_index=False, disabled=True, sizing_mode="stretch_width"
        )
        self.sweep = pn.widgets.Select(label="sweep", width=420)
        self.sweep_metric = pn.widgets.Select(label="metric", width=220)
        self.sweep_parallel = pn.pane.Plotly(go.Figure(), sizing_mode="stretch_width", height=400, name="parallel")
        self.sweep_plot = pn.pane.Plotly(go.Figure(), sizing_mode="stretch_width", height=400)
        self.sweep_table = pn.widgets.Tabulator(
            pd.DataFrame(),
            show_index=False,
            disabled=True,
            sizing_mode="stretch_width",
            page_size=10,
            pagination="local",
        )
        self.run_select = pn.widgets.Select(label="run", width=420)
        self.run_page = pn.Column(sizing_mode="stretch_width", name="run page")
        self.status = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.tabs = pn.Tabs(
            ("Curves", pn.Column(pn.Row(self.metric, self.x_axis, self.log_y), self.curves_note, self.curves)),
            (
                "Compare",
                pn.Column(
                    self.baseline,
                    self.compare_note,
                    pn.pane.Markdown("**metrics**"),
                    self.compare,
                    pn.pane.Markdown("**parameters that differ**"),
                    self.compare_params,
                ),
            ),
            (
                "Sweeps",
                pn.Column(
                    pn.Row(self.sweep, self.sweep_metric), self.sweep_parallel, self.sweep_plot, self.sweep_table
                ),
            ),
            ("Run", pn.Column(self.run_select, self.run_page)),
            sizing_mode="stretch_width",
            dynamic=False,
        )

        for widget in (self.kinds, self.statuses, self.search, self.bookkeeping):
            widget.param.watch(lambda _: self._after_filter(), "value")
        self.table.param.watch(self._on_select, "selection")
        for widget in (self.metric, self.x_axis, self.log_y):
            widget.param.watch(lambda _: self._update_curves(force=True), "value")
        self.baseline.param.watch(lambda _: self._update_compare(force=True), "value")
        for widget in (self.sweep, self.sweep_metric):
            widget.param.watch(lambda _: self._update_sweep(force=True), "value")
        self.run_select.param.watch(lambda _: self.tabs.active == RUN_TAB and self._update_run(force=True), "value")
        self.tabs.param.watch(lambda _: self._update_all(), "active")
        self.refresh()

    # -- the periodic callback ----------------------------------------------------------------------
    def refresh(self) -> None:
        started = time.perf_counter()
        changed, touched = self.feed.poll()
        if changed:
            self.kinds.options = sorted(set(self.feed.runs["kind"]) | set(self.kinds.value))
            self._update_table()
        if changed or touched:
            self._update_all()
        runs = self.feed.runs
        active = int((runs["status"] == "running").sum()) if not runs.empty else 0
        self.status.object = (
            f"**{len(runs)} runs** ({active} running) · {len(self.feed.metrics)} metric rows · "
            f"store `{self.feed.store.path}` · read at {time.strftime('%H:%M:%S')} "
            f"in {1e3 * (time.perf_counter() - started):.0f} ms"
            if not runs.empty
            else f"**no runs yet** in `{self.feed.store.path}`: start a notebook or a sweep, they appear here live"
        )

    def _update_all(self) -> None:
        """Bring the tab in view up to date; the others catch up when opened (a session starts fast)."""
        (self._update_curves, self._update_compare, self._update_sweep, self._update_run)[self.tabs.active]()

    # -- runs table and selection -------------------------------------------------------------------
    def _filtered(self) -> pd.DataFrame:
        runs = views.visible(self.feed.runs, self.bookkeeping.value)
        if runs.empty:
            return runs
        keep = pd.Series(True, index=runs.index)
        if self.kinds.value:
            keep &= runs["kind"].isin(self.kinds.value)
        if self.statuses.value:
            keep &= runs["status"].isin(self.statuses.value)
        if self.search.value:
            text = self.search.value.lower()
            keep &= runs["name"].str.lower().str.contains(text, regex=False) | runs["sweep"].fillna(
                ""
            ).str.lower().str.contains(text, regex=False)
        return runs[keep]

    def _after_filter(self) -> None:
        self._update_table()
        self._update_all()

    def _update_table(self) -> None:
        runs = self._filtered()
        table = views.runs_table(runs, self.feed.finals().reindex(runs["id"].to_numpy()), self.feed.kinds)
        if table.equals(self.table.value):
            return
        self._syncing = True
        try:
            self.table.value = table
            self.table.selection = [i for i, run_id in enumerate(table["id"]) if run_id in self.selected]
        finally:
            self._syncing = False

    def _on_select(self, event) -> None:
        if self._syncing:
            return
        ids = self.table.value["id"].tolist()
        added = [ids[i] for i in event.new if i < len(ids) and ids[i] not in self.selected]
        self.selected = [ids[i] for i in event.new if i < len(ids)]
        if added:
            self.run_select.value = int(added[-1])  # the run page follows the last run ticked
        self._update_all()

    def _selection(self) -> list[int]:
        """The ticked runs the filter still shows, in table order."""
        shown = set(self._filtered()["id"])
        return [i for i in self.selected if i in shown]

    def _curve_runs(self) -> list[int]:
        """Every selected run; with none selected, the newest runs of the filter that logged metrics."""
        if self._selection():
            return self._selection()
        with_metrics = set(self.feed.metrics["run_id"].unique())
        return [int(i) for i in self._filtered()["id"] if i in with_metrics][: views.MAX_CURVES]

    # -- curves -------------------------------------------------------------------------------------
    def _update_curves(self, force: bool = False) -> None:
        shown = self._curve_runs()
        metrics = self.feed.metrics[self.feed.metrics["run_id"].isin(shown)]
        keys = list(metrics["key"].value_counts().index)  # the most logged first
        if keys != self.metric.options:
            curves = set(metrics.groupby(["run_id", "key"]).size().loc[lambda n: n > 1].index.get_level_values("key"))
            first = [
                h
                for h in views.headlines(self.feed.runs[self.feed.runs["id"].isin(shown)], self.feed.kinds)
                if h in curves
            ]
            preferred = (
                self.metric.value if self.metric.value in keys else next(iter(first + keys), None)
            )  # a declared headline with a curve
            self.metric.options = keys
            self.metric.value = preferred
        state = (tuple(shown), self.metric.value, self.x_axis.value, self.log_y.value, len(metrics))
        if state == self._shown.get("curves") and not force:
            return
        self._shown["curves"] = state
        selected = bool(self._selection())
        self.curves_note.object = (
            f"{len(shown)} selected run(s)"
            if selected
            else f"{len(shown)} newest run(s) of the filter that logged metrics: tick runs in the table to choose"
        )
        if self.metric.value is None:
            self.curves.object = views.empty_figure("no metrics logged yet by the runs shown")
            return
        self.curves.object = views.curves_figure(
            self.feed.runs, self.feed.metrics, shown, self.metric.value, self.x_axis.value, self.log_y.value
        )

    # -- compare ------------------------------------------------------------------------------------
    def _update_compare(self, force: bool = False) -> None:
        selected = self._selection()
        ids = selected or views.newest_experiment(self._filtered())
        runs = self.feed.runs[self.feed.runs["id"].isin(ids)].sort_values("id")
        marked = {int(r["id"]) for _, r in runs.iterrows() if r["summary"].get("reference") is True}
        options = {
            f"{views.label(row)}{' (reference)' if row['id'] in marked else ''}": int(row["id"])
            for _, row in runs.iterrows()
        }
        if options != self.baseline.options:
            keep = self.baseline.value if self.baseline.value in options.values() else views.reference_run(runs, ids)
            self.baseline.options = options
            self.baseline.value = keep
        state = (tuple(ids), self.baseline.value, len(self.feed.metrics), tuple(runs["summary"].map(str)))
        if state == self._shown.get("compare") and not force:
            return
        self._shown["compare"] = state
        if self.baseline.value is None:
            self.compare_note.object = "no runs to compare"
            self.compare.value = pd.DataFrame({"metric": []})
            self.compare_params.value = pd.DataFrame({"parameter": []})
            return
        where = (
            "the selected runs"
            if selected
            else "the newest experiment of the filter (tick runs in the table to choose)"
        )
        self.compare_note.object = f"Comparing {len(ids)} runs, {where}; Δ% is blank where the baseline is 0."
        self.compare.value = views.compare_table(
            self.feed.runs, self.feed.finals(), ids, self.baseline.value, self.feed.kinds
        )
        self.compare_params.value = views.params_table(
            self.feed.runs, [self.baseline.value, *[i for i in ids if i != self.baseline.value]]
        )

    # -- sweeps -------------------------------------------------------------------------------------
    def _update_sweep(self, force: bool = False) -> None:
        runs = self.feed.runs
        groups = views.sweep_groups(self._filtered())  # the sweeps of the runs the filter shows
        if groups != self.sweep.options:
            keep = self.sweep.value if self.sweep.value in groups else (groups[0] if groups else None)
            self.sweep.options = groups
            self.sweep.value = keep
        if not self.sweep.value:
            self.sweep_plot.object = views.empty_figure(
                "no sweeps yet: python -m workbench sweep NOTEBOOK -p NAME VALUE ..."
            )
            self.sweep_parallel.object = go.Figure()
            return
        points = views.sweep_points(runs, self.sweep.value)
        metrics = views.sweep_metrics(points)
        if metrics != self.sweep_metric.options:
            keep = (
                self.sweep_metric.value
                if self.sweep_metric.value in metrics
                else views.sweep_default_metric(points, runs, self.sweep.value, self.feed.kinds)
            )
            self.sweep_metric.options = metrics
            self.sweep_metric.value = keep
        state = (self.sweep.value, self.sweep_metric.value, points.to_json())
        if state == self._shown.get("sweep") and not force:
            return
        self._shown["sweep"] = state
        metric = self.sweep_metric.value
        if metric:
            goal = next((k.goal for k in self.feed.kinds.values() if metric.rsplit(".", 1)[-1] == k.headline), "min")
            self.sweep_parallel.object = views.parallel_figure(
                points, metric, goal, f"sweep {self.sweep.value}: {metric} against its parameters"
            )
            self.sweep_plot.object = views.sweep_figure(points, metric, f"{metric} against each parameter")
        else:
            self.sweep_plot.object = views.empty_figure("this sweep has no finished point with a number yet")
        self.sweep_table.value = points

    # -- one run's page -----------------------------------------------------------------------------
    def open_run(self, run_id: int) -> None:
        """Show run `run_id`'s page (also what `?run=ID` in the address does)."""
        self._update_run()
        if run_id in self.run_select.options.values():
            self.run_select.value = run_id
            self.tabs.active = RUN_TAB

    def _update_run(self, force: bool = False) -> None:
        import panel as pn

        runs = self.feed.runs
        pool = runs[runs["id"].isin(set(self._filtered()["id"]) | set(self.selected) | {self.run_select.value})]
        options = {f"{views.label(row)} ({row['kind']}, {row['status']})": int(row["id"]) for _, row in pool.iterrows()}
        if options != self.run_select.options:
            keep = (
                self.run_select.value
                if self.run_select.value in options.values()
                else next(iter(options.values()), None)
            )
            self.run_select.options = options
            self.run_select.value = keep
        run_id = self.run_select.value
        if run_id is None:
            self.run_page.objects = [pn.pane.Markdown("no run to show")]
            return
        row = runs[runs["id"] == run_id].iloc[0].to_dict()
        metrics = self.feed.metrics[self.feed.metrics["run_id"] == run_id]
        artifacts = tuple(sorted(self.feed.store.artifacts(run_id).items()))
        state = (run_id, row["status"], json_text(row["summary"]), len(metrics), artifacts)
        if state == self._shown.get("run") and not force:
            return
        self._shown["run"] = state
        params, summary = views.run_summary(row)
        page = [pn.pane.Markdown(f"### {views.label(row)} · {row['kind']} · **{row['status']}**", name="run title")]
        if row["error"]:
            page.append(
                pn.pane.Alert(
                    f"**error**\n\n```\n{row['error']}\n```", alert_type="danger", sizing_mode="stretch_width"
                )
            )
        page.append(pn.pane.Markdown(self._links(run_id), sizing_mode="stretch_width"))
        page.append(
            pn.Row(
                _table(params, "parameters"),
                _table(summary, "summary"),
                _table(views.run_overview(row), "where and how"),
                sizing_mode="stretch_width",
            )
        )
        page.append(pn.pane.Plotly(views.run_curves_figure(self.feed.metrics, run_id), sizing_mode="stretch_width"))
        page += [_pane(name, value) for name, value in views.artifact_views(self.feed.store, run_id)]
        self.run_page.objects = page

    def _links(self, run_id: int) -> str:
        files = views.run_files(self.feed.store, run_id)
        if not files:
            return "no executed notebook recorded for this run"
        home = self.feed.store.path.parent
        links = []
        for name, path in sorted(files.items()):
            what = "HTML copy" if path.suffix == ".html" else "executed notebook"
            route = next((r for r in FILE_ROUTES if path.is_relative_to(home / r)), None)
            if not path.is_file():
                links.append(f"{what}: `{path}` (not written)")
            elif self.file_urls and route:
                links.append(f"[{what}: {name}](/{route}/{path.relative_to(home / route).as_posix()})")
            else:
                links.append(f"{what}: `{path}`")
        return " · ".join(links)

    # -- layout -------------------------------------------------------------------------------------
    def view(self, live: bool = True):
        """The whole dashboard; `live` adds the periodic refresh (stopped with the session)."""
        import panel as pn

        if live:
            pn.state.add_periodic_callback(self.refresh, period=self.refresh_ms)
        return pn.Column(
            pn.pane.Markdown("## workbench runs: compare outcomes live"),
            self.status,
            pn.Row(self.kinds, self.statuses, self.search, self.bookkeeping),
            self.table,
            self.tabs,
            sizing_mode="stretch_width",
        )


def json_text(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _status_style(status: str) -> str:
    return f"color: {views.STATUS_COLORS.get(status, 'black')}; font-weight: bold"


def _table(frame: pd.DataFrame, title: str):
    import panel as pn

    return pn.Column(
        pn.pane.Markdown(f"**{title}**"),
        pn.widgets.Tabulator(
            frame, show_index=False, disabled=True, page_size=20, pagination="local", sizing_mode="stretch_width"
        ),
        sizing_mode="stretch_width",
    )


def _pane(name: str, value: object):
    import panel as pn

    if isinstance(value, go.Figure):
        return pn.pane.Plotly(value, sizing_mode="stretch_width", height=420)
    if isinstance(value, pd.DataFrame):
        return pn.Column(
            pn.pane.Markdown(f"**{name}**"),
            pn.widgets.Tabulator(value, show_index=False, disabled=True, page_size=10, pagination="local"),
        )
    if isinstance(value, Path):
        return pn.Column(pn.pane.Markdown(f"**{name}**"), pn.pane.Image(str(value)))
    if isinstance(value, str):
        body = value if name.endswith(".md") else f"```\n{value}\n```"
        return pn.Column(pn.pane.Markdown(f"**{name}**"), pn.pane.Markdown(body, sizing_mode="stretch_width"))
    return pn.Column(pn.pane.Markdown(f"**{name}**"), pn.pane.JSON(value, depth=2))


# -- serving ------------------------------------------------------------------------------------------


def quiet_closed_websockets() -> None:
    """Drop the one error a reload causes: a browser tab that reloads or closes while an update is on
    its way leaves tornado a write that fails with WebSocketClosedError, which asyncio prints as "Task
    exception was never retrieved" with two tracebacks. Nothing is wrong and nothing can be done;
    every other error is reported as before. Called by the app, inside the server's event loop."""
    import asyncio

    from tornado.iostream import StreamClosedError
    from tornado.websocket import WebSocketClosedError

    loop = asyncio.get_event_loop()
    previous = loop.get_exception_handler()
    if getattr(previous, "quiet_closed_websockets", False):
        return

    def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        if isinstance(context.get("exception"), (WebSocketClosedError, StreamClosedError)):
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    handler.quiet_closed_websockets = True
    loop.set_exception_handler(handler)


def free_port(address: str = "127.0.0.1", preferred: int = 5006) -> int:
    """`preferred` if nothing listens there, else a port the system picks."""
    for port in (preferred, 0):
        with socket.socket() as probe:
            try:
                probe.bind((address, port))
                return probe.getsockname()[1]
            except OSError:
                continue
    raise OSError(f"no free port on {address}")


def _is_loopback(address: str) -> bool:
    """Whether `address` only reaches this machine; a name that does not resolve is a one-line error."""
    import ipaddress

    try:
        infos = socket.getaddrinfo(address, None)
    except (socket.gaierror, UnicodeError):
        raise WorkbenchError(f"cannot bind the dashboard to {address!r}: not an address or host name of this machine "
                             "(use 127.0.0.1, the default, or 0.0.0.0 for every interface)") from None
    return all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)


def _network_access(address: str, port: int, token: str | None, allow_origins: list[str]) -> tuple[list, list]:
    """Origins and `panel serve` arguments for a dashboard reachable from other machines.

    Off loopback anyone who can reach the port could read the store (paths, run names, notebooks),
    so a login token is required (Panel's basic auth: any user name, the token as password; the
    notebooks and artifacts routes sit behind it too) and websocket connections are accepted only
    from the origins named: this host's names, or those given with --allow-origin. Never "*".
    """
    import secrets

    token = token or os.environ.get("WORKBENCH_DASHBOARD_TOKEN") or secrets.token_urlsafe(12)
    own_names = [socket.gethostname(), socket.getfqdn()]
    hosts = allow_origins or ([] if address in ("0.0.0.0", "::") else [address]) + own_names
    origins = list(dict.fromkeys(host if ":" in host else f"{host}:{port}" for host in hosts))
    print(f"dashboard open to the network on {address}:{port}: log in with any user name and the token {token}; "
          f"browsers are accepted from {', '.join(origins)} only (add others with --allow-origin HOST[:PORT])",
          flush=True)
    return origins, ["--basic-auth", token, "--cookie-secret", secrets.token_hex(32)]


def serve(port: int = 0, address: str = "127.0.0.1", show: bool = False, token: str | None = None,
          allow_origins: list[str] | None = None) -> int:
    """`panel serve` of dashboard_app.py: its scripts and styles come from this server, none from a CDN.

    On loopback (the default) it is open to this machine only; on any other address it needs a
    token and explicit origins (see `_network_access`).
    """
    import sys

    from panel.command import main as panel_main

    loopback = _is_loopback(address)
    port = port or free_port(address)
    origins, access = [f"{address}:{port}", f"localhost:{port}"], []
    if not loopback:
        origins, access = _network_access(address, port, token, allow_origins or [])
    app = Path(__file__).with_name("dashboard_app.py")
    home = default_store().path.parent
    for route in FILE_ROUTES:  # the run page links to executed notebooks and their HTML copies here
        (home / route).mkdir(parents=True, exist_ok=True)
    print(
        f"dashboard: http://{address}:{port}/dashboard_app  (store {default_store().path}; Ctrl-C stops it)", flush=True
    )
    sys.argv = ["panel", "serve", str(app), "--address", address, "--port", str(port)]
    sys.argv += [f"--allow-websocket-origin={origin}" for origin in origins] + access
    sys.argv += ["--static-dirs", *(f"{route}={home / route}" for route in FILE_ROUTES)]
    sys.argv += ["--show"] if show else []
    panel_main()  # serves until Ctrl-C
    return 0
