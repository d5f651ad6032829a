"""The core statistics of every report: t quantiles, paired intervals and each outcome on constructed tables."""

import math

import pytest

from workbench import verdicts as v
from workbench.profiles import Profile


@pytest.mark.parametrize(
    "p, df, expected",
    [
        (0.975, 1, 12.7062),
        (0.975, 2, 4.3027),
        (0.975, 4, 2.7764),
        (0.975, 9, 2.2622),
        (0.95, 5, 2.0150),
        (0.995, 3, 5.8409),
    ],
)
def test_t_quantile_matches_the_tables(p, df, expected):
    assert v.t_quantile(p, df) == pytest.approx(expected, abs=1e-4)
    assert v.t_quantile(1 - p, df) == pytest.approx(-expected, abs=1e-4)


def test_paired_interval_removes_what_seeds_share():
    # seeds differ a lot (2.0, 3.0, 4.0) but the method is 0.1 lower on every one: pairing sees it
    baseline, method = [2.0, 3.0, 4.0], [1.9, 2.91, 3.89]
    iv = v.paired(method, baseline)
    assert iv.n == 3 and iv.mean == pytest.approx(-0.1, abs=1e-9)
    assert iv.high < 0  # the unpaired spread (sd 1.0 per arm) would include zero
    sd = math.sqrt(((-0.1 + 0.1) ** 2 + (-0.09 + 0.1) ** 2 + (-0.11 + 0.1) ** 2) / 2)
    assert iv.high - iv.mean == pytest.approx(4.3027 * sd / math.sqrt(3), rel=1e-3)


def test_superiority_held_on_log_perplexity():
    verdict = v.superiority("lower perplexity", [20.0, 30.0, 40.0], [22.0, 33.0, 44.0], epochs=0.5)
    assert verdict.outcome == v.HELD
    assert verdict.effect == pytest.approx(math.log(1 / 1.1), rel=1e-6)  # −0.0953 nats on every seed
    assert verdict.scale == "log-ppl (nats)"
    line = verdict.markdown()
    assert "**held**" in line and "3 seeds" in line and "0.5 epochs" in line and "[" in line


def test_superiority_did_not_hold_when_the_method_is_worse():
    verdict = v.superiority("lower loss", [3.5, 3.6, 3.55], [3.4, 3.5, 3.44], scale="nats")
    assert verdict.outcome == v.NOT_HELD


def test_superiority_straddling_zero_is_underpowered_not_a_verdict():
    verdict = v.superiority("lower loss", [3.40, 3.52, 3.45], [3.45, 3.47, 3.46], scale="nats")
    assert verdict.outcome == v.NOT_TESTABLE and "underpowered" in verdict.detail


def test_superiority_goal_max_and_relative_scale():
    verdict = v.superiority("faster", [130.0, 125.0, 128.0], [100.0, 99.0, 101.0], goal="max", scale="relative")
    assert verdict.outcome == v.HELD and verdict.effect == pytest.approx(0.277, abs=0.01)


def test_one_seed_is_never_judged():
    for verdict in (
        v.superiority("lower", [1.0], [2.0], scale="nats"),
        v.equivalence("no cost", [2.0], [2.0], delta=0.1, scale="nats"),
    ):
        assert verdict.outcome == v.NOT_TESTABLE and verdict.detail == "one seed: not judged"
        assert "**not testable here**" in verdict.markdown()


def test_equivalence_is_never_held():
    tight = v.equivalence("no quality cost", [450.0, 452.0, 449.0], [451.0, 451.5, 450.0], delta=0.02)
    assert tight.outcome == v.NO_DIFFERENCE and "within ±0.02" in tight.detail
    wide = v.equivalence("no quality cost", [440.0, 470.0, 445.0], [451.0, 451.5, 450.0], delta=0.02)
    assert wide.outcome == v.NOT_TESTABLE and "underpowered" in wide.detail
    worse = v.equivalence("no quality cost", [500.0, 505.0, 498.0], [451.0, 451.5, 450.0], delta=0.02)
    assert worse.outcome == v.NOT_HELD
    better = v.equivalence("no quality cost", [400.0, 401.0, 399.0], [451.0, 451.5, 450.0], delta=0.02)
    assert better.outcome == v.NOT_TESTABLE
    assert all(x.outcome != v.HELD for x in (tight, wide, worse, better))
    with pytest.raises(ValueError):
        v.equivalence("no cost", [1.0, 2.0], [1.0, 2.0], delta=0.0)


def test_ratio_judged_by_its_whole_spread():
    fast = v.ratio("x1.3 faster", [130, 135, 132, 129, 133], [100, 100, 100, 100, 100], bar=1.3)
    assert fast.outcome == v.HELD and fast.unit == "round" and "5 rounds" in fast.markdown()
    noisy = v.ratio("x1.3 faster", [70, 200, 135, 110, 160], [100, 100, 100, 100, 100], bar=1.3)
    assert noisy.outcome == v.NOT_TESTABLE and "straddles" in noisy.detail
    slow = v.ratio("x1.3 faster", [101, 104, 99, 102], [100, 100, 100, 100], bar=1.3)
    assert slow.outcome == v.NOT_HELD
    assert v.ratio("x1.3 faster", [200], [100], bar=1.3).outcome == v.NOT_TESTABLE


def test_against_bar_without_a_measurement_is_not_testable():
    verdict = v.against_bar("fast", float("nan"), 1.0, 2.0, bar=1.5, seeds=3)
    assert verdict.outcome == v.NOT_TESTABLE and "not measured" in verdict.detail


def test_against_bar_goal_min():
    assert v.against_bar("under 1 s", 0.8, 0.7, 0.9, bar=1.0, goal="min", seeds=3).outcome == v.HELD
    assert v.against_bar("under 1 s", 1.0, 0.9, 1.1, bar=1.0, goal="min", seeds=3).outcome == v.NOT_TESTABLE


def test_smoke_conclusion_judges_nothing():
    verdicts = [v.superiority("lower", [1.0, 1.1], [2.0, 2.1], scale="nats"), v.not_testable("memory", "by design")]
    for profile in ("smoke", Profile(name="smoke")):
        text = v.conclusion(verdicts, profile=profile, preamble="Pretraining")
        assert text == v.SMOKE_NOTICE
        assert "held" not in text and "did not hold" not in text
    full = v.conclusion(verdicts, profile="full", preamble="Pretraining")
    assert full.startswith("Pretraining") and "**held**" in full and "**not testable here**" in full


def test_unknown_outcome_or_scale_is_an_error():
    with pytest.raises(ValueError):
        v.Verdict("c", "probably", None, None, None, 0, None, "")
    with pytest.raises(ValueError):
        v.superiority("c", [1.0, 2.0], [1.0, 2.0], scale="ppl")
