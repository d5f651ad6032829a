"""Incremental decoding of the recursive model: a KV-cache entry per effective layer, checked against recomputing."""

import math

import torch
from test_recursive_convert import ids, tiny

from workbench.cards import forward_flops, kv_bytes_per_token
from workbench.generate import SampleConfig, sample
from workbench.measure import SpeedShapes, model_speeds
from workbench.recursive.convert import convert
from workbench.recursive.model import EffectiveLayer
from workbench.recursive.relax import relax


def relaxed():
    """A 4-layer model looped twice with a rank-3 LoRA per depth: loops 1 and 2 of a block compute different keys."""
    model = tiny(4)
    return model, relax(convert(model, 2, "average"), model, ranks=3)


@torch.no_grad()
def test_cached_greedy_decoding_equals_recomputing_the_whole_prefix():
    _, model = relaxed()
    prompt = ids(2, 6)
    cached = sample(model, prompt, SampleConfig(max_new_tokens=10))
    tokens = prompt
    for _ in range(10):  # no cache: every step runs the whole sequence again
        tokens = torch.cat([tokens, model(tokens).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(cached, tokens)
    full = model(tokens).logits  # [2, 16, V]
    out = model(tokens[:, :6], use_cache=True)
    pieces = [out.logits, model(tokens[:, 6:9], cache=out.cache).logits]  # a chunk after a cached prefix
    pieces += [model(tokens[:, i : i + 1], cache=out.cache).logits for i in range(9, 16)]  # one token per step
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)
    assert out.cache.get_seq_length() == 16


@torch.no_grad()
def test_each_loop_keeps_its_own_keys_and_values_as_much_kv_as_the_full_model():
    original, model = relaxed()
    cache = model(ids(1, 5), use_cache=True).cache
    assert len(cache.layers) == 4  # L effective layers, not K = 2 shared blocks
    assert not torch.equal(cache.layers[0].keys, cache.layers[2].keys)  # block 0 at loop 1 and at loop 2
    assert kv_bytes_per_token(model) == kv_bytes_per_token(original) == 4 * 2 * 2 * 8 * 4  # L·(K,V)·H_kv·hd·fp32


def test_the_one_speed_measure_times_its_decode():
    _, model = relaxed()
    shapes = SpeedShapes(prefill_batch=1, prefill_len=16, decode_batches=(1, 2), decode_prompt=4, new_tokens=8,
                         rounds=3)  # fmt: skip
    row = model_speeds({"relaxed": model}, shapes)["relaxed"]
    assert all(math.isfinite(row[k]) and row[k] > 0 for k in ("prefill_tok_s", "decode_b1_tok_s", "decode_b2_tok_s"))


def test_training_flops_count_every_loop_its_attention_and_its_lora():
    """A looped model applies as many weights and attentions per token as its original, plus r·(in+out) per
    relaxed linear and depth (the card's training-FLOPs axis once left the attention and the LoRA out)."""
    original, model = relaxed()
    plain = convert(original, 2, "average")
    tokens, context = 1000, 512
    assert forward_flops(plain, tokens, context) == forward_flops(original, tokens, context)
    layers = [layer for layer in model.modules() if isinstance(layer, EffectiveLayer) and layer.lora is not None]
    lora_weights = sum(layer.lora.A[n].numel() + layer.lora.B[n].numel() for layer in layers for n in layer.lora.A)
    assert lora_weights > 0
    extra = forward_flops(model, tokens, context) - forward_flops(plain, tokens, context)
    assert extra == 2 * tokens * lora_weights
