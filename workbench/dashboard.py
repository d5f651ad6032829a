"""The live comparison dashboard: the run store as tables, curves and sweep figures that update themselves.

    python -m workbench dashboard          # a Panel server on 127.0.0.1 (what `panel serve` runs: dashboard_app.py)
    Dashboard().view()                     # the same view in a notebook cell, after pn.extension("plotly", "tabulator")

Comparing is what the workbench is for (student against teacher, GaLore against AdamW, one sweep
point against another), so the view is built around a selection of runs: their curves overlaid,
their final numbers side by side with the differences to a baseline run, their artifacts.

Live: every `REFRESH_MS` a periodic callback reads the runs table (one row per run, so the status
of every run is current: one whose process died reads "interrupted") and only the metric rows
logged since the last read (`RunStore.metrics(after_id=...)`). The store is SQLite in WAL mode:
these reads never block the processes writing runs.

The building blocks below the `Dashboard` class are plain functions from store frames to pandas
frames and plotly figures, so notebooks use them for static figures too (07_compare.ipynb).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import plots
from .runs import RunStore, store as default_store
from .sweep import sweep_group

REFRESH_MS = 1000
DEFAULT_CURVES = 6  # runs drawn when none is selected: the newest ones with metrics
MAX_PARAM_COLUMNS = 6
MAX_METRIC_COLUMNS = 8
X_AXES = {"step": "step", "wall time (s)": "time_s"}
STATUS_COLORS = {"running": "#1f77b4", "finished": "#2ca02c", "failed": "#d62728", "interrupted": "#ff7f0e"}


# -- reading the store, incrementally ---------------------------------------------------------------

class StoreFeed:
    """What the dashboard knows of a store, advanced by `poll` reading only what is new."""

    def __init__(self, store: RunStore):
        self.store = store
        self.runs = store.runs().iloc[0:0]
        self.metrics = pd.DataFrame(columns=["id", "run_id", "step", "key", "value", "time"])
        self.last_id = 0

    def poll(self) -> tuple[bool, set[int]]:
        """Read the runs and the new metric rows; returns (did the runs change, runs with new rows)."""
        runs = self.store.runs()
        changed = not runs.equals(self.runs)  # a running run changes with each heartbeat: its duration grows
        self.runs = runs
        new = self.store.metrics(after_id=self.last_id)
        if not new.empty:
            self.last_id = int(new["id"].iloc[-1])
            self.metrics = new if self.metrics.empty else pd.concat([self.metrics, new], ignore_index=True)
        return changed, set(new["run_id"].tolist())

    def finals(self) -> pd.DataFrame:
        return final_metrics(self.runs, self.metrics)


def final_metrics(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run id, one column per number: each metric's last value, overridden by the summary's."""
    last = metrics.sort_values("id").groupby(["run_id", "key"])["value"].last().unstack() if not metrics.empty else pd.DataFrame()
    summary = pd.DataFrame(
        [{k: v for k, v in s.items() if isinstance(v, (int, float)) and not isinstance(v, bool)} for s in runs["summary"]],
        index=runs["id"].to_numpy(),
    )
    finals = summary.combine_first(last) if not last.empty else summary
    return finals.reindex(runs["id"].to_numpy()).astype(float)


def label(row) -> str:
    return f"#{row['id']} {row['name']}"


# -- tables -------------------------------------------------------------------------------------------

