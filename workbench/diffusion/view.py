"""The teaching view: step through one sample as each model wrote it, token by token, with confidences.

A masked diffusion model starts from an all-masked continuation and reveals tokens anywhere, the
most confident first (low-confidence remasking); an autoregressive model writes left to right.
Plain ipywidgets controls drive a plotly `FigureWidget` updated in place (no `Output` capture);
`snapshots()` draws a few steps side by side as a static figure, the record an HTML copy keeps.
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..plots import LAYOUT
from .samplers import Trace

# Colour is log10 p(token) over [-4, 0]: a weak model's choices (p ~ 1e-3) differ in colour too, not only p ~ 0.9 ones.
LOG_P_LOW = -4.0
COLORBAR = dict(
    title="p(token)", tickvals=[-4.5, -4, -3, -2, -1, 0], ticktext=["prompt", "≤1e-4", "0.001", "0.01", "0.1", "1"]
)
MASK, FONT = "▢", dict(size=13, color="#111")
ROW_PX, HEADER_PX = 44, 200  # the header leaves the colour legend room to read
# A fixed cell width (the figure's width follows from it, not from its container: a widget's container may be narrow
# when the figure is first drawn) and at most MAX_CHARS characters drawn per cell, so a long token ("·operations")
# stays inside its cell at 13 px instead of running over its neighbours; the hover shows the whole token.
CELL_PX, LEGEND_PX, MAX_CHARS = 72, 110, 8
MARGIN = dict(l=10, r=20, t=50, b=20)  # no axis labels to leave room for


def _cell_text(tokenizer, token: int) -> str:
    return tokenizer.decode([token]).replace("\n", "⏎").replace(" ", "·") or "∅"


def _fit(text: str) -> str:
    """A cell's text cut to MAX_CHARS characters (the last one "…")."""
    return text if len(text) <= MAX_CHARS else text[: MAX_CHARS - 1] + "…"


