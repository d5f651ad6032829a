"""The notebook's explorer: widgets over a measured `SimilarityResult`, no model needed.

Every control (metric, sink handling, layer pair, head, threshold, colour scale of the maps) redraws the
figures from the stored matrices and maps, so exploring costs milliseconds, not another pass over the texts. The
figures are plotly `FigureWidget`s updated in place, not figures re-displayed into an `Output`
widget: capturing output into a widget while a cell runs intermittently stalls a headless
(papermill/nbclient) run, and an in-place update does not flicker.
"""

from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import plotly.graph_objects as go

from . import figures
from .analysis import SimilarityResult
from .sharing import choose_groups

MEAN = -1  # the head menu's "mean over heads" (a None value would show as no selection at all)


@dataclass
class View:
    """What the explorer shows: one choice per control."""

    metric: str
    sink: str
    first: int
    second: int
    head: int | None  # None: the mean over heads
    threshold: float
    scale: str = "clipped"  # colour scale of the maps: "clipped", "row-normalised" or "absolute"


class Explorer:
    """Controls, a status line and three figures (similarity map with the groups, per-head
    similarity of the layer pair, the pair's maps), redrawn on every change.

    `explorer.widget` is what a notebook displays; `view()`, `groups()` and `figures()` are the
    same state for code and tests.
    """

    def __init__(self, result: SimilarityResult, start: View, max_block: int = 3):
        self.result, self.max_block = result, max_block
        last = result.n_layers - 1
        self.controls = {
            "metric": widgets.Dropdown(options=list(result.metrics), value=start.metric, description="metric"),
            "sink": widgets.Dropdown(options=list(result.sinks), value=start.sink, description="sink"),
            "first": widgets.IntSlider(value=start.first, min=0, max=last, description="layer a"),
            "second": widgets.IntSlider(value=start.second, min=0, max=last, description="layer b"),
            "head": widgets.Dropdown(
                options=[("mean", MEAN)] + [(str(h), h) for h in range(result.n_heads)],
                value=MEAN if start.head is None else start.head,
                description="head",
            ),
            "threshold": widgets.FloatSlider(
                value=start.threshold, min=0.0, max=1.0, step=0.01, description="threshold",
                layout=widgets.Layout(width="420px"),
            ),
            "scale": widgets.Dropdown(
                options=list(figures.SCALES), value=start.scale, description="map colours",
                style={"description_width": "initial"},
            ),
        }  # fmt: skip
        self.status = widgets.HTML()
        self.plots = [
            go.FigureWidget(),
            go.FigureWidget(),
            go.FigureWidget(),
        ]  # similarity map, per-head pair, the pair's maps
        controls = list(self.controls.values())
        rows = [widgets.HBox(controls[:3]), widgets.HBox(controls[3:5]), widgets.HBox(controls[5:])]
        self.widget = widgets.VBox([*rows, self.status, *self.plots])
        for control in controls:
            control.observe(self.redraw, names="value")
        self.redraw()

    def view(self) -> View:
        values = {name: control.value for name, control in self.controls.items()}
        return View(**{**values, "head": None if values["head"] == MEAN else values["head"]})

    def groups(self) -> list[list[int]]:
        view = self.view()
        return choose_groups(
            self.result.similarity(view.metric, view.sink), threshold=view.threshold, max_block=self.max_block
        )

    def missing_maps(self) -> list[int]:
        """Layers of the chosen pair whose maps the analysis did not keep (`keep_maps_for`)."""
        view = self.view()
        return [layer for layer in (view.first, view.second) if layer not in self.result.maps]

    def figures(self) -> list[go.Figure]:
        view = self.view()
        shown = [
            figures.similarity_heatmap(self.result, view.metric, view.sink, self.groups()),
            figures.head_pair_heatmap(self.result, view.metric, view.sink, view.first, view.second),
        ]
        if not self.missing_maps():
            shown.append(figures.map_pair(self.result, view.first, view.second, view.head, view.sink, view.scale))
        return shown

    def redraw(self, change: dict | None = None) -> None:
        view, groups = self.view(), self.groups()
        missing = self.missing_maps()
        self.status.value = (
            f"<b>{figures.LABELS[view.metric]}</b>, sink {view.sink} (the maps too): "
            f"at threshold {view.threshold:.2f}, "
            f"{sum(len(g) - 1 for g in groups)} layers share attention, groups {groups}"
            + (f"; maps of layers {missing} were not kept (analyze's keep_maps_for)" if missing else "")
        )
        shown = self.figures()
        if missing:
            shown.append(go.Figure(layout=dict(title=f"maps of layers {missing} were not kept")))
        for plot, figure in zip(self.plots, shown, strict=True):
            with plot.batch_update():  # one message to the browser per figure
                plot.data = []
                plot.add_traces(figure.data)
                plot.layout = figure.layout
            # A merged relayout never shrinks an array (fewer group boxes, other subplot titles): send those whole.
            plot.plotly_relayout(
                {name: [item.to_plotly_json() for item in figure.layout[name]] for name in ("shapes", "annotations")}
            )

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)
