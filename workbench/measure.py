"""Timing that means something: CUDA events, warm-up excluded, interleaved rounds, median and spread.

A small model on a GPU is often launch-bound: the host, not the GPU, sets the pace, and two arms of
identical cost can differ by 1.8x from one measurement to the next. So every comparison here times
its contenders in interleaved rounds (A, B, C, A, B, C, ...), after untimed warm-up calls, and
reports the median and the spread (interquartile range) of each: drift of the machine hits every
arm alike, and a ratio comes with the noise it carries. On a GPU, time is read from CUDA events
recorded on the stream (what the GPU spent), on a CPU from `perf_counter`.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Timing:
    """Seconds per call of one contender over the timed rounds."""

    median_s: float
    q1_s: float
    q3_s: float
    rounds: int

    @property
    def spread(self) -> float:
        """Interquartile range relative to the median (0.05 = ±5% noise)."""
        return (self.q3_s - self.q1_s) / self.median_s if self.median_s else float("nan")

    def per_second(self, items: float) -> float:
        """Throughput: `items` (tokens, samples) per second at the median time."""
        return items / self.median_s


def synchronize(device: torch.device | str) -> None:
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_call(fn: Callable[[], object], device: torch.device | str) -> float:
    """Seconds one call of `fn` takes on `device` (GPU time through CUDA events on a GPU)."""
    device = torch.device(device)
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1000
    begin = time.perf_counter()
    fn()
    return time.perf_counter() - begin


def interleaved(
    contenders: dict[str, Callable[[], object]], device: torch.device | str, rounds: int = 5, warmup: int = 1
) -> dict[str, Timing]:
    """Time every contender once per round, rounds interleaved, after `warmup` untimed calls each."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    for fn in contenders.values():
        for _ in range(warmup):
            fn()
    synchronize(device)
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, fn in contenders.items():
            samples[name].append(time_call(fn, device))
    return {name: summarize(times) for name, times in samples.items()}


def summarize(times: list[float]) -> Timing:
    """Median and quartiles of a list of seconds."""
    if len(times) == 1:
        return Timing(times[0], times[0], times[0], 1)
    q1, median, q3 = statistics.quantiles(times, n=4, method="inclusive")
    return Timing(median, q1, q3, len(times))


def ratio(baseline: Timing, contender: Timing) -> tuple[float, float]:
    """Speed-up of `contender` over `baseline` (>1: faster) and its relative spread (both spreads added)."""
    return baseline.median_s / contender.median_s, baseline.spread + contender.spread
