"""Timing that means something: CUDA events, warm-up excluded, interleaved rounds, median and spread.

A small model on a GPU is often launch-bound: the host, not the GPU, sets the pace, and two arms of
identical cost can differ by 1.8x from one measurement to the next. So every comparison here times
its contenders in interleaved rounds (A, B, C, A, B, C, ...), after untimed warm-up calls, and
reports the median and the spread (interquartile range) of each: drift of the machine hits every
arm alike, and a ratio comes with the noise it carries. On a GPU, time is read from CUDA events
recorded on the stream (what the GPU spent), on a CPU from `perf_counter`.

The one speed measure of a model (`model_speeds`, used by every idea's speed table and every model
card) is built on these rounds: prefill throughput at a fixed shape (32 × 1024 tokens), and decode
throughput at batch 1 and 32, as the difference of two timed calls: prefill alone, and prefill +
n greedy tokens through the KV cache (`PhaseSpeed`). Timing the difference keeps the prompt's cost
out of the decode number without instrumenting the sample loop.
"""

from __future__ import annotations

import inspect
import math
import statistics
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from .generate import SampleConfig, cache_keyword, sample


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


@dataclass(frozen=True)
class PhaseSpeed:
    """Prefill and decode throughput of one contender at one batch size and prompt length.

    `generate` is None for a prefill-only measurement (the prefill throughput shape)."""

    prefill: Timing  # one forward over the prompt
    generate: Timing | None  # prefill + `new_tokens` tokens
    batch: int
    prompt_len: int
    new_tokens: int = 0

    @property
    def decode_s(self) -> float:
        """Seconds of the n − 1 decode forwards (the first new token comes from the prefill's logits); NaN
        when not timed, or when noise left generate no slower than prefill (nothing measured, not ∞ tok/s)."""
        if self.generate is None or self.generate.median_s <= self.prefill.median_s:
            return math.nan
        return self.generate.median_s - self.prefill.median_s

    @property
    def decode_tok_s(self) -> float:
        return self.batch * (self.new_tokens - 1) / self.decode_s

    @property
    def decode_spread(self) -> float:
        """Interquartile ranges of both timings relative to the decode time (a difference adds both noises)."""
        if self.generate is None:
            return math.nan
        iqr = (self.generate.q3_s - self.generate.q1_s) + (self.prefill.q3_s - self.prefill.q1_s)
        return iqr / self.decode_s

    @property
    def prefill_tok_s(self) -> float:
        return self.prefill.per_second(self.batch * self.prompt_len)

    def as_row(self) -> dict[str, float]:
        row = {"prefill_tok_s": self.prefill_tok_s, "prefill_spread": self.prefill.spread,
               "rounds": self.prefill.rounds}  # fmt: skip
        if self.generate is not None:
            row |= {
                "decode_tok_s": self.decode_tok_s,
                "decode_spread": self.decode_spread,
                "generate_tok_s": self.generate.per_second(self.batch * self.new_tokens),
            }
        return row


@dataclass(frozen=True)
class PhaseCalls:
    """The timed calls of one contender: prefill, and (None: not timed) prefill + `new_tokens` tokens."""

    prefill: Callable[[], object]
    generate: Callable[[], object] | None
    batch: int
    prompt_len: int
    new_tokens: int = 0


def phase_calls(model: nn.Module, prompt: torch.Tensor, new_tokens: int = 0) -> PhaseCalls:
    """The calls of a causal LM: prefill filling the KV cache (logits of the last position only, as
    `generate.sample` prefills), and, if `new_tokens`, prefill + that many greedy tokens (no EOS stop)."""

    def prefill() -> object:
        with torch.no_grad():
            return model(input_ids=prompt, use_cache=True, logits_to_keep=1)

    generate = None
    if new_tokens:
        config = SampleConfig(max_new_tokens=new_tokens)

        def generate() -> object:
            return sample(model, prompt, config)

    return PhaseCalls(prefill, generate, prompt.shape[0], prompt.shape[1], new_tokens)


def time_phases(
    contenders: dict[Hashable, PhaseCalls], device: torch.device | str, rounds: int = 5, warmup: int = 1
) -> dict[Hashable, PhaseSpeed]:
    """Every contender's calls timed in the SAME interleaved rounds (drift hits all alike)."""
    calls: dict[str, Callable[[], object]] = {}
    for index, phases in enumerate(contenders.values()):
        calls[f"{index}|prefill"] = phases.prefill
        if phases.generate is not None:
            calls[f"{index}|generate"] = phases.generate
    timings = interleaved(calls, device, rounds=rounds, warmup=warmup)
    return {
        key: PhaseSpeed(timings[f"{i}|prefill"], timings.get(f"{i}|generate"), p.batch, p.prompt_len, p.new_tokens)
        for i, (key, p) in enumerate(contenders.items())
    }


