"""The Sweeps tab: a sweep's points, its metric against each parameter, and parallel coordinates.

Only real sweeps are listed: a sweep id with at least two points whose parameters differ (a
notebook's single run under a sweep tag is no sweep). The points are experiment runs: for a sweep
of the CLI (`workbench sweep`) a point is one notebook execution, shown with the runs its notebook
wrote (not the sweep's bookkeeping run) and the numbers they measured; for an experiment's sweep id
each arm is a point. The metrics offered are the numbers that move between points.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import plots
from ..runs import RunKind, sweep_group
from .state import Snapshot, StoreFeed
from .views import STATUS_COLORS, empty_figure, final_metrics, headlines, metric_goal, params_frame, varying, visible
from .widgets import FrameView, csv_button

POINT_COLUMNS = ("point", "runs", "kind", "status", "error")


def sweep_groups(runs: pd.DataFrame, every: pd.DataFrame | None = None) -> list[str]:
    """The real sweeps among `runs`' sweep ids, newest first: two points or more whose parameters
    differ (`every`: the whole store, where a CLI sweep's points live when `runs` is filtered)."""
    if runs.empty:
        return []
    every = runs if every is None else every
    groups = runs.assign(group=runs["sweep"].map(sweep_group)).dropna(subset=["group"])
    newest = groups.groupby("group")["id"].max().sort_values(ascending=False).index
    return [g for g in newest if is_sweep(sweep_points(every, g))]


def is_sweep(points: pd.DataFrame) -> bool:
    params = [c for c in points.columns if c.startswith("param ")]
    return len(points) >= 2 and any(points[c].astype(str).nunique() > 1 for c in params)


def sweep_points(runs: pd.DataFrame, sweep: str) -> pd.DataFrame:
    """A sweep's points: point, runs (the experiment runs of the point), kind, status, error, each
    parameter (`param X`) and each final number.

    A sweep of the CLI (`workbench sweep`) has one bookkeeping run per point, whose parameters are
    the point's and whose summary holds the numbers its notebook's runs measured; an experiment's
    sweep id groups its arms directly: then each arm is a point.
    """
    group = runs[runs["sweep"].map(sweep_group) == sweep]
    rows = group[group["kind"] == "sweep_point"]
    cli = not rows.empty
    rows = rows if cli else visible(group).sort_values("id")
    if rows.empty:
        return pd.DataFrame(columns=list(POINT_COLUMNS))
    inner = visible(group)
    members = [inner[inner["sweep"] == tag] if cli else inner[inner["id"] == run_id]
               for tag, run_id in zip(rows["sweep"], rows["id"])]
    frame = pd.DataFrame(
        {
            "point": rows["sweep"].str.rsplit("/", n=1).str[-1].astype(int).to_numpy() if cli else np.arange(len(rows)),
            "runs": [", ".join(f"#{i}" for i in sorted(m["id"])) for m in members],
            "kind": [", ".join(sorted(set(m["kind"]))) for m in members],
            "status": rows["status"].to_numpy(),
            "error": rows["error"].fillna("").to_numpy(),
        }
    )
    params = params_frame(rows).reset_index(drop=True).infer_objects()  # numeric parameters as numbers, for the axes
    params = params[varying(params) or list(params.columns)].add_prefix("param ")
    params = params.apply(lambda c: c if pd.api.types.is_numeric_dtype(c) else c.where(c.notna(), "(none)"))
    finals = final_metrics(rows, pd.DataFrame(columns=["id", "run_id", "step", "key", "value", "time"])).reset_index(
        drop=True
    )
    return pd.concat([frame, params, finals], axis=1).sort_values("point").reset_index(drop=True)


def sweep_metrics(points: pd.DataFrame) -> list[str]:
    """The numbers that move between the points (all of them where none moves), most reported first."""
    numbers = [c for c in points.columns if c not in POINT_COLUMNS and not c.startswith("param ")]
    numbers = sorted(numbers, key=lambda c: -points[c].notna().sum())
    return [c for c in numbers if points[c].nunique() > 1] or numbers


def _is_duration(metric: str) -> bool:
    """How long something took (`load_s`, `seconds`): a cost of running, rarely what a sweep is about."""
    name = metric.rsplit(".", 1)[-1]
    return name.endswith(("_s", "_seconds")) or name in ("seconds", "time", "duration")


def sweep_default_metric(points: pd.DataFrame, runs: pd.DataFrame, sweep: str, kinds: dict[str, RunKind]) -> str | None:
    """The headline the sweep's runs declare (their kind's `RunKind.headline`), else the first
    metric that moves between points and is not a duration, else the first that is not a duration."""
    metrics = sweep_metrics(points)
    inner = visible(runs[runs["sweep"].map(sweep_group) == sweep])
    for headline in headlines(inner, kinds):
        for candidate in (headline, *(m for m in metrics if m.endswith(f".{headline}"))):
            if candidate in metrics and points[candidate].notna().any():
                return candidate
    numbers = [m for m in metrics if not _is_duration(m) and points[m].notna().any()]
    moving = [m for m in numbers if points[m].nunique() > 1]
    return next(iter(moving + numbers + metrics), None)


def _axis_values(values: pd.Series) -> tuple[pd.Series, dict]:
    """A parameter as numbers for an axis: numeric as is, anything else as category codes with their names."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values) and values.notna().all():
        return values.astype(float), {}
    names = values.map(lambda v: "(none)" if pd.isna(v) else f"{v:g}" if isinstance(v, float) else str(v))
    categories = list(dict.fromkeys(names))
    return names.map({c: i for i, c in enumerate(categories)}).astype(float), {
        "tickvals": list(range(len(categories))),
        "ticktext": categories,
    }


def sweep_figure(points: pd.DataFrame, metric: str, title: str = "") -> go.Figure:
    """A final metric against each swept parameter (one panel per parameter that varies); hover: the whole point."""
    axes = [c for c in points.columns if c.startswith("param ")]
    figure = make_subplots(
        rows=1, cols=max(len(axes), 1), shared_yaxes=True, subplot_titles=[a.removeprefix("param ") for a in axes]
    )
    done = points.dropna(subset=[metric]) if metric in points else points.iloc[0:0]
    hover = (
        done[axes]
        .astype(str)
        .apply(lambda r: "<br>".join(f"{a.removeprefix('param ')}={v}" for a, v in r.items()), axis=1)
        if axes
        else None
    )
    for column, axis in enumerate(axes, start=1):
        values = done[axis]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        figure.add_trace(
            go.Scatter(
                x=values if numeric else values.astype(str),
                y=done[metric],
                mode="markers",
                name=axis.removeprefix("param "),
                marker={"size": 10, "color": [STATUS_COLORS.get(s, "gray") for s in done["status"]]},
                text=hover,
                hovertemplate=f"%{{text}}<br>{metric} %{{y:.4g}}<extra>point</extra>",
                showlegend=False,
            ),
            row=1,
            col=column,
        )
        positive = numeric and len(values) and (values > 0).all() and values.max() / values.min() >= 20
        figure.update_xaxes(type="log" if positive else None, row=1, col=column)
    figure.update_yaxes(title_text=metric, row=1, col=1)
    figure.update_layout(
        title=title or f"{metric}: {len(done)} of {len(points)} points", height=380, uirevision="keep", **plots.LAYOUT
    )
    return figure


def parallel_figure(points: pd.DataFrame, metric: str, goal: str = "min", title: str = "") -> go.Figure:
    """Parallel coordinates: one axis per swept parameter and one for the metric, one line per
    finished point, coloured by the metric (the best points brightest: `goal` says which end is best)."""
    axes = [c for c in points.columns if c.startswith("param ")]
    done = points.dropna(subset=[metric]) if metric in points else points.iloc[0:0]
    dimensions = []
    for axis in axes:
        values, ticks = _axis_values(done[axis])
        dimensions.append(dict(label=axis.removeprefix("param "), values=values, **ticks))
    dimensions.append({"label": metric, "values": done[metric].astype(float)})
    figure = go.Figure(
        go.Parcoords(
            line={
                "color": done[metric].astype(float),
                "colorscale": "Viridis",
                "reversescale": goal == "min",
                "showscale": True,
                "colorbar": {"title": metric},
            },
            dimensions=dimensions,
        )
    )
    figure.update_layout(
        title=title or f"{metric} against the swept parameters ({len(done)} points)",
        height=380,
        template="plotly_white",
        margin={"l": 80, "r": 80, "t": 80, "b": 40},
    )
    return figure


# -- one run ----------------------------------------------------------------------------------------


class SweepsTab:
    def __init__(self):
        import panel as pn

        self.sweep = pn.widgets.Select(label="sweep", width=420)
        self.metric = pn.widgets.Select(label="metric", width=260)
        self.parallel = pn.pane.Plotly(go.Figure(), sizing_mode="stretch_width", height=400, name="parallel")
        self.figure = pn.pane.Plotly(go.Figure(), sizing_mode="stretch_width", height=400)
        self.table = FrameView(max_height=340)
        for widget in (self.sweep, self.metric):
            widget.param.watch(lambda _: self._refresh(), "value")
        self.panel = pn.Column(pn.Row(self.sweep, self.metric), self.parallel, self.figure, self.table,
                               csv_button(self.table, "sweep_points.csv"), sizing_mode="stretch_width")
        self._shown = None
        self._last: tuple[Snapshot, StoreFeed] | None = None
        self._syncing = False

    def _refresh(self) -> None:
        if self._last is not None and not self._syncing:
            self.render(*self._last)

    def render(self, snapshot: Snapshot, feed: StoreFeed, force: bool = False) -> None:
        self._last = (snapshot, feed)
        runs = feed.runs
        groups = sweep_groups(snapshot.shown, runs)  # the sweeps of the runs the filter shows
        self._syncing = True
        try:
            if groups != self.sweep.options:
                keep = self.sweep.value if self.sweep.value in groups else (groups[0] if groups else None)
                self.sweep.options, self.sweep.value = groups, keep
            points = sweep_points(runs, self.sweep.value) if self.sweep.value else pd.DataFrame()
            metrics = sweep_metrics(points) if self.sweep.value else []
            if metrics != self.metric.options:
                keep = (self.metric.value if self.metric.value in metrics
                        else sweep_default_metric(points, runs, self.sweep.value, feed.kinds))
                self.metric.options, self.metric.value = metrics, keep
        finally:
            self._syncing = False
        if not self.sweep.value:
            self.figure.object = empty_figure("no sweeps among the runs shown: python -m workbench sweep NOTEBOOK "
                                              "-p NAME VALUE ... (two points or more whose parameters differ)")
            self.parallel.object = go.Figure()
            self.table.value = pd.DataFrame()
            return
        state = (self.sweep.value, self.metric.value, points.to_json())
        if state == self._shown and not force:
            return
        self._shown = state
        metric = self.metric.value
        if metric:
            goal = metric_goal(metric, feed.kinds) or "min"
            done = int(points[metric].notna().sum())
            self.parallel.object = parallel_figure(
                points, metric, goal, f"sweep {self.sweep.value}: {metric} of {done} of {len(points)} points"
            )
            self.figure.object = sweep_figure(points, metric, f"{metric} against each parameter")
        else:
            self.figure.object = empty_figure("this sweep has no finished point with a number yet")
        self.table.value = points
