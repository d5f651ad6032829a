"""plotly figures of a `SimilarityResult`, shared by the notebook, its widgets and the dashboard."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import plots
from .analysis import SimilarityResult

LABELS = {"cosine": "cosine similarity", "jsd": "1 − Jensen-Shannon divergence", "cka": "linear CKA"}


def similarity_heatmap(
    result: SimilarityResult, metric: str, sink: str, groups: Sequence[Sequence[int]] = ()
) -> go.Figure:
    """The L × L head-averaged similarity; hover gives both layers and the value; groups as boxes."""
    matrix = result.similarity(metric, sink)
    figure = plots.heatmap(
        matrix,
        f"{LABELS[metric]} between layers (sink {sink}, mean over {result.n_texts} texts)",
        x_title="layer",
        y_title="layer",
        value_name=metric,
        zmin=float(np.nanmin(matrix)),
        zmax=1.0,
    )
    for group in groups:
        first, last = group[0] - 0.5, group[-1] + 0.5
        figure.add_shape(type="rect", x0=first, x1=last, y0=first, y1=last, line=dict(color="red", width=3))
    if groups:
        figure.update_layout(title=figure.layout.title.text + f"<br><sup>red boxes: {len(groups)} sharing groups</sup>")
    return figure


def head_pair_heatmap(result: SimilarityResult, metric: str, sink: str, first: int, second: int) -> go.Figure:
    """H × H: head h of layer `first` (rows) against head h' of layer `second` (columns)."""
    matrix = result.head_pair(metric, first, second, sink)
    note = " (JSD: matching heads only)" if metric == "jsd" else ""
    heads = list(range(result.n_heads))
    return plots.heatmap(
        matrix,
        f"{LABELS[metric]} per head, layer {first} vs layer {second}{note}",
        heads,
        heads,
        x_title=f"head of layer {second}",
        y_title=f"head of layer {first}",
        value_name=metric,
    )


def map_pair(result: SimilarityResult, first: int, second: int, head: int | None = None) -> go.Figure:
    """The first text's attention maps of two layers side by side (one head, or the mean over heads)."""
    missing = [layer for layer in (first, second) if layer not in result.maps]
    if missing:
        raise KeyError(f"maps of layers {missing} were not kept: pass keep_maps_for to analyze")
    pick = (lambda maps: maps.mean(0)) if head is None else (lambda maps: maps[head])
    labels = [f"{i}:{t}" for i, t in enumerate(result.tokens)]
    what = "mean over heads" if head is None else f"head {head}"
    figure = make_subplots(
        1, 2, subplot_titles=[f"layer {first}, {what}", f"layer {second}, {what}"], horizontal_spacing=0.12
    )
    for column, layer in enumerate((first, second), start=1):
        figure.add_trace(
            go.Heatmap(
                z=pick(result.maps[layer]),
                x=labels,
                y=labels,
                colorscale="Blues",
                zmin=0,
                zmax=1,
                showscale=column == 2,
                hovertemplate=f"layer {layer}<br>query %{{y}}<br>key %{{x}}<br>attention %{{z:.3f}}<extra></extra>",
            ),
            1,
            column,
        )
        figure.update_yaxes(autorange="reversed", row=1, col=column)
    figure.update_layout(
        title=f"attention probabilities of the first text ({len(labels)} tokens)", height=560, **plots.LAYOUT
    )
    return figure


def adjacent_curves(result: SimilarityResult, metric: str) -> go.Figure:
    """S[ℓ, ℓ+1] for every sink variant, with ±1 std over texts as error bars."""
    figure = go.Figure()
    for sink in result.sinks:
        mean, spread = result.adjacent(metric, sink)
        figure.add_trace(
            go.Scatter(
                x=np.arange(len(mean)),
                y=mean,
                mode="lines+markers",
                name=f"sink {sink}",
                error_y=dict(type="data", array=spread, visible=True),
                hovertemplate="layers %{x} → %{x}+1<br>%{y:.3f}<extra></extra>",
            )
        )
    figure.update_layout(
        title=f"{LABELS[metric]} of each layer ℓ to ℓ+1 (error bars: std over {result.n_texts} texts)",
        xaxis_title="layer ℓ",
        yaxis_title=metric,
        **plots.LAYOUT,
    )
    return figure
