"""The one place where a measured table becomes a verdict on a paper's claim.

Every idea's report judges its claims here, so that all of them speak the same four outcomes and
none says more than its numbers allow:

- *held* / *did not hold*: the whole confidence interval of the effect lies on one side;
- *no difference detected (within ±delta)*: an equivalence claim ("costs no quality") whose interval
  lies inside ±delta. An equivalence claim is never "held": no difference is an absence of evidence;
- *not testable here (why)*: one seed, or an interval too wide to decide (underpowered), or a protocol
  the run cannot follow.

Effects are paired differences over seeds (method_i − baseline_i: arms of one seed share initial
weights and batches, so pairing removes what they share) with a Student t interval, on the scale where
noise is comparable across arms: differences of log-perplexity (nats) rather than of perplexity, or
relative differences. Ratios from interleaved timing rounds are judged against a bar only when their
whole spread clears it. A smoke run checks the code path and judges nothing (`conclusion`).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .deadline import NOT_TRAINED, skipped_line

HELD = "held"
NOT_HELD = "did not hold"
NO_DIFFERENCE = "no difference detected"
NOT_TESTABLE = "not testable here"
OUTCOMES = (HELD, NOT_HELD, NO_DIFFERENCE, NOT_TESTABLE)
TOO_FEW = "not judged"  # the detail of a claim with fewer seeds than its test needs

SMOKE_NOTICE = (
    "**Smoke run: no verdicts.** A smoke run trains tiny models for a few steps to check that the code "
    "path runs end to end; its numbers judge none of the paper's claims. Run the `full` profile for verdicts."
)

SCALES = {
    "log": "log-ppl (nats)",  # values are perplexities (or any positive quantity): differences of ln
    "nats": "nats",  # values are already logs (losses in nats)
    "relative": "relative",  # positive values: exp(mean ln-ratio) − 1, e.g. −0.04 = 4% lower
    "linear": "absolute",  # differences of the values as they are (accuracies, ...)
}


@dataclass(frozen=True)
class Interval:
    """Mean of paired differences with its two-sided t confidence interval over `n` pairs."""

    mean: float
    low: float
    high: float
    n: int


@dataclass(frozen=True)
class Verdict:
    """One claim judged: outcome, effect (method − baseline on `scale`) and its interval, seeds, epochs."""

    claim: str
    outcome: str
    effect: float | None
    low: float | None
    high: float | None
    seeds: int
    epochs: float | None
    scale: str
    detail: str = ""
    unit: str = "seed"  # what `seeds` counts: "seed", or "round" for interleaved timing rounds

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {self.outcome!r}: use one of {OUTCOMES}")

    def markdown(self) -> str:
        """One line: claim, outcome in bold, effect [low, high] on its scale, seeds, epochs, why."""
        parts = []
        if self.effect is not None:
            interval = f" [{self.low:+.4g}, {self.high:+.4g}]" if self.low is not None and self.high is not None else ""
            parts.append(f"effect {self.effect:+.4g}{interval} ({self.scale})")
        parts.append(f"{self.seeds} {self.unit}{'s' if self.seeds != 1 else ''}")
        if self.epochs is not None:
            parts.append(f"{self.epochs:.3g} epochs")
        if self.detail:
            parts.append(self.detail)
        return f"- *{self.claim}*: **{self.outcome}** — " + "; ".join(parts)


# -- Student t quantile (no scipy in the environment) --------------------------------------------
def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz)."""
    tiny, c, d = 1e-300, 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-14:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def t_cdf(t: float, df: float) -> float:
    """P(T <= t) for Student's t with `df` degrees of freedom."""
    tail = 0.5 * _betainc(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t > 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (bisection on `t_cdf`; 12.706 for p=0.975, df=1)."""
    if not 0 < p < 1:
        raise ValueError(f"p must lie in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    low, high = 0.0, 1.0
    while t_cdf(high, df) < p:
        low, high = high, 2 * high
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if t_cdf(mid, df) < p else (low, mid)
        if high - low < 1e-12 * max(1.0, high):
            break
    return (low + high) / 2


# -- paired differences --------------------------------------------------------------------------
def _transform(values: Sequence[float], scale: str) -> list[float]:
    if scale not in SCALES:
        raise ValueError(f"unknown scale {scale!r}: use one of {', '.join(SCALES)}")
    values = [float(v) for v in values]
    if scale in ("log", "relative"):
        if any(v <= 0 for v in values):
            raise ValueError(f"scale {scale!r} needs positive values, got {values}")
        return [math.log(v) for v in values]
    return values


def _back(x: float, scale: str) -> float:
    return math.expm1(x) if scale == "relative" else x


def paired(method: Sequence[float], baseline: Sequence[float], confidence: float = 0.95) -> Interval:
    """t interval of the mean of method_i − baseline_i (pairs share a seed); a point with one pair."""
    if len(method) != len(baseline):
        raise ValueError(f"paired values need the same number of seeds, got {len(method)} and {len(baseline)}")
    if not method:
        raise ValueError("no paired values")
    diffs = [float(m) - float(b) for m, b in zip(method, baseline)]
    mean, n = statistics.fmean(diffs), len(diffs)
    if n < 2:
        return Interval(mean, math.nan, math.nan, n)
    half = t_quantile(0.5 + confidence / 2, n - 1) * statistics.stdev(diffs) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


def _effect(method, baseline, scale: str, confidence: float) -> Interval:
    raw = paired(_transform(method, scale), _transform(baseline, scale), confidence)
    return Interval(_back(raw.mean, scale), _back(raw.low, scale), _back(raw.high, scale), raw.n)


def _too_few(claim: str, n: int, min_seeds: int, epochs: float | None, scale: str, effect: float | None) -> Verdict:
    why = f"one seed: {TOO_FEW}" if n == 1 else f"{n} seeds: {TOO_FEW} (at least {min_seeds} needed)"
    return Verdict(claim, NOT_TESTABLE, effect, None, None, n, epochs, SCALES[scale], why)


def superiority(
    claim: str,
    method: Sequence[float],
    baseline: Sequence[float],
    *,
    goal: str = "min",
    scale: str = "log",
    delta: float = 0.0,
    epochs: float | None = None,
    min_seeds: int = 2,
    confidence: float = 0.95,
) -> Verdict:
    """ "method is better than baseline (by more than delta)": held only when the whole interval shows a gain
    above delta; did not hold when it excludes such a gain (method worse, or any gain below delta);
    no difference detected when the interval lies within ±delta; otherwise underpowered."""
    sign = _sign(goal)
    n = len(method)
    iv = _effect(method, baseline, scale, confidence)
    if n < min_seeds:
        return _too_few(claim, n, min_seeds, epochs, scale, iv.mean)
    gain_low, gain_high = sorted((sign * iv.low, sign * iv.high))  # gain > 0: method better
    band = f"delta {delta:g}" if delta else "no margin"
    if gain_low > delta:
        outcome, why = HELD, f"the whole interval is a gain ({band})"
    elif gain_high < 0:
        outcome, why = NOT_HELD, "the whole interval is a loss"
    elif delta > 0 and -delta < gain_low and gain_high < delta:
        outcome, why = NO_DIFFERENCE, f"interval within ±{delta:g}"
    elif gain_high <= delta:
        outcome, why = NOT_HELD, f"any gain is below delta {delta:g}"
    else:
        outcome, why = NOT_TESTABLE, f"underpowered: the interval includes both no gain and a gain above {delta:g}"
    return Verdict(claim, outcome, iv.mean, iv.low, iv.high, n, epochs, SCALES[scale], why)


def equivalence(
    claim: str,
    method: Sequence[float],
    baseline: Sequence[float],
    *,
    delta: float,
    goal: str = "min",
    scale: str = "log",
    epochs: float | None = None,
    min_seeds: int = 2,
    confidence: float = 0.95,
) -> Verdict:
    """ "method costs no quality": never held. No difference detected when the interval lies within ±delta;
    did not hold when the whole interval is a loss beyond delta; otherwise underpowered (wider than delta)."""
    if delta <= 0:
        raise ValueError(f"an equivalence test needs a margin delta > 0, got {delta}")
    sign = _sign(goal)
    n = len(method)
    iv = _effect(method, baseline, scale, confidence)
    if n < min_seeds:
        return _too_few(claim, n, min_seeds, epochs, scale, iv.mean)
    loss_low, loss_high = sorted((-sign * iv.low, -sign * iv.high))  # loss > 0: method worse
    if -delta < loss_low and loss_high < delta:
        outcome, why = NO_DIFFERENCE, f"interval within ±{delta:g}"
    elif loss_low > delta:
        outcome, why = NOT_HELD, f"the whole interval is a loss above delta {delta:g}"
    elif loss_high < -delta:
        outcome, why = (
            NOT_TESTABLE,
            f"the method is better by more than {delta:g}: judge it as a gain, not an equivalence",
        )
    else:
        outcome, why = NOT_TESTABLE, f"underpowered: the interval reaches beyond ±{delta:g}"
    return Verdict(claim, outcome, iv.mean, iv.low, iv.high, n, epochs, SCALES[scale], why)


def _sign(goal: str) -> int:
    if goal not in ("min", "max"):
        raise ValueError(f"goal must be 'min' or 'max', got {goal!r}")
    return -1 if goal == "min" else 1


# -- a value against a bar -----------------------------------------------------------------------
def against_bar(
    claim: str,
    center: float,
    low: float,
    high: float,
    *,
    bar: float,
    goal: str = "max",
    seeds: int,
    scale: str = "ratio",
    epochs: float | None = None,
    detail: str = "",
    unit: str = "seed",
) -> Verdict:
    """A measured value with its spread [low, high] against the paper's bar: held when the whole spread
    clears it, did not hold when the whole spread misses it, not testable when the spread straddles it."""
    sign = _sign(goal)
    if any(math.isnan(float(v)) for v in (center, low, high)):
        why = "; ".join(filter(None, ["not measured (NaN)", detail]))
        return Verdict(claim, NOT_TESTABLE, None, None, None, seeds, epochs, scale, why, unit)
    low, high = sorted((low, high))
    clears = [sign * (v - bar) >= 0 for v in (low, high)]
    if all(clears):
        outcome, why = HELD, f"the whole range clears the bar {bar:g}"
    elif not any(clears):
        outcome, why = NOT_HELD, f"the whole range misses the bar {bar:g}"
    else:
        outcome, why = NOT_TESTABLE, f"the range straddles the bar {bar:g}"
    return Verdict(
        claim, outcome, center, low, high, seeds, epochs, scale, "; ".join(filter(None, [why, detail])), unit
    )


def ratio(
    claim: str,
    numerator: Sequence[float],
    denominator: Sequence[float],
    *,
    bar: float,
    goal: str = "max",
    scale: str = "ratio",
    min_rounds: int = 2,
    detail: str = "",
    unit: str = "round",
) -> Verdict:
    """Ratios of interleaved rounds (numerator_i / denominator_i, e.g. tok/s of two models timed in
    round i) judged against `bar` by their median and interquartile range (robust to a stalled round)."""
    if len(numerator) != len(denominator) or not numerator:
        raise ValueError(f"ratio needs rounds of equal, non-zero length, got {len(numerator)} and {len(denominator)}")
    ratios = sorted(float(a) / float(b) for a, b in zip(numerator, denominator))
    median = statistics.median(ratios)
    if len(ratios) < min_rounds:
        return Verdict(
            claim, NOT_TESTABLE, median, None, None, len(ratios), None, scale, "one round: not judged", "round"
        )
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    spread = f"median and interquartile range of {len(ratios)} {unit}s"
    detail = "; ".join(filter(None, [spread, detail]))
    return against_bar(
        claim, median, q1, q3, bar=bar, goal=goal, seeds=len(ratios), scale=scale, detail=detail, unit=unit
    )


def not_testable(claim: str, why: str, *, seeds: int = 0, epochs: float | None = None) -> Verdict:
    """A claim this run cannot judge, and why (protocol, model size, design)."""
    return Verdict(claim, NOT_TESTABLE, None, None, None, seeds, epochs, "", why)


def untrained(claim: str, *, seeds: int = 0, epochs: float | None = None) -> Verdict:
    """A claim whose arms or seeds were not trained within the time limit (`workbench.deadline`)."""
    return not_testable(claim, NOT_TRAINED, seeds=seeds, epochs=epochs)


def time_limited(found: Sequence[Verdict]) -> list[Verdict]:
    """For a run that planned several seeds and whose time limit cut some: a claim left with too few seeds to
    judge says so (`untrained`) instead of blaming the design."""
    return [
        untrained(v.claim, seeds=v.seeds, epochs=v.epochs) if v.outcome == NOT_TESTABLE and TOO_FEW in v.detail else v
        for v in found
    ]


def conclusion(
    verdicts: Sequence[Verdict], *, profile: Any, preamble: str = "", not_trained: Sequence[str] = ()
) -> str:
    """Markdown of the verdicts, one line each; a smoke profile (its name, or a Profile named "smoke")
    returns only the notice that a smoke run checks the code path and judges nothing. `not_trained`: the
    arms a time limit left out (`workbench.deadline`), listed last, smoke or not."""
    skipped = [f"**{skipped_line(not_trained)}** (not testable here: {NOT_TRAINED})"] if not_trained else []
    if getattr(profile, "name", profile) == "smoke":
        return "\n\n".join([SMOKE_NOTICE, *skipped])
    lines = [preamble, ""] if preamble else []
    return "\n".join([*lines, *(v.markdown() for v in verdicts), *([""] + skipped if skipped else [])])
