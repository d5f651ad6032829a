"""Weight precisions for CPU decoding: each quantised layer against a hand-written reference, and on
SmolLM2-135M every precision's greedy text and perplexity against float32's (or its divergence, reported)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from workbench.cpu.quantize import (
    INT4_GROUP,
    Int4Linear,
    Int8Linear,
    next_token_quality,
    quantize,
    weight_bytes,
)
from workbench.errors import WorkbenchError
from workbench.evaluate import perplexity
from workbench.generate import SampleConfig, sample
from workbench.models import tiny_llama


def _linear(n_out=48, n_in=96, seed=0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(n_in, n_out, bias=False)


def test_int8_matches_per_row_rounding_by_hand():
    linear = _linear()
    w = linear.weight.detach()
    scale = w.abs().max(dim=1).values / 127  # s_r = max_k |W_rk| / 127
    by_hand = torch.round(w / scale[:, None]) * scale[:, None]
    layer = Int8Linear(linear)
    assert layer.qweight.dtype == torch.int8 and layer.qweight.abs().max() == 127
    assert layer.scale.dtype == torch.float32
    assert torch.allclose(layer.dequantized(), by_hand, rtol=1e-6, atol=0)
    step = scale[:, None].expand_as(w)  # worst weight error: half a quantisation step (bf16 scales reach ~0.75)
    assert ((layer.dequantized() - w).abs() / step).max() <= 0.5 + 1e-5
    x = torch.randn(3, 5, 96)
    expected = F.linear(x.bfloat16().float(), layer.dequantized())
    out = layer(x)
    assert out.shape == (3, 5, 48) and out.dtype == torch.float32
    assert torch.allclose(out, expected, rtol=2e-2, atol=2e-2)  # bf16 output rounding
    assert (out - F.linear(x, w)).abs().max() < 0.05  # and close to the float weights


def test_int4_reproduces_weights_that_are_4_bit_in_groups():
    # weights built as low + q·s per group of 32 (what a Q4_1 file holds) come back exactly up to bf16 scales
    torch.manual_seed(0)
    n, k = 16, 64
    q = torch.randint(0, 16, (n, k // INT4_GROUP, INT4_GROUP))
    q[..., 0], q[..., 1] = 0, 15  # every group uses the full range, as min/max quantisation does
    low, step = torch.randn(n, k // INT4_GROUP, 1) * 0.1, torch.rand(n, k // INT4_GROUP, 1) * 0.01 + 0.001
    w = (low + q * step).view(n, k)
    linear = nn.Linear(k, n, bias=False)
    linear.weight.data = w
    x = torch.randn(4, k)
    out = Int4Linear(linear)(x)
    assert torch.allclose(out, F.linear(x, w), rtol=2e-2, atol=2e-2)


def test_int4_error_is_bounded_by_half_a_step():
    linear = _linear(n_out=32, n_in=64)
    w = linear.weight.detach().view(32, 2, INT4_GROUP)
    half_step = ((w.amax(-1) - w.amin(-1)) / 15 / 2).repeat_interleave(INT4_GROUP, dim=1)  # [32, 64]
    layer = Int4Linear(linear)
    eye = torch.eye(64)
    recovered = layer(eye).T  # column j of Wᵀ·e_j: the weights the kernel uses, [32, 64]
    assert ((recovered - linear.weight.detach()).abs() <= half_step * 1.05 + 4e-3).all()


@pytest.mark.slow  # 0.9 s quiet: too long for test-fast's minute
def test_quantize_copies_and_rejects_unknown_precisions():
    model, _ = tiny_llama(seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    int8 = quantize(model, "int8")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # the original is untouched
    assert sum(isinstance(m, Int8Linear) for m in int8.modules()) == 2 * 7 + 1  # 7 per layer + the output layer
    assert not any(type(m) is nn.Linear for m in int8.modules())
    assert weight_bytes(quantize(model, "bfloat16")) < 0.55 * weight_bytes(model)
    with pytest.raises(WorkbenchError, match="unknown precision"):
        quantize(model, "int3")


def test_int4_leaves_layers_whose_width_is_not_a_multiple_of_the_group_in_float():
    model = nn.Sequential(nn.Linear(64, 48, bias=False), nn.Linear(48, 8, bias=False))  # 48 % 32 != 0
    int4 = quantize(model, "int4")
    assert isinstance(int4[0], Int4Linear) and type(int4[1]) is nn.Linear


def test_int4_keeps_the_output_layer_in_int8():
    model, _ = tiny_llama(seed=0)
    int4 = quantize(model, "int4")
    assert isinstance(int4.lm_head, Int8Linear)
    assert sum(isinstance(m, Int4Linear) for m in int4.modules()) == 2 * 7


def test_quality_pass_equals_the_core_perplexity():
    model, _ = tiny_llama(seed=1)
    tokens = torch.randint(0, 1000, (4 * 32,), generator=torch.Generator().manual_seed(0))
    ours = next_token_quality(model, tokens.view(4, 32))
    core = perplexity(model, tokens, context_len=32, progress=False)
    assert ours["n_tokens"] == core["n_tokens"] == 4 * 31
    assert ours["ppl"] == pytest.approx(core["ppl"], rel=1e-4)
    assert next_token_quality(model, tokens.view(4, 32), ours["argmax"])["agreement"] == 1.0


# -- SmolLM2-135M -------------------------------------------------------------------------------------
PROMPT = "The Python programming language was created by"
# (precision, greedy tokens that must equal float32's, largest |perplexity change| in %)
EXPECTED = [("bfloat16", 4, 2.0), ("int8", 6, 2.0), ("int4", 6, 2.0), ("int8-dynamic", 0, 400.0)]


@pytest.fixture(scope="module")
def smollm_quality(default_model):
    from workbench.data import blocks, load_corpus, tokenize, train_val_split

    model, tokenizer = default_model
    _, val = train_val_split(tokenize(load_corpus("python-docs"), tokenizer))
    windows = blocks(val, 256)[:2]
    prompt = tokenizer(PROMPT, return_tensors="pt")["input_ids"]
    reference = next_token_quality(model, windows)
    greedy = sample(model, prompt, SampleConfig(max_new_tokens=16))[0, prompt.shape[1] :]
    return model, windows, prompt, reference, greedy


@pytest.mark.slow
@pytest.mark.parametrize(("precision", "same_tokens", "max_ppl_pct"), EXPECTED, ids=[e[0] for e in EXPECTED])
def test_precision_against_float32_on_smollm2(smollm_quality, precision, same_tokens, max_ppl_pct, capsys):
    model, windows, prompt, reference, greedy = smollm_quality
    quantized = quantize(model, precision)
    ours = sample(quantized, prompt, SampleConfig(max_new_tokens=16))[0, prompt.shape[1] :]
    same = (ours == greedy).tolist()
    first_divergence = same.index(False) if False in same else len(same)
    quality = next_token_quality(quantized, windows, reference["argmax"])
    change = 100 * (quality["ppl"] / reference["ppl"] - 1)
    with capsys.disabled():  # the divergence is reported, not only asserted
        print(
            f"\n{precision}: greedy equal to float32 for {first_divergence}/16 tokens, perplexity {change:+.2f}%, "
            f"next-token agreement {100 * quality['agreement']:.1f}%"
        )
    assert first_divergence >= same_tokens
    assert abs(change) <= max_ppl_pct
