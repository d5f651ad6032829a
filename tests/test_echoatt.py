"""EchoAtt's student: exactness against the teacher and against a hand-written reference forward."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import DynamicCache

from workbench.attention.sharing import followers
from workbench.echoatt.student import EchoAttentionFollower, build_student, check_groups, removed_parameters
from workbench.errors import WorkbenchError
from workbench.generate import cache_keyword
from workbench.models import count_parameters, tiny_llama

VOCAB = 256


def teacher(attn: str = "sdpa", n_layers: int = 6):
    """A tiny random GQA LLaMA (4 query heads, 2 KV heads), weights scaled up so attention is not flat."""
    model, _ = tiny_llama(n_layers=n_layers, d_model=64, n_heads=4, n_kv_heads=2, vocab_size=VOCAB, attn=attn, seed=1)
    with torch.no_grad():
        for layer in model.model.layers:
            layer.self_attn.q_proj.weight.mul_(8)
            layer.self_attn.k_proj.weight.mul_(8)
    return model.eval()


def tokens(batch: int = 2, length: int = 24) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_no_sharing_and_length_one_groups_change_nothing(attn):
    model, x = teacher(attn), tokens()
    with torch.no_grad():
        reference = model(x).logits
        assert torch.equal(build_student(model, []).eval()(x).logits, reference)
        assert torch.equal(build_student(model, [[1], [3]]).eval()(x).logits, reference)


@pytest.mark.parametrize("path", ["fused", "explicit"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.slow  # 0.8 s quiet: too long for test-fast's minute
def test_group_head_computes_the_teachers_attention(attn, path):
    """The head equals the teacher's kernel on either path; a follower then changes the output."""
    model, x = teacher(attn), tokens()
    student = build_student(model, [[2, 3]], path=path).eval()
    captured = {}
    for name, net in (("teacher", model), ("student", student)):
        net.model.layers[2].register_forward_hook(lambda m, i, o, name=name: captured.__setitem__(name, o))
    with torch.no_grad():
        teacher_logits, student_logits = model(x).logits, student(x).logits
    assert torch.allclose(captured["student"], captured["teacher"], atol=1e-5)
    assert (teacher_logits - student_logits).abs().max() > 1e-3  # layer 3 really uses layer 2's attention


def test_parameter_count_drops_by_exactly_the_removed_q_and_k():
    model = teacher()
    groups = [[1, 2], [3, 4, 5]]
    student = build_student(model, groups)
    per_layer = (
        model.model.layers[0].self_attn.q_proj.weight.numel() + model.model.layers[0].self_attn.k_proj.weight.numel()
    )
    assert removed_parameters(model, groups) == 3 * per_layer == 3 * (64 * 64 + 64 * 32)
    assert count_parameters(model) - count_parameters(student) == 3 * per_layer
    assert count_parameters(model) == count_parameters(teacher())  # the teacher is untouched
    assert not hasattr(student.model.layers[2].self_attn, "q_proj")
    assert isinstance(student.model.layers[5].self_attn, EchoAttentionFollower)


