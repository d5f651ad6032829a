"""Similarity metrics against explicit float64 definitions; the streaming path against the naive one."""

import numpy as np
import pytest
import torch

from workbench.attention.analysis import SimilarityResult, analyze, similar_block
from workbench.attention.similarity import METRICS, SimilarityAccumulator, naive_similarity
from workbench.errors import WorkbenchError


# -- explicit definitions, one pair of [T, T] maps at a time, float64 ----------------------------
def _clean(a, n, drop_sink):
    a = np.tril(a[:n, :n].astype(np.float64))
    if drop_sink:
        a = a[1:, 1:]  # rows 1.., keys 1..: row 0 has no key left
        a = a / a.sum(1, keepdims=True)
    return a


def ref_cosine(a, b):
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def ref_jsd(a, b):
    def kl(p, q):
        mask = p > 0
        return (p[mask] * np.log2(p[mask] / q[mask])).sum()

    m = (a + b) / 2
    return float(np.mean([0.5 * kl(a[i], m[i]) + 0.5 * kl(b[i], m[i]) for i in range(len(a))]))


def ref_cka(a, b):
    ac, bc = a - a.mean(0), b - b.mean(0)
    return float(np.linalg.norm(ac.T @ bc) ** 2 / (np.linalg.norm(ac.T @ ac) * np.linalg.norm(bc.T @ bc)))


REFERENCE = {"cosine": ref_cosine, "jsd": ref_jsd, "cka": ref_cka}  # per head


def ref_cosine_map(heads_a, heads_b):
    """The EchoAtt paper's metric: cosine of the head-averaged maps (float64)."""
    return ref_cosine(np.mean(heads_a, 0), np.mean(heads_b, 0))


def random_maps(layers=4, batch=2, heads=3, length=12, seed=0):
    """Causal softmax maps [L, B, H, T, T] with a sink column, like a real model's."""
    generator = torch.Generator().manual_seed(seed)
    scores = torch.randn(layers, batch, heads, length, length, generator=generator) * 2
    scores[..., 0] += 2.0
    causal = torch.ones(length, length, dtype=torch.bool).tril()
    return torch.softmax(scores.masked_fill(~causal, float("-inf")), -1)


@pytest.mark.parametrize("drop_sink", [False, True])
def test_naive_and_streaming_match_the_definitions(drop_sink):
    maps = random_maps()
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 9:] = 0  # text 1 has 9 real tokens, right-padded
    lengths = [12, 9]
    naive = naive_similarity(maps, mask, drop_sink=drop_sink)
    streams = {}
    for spill in ("disk", "memory"):
        accumulator = SimilarityAccumulator(4, 3, METRICS, drop_sink=drop_sink, spill=spill, chunk_rows=5)
        accumulator.begin_batch(mask, 2, 12, "cpu")
        for layer in range(4):
            accumulator.add_layer(layer, maps[layer])
        accumulator.end_batch()
        streams[spill] = accumulator
    for b, n in enumerate(lengths):  # cosine of head-averaged maps: not the mean of per-head cosines
        for first, m in [(0, 1), (1, 3), (2, 2)]:
            heads = [[_clean(maps[layer, b, h].numpy(), n, drop_sink) for h in range(3)] for layer in (first, m)]
            expected = ref_cosine_map(*heads)
            assert naive["cosine_map"][b, first, m, 0].item() == pytest.approx(expected, abs=1e-6)
            for accumulator in streams.values():
                assert accumulator.per_text["cosine_map"][b][first, m] == pytest.approx(expected, abs=2e-3)
        mean_of_heads = naive["cosine"][b, 0, 1].mean().item()
        assert abs(naive["cosine_map"][b, 0, 1, 0].item() - mean_of_heads) > 0.01  # the two metrics differ
    for metric in REFERENCE:
        for b, n in enumerate(lengths):
            for first, m, h in [(0, 1, 0), (1, 3, 2), (2, 2, 1)]:
                expected = REFERENCE[metric](
                    _clean(maps[first, b, h].numpy(), n, drop_sink), _clean(maps[m, b, h].numpy(), n, drop_sink)
                )
                assert naive[metric][b, first, m, h].item() == pytest.approx(expected, abs=1e-5)
                for accumulator in streams.values():  # float16 spill: ~1e-3 relative per entry
                    per_text = accumulator.per_text[metric][b]
                    assert accumulator.per_head_sum[metric].shape == (4, 4, 3)
                    assert abs(per_text[first, m] - naive[metric][b, first, m].mean().item()) < 2e-3
    for metric in METRICS:
        total = naive[metric].sum(0).numpy()
        assert np.allclose(streams["disk"].per_head_sum[metric], total, atol=4e-3)
        assert np.allclose(streams["disk"].per_head_sum[metric], streams["memory"].per_head_sum[metric], atol=1e-6)


def test_identical_layers_are_perfectly_similar_and_padding_never_counts():
    maps = random_maps(layers=2, batch=1)
    maps[1] = maps[0]
    result = naive_similarity(maps)
    assert result["cosine"][0, 0, 1].numpy() == pytest.approx(1.0)
    assert result["cka"][0, 0, 1].numpy() == pytest.approx(1.0)
    assert result["jsd"][0, 0, 1].numpy() == pytest.approx(0.0, abs=1e-6)
    # garbage in padded rows and columns changes nothing
    mask = torch.ones(1, 12, dtype=torch.long)
    mask[0, 8:] = 0
    noisy = maps.clone()
    noisy[1, ..., 8:, :] = torch.rand(3, 4, 12)
    clean, dirty = naive_similarity(maps, mask), naive_similarity(noisy, mask)
    for metric in METRICS:
        assert torch.allclose(clean[metric], dirty[metric], atol=1e-6)


