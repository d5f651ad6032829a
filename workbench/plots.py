"""plotly figure builders shared by the notebooks and the dashboard.

Plain `plotly.graph_objects` figures: they render in JupyterLab, in executed notebooks and in
the HTML copies without a network (see `workbench.notebook.setup`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

LAYOUT = {"template": "plotly_white", "margin": {"l": 60, "r": 20, "t": 50, "b": 50}}
COLORS = qualitative.D3  # ten colours that stay apart on white
DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")
SYMBOLS = ("circle", "square", "diamond", "triangle-up", "x", "star")
# Log axes are labelled at 1, 1.5, 2, 3, 5, 7 × 10^k where the data spans little, and at fewer mantissas as the span
# grows: plotly's default labels a short log axis with bare digits ("2", "3", "100", "2"), which reads as 2 and 3 where
# it means 20 and 30, and one fixed list of ticks piles its labels into a block on a span of several decades.
LOG_MANTISSAS = ((1, 1.5, 2, 3, 5, 7), (1, 2, 5), (1, 3), (1,))


def round_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """About `count` evenly spaced round values (1, 2, 2.5 or 5 × 10^k apart) inside [low, high]."""
    raw = (high - low) / count
    power = 10.0 ** np.floor(np.log10(raw))
    step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
    values = np.arange(np.ceil(low / step), np.floor(high / step) + 1) * step
    return [float(f"{v:.12g}") for v in values]


def log_ticks(low: float, high: float, max_ticks: int = 9) -> list[float]:
    """Tick values for a log axis over [low, high]: the densest mantissa set that leaves at most `max_ticks`
    inside (one per decade, thinned to every k-th decade, when even that is too many). A span too narrow to hold
    three of the densest set (8.7-12.5 holds only 10) gets round, evenly spaced values instead: a log axis takes
    any value as a tick, and one label cannot be read as a scale."""
    first, last = int(np.floor(np.log10(low))), int(np.ceil(np.log10(high)))
    for mantissas in LOG_MANTISSAS:
        ticks = [m * 10.0**k for k in range(first, last + 1) for m in mantissas if low <= m * 10.0**k <= high]
        if mantissas == LOG_MANTISSAS[0] and len(ticks) < 3:
            return round_ticks(low, high)
        if len(ticks) <= max_ticks:
            return ticks
    stride = int(np.ceil(len(ticks) / max_ticks))
    return ticks[::stride]


def log_axis(values: Sequence[float] | np.ndarray, pad: float = 0.04, max_ticks: int = 9) -> dict:
    """Layout of a log axis spanning the finite positive `values`, ticks included. The range is in log10 units:
    that is how plotly reads a log axis' range (and its shapes and annotations: see `add_level`)."""
    data = np.asarray(values, dtype=float)
    data = data[np.isfinite(data) & (data > 0)]
    if data.size == 0:
        return {"type": "log"}
    low, high = float(data.min()) / (1 + pad), float(data.max()) * (1 + pad)
    ticks = log_ticks(low, high, max_ticks) or [float(data.min())]
    return {"type": "log", "range": [np.log10(low), np.log10(high)], "tickvals": ticks,
            "ticktext": [f"{t:g}" for t in ticks]}  # fmt: skip


def add_level(figure: go.Figure, y: float, text: str, log_y: bool = False, **line) -> None:
    """A horizontal reference line at data value `y`, labelled `text`. On a log y axis plotly places shapes and
    annotations in log10 units, so `figure.add_hline(y=230)` there would draw at 10^230: convert first."""
    position = float(np.log10(y)) if log_y else float(y)
    figure.add_hline(y=position, line={"dash": "dash", **line}, annotation_text=text)


def significant(values: pd.Series | Sequence[float] | float, digits: int = 3):
    """`values` rounded to `digits` significant figures, NaN kept: a table then shows a smoke run's perplexity
    as 47300 (not 47297.901) and its 0.0012 epochs as 0.0012 (not 0.0), and a full run's 18.71 alike."""

    def one(value: float) -> float:
        return float(f"{value:.{digits}g}") if np.isfinite(value) else value

    if isinstance(values, pd.Series):
        return values.astype(float).map(one)
    return one(float(values)) if np.ndim(values) == 0 else np.array([one(float(v)) for v in values])


def readable(frame: pd.DataFrame, digits: int = 4) -> pd.DataFrame:
    """A table for display: every float column to `digits` significant figures (see `significant`), so
    7336318.456 reads 7336000 and a smoke run's 0.0012 epochs stay 0.0012; other columns as they are."""
    floats = frame.select_dtypes("float").columns
    return frame.assign(**{column: significant(frame[column], digits) for column in floats})


LineStyle = Callable[[str, int], dict]  # (line name, index among the lines) → Scatter keyword arguments


