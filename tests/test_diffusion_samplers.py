"""Samplers and guidance of the masked diffusion model, against hand-checkable invariants."""

import pytest
import torch

from workbench.diffusion import mdm
from workbench.diffusion.guidance import guided
from workbench.diffusion.samplers import (
    SamplerConfig,
    autoregressive_generate,
    diffusion_generate,
    gumbel_argmax,
    unmask,
)
from workbench.errors import WorkbenchError
from workbench.models import tiny_llama

VOCAB = 12


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    shape = dict(n_layers=1, d_model=16, n_heads=2, n_kv_heads=2, d_ff=32)
    return mdm.masked_diffusion_llama(vocab_size=VOCAB, seed=0, **shape)[0].eval()


@pytest.mark.parametrize("gen_len", [5, 12])
def test_low_confidence_with_steps_equal_length_reveals_one_token_per_step(model, gen_len):
    prompt = torch.randint(0, VOCAB, (3, 4))
    config = SamplerConfig(steps=gen_len, temperature=1.0)
    out = diffusion_generate(
        mdm.denoiser(model), prompt, gen_len, VOCAB, config, torch.Generator().manual_seed(0), trace=True
    )
    assert len(out.revealed) == gen_len
    assert all(r.sum(1).tolist() == [1, 1, 1] for r in out.revealed)
    assert torch.equal(out.tokens[:, :4], prompt)
    assert (out.tokens < VOCAB).all()  # no [M] left, and [M] is never drawn


def test_low_confidence_reveals_the_most_confident_position(model):
    prompt = torch.randint(0, VOCAB, (2, 3))
    denoise = mdm.denoiser(model)
    out = diffusion_generate(denoise, prompt, 6, VOCAB, SamplerConfig(steps=6, temperature=0.0), trace=True)
    start = torch.cat([prompt, torch.full((2, 6), VOCAB)], 1)
    best = (
        torch.softmax(denoise(start), -1).max(-1).values[:, 3:].argmax(-1) + 3
    )  # greedy confidence of each masked slot
    assert out.revealed[0].nonzero()[:, 1].tolist() == best.tolist()


def test_ancestral_reveals_everything_and_the_cache_skips_the_network(model):
    prompt = torch.randint(0, VOCAB, (4, 2))
    config = SamplerConfig(steps=64, algorithm="ancestral", temperature=1.0)
    out = diffusion_generate(
        mdm.denoiser(model), prompt, 6, VOCAB, config, torch.Generator().manual_seed(1), trace=True
    )
    assert (out.tokens < VOCAB).all()
    assert sum(r.sum() for r in out.revealed) == 4 * 6
    assert 4 <= out.network_rows < 4 * 64  # 64 steps, at most 6 of which change a row
    uncached = diffusion_generate(
        mdm.denoiser(model), prompt, 6, VOCAB, SamplerConfig(steps=64, algorithm="ancestral", cache=False)
    )
    assert uncached.network_rows == 4 * 64


def test_gumbel_sampling_in_float64_matches_the_softmax():
    logits = torch.tensor([[2.0, 0.0, -1.0, -12.0]]).expand(200_000, 4)
    draws = gumbel_argmax(logits, 1.0, torch.Generator().manual_seed(0))
    frequencies = torch.bincount(draws, minlength=4).double() / len(draws)
    assert torch.allclose(frequencies, torch.softmax(logits[0].double(), 0), atol=4e-3)
    assert torch.equal(gumbel_argmax(logits[:3], 0.0), torch.zeros(3, dtype=torch.long))


def test_guidance_at_zero_is_the_conditional_model_and_at_minus_one_the_unconditional(model):
    calls = []

    def counting(x):
        calls.append(x.shape[0])
        return mdm.logits(model, x)

    x = torch.randint(0, VOCAB, (3, 9))
    x[:, 6:] = VOCAB
    conditional = mdm.logits(model, x)
    unconditional_input = x.clone()
    unconditional_input[:, :4] = VOCAB
    unconditional = mdm.logits(model, unconditional_input)
    assert torch.allclose(guided(counting, 4, VOCAB, 0.0)(x), conditional, atol=1e-5)
    assert calls == [6]  # both passes as one batched forward
    assert torch.allclose(guided(counting, 4, VOCAB, -1.0)(x), unconditional, atol=1e-5)
    strong = guided(counting, 4, VOCAB, 2.0)(x)
    assert torch.allclose(strong, unconditional + 3 * (conditional - unconditional), atol=1e-4)
    assert not torch.allclose(strong, conditional, atol=1e-3)


def test_autoregressive_trace_reveals_left_to_right():
    arm, _ = tiny_llama(vocab_size=VOCAB, n_layers=1, d_model=16, n_heads=2, n_kv_heads=2, d_ff=32)
    prompt = torch.randint(0, VOCAB, (2, 3))
    out = autoregressive_generate(
        arm.eval(), prompt, 4, temperature=1.0, generator=torch.Generator().manual_seed(0), trace=True
    )
    assert out.tokens.shape == (2, 7)
    assert [r[0].nonzero().item() for r in out.revealed] == [3, 4, 5, 6]
    assert all(0 < c[0, 3 + i].item() <= 1 for i, c in enumerate(out.confidence))


def test_bad_sampler_settings_are_one_line_errors():
    with pytest.raises(WorkbenchError):
        SamplerConfig(steps=0)
    with pytest.raises(WorkbenchError):
        SamplerConfig(algorithm="greedy")


def test_unmask_fills_only_the_masked_positions_inside_a_sequence(model):
    x = torch.randint(0, VOCAB, (2, 8))
    x[:, 2:5] = VOCAB
    out = unmask(mdm.denoiser(model), x, VOCAB, SamplerConfig(steps=3, temperature=0.0), trace=True)
    assert torch.equal(out.tokens[:, :2], x[:, :2]) and torch.equal(out.tokens[:, 5:], x[:, 5:])
    assert (out.tokens < VOCAB).all() and all(r.sum(1).tolist() == [1, 1] for r in out.revealed)
