"""Static-cache decoding gives the KV-cache sampler's greedy tokens, eager and compiled."""

import pytest
import torch

from workbench.cpu.quantize import quantize
from workbench.cpu.static_decode import StaticDecoder, static_phases
from workbench.generate import SampleConfig, sample
from workbench.models import tiny_llama


def model_and_prompt(precision: str = "float32"):
    model = tiny_llama(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, vocab_size=256, seed=0)[0].eval()
    model = model if precision == "float32" else quantize(model, precision)
    return model, torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("precision", ["float32", "int8"])
@pytest.mark.slow  # 0.7 s quiet: too long for test-fast's minute
def test_static_cache_decoding_equals_the_sampler(precision):
    model, prompt = model_and_prompt(precision)
    want = sample(model, prompt, SampleConfig(max_new_tokens=10))
    decoder = StaticDecoder(model, max_len=22, compile=False)
    assert torch.equal(decoder.generate(prompt, 10), want)
    assert torch.equal(decoder.generate(prompt, 10), want)  # the cache is reset between calls


def test_the_cache_length_bounds_the_continuation():
    model, prompt = model_and_prompt()
    with pytest.raises(ValueError):
        StaticDecoder(model, max_len=15, compile=False).generate(prompt, 10)


@pytest.mark.slow
def test_compiled_step_decodes_the_same_tokens_and_times_as_a_contender():
    model, prompt = model_and_prompt("int8")
    want = sample(model, prompt, SampleConfig(max_new_tokens=10))
    calls = static_phases(model, prompt, 10)(1)
    assert torch.equal(calls["generate"](), want)  # compiles on the first call
    assert torch.equal(calls["prefill"](), want[:, 12:13])
