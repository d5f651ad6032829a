"""The Curves tab: logged metrics of the chosen runs, several panels at once, as W&B users expect.

- one panel per metric chosen (the kind's headline first by default);
- x axis: step, wall time since the run started, or tokens / FLOPs where the run logged them (a
  metric named `tokens` or `flops` logged at the same steps: the x of a step is that metric's value);
- smoothing: the exponential moving average TensorBoard and W&B use, debiased at the start
  (s_t = a s_{t-1} + (1 - a) y_t, divided by 1 - a^t), weight `a` from 0 (raw) to 0.99;
- grouping: runs that differ only in their seed, or that share one parameter's value, drawn as one
  line (the mean at each x over the group's runs that logged it) in a band from their min to max.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import plots
from . import views
from .state import Snapshot, StoreFeed

X_AXES = {"step": "step", "wall time (s)": "time_s", "tokens": "tokens", "FLOPs": "flops"}
NO_GROUP, BY_SEED = "each run", "runs that differ only in the seed"
MAX_PANELS = 6


def curve_frame(runs: pd.DataFrame, metrics: pd.DataFrame, run_ids: list[int], key: str, x: str = "step",
                smoothing: float = 0.0) -> pd.DataFrame:
    """One metric of some runs: (run_id, run label, x, value) in logging order; `x` is a column of
    `X_AXES`: runs that did not log a `tokens`/`flops` counter are left out of such an axis."""
    rows = metrics[(metrics["key"] == key) & metrics["run_id"].isin(run_ids)]
    info = runs.set_index("id").loc[[i for i in run_ids if i in set(runs["id"])]]
    frame = rows.assign(
        run=rows["run_id"].map({i: views.label({"id": i, "name": n}) for i, n in info["name"].items()}),
        time_s=rows["time"] - rows["run_id"].map(info["started_at"]),
    )
    order = {i: n for n, i in enumerate(run_ids)}
    frame = frame.sort_values(["run_id", "id"], key=lambda c: c.map(order) if c.name == "run_id" else c)
    if x in ("tokens", "flops"):
        counter = metrics[(metrics["key"] == x) & metrics["run_id"].isin(run_ids)]
        lookup = counter.groupby(["run_id", "step"])["value"].last().rename(x)
        frame = frame.join(lookup, on=["run_id", "step"], how="inner")
    if smoothing > 0:
        smoothed = frame.groupby("run_id", sort=False)["value"].transform(lambda v: smooth(v, smoothing))
        frame = frame.assign(value=smoothed)
    return frame.assign(x=frame[x if x in ("tokens", "flops") else ("time_s" if x == "time_s" else "step")])


def smooth(values: pd.Series, weight: float) -> pd.Series:
    """Debiased exponential moving average (TensorBoard's smoothing): the first point is the raw value."""
    out, average = [], 0.0
    for t, value in enumerate(values.to_numpy(dtype=float), start=1):
        average = weight * average + (1 - weight) * value
        out.append(average / (1 - weight**t))
    return pd.Series(out, index=values.index)


def group_lines(frame: pd.DataFrame, groups: dict[str, list[int]]) -> list[tuple[str, pd.DataFrame]]:
    """Per group: a frame indexed by x with its runs' mean, min and max there (runs that logged that x)."""
    lines = []
    for name, members in groups.items():
        rows = frame[frame["run_id"].isin(members)]
        if rows.empty:
            continue
        by_x = rows.groupby(["x", "run_id"])["value"].last().unstack("run_id")
        lines.append((f"{name} ({len(members)} runs)", pd.DataFrame(
            {"mean": by_x.mean(axis=1), "min": by_x.min(axis=1), "max": by_x.max(axis=1)})))
    return lines


def curves_figure(
    runs: pd.DataFrame,
    metrics: pd.DataFrame,
    run_ids: list[int],
    keys: str | list[str],
    x: str = "step",
    log_y: bool = False,
    smoothing: float = 0.0,
    groups: dict[str, list[int]] | None = None,
) -> go.Figure:
    """Each metric of `keys` in a panel of its own, a line per run (or per group: `group_lines`).

    Runs that logged identical numbers still show as distinct lines: each has its own colour, dash and
    marker, and the legend names every run once. A metric each run logged once is a number, not a
    curve: its panel draws bars, one per run.
    """
    keys = [keys] if isinstance(keys, str) else list(keys)[:MAX_PANELS]
    column = X_AXES.get(x, x)
    columns = 1 if len(keys) == 1 else 2
    rows = -(-len(keys) // columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=keys if len(keys) > 1 else None,
                           vertical_spacing=0.12 if rows > 1 else 0.0)
    legend: set[str] = set()
    for panel, key in enumerate(keys):
        frame = curve_frame(runs, metrics, run_ids, key, column, smoothing)
        where = {"row": panel // columns + 1, "col": panel % columns + 1}
        if len(frame) and frame.groupby("run_id").size().max() == 1:
            figure.add_trace(go.Bar(x=frame["run"], y=frame["value"], showlegend=False, name=key,
                                    marker_color=[views.COLORS[i % len(views.COLORS)] for i in range(len(frame))],
                                    hovertemplate="%{x}<br>" + key + " %{y:.5g}<extra></extra>"), **where)
        elif groups:
            for index, (name, line) in enumerate(group_lines(frame, groups)):
                _add_band(figure, name, line, index, first=name not in legend, where=where)
                legend.add(name)
        else:
            for index, (name, points) in enumerate(frame.groupby("run", sort=False)):
                figure.add_trace(go.Scatter(x=points["x"], y=points["value"], name=name, legendgroup=name,
                                            showlegend=name not in legend, mode="lines+markers",
                                            **plots.line_style(name, index),
                                            hovertemplate=f"{name}: %{{y:.5g}}<extra></extra>"), **where)
                legend.add(name)
        if log_y and len(frame):
            figure.update_yaxes(**plots.log_axis(frame["value"]), **where)
        figure.update_xaxes(title_text=x if panel // columns + 1 == rows else None, **where)
    if len(keys) == 1:
        figure.update_yaxes(title_text=keys[0], row=1, col=1)
    what = f"{len(groups)} groups" if groups else f"{len(legend) or len(set(run_ids))} runs"
    figure.update_layout(title=f"{', '.join(keys)} of {what}" + (f" (smoothed {smoothing:g})" if smoothing else ""),
                         hovermode="x unified", uirevision="keep", legend={"title": "group" if groups else "run"},
                         height=max(440, 320 * rows), **plots.LAYOUT)
    return figure


def _add_band(figure: go.Figure, name: str, line: pd.DataFrame, index: int, first: bool, where: dict) -> None:
    color = views.COLORS[index % len(views.COLORS)]
    red, green, blue = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    x = list(line.index)
    outline = list(line["max"]) + list(line["min"])[::-1]
    figure.add_trace(go.Scatter(x=x + x[::-1], y=outline, fill="toself", mode="lines",
                                fillcolor=f"rgba({red},{green},{blue},0.18)", line={"width": 0}, hoverinfo="skip",
                                legendgroup=name, showlegend=False, name=f"{name} min-max"), **where)
    figure.add_trace(go.Scatter(x=x, y=line["mean"], name=name, legendgroup=name, showlegend=first,
                                mode="lines+markers", **plots.line_style(name, index),
                                hovertemplate=f"{name} mean: %{{y:.5g}}<extra></extra>"), **where)


def default_metrics(runs: pd.DataFrame, metrics: pd.DataFrame, shown: list[int], kinds: dict) -> list[str]:
    """The keys to draw first: the declared headlines that form a curve, else the most logged key."""
    rows = metrics[metrics["run_id"].isin(shown)]
    keys = list(rows["key"].value_counts().index)
    curves = set(rows.groupby(["run_id", "key"]).size().loc[lambda n: n > 1].index.get_level_values("key"))
    first = [h for h in views.headlines(runs[runs["id"].isin(shown)], kinds) if h in curves]
    return first[:2] or keys[:1]


class CurvesTab:
    """The Panel widgets of the tab; `render` draws the snapshot's chosen runs."""

    def __init__(self, on_change):
        import panel as pn

        self.metrics = pn.widgets.MultiChoice(label="metrics (one panel each)", width=420, max_items=MAX_PANELS)
        self.x_axis = pn.widgets.RadioButtonGroup(label="x", options=list(X_AXES), value="step")
        self.log_y = pn.widgets.Checkbox(label="log y")
        self.smoothing = pn.widgets.FloatSlider(label="smoothing", start=0.0, end=0.99, step=0.01, value=0.0, width=180)
        self.group = pn.widgets.Select(label="group", options=[NO_GROUP, BY_SEED], value=NO_GROUP, width=240)
        self.note = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.figure = pn.pane.Plotly(go.Figure(), sizing_mode="stretch_width", height=460, name="curves")
        for widget in (self.metrics, self.x_axis, self.log_y, self.smoothing, self.group):
            widget.param.watch(lambda _: on_change(), "value")
        self.panel = pn.Column(pn.Row(self.metrics, self.group, self.smoothing),
                               pn.Row(self.x_axis, self.log_y), self.note, self.figure,
                               sizing_mode="stretch_width")
        self._shown = None

    def render(self, snapshot: Snapshot, feed: StoreFeed, force: bool = False) -> None:
        chosen = list(snapshot.chosen)
        rows = feed.metrics[feed.metrics["run_id"].isin(chosen)]
        keys = [k for k in rows["key"].value_counts().index if k not in ("tokens", "flops")]
        if keys != self.metrics.options:
            keep = [k for k in self.metrics.value if k in keys]
            self.metrics.options = keys
            self.metrics.value = keep or default_metrics(feed.runs, feed.metrics, chosen, feed.kinds)
        params = views.params_frame(feed.runs[feed.runs["id"].isin(chosen)])
        groupings = [NO_GROUP, BY_SEED, *views.varying(params)]
        if groupings != self.group.options:
            keep = self.group.value if self.group.value in groupings else NO_GROUP
            self.group.options, self.group.value = groupings, keep
        state = (chosen, tuple(self.metrics.value), self.x_axis.value, self.log_y.value, self.smoothing.value,
                 self.group.value, len(rows), snapshot.version if force else None)
        if state == self._shown and not force:
            return
        self._shown = state
        self.note.object = (f"{len(chosen)} ticked run(s)" if snapshot.ticked else
                            f"{len(chosen)} run(s) of the newest experiment the filter shows: tick runs to choose")
        if not self.metrics.value:
            self.figure.object = views.empty_figure("no metrics logged yet by the runs shown")
            return
        groups = None
        if self.group.value == BY_SEED:
            groups = views.seed_groups(feed.runs, chosen)
        elif self.group.value != NO_GROUP:
            groups = views.seed_groups(feed.runs, chosen, by=self.group.value)
        self.figure.object = curves_figure(feed.runs, feed.metrics, chosen, list(self.metrics.value),
                                           self.x_axis.value, self.log_y.value, self.smoothing.value, groups)

    def legend(self) -> list[str]:
        """The names in the figure's legend (what the browser test compares with the table)."""
        names = []
        for trace in self.figure.object.data:
            names += list(trace.x) if trace.type == "bar" else [trace.name] if trace.showlegend is not False else []
        return list(dict.fromkeys(names))

