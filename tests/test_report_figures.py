"""Every report's figures, drawn from constructed tables, have axes a reader can use (issue 27, item 2).

A log axis carries its own range (log10 units, spanning its data with little padding) and at most ten ticks
(`plots.log_axis`); a reference line or label on any axis lies inside that axis' range: on a log axis plotly
reads shapes and annotations in log10 units, so a level drawn at its data value lands decades away and
flattens the data (notebooks 03 and 05 did that). The tables come from the reports' own tests, at the scales
the runs produce (smoke perplexities in the thousands, full ones near 15). No model is loaded.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from test_attention_explorer import constructed_result
from test_cards import constructed_cards
from test_cpu_report import gqa, precisions, trained
from test_diffusion_report import guidance_table, reversal_table, sampling_tables, scaling_table
from test_echoatt_experiment import constructed_table
from test_galore_report import _table as galore_table
from test_recursive_report import THRESHOLDS, throughput
from test_recursive_report import table as recursive_table

from workbench import frontier
from workbench.attention import figures as attention
from workbench.cpu import report as cpu
from workbench.diffusion import report as diffusion
from workbench.echoatt import report as echoatt
from workbench.galore import report as galore
from workbench.galore.experiment import GaloreResults
from workbench.recursive import report as recursive

MAX_TICKS = 10
MAX_PAD_DECADES = 0.5  # a log range may exceed its data by this much on each side


def _numbers(values) -> np.ndarray:
    if values is None:
        return np.array([])
    flat = pd.to_numeric(pd.Series(np.asarray(values, dtype=object).ravel()), errors="coerce")
    return flat[np.isfinite(flat.astype(float))].to_numpy(float)


def _axes(figure: go.Figure) -> dict[str, dict]:
    """Layout key ("xaxis2") → the axis' set properties, for every axis a trace draws on or the layout names."""
    layout = figure.to_plotly_json()["layout"]
    names = {key: layout[key] for key in layout if re.fullmatch(r"[xy]axis\d*", key)}
    for trace in figure.data:
        for letter in "xy":
            ref = getattr(trace, f"{letter}axis", None) or letter
            names.setdefault(f"{letter}axis{ref[1:]}", {})
    return names


def _ref(key: str) -> str:
    """Layout key → the reference a trace, shape or annotation uses ("xaxis2" → "x2")."""
    return key[0] + key[5:]


def _data(figure: go.Figure, key: str) -> np.ndarray:
    letter, ref = key[0], _ref(key)
    values = [
        _numbers(getattr(trace, letter, None))
        for trace in figure.data
        if (getattr(trace, f"{letter}axis", None) or letter) == ref and not isinstance(trace, go.Heatmap)
    ]
    return np.concatenate(values) if values else np.array([])


def _placed(figure: go.Figure, key: str) -> list[tuple[str, float]]:
    """(what, coordinate) of every shape end and annotation placed in this axis' data coordinates."""
    letter, ref = key[0], _ref(key)
    placed = []
    for shape in figure.layout.shapes:
        if getattr(shape, f"{letter}ref") == ref:
            placed += [(f"shape {shape.type}", float(getattr(shape, f"{letter}{end}"))) for end in "01"]
    for note in figure.layout.annotations:
        if getattr(note, f"{letter}ref") == ref and getattr(note, letter) is not None:
            placed.append((f"annotation {note.text!r}", float(getattr(note, letter))))
    return placed