@dataclass(frozen=True)
class SpeedShapes:
    """The shapes of the one speed measure: prefill `prefill_batch` × `prefill_len` tokens; decode
    `new_tokens` tokens after a `decode_prompt`-token prompt at each batch of `decode_batches`."""

    prefill_batch: int = 32
    prefill_len: int = 1024
    decode_batches: tuple[int, ...] = (1, 32)
    decode_prompt: int = 16
    new_tokens: int = 32
    rounds: int = 5
    warmup: int = 1

    def __post_init__(self) -> None:
        if self.new_tokens < 2:
            raise ValueError(f"new_tokens must be >= 2 (decode is generate minus prefill), got {self.new_tokens}")


class Engine(Protocol):
    """A model outside torch (llama.cpp) timed by the same measure, in the same rounds as the torch models: its
    calls at a shape, or None for a shape it cannot run (a batch > 1 of one-sequence engine): NaN there, not 0."""

    vocab_size: int

    def phase_calls(self, prompt: torch.Tensor, new_tokens: int) -> PhaseCalls | None: ...


def _calls(model: nn.Module | Engine, prompt: torch.Tensor, new_tokens: int = 0) -> PhaseCalls | None:
    if isinstance(model, nn.Module):
        return phase_calls(model, prompt, new_tokens)
    return model.phase_calls(prompt, new_tokens)


def has_kv_cache(model: nn.Module) -> bool:
    """Whether `model`'s forward takes a KV cache (decode then runs one token per step)."""
    return cache_keyword(model) in inspect.signature(model.forward).parameters


def model_speeds(
    models: dict[str, nn.Module | Engine],
    shapes: SpeedShapes = SpeedShapes(),
    device: torch.device | str | None = None,
) -> dict[str, dict[str, float]]:
    """Name → {prefill_tok_s, prefill_spread, decode_b{B}_tok_s, decode_b{B}_spread for each decode batch}.

    The one speed measure: every model in the same interleaved rounds (CUDA events on a GPU,
    `perf_counter` on a CPU), inputs random tokens (speed does not depend on their values), each model
    run as given (its dtype is its precision). A model without a KV cache (a masked diffusion model) gets
    prefill only: its decode keys are NaN, not a number of another kind.
    An `Engine` (llama.cpp) runs through its own calls in the same rounds; a shape it cannot run is NaN.
    """
    first = next((m for m in models.values() if isinstance(m, nn.Module)), None)
    device = torch.device(device or (next(first.parameters()).device if first is not None else "cpu"))
    generator = torch.Generator().manual_seed(0)
    contenders: dict[tuple[str, int], PhaseCalls] = {}
    for name, model in models.items():
        vocab = model.config.vocab_size if isinstance(model, nn.Module) else model.vocab_size
        prompt = torch.randint(vocab, (shapes.prefill_batch, shapes.prefill_len), generator=generator).to(device)
        if (calls := _calls(model, prompt)) is not None:
            contenders[(name, 0)] = calls
        if not isinstance(model, nn.Module) or has_kv_cache(model):
            for batch in shapes.decode_batches:
                start = torch.randint(vocab, (batch, shapes.decode_prompt), generator=generator).to(device)
                if (calls := _calls(model, start, shapes.new_tokens)) is not None:
                    contenders[(name, batch)] = calls
    speeds = time_phases(contenders, device, shapes.rounds, shapes.warmup)
    rows: dict[str, dict[str, float]] = {}
    for name in models:
        prefill = speeds.get((name, 0))
        row = {"prefill_tok_s": prefill.prefill_tok_s if prefill else math.nan,
               "prefill_spread": prefill.prefill.spread if prefill else math.nan}  # fmt: skip
        for batch in shapes.decode_batches:
            decode = speeds.get((name, batch))
            row[f"decode_b{batch}_tok_s"] = decode.decode_tok_s if decode else math.nan
            row[f"decode_b{batch}_spread"] = decode.decode_spread if decode else math.nan
        rows[name] = row
    return rows


def model_speed(
    model: nn.Module, shapes: SpeedShapes = SpeedShapes(), device: torch.device | str | None = None
) -> dict[str, float]:
    """`model_speeds` of one model."""
    return model_speeds({"model": model}, shapes, device)["model"]