def line_style(name: str, index: int) -> dict:
    """The default look of the index-th line: colour, dash and marker all change from line to line, so lines
    that lie on top of each other (runs with equal numbers) still show apart."""
    return {
        "line": {"color": COLORS[index % len(COLORS)], "dash": DASHES[index % len(DASHES)], "width": 2},
        "marker": {"size": 5, "symbol": SYMBOLS[(index // len(DASHES)) % len(SYMBOLS)]},
    }


def heatmap(
    matrix: np.ndarray,
    title: str,
    x_labels: Sequence | None = None,
    y_labels: Sequence | None = None,
    x_title: str = "",
    y_title: str = "",
    value_name: str = "value",
    colorscale: str = "Viridis",
    zmin: float | None = None,
    zmax: float | None = None,
) -> go.Figure:
    """A matrix as a heatmap; hover shows both labels and the value. Row 0 is drawn at the top."""
    matrix = np.asarray(matrix, dtype=float)
    x = list(x_labels) if x_labels is not None else list(range(matrix.shape[1]))
    y = list(y_labels) if y_labels is not None else list(range(matrix.shape[0]))
    figure = go.Figure(
        go.Heatmap(
            z=matrix,
            x=x,
            y=y,
            colorscale=colorscale,
            zmin=zmin,
            zmax=zmax,
            colorbar={"title": value_name},
            hovertemplate=f"{y_title or 'row'} %{{y}}<br>{x_title or 'column'} %{{x}}<br>"
            f"{value_name} %{{z:.4f}}<extra></extra>",
        )
    )
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, **LAYOUT)
    figure.update_yaxes(autorange="reversed")
    return figure


def attention_map(probabilities: np.ndarray, tokens: Sequence[str], title: str) -> go.Figure:
    """One head's (or the head-mean) attention probabilities [query, key] with token labels."""
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]
    return heatmap(
        probabilities,
        title,
        labels,
        labels,
        x_title="key",
        y_title="query",
        value_name="attention",
        colorscale="Blues",
        zmin=0,
    )


def curves(
    frame: pd.DataFrame,
    x: str,
    y: str,
    group: str | None = None,
    title: str = "",
    log_y: bool = False,
    error: str | None = None,
    style: LineStyle = line_style,
) -> go.Figure:
    """Line per `group` of `y` against `x`, optionally with an error band column `error`; `style(name, index)`
    gives each line its look (an idea can colour by what differs between its arms)."""
    figure = go.Figure()
    groups = frame.groupby(group, sort=False) if group else [(y, frame)]
    for index, (name, rows) in enumerate(groups):
        figure.add_trace(
            go.Scatter(
                x=rows[x],
                y=rows[y],
                mode="lines+markers",
                name=str(name),
                error_y={"type": "data", "array": rows[error], "visible": True} if error else None,
                **style(str(name), index),
            )
        )
    figure.update_layout(title=title, xaxis_title=x, yaxis_title=y, **LAYOUT)
    if log_y:
        figure.update_yaxes(**log_axis(frame[y]))
    return figure


def bars(
    labels: Sequence[str], values: Sequence[float], title: str, value_name: str = "", baseline: float | None = None
) -> go.Figure:
    """Bar comparison, with an optional dashed baseline (e.g. the teacher's perplexity)."""
    figure = go.Figure(
        go.Bar(x=list(labels), y=list(values), text=[f"{v:.3g}" for v in values], textposition="outside")
    )
    if baseline is not None:
        add_level(figure, baseline, f"baseline {baseline:.3g}")
    figure.update_layout(title=title, yaxis_title=value_name, **LAYOUT)
    return figure


class LiveCurves:
    """One line per arm of a held-out metric against the optimizer step, drawn while the arms train.

    Display `figure` (a plotly FigureWidget) first, then pass this object as an experiment's
    `callback(arm, step, metrics)`: each point updates the displayed widget in place (no re-display,
    no Output capture, which stalls a headless papermill run). Outside a notebook it only collects
    the points. An idea names its metric by subclassing (`metric`, `yaxis_title`, `log_y`, `title`), and
    may pass a `style` that colours its arms by what differs between them.
    """

    metric = "val_loss"
    yaxis_title = "validation loss"
    log_y = False
    title = "Held-out loss during training"

    def __init__(self, title: str | None = None, style: LineStyle = line_style):
        self.style = style
        self.figure = go.FigureWidget()
        self.figure.update_layout(
            title=title or self.title, xaxis_title="optimizer step", yaxis_title=self.yaxis_title, **LAYOUT
        )
        if self.log_y:
            self.figure.update_yaxes(type="log")

    def __call__(self, arm: str, step: int, metrics: dict[str, float]) -> None:
        traces = {trace.name: trace for trace in self.figure.data}
        if arm in traces:
            with self.figure.batch_update():
                traces[arm].x, traces[arm].y = (*traces[arm].x, step), (*traces[arm].y, metrics[self.metric])
        else:
            self.figure.add_scatter(
                x=[step], y=[metrics[self.metric]], name=arm, mode="lines+markers", **self.style(arm, len(traces))
            )
        if self.log_y:  # ticks and range follow the data: a fixed tick list piles up over a span of decades
            self.figure.update_yaxes(**log_axis([v for trace in self.figure.data for v in trace.y]))