def check_axes(figure: go.Figure, name: str) -> None:
    """Fail with the figure's and axis' names when an axis would not read."""
    for key, axis in _axes(figure).items():
        data = _data(figure, key)
        where = f"{name}: {key}"
        if axis.get("type") == "log":
            positive = data[data > 0]
            assert positive.size, f"{where} is a log axis with no positive data"
            unset = [part for part in ("range", "tickvals") if part not in axis]
            assert not unset, f"{where}: a log axis without {unset} (see plots.log_axis)"
            low, high = axis["range"]
            first, last = np.log10(positive.min()), np.log10(positive.max())
            assert low <= first and last <= high, f"{where}: range {low:.2f}..{high:.2f} (log10) misses the data"
            assert first - low <= MAX_PAD_DECADES and high - last <= MAX_PAD_DECADES, f"{where}: range {axis['range']}"
            ticks = list(axis["tickvals"])
            assert 1 <= len(ticks) <= MAX_TICKS, f"{where}: {len(ticks)} ticks"
            assert all(10**low <= t <= 10**high for t in ticks), f"{where}: ticks {ticks} outside the range"
        else:
            low, high = axis.get("range") or (None, None)
        for what, at in _placed(figure, key):
            if low is None:  # an autoranged linear axis: a level far outside the data would squash it
                span = max(np.ptp(data), abs(data).max(), 1e-9) if data.size else 1.0
                low_, high_ = (data.min() - span, data.max() + span) if data.size else (-np.inf, np.inf)
                assert low_ <= at <= high_, f"{where}: {what} at {at} far outside the data {data.min()}..{data.max()}"
            else:
                assert low <= at <= high, f"{where}: {what} at {at} outside the range {low:.3g}..{high:.3g}"


def _galore_results() -> GaloreResults:
    table = galore_table()
    curves = pd.DataFrame(
        [dict(part=r.part, label=r.label, method=r.method, seed=r.seed, step=step, val_loss=r.val_loss + 1 / step,
              time_s=step * 0.01) for r in table.itertuples() for step in (50, 100, 150)]
    )  # fmt: skip
    timing = pd.DataFrame(
        [dict(part=p, method=m, step_ms=1.0, spread=0.1, amortised_ms=1.5, refresh_ms=100.0)
         for p in ("pretrain", "finetune") for m in ("AdamW", "GaLore", "Natural GaLore")]
    )  # fmt: skip
    return GaloreResults(table, curves, timing, None, "not installed", "galore-test")


def _recursive(scale: float) -> pd.DataFrame:
    frame = recursive_table()
    return frame.assign(ppl=frame["ppl"] * scale)


def _echoatt(student_ppl: float) -> pd.DataFrame:
    table = constructed_table(-4.0, 1.1, 1.2, student_ppl, n6_ppl=student_ppl * 0.9)
    fused = "sdpa (unshared layers) + sdpa on the head's Q, K (sharing groups)"
    return table.assign(kernel=np.where(table["kind"] == "teacher", "sdpa", fused))


def _smoke_sampling() -> tuple[pd.DataFrame, pd.DataFrame]:
    """A smoke run's judge perplexities: random models, thousands to millions."""
    quality, speed = sampling_tables(4.0, 600.0)
    return quality.assign(judge_ppl=quality["judge_ppl"] * 5000), speed


