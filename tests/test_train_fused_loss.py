"""The compiled training step's loss never holds the [B·T, V] logits, and gives the plain loss and gradients.

Traced through dynamo and AOTAutograd as `torch.compile` traces the whole step on a GPU (backend
aot_eager: the same graphs, without inductor's code generation, so the test takes seconds on a CPU).
"""

import pytest
import torch
import torch.nn.functional as F
from torch._dynamo.backends.common import aot_autograd

import workbench.train as train_module
from workbench import data
from workbench.models import tiny_llama
from workbench.train import causal_lm_loss

VOCAB, CHUNK = 1000, 40  # one chunk of logits (40 × 1000) outsizes the attention scores (4 × 4 × 32 × 32)


def llama():
    return tiny_llama(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, vocab_size=VOCAB, seed=0)[0]


def batch(batch_size: int = 4, block_len: int = 33) -> torch.Tensor:
    tokens = torch.arange(4000) * 7 % VOCAB  # every token id in use
    return next(data.batches(tokens, batch_size, block_len, seed=0))


def plain_loss_and_grads(model, tokens):
    logits = model(input_ids=tokens[:, :-1]).logits  # [B, T, V]: the materialised path
    loss = F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())
    names, params = zip(*model.named_parameters(), strict=True)
    return loss, dict(zip(names, torch.autograd.grad(loss, params), strict=True))


def graph_backend(graphs: list):
    def keep(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    return aot_autograd(fw_compiler=keep, bw_compiler=keep)


def largest_tensor(graph_module) -> int:
    sizes = [
        node.meta["val"].numel() for node in graph_module.graph.nodes if isinstance(node.meta.get("val"), torch.Tensor)
    ]
    return max(sizes)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(train_module, "LOSS_CHUNK_TOKENS", CHUNK)  # 4 × 32 = 128 tokens: 4 chunks, the last short


@pytest.mark.slow  # 3.8 s quiet: too long for test-fast's minute
def test_compiled_loss_and_gradients_equal_the_materialised_logits(small_chunks):
    model, tokens = llama(), batch()
    want_loss, want = plain_loss_and_grads(model, tokens)
    graphs: list = []
    loss = torch.compile(causal_lm_loss, backend=graph_backend(graphs), fullgraph=True, dynamic=False)(model, tokens)
    names, params = zip(*model.named_parameters(), strict=True)
    got = dict(zip(names, torch.autograd.grad(loss, params), strict=True))
    assert torch.allclose(loss, want_loss, atol=1e-5)
    for name in want:
        assert torch.allclose(got[name], want[name], atol=1e-5, rtol=1e-4), name
    assert len(graphs) == 2  # one forward graph and one backward graph: no break
    n_tokens = tokens[:, 1:].numel()
    forward, backward = graphs
    assert largest_tensor(forward) <= CHUNK * VOCAB < n_tokens * VOCAB  # one chunk of logits at most
    assert largest_tensor(backward) < n_tokens * VOCAB  # the backward only scales gradients kept from the forward


@pytest.mark.slow  # 3.9 s quiet: too long for test-fast's minute
def test_the_materialised_path_would_fail_that_check():
    """The check above can fail: the plain loss, traced the same way, holds all [B·T, V] logits."""
    model, tokens = llama(), batch()

    def logits_loss(model, tokens):
        logits = model(input_ids=tokens[:, :-1]).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten())

    graphs: list = []
    torch.compile(logits_loss, backend=graph_backend(graphs), dynamic=False)(model, tokens).backward()
    assert largest_tensor(graphs[0]) >= tokens[:, 1:].numel() * VOCAB


@pytest.mark.slow  # 3.8 s quiet: too long for test-fast's minute
def test_compiled_loss_under_bf16_autocast_matches_the_plain_one(small_chunks):
    model, tokens = llama(), batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        want_loss, want = plain_loss_and_grads(model, tokens)
        loss = torch.compile(causal_lm_loss, backend="aot_eager", fullgraph=True, dynamic=False)(model, tokens)
        got = torch.autograd.grad(loss, model.lm_head.weight)[0]  # tied: head and embedding gradients
    assert abs(loss.item() - want_loss.item()) < 2e-2
    cosine = F.cosine_similarity(got.flatten(), want["model.embed_tokens.weight"].flatten(), dim=0)
    assert cosine > 0.99
