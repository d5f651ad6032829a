"""Capturing attention probabilities layer by layer, on LLaMA and GPT-2 style models."""

import pytest
import torch

from workbench.attention.analysis import analyze
from workbench.attention.capture import attention_maps, attention_modules, capture_attention, eager_attention


@pytest.mark.slow  # 0.8 s quiet: too long for test-fast's minute
def test_eager_only_inside_the_block_even_after_an_error():
    from workbench.models import tiny_llama

    model, _ = tiny_llama(n_layers=2, d_model=32, n_heads=2, n_kv_heads=1)
    with eager_attention(model):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError), capture_attention(model, lambda layer, maps: None):
        raise RuntimeError("interrupted")
    assert model.config._attn_implementation == "sdpa"
    assert all(not module._forward_hooks for module in attention_modules(model))


def test_hooks_see_one_layer_at_a_time_in_order():
    from workbench.models import tiny_llama

    model, _ = tiny_llama(n_layers=3, d_model=32, n_heads=4, n_kv_heads=2)
    seen = []
    ids = torch.randint(0, 500, (2, 10))
    with torch.no_grad(), capture_attention(model, lambda layer, maps: seen.append((layer, tuple(maps.shape)))):
        model(input_ids=ids)
    assert seen == [(layer, (2, 4, 10, 10)) for layer in range(3)]  # 4 query heads over 2 KV heads


def test_gpt2_style_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_layer=3, n_head=2, n_embd=32, vocab_size=200, n_positions=64, bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config).eval()
    backend = model.config._attn_implementation
    ids = torch.randint(0, 200, (2, 16))
    maps = attention_maps(model, ids)
    assert sorted(maps) == [0, 1, 2] and maps[2].shape == (2, 2, 16, 16)
    assert torch.allclose(maps[0].sum(-1), torch.ones(2, 2, 16), atol=1e-5) and torch.all(maps[1].triu(1) == 0)
    result = analyze(model, None, ids, metrics=("cosine", "jsd"), progress=False)
    assert result.mean["cosine/dropped"].shape == (3, 3)
    assert result.tokens == [str(i) for i in ids[0].tolist()]
    assert model.config._attn_implementation == backend


@pytest.mark.slow
def test_default_model_grouped_query_maps(default_model):
    model, tokenizer = default_model
    ids = tokenizer("The quick brown fox jumps over the lazy dog.", return_tensors="pt")["input_ids"]
    maps = attention_maps(model, ids, layers=[0, 29])
    assert model.config._attn_implementation == "sdpa"
    assert sorted(maps) == [0, 29] and maps[0].shape == (1, 9, ids.shape[1], ids.shape[1])  # one map per query head
    assert torch.allclose(maps[29].sum(-1), torch.ones(1, 9, ids.shape[1]), atol=1e-5)
    assert torch.all(maps[29].triu(1) == 0)