def runs_table(runs: pd.DataFrame, finals: pd.DataFrame) -> pd.DataFrame:
    """The runs as a sortable table: who, when, how long, the parameters that vary, the final numbers."""
    if runs.empty:
        return pd.DataFrame(columns=["id", "kind", "name", "sweep", "status", "started", "duration_s", "params"])
    table = pd.DataFrame({
        "id": runs["id"].to_numpy(),
        "kind": runs["kind"].to_numpy(),
        "name": runs["name"].to_numpy(),
        "sweep": runs["sweep"].fillna("").to_numpy(),
        "status": runs["status"].to_numpy(),
        "started": pd.to_datetime(runs["started_at"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S").to_numpy(),
        "duration_s": runs["duration_s"].round(1).to_numpy(),
        "params": [", ".join(f"{k}={_short(v)}" for k, v in p.items()) for p in runs["params"]],
    })
    params = pd.DataFrame([{k: _short(v) for k, v in p.items()} for p in runs["params"]])
    varying = [c for c in params.columns if params[c].astype(str).nunique(dropna=False) > 1][:MAX_PARAM_COLUMNS]
    for column in varying:
        table[column if column not in table else f"param {column}"] = params[column].to_numpy()
    counts = finals.notna().sum().sort_values(ascending=False)
    for column in counts.index[:MAX_METRIC_COLUMNS]:
        table[column if column not in table else f"{column} (final)"] = finals[column].round(4).to_numpy()
    return table


def _short(value) -> object:
    if isinstance(value, (list, dict)):
        text = json.dumps(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return value


def compare_table(runs: pd.DataFrame, finals: pd.DataFrame, run_ids: list[int], baseline: int) -> pd.DataFrame:
    """Final numbers side by side (one column per run), with each run's difference to the baseline run."""
    ids = [baseline, *[i for i in run_ids if i != baseline]]
    names = {row["id"]: label(row) for _, row in runs[runs["id"].isin(ids)].iterrows()}
    values = finals.reindex(ids).T.dropna(how="all")
    table = pd.DataFrame({"metric": values.index})
    base = values[baseline].to_numpy()
    table[f"{names.get(baseline, baseline)} (baseline)"] = base
    for run_id in ids[1:]:
        column = values[run_id].to_numpy()
        table[names.get(run_id, str(run_id))] = column
        table[f"Δ #{run_id}"] = column - base
        with np.errstate(divide="ignore", invalid="ignore"):
            table[f"Δ% #{run_id}"] = np.round(100 * (column - base) / np.abs(base), 2)
    return table.round(5)


# -- figures ------------------------------------------------------------------------------------------

def curve_frame(runs: pd.DataFrame, metrics: pd.DataFrame, run_ids: list[int], key: str) -> pd.DataFrame:
    """One metric of some runs: (run label, step, time since the run started, value), in logging order."""
    rows = metrics[(metrics["key"] == key) & metrics["run_id"].isin(run_ids)]
    info = runs.set_index("id").loc[[i for i in run_ids if i in set(runs["id"])]]
    frame = rows.assign(
        run=rows["run_id"].map({i: label({"id": i, "name": n}) for i, n in info["name"].items()}),
        time_s=rows["time"] - rows["run_id"].map(info["started_at"]),
    )
    order = {i: n for n, i in enumerate(run_ids)}
    return frame.sort_values(["run_id", "id"], key=lambda c: c.map(order) if c.name == "run_id" else c)


def curves_figure(runs: pd.DataFrame, metrics: pd.DataFrame, run_ids: list[int], key: str, x: str = "step", log_y: bool = False) -> go.Figure:
    """Overlaid curves of one metric, one line per run, x by step or by wall time."""
    frame = curve_frame(runs, metrics, run_ids, key).rename(columns={"value": key, "time_s": "wall time (s)"})
    figure = plots.curves(frame, x, key, group="run", title=f"{key} of {frame['run'].nunique()} runs", log_y=log_y)
    figure.update_traces(mode="lines+markers", marker=dict(size=4))
    figure.update_layout(uirevision="keep", legend=dict(orientation="h", y=-0.2), height=420)  # zoom survives live updates
    return figure


def sweep_points(runs: pd.DataFrame, sweep: str) -> pd.DataFrame:
    """A sweep's points: index, status, error, each swept parameter and each final number."""
    rows = runs[(runs["kind"] == "sweep_point") & (runs["sweep"].map(sweep_group) == sweep)]
    if rows.empty:
        return pd.DataFrame(columns=["point", "run", "status", "error"])
    frame = pd.DataFrame({
        "point": rows["sweep"].str.rsplit("/", n=1).str[-1].astype(int).to_numpy(),
        "run": rows["id"].to_numpy(),
        "status": rows["status"].to_numpy(),
        "error": rows["error"].fillna("").to_numpy(),
    })
    params = pd.DataFrame(list(rows["params"])).add_prefix("param ")
    summary = pd.DataFrame([{k: v for k, v in s.items() if isinstance(v, (int, float))} for s in rows["summary"]])
    return pd.concat([frame, params, summary], axis=1).sort_values("point").reset_index(drop=True)


def sweep_figure(points: pd.DataFrame, metric: str, title: str = "") -> go.Figure:
    """A final metric against each swept parameter (one panel per parameter that varies); hover shows the whole point."""
    axes = [c for c in points.columns if c.startswith("param ")]
    axes = [c for c in axes if points[c].astype(str).nunique() > 1] or axes
    figure = make_subplots(rows=1, cols=max(len(axes), 1), shared_yaxes=True, subplot_titles=[a.removeprefix("param ") for a in axes])
    done = points.dropna(subset=[metric]) if metric in points else points.iloc[0:0]
    hover = done[axes].astype(str).apply(lambda r: "<br>".join(f"{a.removeprefix('param ')}={v}" for a, v in r.items()), axis=1) if axes else None
    for column, axis in enumerate(axes, start=1):
        values = done[axis]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        figure.add_trace(
            go.Scatter(
                x=values if numeric else values.astype(str), y=done[metric], mode="markers", name=axis.removeprefix("param "),
                marker=dict(size=10, color=[STATUS_COLORS.get(s, "gray") for s in done["status"]]),
                text=hover, hovertemplate=f"%{{text}}<br>{metric} %{{y:.4g}}<extra>point</extra>", showlegend=False,
            ),
            row=1, col=column,
        )
        positive = numeric and len(values) and (values > 0).all() and values.max() / values.min() >= 20
        figure.update_xaxes(type="log" if positive else None, row=1, col=column)
    figure.update_yaxes(title_text=metric, row=1, col=1)
    figure.update_layout(title=title or f"{metric}: {len(done)} of {len(points)} points", height=380, uirevision="keep", **plots.LAYOUT)
    return figure


# -- artifacts ----------------------------------------------------------------------------------------

def artifact_views(store: RunStore, run_id: int, limit: int = 8) -> list[tuple[str, object]]:
    """A run's artifacts as things to show, by what they hold: a matrix (an attention-similarity map)
    as a heatmap, a vector as a line, text (a generated sample) as text, records as a table."""
    views = []
    for name, path in sorted(store.artifacts(run_id).items())[:limit]:
        if not path.is_file():
            views.append((name, f"(missing: {path})"))
            continue
        suffix = path.suffix.lower()
        if suffix == ".npy":
            views.append((name, _array_view(np.load(path), name)))
        elif suffix == ".json":
            value = json.loads(path.read_text())
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                views.append((name, pd.DataFrame(value)))
            elif isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                views.append((name, value if isinstance(value, str) else "\n\n---\n\n".join(value)))
            else:
                views.append((name, value))
        elif suffix in (".txt", ".md", ".log", ".csv"):
            views.append((name, path.read_text(errors="replace")[:5000]))
        elif suffix in (".png", ".jpg", ".jpeg", ".svg"):
            views.append((name, path))
        else:
            views.append((name, f"{path} ({path.stat().st_size / 1e3:.1f} kB)"))
    return views


def _array_view(array: np.ndarray, name: str) -> object:
    if array.ndim == 2:
        step = max(1, max(array.shape) // 256)  # keep the browser fast on large maps
        matrix = array[::step, ::step]
        axis = "layer" if "similarity" in name else ""
        return plots.heatmap(matrix, name, x_title=axis, y_title=axis, value_name=name.removesuffix(".npy"))
    if array.ndim == 1:
        return plots.curves(pd.DataFrame({"index": np.arange(len(array)), "value": array}), "index", "value", title=name)
    return f"array of shape {array.shape}, dtype {array.dtype}: mean {float(np.mean(array)):.4g}"


# -- the Panel view -----------------------------------------------------------------------------------

class Dashboard:
    """The dashboard of one store, for one browser session or one notebook cell."""

    def __init__(self, store: RunStore | None = None, kind: str | None = None, refresh_ms: int = REFRESH_MS):
        import panel as pn

        self.feed = StoreFeed(store or default_store())
        self.refresh_ms = refresh_ms
        self.selected: list[int] = []
        self._syncing = False
        self._shown_curves: tuple = ()
        self._shown_artifacts: tuple = ()

        self.kinds = pn.widgets.MultiChoice(label="kind", value=[kind] if kind else [], options=[kind] if kind else [], width=260)
        self.statuses = pn.widgets.MultiChoice(label="status", options=list(STATUS_COLORS), width=260)
        self.search = pn.widgets.TextInput(label="name or sweep contains", width=220)
        self.table = pn.widgets.Tabulator(
            runs_table(self.feed.runs, self.feed.finals()), selectable="checkbox", show_index=False, disabled=True,
            pagination="local", page_size=12, sizing_mode="stretch_width",
        )
        self.table.style.map(_status_style, subset=["status"])
        self.metric = pn.widgets.Select(label="metric", width=200)
        self.x_axis = pn.widgets.RadioButtonGroup(label="x", options=list(X_AXES), value="step")
        self.log_y = pn.widgets.Checkbox(label="log y")
        self.curves = pn.pane.Plotly(go.Figure(), sizing_mode="stretch_width", height=440, name="curves")
        self.baseline = pn.widgets.Select(label="baseline run", width=300)
        self.compare = pn.widgets.Tabulator(pd.DataFrame(), show_index=False, disabled=True, sizing_mode="stretch_width")
        self.inspect = pn.widgets.Select(label="run", width=300)
        self.artifacts = pn.Column(sizing_mode="stretch_width")
        self.sweep = pn.widgets.Select(label="sweep", width=360)
        self.sweep_metric = pn.widgets.Select(label="final metric", width=200)
        self.sweep_plot = pn.pane.Plotly(go.Figure(), sizing_mode="stretch_width", height=400)
        self.sweep_table = pn.widgets.Tabulator(pd.DataFrame(), show_index=False, disabled=True, sizing_mode="stretch_width", page_size=10, pagination="local")
        self.status = pn.pane.Markdown("", sizing_mode="stretch_width")

        for widget in (self.kinds, self.statuses, self.search):
            widget.param.watch(lambda _: self._update_table(), "value")
        self.table.param.watch(self._on_select, "selection")
        for widget in (self.metric, self.x_axis, self.log_y):
            widget.param.watch(lambda _: self._update_curves(force=True), "value")
        self.baseline.param.watch(lambda _: self._update_compare(), "value")
        self.inspect.param.watch(lambda _: self._update_artifacts(), "value")
        for widget in (self.sweep, self.sweep_metric):
            widget.param.watch(lambda _: self._update_sweep(), "value")
        self.refresh()

    # -- the periodic callback ----------------------------------------------------------------------
    def refresh(self) -> None:
        started = time.perf_counter()
        changed, touched = self.feed.poll()
        if changed:
            kinds = sorted(self.feed.runs["kind"].unique())
            self.kinds.options = sorted(set(kinds) | set(self.kinds.value))
            self._update_table()
            self._update_sweep_options()
        if changed or touched & set(self._shown_runs()):
            self._update_curves()
            self._update_compare()
            self._update_artifacts()
        if changed or touched:
            self._update_sweep()
        runs = self.feed.runs
        active = int((runs["status"] == "running").sum()) if not runs.empty else 0
        self.status.object = (
            f"**{len(runs)} runs** ({active} running) · {len(self.feed.metrics)} metric rows · "
            f"store `{self.feed.store.path}` · read at {time.strftime('%H:%M:%S')} in {1e3 * (time.perf_counter() - started):.0f} ms"
            if not runs.empty else f"**no runs yet** in `{self.feed.store.path}`: start a notebook or a sweep, they appear here live"
        )

    # -- runs table and selection -------------------------------------------------------------------
    def _filtered(self) -> pd.DataFrame:
        runs = self.feed.runs
        if runs.empty:
            return runs
        keep = pd.Series(True, index=runs.index)
        if self.kinds.value:
            keep &= runs["kind"].isin(self.kinds.value)
        if self.statuses.value:
            keep &= runs["status"].isin(self.statuses.value)
        if self.search.value:
            text = self.search.value.lower()
            keep &= runs["name"].str.lower().str.contains(text, regex=False) | runs["sweep"].fillna("").str.lower().str.contains(text, regex=False)
        return runs[keep]

    def _update_table(self) -> None:
        runs = self._filtered()
        table = runs_table(runs, self.feed.finals().reindex(runs["id"].to_numpy()))
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
        self.selected = [ids[i] for i in event.new if i < len(ids)]
        self._update_curves(force=True)
        self._update_compare()
        self._update_artifacts()

    def _shown_runs(self) -> list[int]:
        """The selected runs; with none selected, the newest runs (of the filter) that logged metrics."""
        if self.selected:
            return self.selected
        with_metrics = set(self.feed.metrics["run_id"].unique())
        return [i for i in self._filtered()["id"] if i in with_metrics][:DEFAULT_CURVES]

    # -- curves -------------------------------------------------------------------------------------
    def _update_curves(self, force: bool = False) -> None:
        shown = self._shown_runs()
        metrics = self.feed.metrics[self.feed.metrics["run_id"].isin(shown)]
        keys = list(metrics["key"].value_counts().index)
        if keys != self.metric.options:
            preferred = self.metric.value if self.metric.value in keys else ("loss" if "loss" in keys else (keys[0] if keys else None))
            self.metric.options = keys
            self.metric.value = preferred
        state = (tuple(shown), self.metric.value, self.x_axis.value, self.log_y.value, len(metrics))
        if state == self._shown_curves and not force:
            return
        self._shown_curves = state
        if self.metric.value is None:
            self.curves.object = _empty_figure("no metrics logged yet by the runs shown")
            return
        self.curves.object = curves_figure(self.feed.runs, self.feed.metrics, shown, self.metric.value, self.x_axis.value, self.log_y.value)

    # -- side by side -------------------------------------------------------------------------------
    def _update_compare(self) -> None:
        shown = self._shown_runs()
        runs = self.feed.runs[self.feed.runs["id"].isin(shown)]
        options = {label(row): int(row["id"]) for _, row in runs.iterrows()}
        if options != self.baseline.options:
            keep = self.baseline.value if self.baseline.value in options.values() else (min(options.values()) if options else None)
            self.baseline.options = options
            self.baseline.value = keep
        if self.baseline.value is None:
            self.compare.value = pd.DataFrame({"metric": []})
            return
        table = compare_table(self.feed.runs, self.feed.finals(), shown, self.baseline.value)
        if not table.equals(self.compare.value):
            self.compare.value = table

    # -- artifacts ----------------------------------------------------------------------------------
    def _update_artifacts(self) -> None:
        import panel as pn

        runs = self.feed.runs[self.feed.runs["id"].isin(self._shown_runs() or self.feed.runs["id"].head(DEFAULT_CURVES))]
        options = {f"{label(row)} ({row['kind']})": int(row["id"]) for _, row in runs.iterrows()}
        if options != self.inspect.options:
            keep = self.inspect.value if self.inspect.value in options.values() else next(iter(options.values()), None)
            self.inspect.options = options
            self.inspect.value = keep
        if self.inspect.value is None:
            self.artifacts.objects = [pn.pane.Markdown("no run to inspect")]
            return
        state = (self.inspect.value, tuple(sorted(self.feed.store.artifacts(self.inspect.value).items())))
        if state == self._shown_artifacts:
            return
        self._shown_artifacts = state
        views = artifact_views(self.feed.store, self.inspect.value)
        self.artifacts.objects = [_pane(name, value) for name, value in views] or [pn.pane.Markdown("this run kept no artifacts")]

    # -- sweeps -------------------------------------------------------------------------------------
    def _update_sweep_options(self) -> None:
        runs = self.feed.runs
        groups = list(dict.fromkeys(g for g in runs["sweep"].map(sweep_group) if g)) if not runs.empty else []
        if groups != self.sweep.options:
            keep = self.sweep.value if self.sweep.value in groups else (groups[0] if groups else None)
            self.sweep.options = groups
            self.sweep.value = keep

    def _update_sweep(self) -> None:
        if not self.sweep.value:
            self.sweep_plot.object = _empty_figure("no sweeps yet: python -m workbench sweep NOTEBOOK -p NAME VALUE ...")
            return
        points = sweep_points(self.feed.runs, self.sweep.value)
        metrics = [c for c in points.columns if c not in ("point", "run", "status", "error") and not c.startswith("param ")]
        if metrics != self.sweep_metric.options:
            keep = self.sweep_metric.value if self.sweep_metric.value in metrics else next((m for m in metrics if m != "notebook_s"), None)
            self.sweep_metric.options = metrics
            self.sweep_metric.value = keep
        if self.sweep_metric.value:
            self.sweep_plot.object = sweep_figure(points, self.sweep_metric.value, f"sweep {self.sweep.value}: {self.sweep_metric.value}")
        if not points.equals(self.sweep_table.value):
            self.sweep_table.value = points

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
            self.table,
            pn.Tabs(
                ("Curves", pn.Column(pn.Row(self.metric, self.x_axis, self.log_y), self.curves)),
                ("Side by side", pn.Column(self.baseline, self.compare)),
                ("Artifacts", pn.Column(self.inspect, self.artifacts)),
                ("Sweeps", pn.Column(pn.Row(self.sweep, self.sweep_metric), self.sweep_plot, self.sweep_table)),
                sizing_mode="stretch_width",
            ),
            sizing_mode="stretch_width",
        )


def _status_style(status: str) -> str:
    return f"color: {STATUS_COLORS.get(status, 'black')}; font-weight: bold"


def _empty_figure(text: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_layout(xaxis_visible=False, yaxis_visible=False, height=300, **plots.LAYOUT)
    return figure


def _pane(name: str, value: object):
    import panel as pn

    if isinstance(value, go.Figure):
        return pn.pane.Plotly(value, sizing_mode="stretch_width", height=420)
    if isinstance(value, pd.DataFrame):
        return pn.Column(pn.pane.Markdown(f"**{name}**"), pn.widgets.Tabulator(value, show_index=False, disabled=True, page_size=10, pagination="local"))
    if isinstance(value, Path):
        return pn.Column(pn.pane.Markdown(f"**{name}**"), pn.pane.Image(str(value)))
    if isinstance(value, str):
        body = value if name.endswith(".md") else f"```\n{value}\n```"
        return pn.Column(pn.pane.Markdown(f"**{name}**"), pn.pane.Markdown(body, sizing_mode="stretch_width"))
    return pn.Column(pn.pane.Markdown(f"**{name}**"), pn.pane.JSON(value, depth=2))


# -- serving ------------------------------------------------------------------------------------------

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


def serve(port: int = 0, address: str = "127.0.0.1", show: bool = False) -> int:
    """`panel serve` of dashboard_app.py: its scripts and styles come from this server, none from a CDN."""
    import sys

    from panel.command import main as panel_main

    port = port or free_port(address)
    origins = [f"{address}:{port}"] + ([f"localhost:{port}"] if address in ("127.0.0.1", "localhost") else ["*"])
    app = Path(__file__).with_name("dashboard_app.py")
    print(f"dashboard: http://{address}:{port}/dashboard_app  (store {default_store().path}; Ctrl-C stops it)", flush=True)
    sys.argv = ["panel", "serve", str(app), "--address", address, "--port", str(port)]
    sys.argv += [f"--allow-websocket-origin={origin}" for origin in origins]
    sys.argv += ["--show"] if show else []
    panel_main()  # serves until Ctrl-C
    return 0