FIGURES = {
    "cpu.speed_figure": lambda: cpu.speed_figure(precisions()),
    "cpu.tradeoff_figure": lambda: cpu.tradeoff_figure(precisions()),
    "cpu.gqa_figure": lambda: cpu.gqa_figure(gqa()),
    "cpu.training_figure": lambda: cpu.training_figure(trained()),
    "echoatt.perplexity_figure full": lambda: echoatt.perplexity_figure(_echoatt(15.9)),
    "echoatt.perplexity_figure smoke": lambda: echoatt.perplexity_figure(_echoatt(4000.0)),
    "echoatt.speed_figure": lambda: echoatt.speed_figure(_echoatt(15.9)),
    "galore.loss_curves": lambda: galore.loss_curves(_galore_results()),
    "galore.loss_curves time": lambda: galore.loss_curves(_galore_results(), x="time_s"),
    "galore.loss_vs_memory": lambda: galore.loss_vs_memory(_galore_results()),
    "galore.cost_bars": lambda: galore.cost_bars(_galore_results()),
    "recursive.params_figure full": lambda: recursive.params_figure(_recursive(1.0)),
    "recursive.params_figure smoke": lambda: recursive.params_figure(_recursive(12.0)),
    "recursive.rank_figure full": lambda: recursive.rank_figure(_recursive(1.0)),
    "recursive.rank_figure smoke": lambda: recursive.rank_figure(_recursive(12.0)),  # levels near 230, as in 03
    "recursive.exit_figure": lambda: recursive.exit_figure(THRESHOLDS),
    "recursive.throughput_figure": lambda: recursive.throughput_figure(throughput(1.8, 1.2)),
    "diffusion.scaling_figure": lambda: diffusion.scaling_figure(scaling_table(0.3)),
    "diffusion.quality_figure full": lambda: diffusion.quality_figure(sampling_tables(4.0, 600.0)[0]),
    "diffusion.quality_figure smoke": lambda: diffusion.quality_figure(_smoke_sampling()[0]),
    "diffusion.speed_quality_figure": lambda: diffusion.speed_quality_figure(*sampling_tables(4.0, 600.0)),
    "diffusion.speed_quality_figure smoke": lambda: diffusion.speed_quality_figure(*_smoke_sampling()),
    "diffusion.guidance_accuracy_figure": lambda: diffusion.guidance_accuracy_figure(guidance_table(0.05)),
    "diffusion.guidance_figure": lambda: diffusion.guidance_figure(guidance_table(0.05)),
    "diffusion.reversal_figure": lambda: diffusion.reversal_figure(reversal_table(0.9, 0.3)),
    "attention.similarity_heatmap": lambda: attention.similarity_heatmap(
        constructed_result(), "cosine", "dropped", [[2, 3, 4]]
    ),
    "attention.head_pair_heatmap": lambda: attention.head_pair_heatmap(constructed_result(), "cosine", "dropped", 2, 3),
    "attention.map_pair": lambda: attention.map_pair(constructed_result(), 1, 2),
    "attention.adjacent_curves": lambda: attention.adjacent_curves(constructed_result(), "cosine"),
    "frontier.frontier_figure params": lambda: frontier.frontier_figure(constructed_cards()),
    "frontier.frontier_figure latency": lambda: frontier.frontier_figure(constructed_cards(), "decode_latency_ms"),
}


@pytest.mark.parametrize("name", FIGURES)
def test_every_report_figure_has_readable_axes(name):
    figure = FIGURES[name]()
    assert figure.data, f"{name} drew nothing"
    check_axes(figure, name)


def test_the_check_catches_a_level_at_its_data_value_on_a_log_axis():
    """The bug of notebooks 03 and 05: a line at y = 230 on a log axis sits at 10^230."""
    figure = go.Figure(go.Scatter(x=[1, 2], y=[200.0, 260.0]))
    figure.update_yaxes(type="log", range=[2.2, 2.5], tickvals=[200, 250])
    figure.add_hline(y=230.36)
    with pytest.raises(AssertionError, match="outside the range"):
        check_axes(figure, "constructed")
    figure.update_yaxes(type="log", range=None)
    with pytest.raises(AssertionError, match="a log axis without"):
        check_axes(figure, "constructed")


def test_live_curves_keep_readable_axes_as_points_arrive():
    live = diffusion.LiveCurves(("s", "l"))
    for step, (flops, value) in enumerate([(1e12, 9.0), (1e13, 6.0), (1e14, 4.5), (1e16, 3.9)]):
        live("ARM s C=1e16", flops, value)
        live("MDM l C=1e16", flops * 1.5, value + 0.3 * step)
    check_axes(live.figure, "diffusion.LiveCurves")
    for name, live in (("recursive.LiveCurves", recursive.LiveCurves()), ("echoatt.LiveCurves", echoatt.LiveCurves())):
        for step, value in enumerate([7e6, 3e4, 900.0, 40.0, 7.0]):  # a random model's perplexity falling
            live("n=12 similarity", step, {"val_ppl": value})
        check_axes(live.figure, name)
