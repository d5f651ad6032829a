"""The teaching view: step through one sample as each model wrote it, token by token, with confidences.

A masked diffusion model starts from an all-masked continuation and reveals tokens anywhere, the
most confident first (low-confidence remasking); an autoregressive model writes left to right.
Plain ipywidgets controls drive a plotly `FigureWidget` updated in place (no `Output` capture).
"""

from __future__ import annotations

import math

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from ..plots import LAYOUT
from .samplers import Trace


class UnmaskingView:
    """Step through how each model wrote one sample: the MDM reveals tokens anywhere, most confident
    first; the ARM writes left to right. Cell colour: p_θ of the token when it was revealed; an open
    square marks the tokens revealed at the current step; ▢ is a still-masked position."""

    def __init__(self, traces: dict[str, Trace], tokenizer, prompt_len: int, row: int = 0, columns: int = 16):
        self.traces, self.tokenizer, self.prompt_len, self.row, self.columns = (
            traces,
            tokenizer,
            prompt_len,
            row,
            columns,
        )
        self.model = widgets.ToggleButtons(options=list(traces), description="model")
        self.step = widgets.IntSlider(value=0, min=0, max=len(traces[self.model.value].revealed), description="step")
        self.status = widgets.HTML()
        self.figure = go.FigureWidget(
            go.Heatmap(
                z=[[0.0]],
                colorscale="Viridis",
                zmin=0,
                zmax=1,
                texttemplate="%{text}",
                colorbar=dict(title="p(token)"),
                hovertemplate="%{text}<br>p %{z:.3f}<extra></extra>",
            )
        )
        self.figure.add_scatter(
            x=[],
            y=[],
            mode="markers",
            marker=dict(symbol="square-open", size=26, color="red", line=dict(width=2)),
            name="revealed now",
            hoverinfo="skip",
        )
        self.figure.update_layout(
            height=120 + 32 * self._grid_rows(),
            yaxis=dict(autorange="reversed", showticklabels=False),
            xaxis=dict(showticklabels=False),
            showlegend=False,
            **LAYOUT,
        )
        self.model.observe(self._on_model, names="value")
        self.step.observe(lambda _: self.show(), names="value")
        self.widget = widgets.VBox([self.model, self.step, self.status, self.figure])
        self.show()

    def _grid_rows(self) -> int:
        length = next(iter(self.traces.values())).tokens.shape[1]
        return math.ceil(length / self.columns)

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
        texts = [self.tokenizer.decode([t]).replace("\n", "⏎") if shown[i] else "▢" for i, t in enumerate(tokens)]
        new = trace.revealed[step - 1][self.row].numpy().nonzero()[0] if step > 0 else np.array([], dtype=int)
        return texts, confidence, new

    def show(self) -> None:
        texts, confidence, new = self.state(self.model.value, self.step.value)
        pad = self._grid_rows() * self.columns - len(texts)
        grid = np.array(texts + [""] * pad, dtype=object).reshape(-1, self.columns)
        z = np.concatenate([confidence, np.full(pad, np.nan)]).reshape(-1, self.columns)
        with self.figure.batch_update():
            self.figure.data[0].z = np.where(np.isnan(z), None, z).tolist()  # None, not NaN: widget messages are JSON
            self.figure.data[0].text = grid
            self.figure.data[1].x, self.figure.data[1].y = new % self.columns, new // self.columns
        masked = sum(t == "▢" for t in texts)
        mean_new = float(np.nanmean(confidence[new])) if len(new) else math.nan
        self.status.value = (
            f"<b>{self.model.value}</b>, step {self.step.value}/{self.step.max}: {len(new)} token(s) revealed now"
            f"{f' (mean p {mean_new:.2f})' if len(new) else ''}, {masked} still masked"
        )