def test_sink_removal_sees_through_a_shared_sink():
    # two layers with the same heavy sink but unrelated patterns elsewhere
    maps = random_maps(layers=2, batch=1, heads=1, length=32, seed=3)
    for layer in range(2):
        rest = torch.nan_to_num(maps[layer, ..., 1:] / maps[layer, ..., 1:].sum(-1, keepdim=True))  # row 0: no key left
        maps[layer, ..., 1:] = rest * 0.1
        maps[layer, ..., 0] = 0.9
    maps[..., 0, 0] = 1.0
    kept = naive_similarity(maps, metrics=("cosine",))["cosine"][0, 0, 1, 0].item()
    dropped = naive_similarity(maps, metrics=("cosine",), drop_sink=True)["cosine"][0, 0, 1, 0].item()
    assert kept > 0.95 and dropped < 0.8


def tiny(n_layers=4, attn="sdpa"):
    from workbench.models import tiny_llama

    model, tokenizer = tiny_llama(n_layers=n_layers, d_model=64, n_heads=4, n_kv_heads=2, attn=attn)
    return model.eval(), tokenizer


def test_analyze_matches_output_attentions_and_round_trips(store):
    model, tokenizer = tiny()
    ids = torch.randint(0, 1000, (5, 20), generator=torch.Generator().manual_seed(0))
    result = analyze(model, tokenizer, ids, drop_sink="both", batch_size=2, keep_maps_for=[1, 3], progress=False)
    assert model.config._attn_implementation == "sdpa"  # eager only while capturing
    with torch.no_grad():
        model.set_attn_implementation("eager")
        stack = torch.stack(model(input_ids=ids, output_attentions=True).attentions)  # [L, B, H, T, T]
        model.set_attn_implementation("sdpa")
    for sink in ("kept", "dropped"):
        naive = naive_similarity(stack, drop_sink=sink == "dropped")
        for metric in METRICS:
            key = f"{metric}/{sink}"
            assert np.allclose(result.per_head[key], naive[metric].mean(0).numpy(), atol=2e-3)
            per_text = naive[metric].mean(-1).numpy()  # [N, L, L]
            assert np.allclose(result.mean[key], per_text.mean(0), atol=2e-3)
            assert np.allclose(result.std[key], per_text.std(0), atol=2e-3)
    assert result.n_texts == 5 and result.seq_len == 20 and len(result.tokens) == 20
    assert sorted(result.maps) == [1, 3] and result.maps[1].shape == (4, 20, 20)
    assert np.allclose(result.maps[3], stack[3, 0].numpy(), atol=1e-6)
    assert result.head_pair("cosine", 1, 2).shape == (4, 4)
    assert np.allclose(np.diag(result.head_pair("cosine", 1, 2)), result.similarity("cosine", per_head=True)[1, 2])
    mean, spread = result.adjacent("jsd", "kept")
    assert mean.shape == (3,) and np.all(mean <= 1) and np.all(spread >= 0)

    run = store.start_run("attention_similarity", "tiny", {})
    result.save(run, groups=[[1, 2]])
    run.finish()
    again = SimilarityResult.load(store, run.id)
    assert again.sinks == result.sinks and again.tokens == result.tokens
    for key in result.mean:
        assert np.array_equal(again.mean[key], result.mean[key])
        assert np.array_equal(again.per_text[key], result.per_text[key])
    assert np.array_equal(again.maps[3], result.maps[3].astype(np.float32))
    assert store.run(run.id)["summary"]["groups"] == [[1, 2]]


def test_texts_are_padded_and_bad_input_is_refused():
    model, tokenizer = tiny(n_layers=2)
    texts = ["The cat sat on the mat.", "A much longer sentence, with several more tokens than the first one has."]
    result = analyze(model, tokenizer, texts, metrics=("cosine",), drop_sink=False, progress=False)
    assert result.n_texts == 2 and result.mean["cosine/kept"].shape == (2, 2)
    # the padded short text gives the same numbers alone as in the padded batch
    alone = analyze(model, tokenizer, texts[:1], metrics=("cosine",), drop_sink=False, progress=False)
    assert np.allclose(alone.per_text["cosine/kept"][0], result.per_text["cosine/kept"][0], atol=2e-3)
    with pytest.raises(WorkbenchError):
        analyze(model, tokenizer, texts, metrics=("euclid",), progress=False)
    with pytest.raises(WorkbenchError):
        analyze(model, tokenizer, texts, drop_sink="maybe", progress=False)
    with pytest.raises(WorkbenchError):
        analyze(model, tokenizer, texts, keep_maps_for=[5], progress=False)
    with pytest.raises(WorkbenchError):
        result.similarity("cosine", sink="dropped")


def test_similar_block_on_a_constructed_matrix():
    matrix = np.full((8, 8), 0.2)
    matrix[2:6, 2:6] = 0.9
    np.fill_diagonal(matrix, 1.0)
    block = similar_block(matrix, threshold=0.8)
    assert (block["first"], block["last"]) == (2, 5)
    assert block["inside"] == pytest.approx(0.9) and block["outside"] == pytest.approx(0.2)


def test_long_inner_products_are_summed_in_float64_chunks():
    """The naive path's T²-long dot products (a million entries at 1,024 tokens) stay within float64's reach."""
    from workbench.attention.similarity import _chunked_gram

    x = torch.rand(2, 5, 300_007, generator=torch.Generator().manual_seed(0))  # not a multiple of the chunk
    exact = x.double() @ x.double().transpose(-1, -2)
    got = _chunked_gram(x, chunk=1 << 14)
    assert got.dtype == torch.float64 and got.shape == (2, 5, 5)
    assert float(((got - exact).abs() / exact.abs()).max()) < 1e-6
