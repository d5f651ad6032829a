"""Fused QKV and gate/up projections: the same per-row quantisation, the same logits (within tolerance), tokens."""

import pytest
import torch

from workbench.cpu.fuse import fuse_projections
from workbench.cpu.quantize import quantize
from workbench.cpu.static_decode import StaticDecoder
from workbench.errors import WorkbenchError
from workbench.models import tiny_llama


@pytest.fixture(scope="module")
def model_and_prompt():
    model = tiny_llama(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, vocab_size=256, seed=0)[0].eval()
    return model, torch.randint(0, 256, (1, 12), generator=torch.Generator().manual_seed(0))


def test_int8_fused_rows_are_the_unfused_rows(model_and_prompt):
    model, _ = model_and_prompt
    plain, fused = quantize(model, "int8"), quantize(fuse_projections(model), "int8")
    attention, fused_attention = plain.model.layers[0].self_attn, fused.model.layers[0].self_attn
    parts = [attention.q_proj, attention.k_proj, attention.v_proj]
    assert torch.equal(fused_attention.qkv_proj.qweight, torch.cat([p.qweight for p in parts]))
    assert torch.equal(fused_attention.qkv_proj.scale, torch.cat([p.scale for p in parts]))
    mlp, fused_mlp = plain.model.layers[1].mlp, fused.model.layers[1].mlp
    assert torch.equal(fused_mlp.gate_up_proj.scale, torch.cat([mlp.gate_proj.scale, mlp.up_proj.scale]))


@pytest.mark.parametrize("precision, tolerance", [("float32", 1e-5), ("int8", 1e-2), ("int4", 1e-2)])
def test_fused_model_gives_the_unfused_logits_and_greedy_tokens(model_and_prompt, precision, tolerance):
    model, prompt = model_and_prompt
    plain, fused = quantize(model, precision), quantize(fuse_projections(model), precision)
    with torch.no_grad():
        want, got = plain(input_ids=prompt).logits, fused(input_ids=prompt).logits
    # bfloat16 activations into the quantised kernels: rows summed in another order differ by a few bf16 ulps
    assert (got - want).abs().max() <= tolerance * want.abs().max()
    expected = StaticDecoder(plain, max_len=22, compile=False).generate(prompt, 10)
    assert torch.equal(StaticDecoder(fused, max_len=22, compile=False).generate(prompt, 10), expected)


def test_fusing_a_quantised_model_is_refused(model_and_prompt):
    with pytest.raises(WorkbenchError, match="fuse first, quantise after"):
        fuse_projections(quantize(model_and_prompt[0], "int8"))


@pytest.mark.slow
def test_compiled_fused_step_decodes_the_eager_unfused_tokens(model_and_prompt):
    model, prompt = model_and_prompt
    expected = StaticDecoder(quantize(model, "int8"), max_len=22, compile=False).generate(prompt, 10)
    decoder = StaticDecoder(quantize(fuse_projections(model), "int8"), max_len=22)  # one-row int8 loops, packed GQA
    assert torch.equal(decoder.generate(prompt, 10), expected)