class UnmaskingView:
    """Step through how each model wrote one sample: the MDM reveals tokens anywhere, most confident
    first; the ARM writes left to right. Cell colour: p_θ of the token when it was revealed (log scale,
    legend on the right); grey cells are the prompt; an open red square marks the tokens revealed at
    the current step; ▢ is a still-masked position."""

    def __init__(self, traces: dict[str, Trace], tokenizer, prompt_len: int, row: int = 0, columns: int = 10):
        self.traces, self.tokenizer, self.prompt_len = traces, tokenizer, prompt_len
        self.row, self.columns = row, columns
        self.model = widgets.ToggleButtons(options=list(traces), description="model", style={"button_width": "auto"})
        self.step = widgets.IntSlider(
            value=0, min=0, max=len(traces[self.model.value].revealed), description="step",
            layout=widgets.Layout(width="480px"),
        )  # fmt: skip
        self.status = widgets.HTML()
        self.figure = go.FigureWidget(self._grid_traces())
        self.figure.update_layout(height=HEADER_PX + ROW_PX * self._grid_rows(), showlegend=False, **self._axes())
        self.model.observe(self._on_model, names="value")
        self.step.observe(lambda _: self.show(), names="value")
        self.widget = widgets.VBox([self.model, self.step, self.status, self.figure])
        self.show()

    def _grid_rows(self) -> int:
        length = next(iter(self.traces.values())).tokens.shape[1]
        return math.ceil(length / self.columns)

    def _axes(self) -> dict:
        return dict(yaxis=self._y_axis(), xaxis=self._x_axis(), width=self._width(), **(LAYOUT | {"margin": MARGIN}))

    def _width(self) -> int:
        return MARGIN["l"] + CELL_PX * self.columns + MARGIN["r"] + LEGEND_PX

    def _x_axis(self) -> dict:  # fixed ranges: every step's grid lines up, whatever its markers cover
        return dict(range=[-0.5, self.columns - 0.5], showticklabels=False, showgrid=False, zeroline=False)

    def _y_axis(self) -> dict:
        return dict(range=[self._grid_rows() - 0.5, -0.5], showticklabels=False, showgrid=False, zeroline=False)

    def _grid_traces(self) -> list:
        """Colour cells (heatmap), the revealed-now markers and the token texts (a text scatter, so the prompt
        and masked cells, which have no colour, show their text too)."""
        return [
            go.Heatmap(
                z=[[None]],
                colorscale=_colours(),
                zmin=LOG_P_LOW - 1,
                zmax=0,
                colorbar=COLORBAR,
                xgap=2,
                ygap=2,
                hoverinfo="skip",
            ),  # fmt: skip
            go.Scatter(
                x=[],
                y=[],
                mode="markers",
                hoverinfo="skip",
                marker=dict(symbol="square-open", size=30, color="red", line=dict(width=2)),
            ),  # fmt: skip
            go.Scatter(x=[], y=[], mode="text", textfont=FONT, hovertemplate="%{customdata}<extra></extra>"),
        ]

    def _grid(self, name: str, step: int) -> dict:
        """Everything one step draws: cell colours, marker positions and texts."""
        texts, confidence, new = self.state(name, step)
        n = len(texts)
        pad = self._grid_rows() * self.columns - n
        log_p = np.log10(np.clip(confidence, 10**LOG_P_LOW, 1.0))
        log_p[: self.prompt_len] = LOG_P_LOW - 1  # below the colour range: drawn grey (see `_colours`)
        z = np.concatenate([log_p, np.full(pad, np.nan)]).reshape(-1, self.columns)
        position = np.arange(n)
        hover = [
            f"prompt: {t}" if i < self.prompt_len else (f"{t}: p {confidence[i]:.3g}" if t != MASK else "masked")
            for i, t in enumerate(texts)
        ]
        return dict(
            z=np.where(np.isnan(z), None, z).tolist(),  # None, not NaN: widget messages are JSON
            new_x=new % self.columns, new_y=new // self.columns,
            text_x=position % self.columns, text_y=position // self.columns, texts=[_fit(t) for t in texts],
            hover=hover,
        )  # fmt: skip

    def _on_model(self, _) -> None:
        self.step.max = len(self.traces[self.model.value].revealed)
        self.show()

    def state(self, name: str, step: int) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Token texts, confidences (NaN: prompt or masked) and the positions revealed at `step` (1-based)."""
        trace = self.traces[name]
        tokens = trace.tokens[self.row].tolist()
        shown = np.zeros(len(tokens), dtype=bool)
        shown[: self.prompt_len] = True
        confidence = np.full(len(tokens), np.nan)
        for revealed, conf in zip(trace.revealed[:step], trace.confidence[:step]):
            now = revealed[self.row].numpy()
            shown |= now
            confidence[now] = conf[self.row].numpy()[now]
        texts = [_cell_text(self.tokenizer, t) if shown[i] else MASK for i, t in enumerate(tokens)]
        new = trace.revealed[step - 1][self.row].numpy().nonzero()[0] if step > 0 else np.array([], dtype=int)
        return texts, confidence, new

    def show(self) -> None:
        grid = self._grid(self.model.value, self.step.value)
        with self.figure.batch_update():
            self.figure.data[0].z = grid["z"]
            self.figure.data[1].x, self.figure.data[1].y = grid["new_x"], grid["new_y"]
            text = self.figure.data[2]
            text.x, text.y, text.text, text.customdata = grid["text_x"], grid["text_y"], grid["texts"], grid["hover"]
        texts, confidence, new = self.state(self.model.value, self.step.value)
        masked = sum(t == MASK for t in texts)
        mean_new = float(np.nanmean(confidence[new])) if len(new) else math.nan
        self.status.value = (
            f"<b>{self.model.value}</b>, step {self.step.value}/{self.step.max}: {len(new)} token(s) revealed now"
            f"{f' (mean p {mean_new:.2g})' if len(new) else ''}, {masked} still masked"
        )

    def snapshots(self, name: str | None = None, points: int = 4) -> go.Figure:
        """`points` steps of one model's sample, first (the prompt alone) to last, stacked: the static record."""
        name = name or self.model.value
        last = len(self.traces[name].revealed)
        steps = sorted({round(i * last / (points - 1)) for i in range(points)}) if points > 1 else [last]
        rows = self._grid_rows()
        figure = make_subplots(rows=len(steps), cols=1, vertical_spacing=0.25 / len(steps),
                               subplot_titles=[f"{name}, step {s}/{last}" for s in steps])  # fmt: skip
        for index, step in enumerate(steps, start=1):
            grid = self._grid(name, step)
            cells, markers, texts = self._grid_traces()
            cells.update(z=grid["z"], showscale=index == 1)
            markers.update(x=grid["new_x"], y=grid["new_y"])
            texts.update(x=grid["text_x"], y=grid["text_y"], text=grid["texts"], customdata=grid["hover"])
            for trace in (cells, markers, texts):
                figure.add_trace(trace, row=index, col=1)
            figure.update_yaxes(**self._y_axis(), row=index, col=1)
            figure.update_xaxes(**self._x_axis(), row=index, col=1)
        title = "How the sample was written (grey: prompt; ▢: still masked; red: revealed at that step)"
        height = HEADER_PX + (ROW_PX * rows + 60) * len(steps)
        figure.update_layout(
            height=height, width=self._width(), showlegend=False, title=title, **(LAYOUT | {"margin": MARGIN})
        )
        return figure


def _colours() -> list:
    """RdYlGn over log10 p in [LOG_P_LOW, 0], with one grey band below it for the prompt's cells."""
    span = -LOG_P_LOW + 1
    grey_end = 1 / span
    greens = ["#d73027", "#fc8d59", "#fee08b", "#d9ef8b", "#91cf60", "#1a9850"]
    stops = [[grey_end + (1 - grey_end) * i / (len(greens) - 1), c] for i, c in enumerate(greens)]
    return [[0.0, "#e0e0e0"], [grey_end * 0.999, "#e0e0e0"], *stops]
