"""Log axes that read: a sane number of ticks over any span, and reference lines where their data value is.

plotly reads a log axis' range, shapes and annotations in log10 units; a level drawn at y=230 on a log axis
lands at 10^230 and flattens the data into a line (issue seen in notebooks 03 and 05).
"""

import numpy as np
import pandas as pd
import pytest

from workbench import plots


@pytest.mark.parametrize(
    "low, high", [(13.2, 16.9), (7.0, 7e6), (0.5, 3.0), (1e-3, 1e6), (230.0, 240.0), (3.5, 4.1)]
)
def test_log_ticks_stay_few_and_inside(low, high):
    ticks = plots.log_ticks(low, high)
    assert 3 <= len(ticks) <= 9
    assert all(low <= t <= high for t in ticks)
    assert ticks == sorted(ticks)


def test_a_short_span_gets_mantissa_ticks_not_bare_decades():
    assert plots.log_ticks(12.0, 40.0) == [15.0, 20.0, 30.0]


def test_a_narrow_span_gets_round_ticks_not_one_label():
    assert plots.log_ticks(7.58, 14.4) == [8.0, 10.0, 12.0, 14.0]  # the 1-1.5-2-3-5-7 set holds only 10 here
    assert plots.log_ticks(8.77e7, 1.22e8) == [9e7, 1e8, 1.1e8, 1.2e8]


def test_log_axis_range_is_in_log10_units_and_ignores_non_finite():
    axis = plots.log_axis([20.0, 200.0, float("nan"), float("inf"), -1.0])
    low, high = axis["range"]
    assert low < np.log10(20.0) < np.log10(200.0) < high
    assert high - low < 1.2  # one decade and a little padding, not 230 decades
    assert axis["ticktext"] == [f"{t:g}" for t in axis["tickvals"]]


def test_a_level_on_a_log_axis_sits_at_its_value():
    figure = plots.curves(pd.DataFrame({"step": [0, 1, 2], "ppl": [300.0, 250.0, 230.0]}), "step", "ppl", log_y=True)
    plots.add_level(figure, 230.36, "reference", log_y=True)
    shape, annotation = figure.layout.shapes[0], figure.layout.annotations[0]
    low, high = figure.layout.yaxis.range
    assert shape.y0 == pytest.approx(np.log10(230.36)) and low <= shape.y0 <= high
    assert annotation.y == pytest.approx(np.log10(230.36))


def test_live_curves_retick_as_the_span_grows():
    class Perplexity(plots.LiveCurves):
        metric, log_y = "ppl", True

    live = Perplexity()
    for step, value in enumerate([7e6, 3e4, 900.0, 40.0, 7.0]):
        live("arm", step, {"ppl": value})
    axis = live.figure.layout.yaxis
    assert 3 <= len(axis.tickvals) <= 9
    assert axis.range[0] < np.log10(7.0) and axis.range[1] > np.log10(7e6)