def reference_forward(model, x: torch.Tensor, head_of: dict[int, int]) -> torch.Tensor:
    """A LLaMA forward written out from the equations, with o_f = W_O^f (A_h V_f) for followers f.

    RMSNorm, rotate-half RoPE, grouped-query attention, SwiGLU, tied head: nothing from
    transformers or from echoatt except the weights.
    """
    config = model.config
    n_heads, n_kv, d_head = (
        config.num_attention_heads,
        config.num_key_value_heads,
        config.hidden_size // config.num_attention_heads,
    )
    batch, length = x.shape

    def rms(h, weight):
        return weight * h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + config.rms_norm_eps)

    def rope(t):  # t: [B, heads, T, D]
        inv_freq = 1.0 / (config.rope_parameters["rope_theta"] ** (torch.arange(0, d_head, 2).float() / d_head))
        angles = torch.arange(length).float()[:, None] * inv_freq[None]
        cos, sin = torch.cat([angles, angles], -1).cos(), torch.cat([angles, angles], -1).sin()
        half = torch.cat([-t[..., d_head // 2 :], t[..., : d_head // 2]], -1)
        return t * cos + half * sin

    causal = torch.ones(length, length, dtype=torch.bool).tril()
    h = model.model.embed_tokens.weight[x]
    probabilities = {}
    for index, layer in enumerate(model.model.layers):
        attention = layer.self_attn
        a = rms(h, layer.input_layernorm.weight)
        v = (
            (a @ attention.v_proj.weight.T)
            .view(batch, length, n_kv, d_head)
            .transpose(1, 2)
            .repeat_interleave(n_heads // n_kv, 1)
        )
        if index in head_of:
            p = probabilities[head_of[index]]
        else:
            q = rope((a @ attention.q_proj.weight.T).view(batch, length, n_heads, d_head).transpose(1, 2))
            k = rope(
                (a @ attention.k_proj.weight.T).view(batch, length, n_kv, d_head).transpose(1, 2)
            ).repeat_interleave(n_heads // n_kv, 1)
            p = torch.softmax((q @ k.transpose(2, 3) / math.sqrt(d_head)).masked_fill(~causal, float("-inf")), -1)
            probabilities[index] = p
        h = h + ((p @ v).transpose(1, 2).reshape(batch, length, -1) @ attention.o_proj.weight.T)
        m = rms(h, layer.post_attention_layernorm.weight)
        h = (
            h
            + (F.silu(m @ layer.mlp.gate_proj.weight.T) * (m @ layer.mlp.up_proj.weight.T))
            @ layer.mlp.down_proj.weight.T
        )
    return rms(h, model.model.norm.weight) @ model.model.embed_tokens.weight.T


@pytest.mark.parametrize("path", ["fused", "explicit"])
@pytest.mark.slow  # 0.8 s quiet: too long for test-fast's minute
def test_shared_forward_equals_the_reference_computation(path):
    model, x = teacher(), tokens()
    groups = [[1, 2], [3, 4, 5]]
    with torch.no_grad():
        assert torch.allclose(reference_forward(model, x, {}), model(x).logits, atol=1e-4)  # the reference is a LLaMA
        expected = reference_forward(model, x, {2: 1, 4: 3, 5: 3})
        actual = build_student(model, groups, path=path).eval()(x).logits
    assert torch.allclose(actual, expected, atol=1e-4), (actual - expected).abs().max()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_fused_and_explicit_paths_give_the_same_logits_and_gradients(attn):
    """Sharing (Q_h, K_h) inside SDPA is sharing A_h: same outputs, same gradients for every weight."""
    model, x = teacher(attn), tokens()
    fused, explicit = (build_student(model, [[1, 2], [3, 4, 5]], path=path) for path in ("fused", "explicit"))
    logits = {}
    for name, student in (("fused", fused), ("explicit", explicit)):
        logits[name] = student(x).logits
        logits[name].float().pow(2).mean().backward()
    assert torch.allclose(logits["fused"], logits["explicit"], atol=1e-5)
    for (name, a), b in zip(fused.named_parameters(), explicit.parameters(), strict=True):
        assert torch.allclose(a.grad, b.grad, atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("path", ["fused", "explicit"])
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.slow  # 0.8 s quiet: too long for test-fast's minute
def test_cached_decoding_equals_uncached_and_followers_cache_only_values(attn, path):
    student, x = build_student(teacher(attn), [[1, 2], [3, 4, 5]], path=path).eval(), tokens()
    cache = DynamicCache()
    with torch.no_grad():
        full = student(x).logits
        pieces = [student(x[:, :10], use_cache=True, **{cache_keyword(student): cache}).logits]
        for i in range(10, x.shape[1]):
            pieces.append(student(x[:, i : i + 1], use_cache=True, **{cache_keyword(student): cache}).logits)
    assert torch.allclose(torch.cat(pieces, 1), full, atol=1e-5)
    for index in range(6):
        keys, values = cache.layers[index].keys, cache.layers[index].values
        assert values.shape == (2, 2, x.shape[1], 16)
        assert keys.numel() == (0 if index in followers([[1, 2], [3, 4, 5]]) else values.numel())

    prompt = x[:1, :6]
    with torch.no_grad():
        cached = student.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False, use_cache=True
        )
        uncached = student.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False, use_cache=False
        )
    assert torch.equal(cached, uncached)


def test_bad_groups_are_refused_and_long_chains_warned():
    with pytest.raises(WorkbenchError, match="consecutive"):
        check_groups([[1, 3]], 6)
    with pytest.raises(WorkbenchError, match="outside"):
        check_groups([[5, 6]], 6)
    with pytest.raises(WorkbenchError, match="overlaps"):
        check_groups([[1, 2], [2, 3]], 6)
    with pytest.warns(UserWarning, match="longer than 3"):
        check_groups([[0, 1, 2, 3]], 6)
