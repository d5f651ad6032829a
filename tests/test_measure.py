"""Timing: interleaved rounds rank contenders by what they cost, and the summaries are right."""

import time

import pytest

from workbench.measure import Timing, interleaved, ratio, summarize


def test_interleaved_times_rank_and_ratio_the_contenders():
    calls = {"slow": 0, "fast": 0}

    def sleeper(name: str, seconds: float):
        def fn():
            calls[name] += 1
            time.sleep(seconds)

        return fn

    timings = interleaved({"slow": sleeper("slow", 0.04), "fast": sleeper("fast", 0.01)}, "cpu", rounds=3, warmup=2)
    assert calls == {"slow": 5, "fast": 5}  # warm-up calls happen, and are not timed
    assert timings["slow"].rounds == 3 and timings["slow"].median_s >= 0.04 and timings["fast"].median_s >= 0.01
    speedup, _ = ratio(timings["slow"], timings["fast"])
    assert 2.0 < speedup < 4.5  # 4x in sleep; a busy machine adds the same overshoot to both
    assert timings["fast"].per_second(100) == pytest.approx(100 / timings["fast"].median_s)


def test_summary_is_median_and_quartiles():
    timing = summarize([4.0, 1.0, 3.0, 2.0, 5.0])
    assert timing == Timing(median_s=3.0, q1_s=2.0, q3_s=4.0, rounds=5)
    assert timing.spread == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        interleaved({"a": lambda: None}, "cpu", rounds=0)


@pytest.mark.slow  # 0.8 s quiet: too long for test-fast's minute
def test_model_speeds_time_prefill_and_each_decode_batch_in_the_same_rounds():
    import math

    import torch

    from workbench.measure import SpeedShapes, model_speeds
    from workbench.models import tiny_llama

    class NoCache(torch.nn.Module):  # a model without a KV cache (a masked diffusion model, a looped model)
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, input_ids, **kwargs):
            return self.inner(input_ids=input_ids)

    model, _ = tiny_llama()
    shapes = SpeedShapes(prefill_batch=2, prefill_len=16, decode_batches=(1, 3), new_tokens=3, rounds=1, warmup=0)
    rows = model_speeds({"cached": model.eval(), "recomputes": NoCache(model)}, shapes)
    assert set(rows["cached"]) == {"prefill_tok_s", "prefill_spread", "decode_b1_tok_s", "decode_b1_spread",
                                   "decode_b3_tok_s", "decode_b3_spread"}  # fmt: skip
    assert rows["cached"]["prefill_tok_s"] > 0 and rows["recomputes"]["prefill_tok_s"] > 0
    assert math.isnan(rows["recomputes"]["decode_b1_tok_s"])  # not measured, not a number of another kind
