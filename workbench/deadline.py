"""A soft time limit: arms that would end past the deadline are not started, so that a run cut by its time
budget still ends with its tables and verdicts instead of being killed mid-arm and losing them.

The runner sets the deadline (`WORKBENCH_DEADLINE`, unix seconds: the moment the report cells must begin,
i.e. the time limit minus a reserve for them; `benchmarks/gpu_notebooks.py -t`, `python -m workbench run
--time-limit`); the kernel inherits it. An experiment asks `ArmClock.admit` before each arm; its estimate of
an arm is the longest arm of the same kind already finished (the longest of any kind before one has), so
the first arm always starts while there is time left. Without a deadline every arm is admitted and nothing
is timed differently: a run computes the same numbers.

    clock = ArmClock()
    for arm in arms:
        if not clock.admit(arm.name, arm.kind):
            continue
        with clock.timing(arm.kind):
            train(arm)
    clock.announce()   # "time limit: 2 arms not trained: n=12 random#3, n=12 last"
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

from .errors import WorkbenchError

ENV = "WORKBENCH_DEADLINE"
NOT_TRAINED = "not trained within the time limit"  # the "why" of a verdict whose arms or seeds were skipped
REPORT_RESERVE = 0.15  # share of a time limit kept for the cells after the arms (speed rounds, tables, conclusion)


def soft_deadline(seconds: float, reserve: float | None = None, now: float | None = None) -> float:
    """The deadline (unix seconds) for a run that may take `seconds` from `now`: `reserve` seconds (default
    `REPORT_RESERVE` of the limit) are kept for what follows the arms."""
    if seconds <= 0:
        raise WorkbenchError(f"a time limit must be positive seconds, got {seconds:g}")
    reserve = REPORT_RESERVE * seconds if reserve is None else reserve
    return (time.time() if now is None else now) + max(0.0, seconds - reserve)


def from_env() -> float | None:
    """The deadline the runner set (`WORKBENCH_DEADLINE`), or None: no time limit."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        raise WorkbenchError(f"{ENV}={value!r} is not unix seconds: unset it, or set a number") from None


def skipped_line(names: Sequence[str]) -> str:
    """The one line a run prints and its report lists for the arms it did not start."""
    return f"time limit: {len(names)} arm{'s' * (len(names) != 1)} not trained: {', '.join(names)}"


class ArmClock:
    """Which arms still fit before the deadline (`deadline`: unix seconds; default `from_env()`; None: all do).

    `clock` is the time source (tests pass a fake one)."""

    def __init__(self, deadline: float | None = None, clock: Callable[[], float] = time.time):
        self.deadline = from_env() if deadline is None else deadline
        self.clock = clock
        self.durations: dict[str, float] = {}  # kind → longest finished arm of that kind, seconds
        self.skipped: list[str] = []

    def estimate(self, kind: str) -> float:
        """Seconds an arm of `kind` is expected to take: the longest finished one of its kind, else of any."""
        if kind in self.durations:
            return self.durations[kind]
        return max(self.durations.values(), default=0.0)

    def fits(self, kind: str, *later: str) -> bool:
        """Does an arm of `kind`, followed by arms of the kinds `later` (ones a verdict needs, kept time for),
        still end before the deadline?"""
        if self.deadline is None:
            return True
        left = self.deadline - self.clock()
        return left > 0 and self.estimate(kind) + sum(map(self.estimate, later)) <= left

    def admit(self, name: str, kind: str, *later: str) -> bool:
        """`fits`, and record the arm `name` as not trained when it does not."""
        if self.fits(kind, *later):
            return True
        self.skipped.append(name)
        return False

    @contextmanager
    def timing(self, kind: str) -> Iterator[None]:
        """Time one arm of `kind` (its estimate becomes the longest of its kind so far)."""
        start = self.clock()
        yield
        self.durations[kind] = max(self.durations.get(kind, 0.0), self.clock() - start)

    def announce(self) -> list[str]:
        """Print the time-limit line when arms were skipped; returns the skipped names."""
        if self.skipped:
            print(skipped_line(self.skipped), flush=True)
        return list(self.skipped)
