"""MHA/GQA/MQA variants: the KV-cache formula against the tensors a real forward pass caches,
equal-parameter FFN widths by hand, and decode timing that leaves the cache as it found it."""

import pytest
import torch

from workbench.cpu.gqa import (
    Shape,
    build,
    decode_speed_vs_context,
    decode_steps,
    equal_parameter_d_ff,
    filled_cache,
    kv_cache_bytes,
    measured_cache_bytes,
    variants,
)
from workbench.errors import WorkbenchError
from workbench.generate import output_cache

REFERENCE = Shape(n_layers=2, d_model=64, n_heads=4, n_kv_heads=4, d_ff=128, vocab_size=256)


def _params(model) -> int:
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_cache_formula_equals_the_tensors_a_forward_pass_caches(n_kv_heads, dtype):
    shape = variants(REFERENCE, (n_kv_heads,))[0]
    model = build(shape).to(dtype)
    prompt = torch.randint(0, 256, (3, 17))  # batch 3, 17 tokens
    with torch.no_grad():
        cache = output_cache(model(input_ids=prompt, use_cache=True))
    # 2 · L · B · T · G · d_head · s, written out
    size = 2 if dtype == torch.bfloat16 else 4
    assert kv_cache_bytes(shape, 17, batch=3, dtype=dtype) == 2 * 2 * 3 * 17 * n_kv_heads * 16 * size
    assert measured_cache_bytes(cache) == kv_cache_bytes(shape, 17, batch=3, dtype=dtype)


def test_gqa_divides_the_cache_by_the_group_size():
    mha, gqa, mqa = variants(REFERENCE, (4, 2, 1))
    assert kv_cache_bytes(mha, 1000) == 2 * kv_cache_bytes(gqa, 1000) == 4 * kv_cache_bytes(mqa, 1000)


def test_equal_parameter_ffn_by_hand():
    # d 512, 8 heads of 64: MHA→GQA 8/2 saves 2·512·64·6 = 393,216 per layer = 3·512·256 → d_ff + 256
    reference = Shape(n_layers=8, d_model=512, n_heads=8, n_kv_heads=8, d_ff=1344, vocab_size=1000)
    assert equal_parameter_d_ff(reference, 2) == 1344 + 256
    counts = [_params(build(shape)) for shape in variants(REFERENCE, (4, 2, 1))]
    assert max(counts) - min(counts) <= REFERENCE.n_layers * 3 * REFERENCE.d_model  # within one FFN unit per layer


def test_variants_are_named_by_their_heads_and_bad_shapes_are_one_line_errors():
    assert [s.name for s in variants(REFERENCE, (4, 2, 1))] == ["MHA 4/4", "GQA 4/2", "MQA 4/1"]
    with pytest.raises(WorkbenchError, match="n_kv_heads"):
        Shape(n_layers=1, d_model=64, n_heads=4, n_kv_heads=3, d_ff=128, vocab_size=10)


def test_decode_steps_leave_the_filled_cache_at_its_length():
    shape = variants(REFERENCE, (2,))[0]
    cache = filled_cache(shape, context=40, batch=2)
    assert cache.get_seq_length() == 40 and measured_cache_bytes(cache) == kv_cache_bytes(shape, 40, batch=2)
    decode_steps(build(shape), cache, steps=5, batch=2)
    assert cache.get_seq_length() == 40


def test_decode_speed_rows_check_the_formula():
    rows = decode_speed_vs_context(variants(REFERENCE, (4, 1)), contexts=(8, 32), steps=2, rounds=1, threads=1)
    assert len(rows) == 4 and all(r["kv_bytes_formula"] == r["kv_bytes_measured"] for r in rows)
    assert all(r["decode_tok_s"] > 0 and r["threads"] == 1 for r in rows)
