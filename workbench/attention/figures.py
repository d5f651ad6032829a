"""plotly figures of a `SimilarityResult`, shared by the notebook, its widgets and the dashboard."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import plots
from .analysis import SimilarityResult
from .similarity import NAMES

LABELS = NAMES  # "cosine (mean over heads)", "cosine (head-averaged map)", ...
SCALES = ("clipped", "row-normalised", "absolute")  # colour scales of the attention maps


def token_label(token: str) -> str:
    """A token as it reads on an axis: spaces as ␣, line breaks as ⏎, at most 12 characters."""
    text = token.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥") or "∅"
    return text if len(text) <= 12 else text[:11] + "…"


def shown_maps(maps: np.ndarray, sink: str) -> np.ndarray:
    """Maps [..., T, T] as the similarity saw them: with `sink="dropped"` the first key column is
    removed and every row renormalised over the remaining keys (query 0, left with no key, is zero)."""
    if sink != "dropped":
        return maps
    out = np.array(maps, dtype=np.float64)
    out[..., 0] = 0.0
    total = out.sum(-1, keepdims=True)
    return np.divide(out, total, out=np.zeros_like(out), where=total > 0)


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
    per_head = "cosine" if metric == "cosine_map" else metric  # a head-averaged map has no heads
    matrix = result.head_pair(per_head, first, second, sink)
    note = {
        "jsd": "<br><sup>JSD: matching heads only</sup>",
        "cosine_map": "<br><sup>per-head cosine: the head-averaged map has no heads</sup>",
    }.get(metric, "")
    heads = list(range(result.n_heads))
    figure = plots.heatmap(
        matrix,
        f"{LABELS[per_head].split(' (')[0]} per head pair,<br>layer {first} (rows) vs layer {second} (columns){note}",
        heads,
        heads,
        x_title=f"head of layer {second}",
        y_title=f"head of layer {first}",
        value_name=per_head,
    )
    figure.update_layout(margin={**plots.LAYOUT["margin"], "t": 100}, title_font_size=14)  # two-line title, not cut
    return figure


def map_pair(
    result: SimilarityResult,
    first: int,
    second: int,
    head: int | None = None,
    sink: str = "kept",
    scale: str = "clipped",
) -> go.Figure:
    """The first text's attention maps of two layers side by side (one head, or the mean over heads).

    `sink`: "dropped" shows the maps as the similarity compared them (first key column removed, rows
    renormalised). `scale`: "clipped" = colours saturate at the 99th percentile of the shown values
    (so the sink column does not take the whole scale), "row-normalised" = each query row divided by
    its maximum (where each query looks, whatever its entropy), "absolute" = 0 to 1.
    """
    missing = [layer for layer in (first, second) if layer not in result.maps]
    if missing:
        raise KeyError(f"maps of layers {missing} were not kept: pass keep_maps_for to analyze")
    if scale not in SCALES:
        raise ValueError(f"unknown colour scale {scale!r}: choose from {', '.join(SCALES)}")
    pick = (lambda maps: maps.mean(0)) if head is None else (lambda maps: maps[head])
    shown = {layer: shown_maps(pick(result.maps[layer]), sink) for layer in (first, second)}
    if scale == "row-normalised":
        shown = {k: v / np.maximum(v.max(-1, keepdims=True), 1e-12) for k, v in shown.items()}
    top = float(np.quantile(np.concatenate([v[np.tril_indices_from(v)] for v in shown.values()]), 0.99))
    zmax = top if scale == "clipped" and top > 0 else 1.0
    labels = [token_label(t) for t in result.tokens]
    positions = list(range(len(labels)))
    what = "mean over heads" if head is None else f"head {head}"
    figure = make_subplots(
        1, 2, subplot_titles=[f"layer {first}, {what}", f"layer {second}, {what}"], horizontal_spacing=0.14
    )
    for column, layer in enumerate((first, second), start=1):
        figure.add_trace(
            go.Heatmap(
                z=shown[layer],
                x=positions,
                y=positions,
                customdata=np.array([[(q, k) for k in labels] for q in labels]),
                colorscale="Blues",
                zmin=0,
                zmax=zmax,
                showscale=column == 2,
                hovertemplate=f"layer {layer}<br>query %{{y}} %{{customdata[0]}}<br>key %{{x}} %{{customdata[1]}}"
                "<br>value %{z:.3f}<extra></extra>",
            ),
            1,
            column,
        )
        axis = dict(tickmode="array", tickvals=positions, ticktext=labels, tickfont={"size": 9})
        figure.update_xaxes(**axis, tickangle=-60, row=1, col=column)
        figure.update_yaxes(**axis, autorange="reversed", row=1, col=column)
    note = {"clipped": f"colours clipped at the 99th percentile ({zmax:.3f})",
            "row-normalised": "each query row divided by its maximum", "absolute": "colours 0 to 1"}[scale]  # fmt: skip
    figure.update_layout(
        title=f"attention of the first text ({len(labels)} tokens), sink {sink}<br><sup>{note}</sup>",
        height=640, **{**plots.LAYOUT, "margin": {"l": 90, "r": 20, "t": 90, "b": 90}},
    )  # fmt: skip
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
