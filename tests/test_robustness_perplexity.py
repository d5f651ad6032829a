"""Perplexity counts the tokens it scores: checked against a direct, token-by-token computation,
on texts shorter than one window (where it used to divide by `context_len - 1`) and longer."""

import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from workbench.errors import WorkbenchError
from workbench.evaluate import perplexity


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256)
    return LlamaForCausalLM(config).eval()


def tokens(n: int) -> torch.Tensor:
    return torch.randint(0, 97, (n,), generator=torch.Generator().manual_seed(n))


@torch.no_grad()
def direct(model, ids: torch.Tensor, context_len: int, stride: int) -> tuple[float, int]:
    """exp(mean NLL), one token at a time: target t scored once, given tokens from its window's start."""
    scored = {}  # target position -> first token of its context
    for start in range(0, max(1, len(ids) - context_len + 1), stride):
        end = min(start + context_len, len(ids))
        first = start + 1 if start == 0 else max(start + 1, end - stride)  # a window's first token has no context in it
        for t in range(first, end):
            scored.setdefault(t, start)
    nll = [-F.log_softmax(model(ids[None, s:t]).logits[0, -1].double(), -1)[ids[t]].item() for t, s in scored.items()]
    return math.exp(sum(nll) / len(nll)), len(nll)


def test_text_shorter_than_one_window(model):
    ids = tokens(40)
    with pytest.warns(UserWarning, match="fewer than one window of 64"):
        result = perplexity(model, ids, context_len=64, progress=False)
    ppl, n = direct(model, ids, 64, 64)
    assert result["n_tokens"] == n == 39
    assert result["ppl"] == pytest.approx(ppl, rel=1e-4)


@pytest.mark.parametrize(("n", "context_len", "stride"), [(200, 64, 64), (150, 32, 8), (64, 64, 64)])
def test_windows_against_direct_computation(model, n, context_len, stride):
    ids = tokens(n)
    result = perplexity(model, ids, context_len=context_len, stride=stride, batch_size=3, progress=False)
    ppl, count = direct(model, ids, context_len, stride)
    assert result["n_tokens"] == count
    assert result["ppl"] == pytest.approx(ppl, rel=1e-4)


def test_too_short_to_score_is_refused(model):
    with pytest.raises(WorkbenchError, match="at least 2 held-out tokens"):
        perplexity(model, tokens(1), context_len=64, progress=False)


@pytest.mark.slow
def test_tour_on_a_small_text_file_records_the_direct_perplexity(tmp_path, default_model):
    """The issue's reproduction: `run 00_tour -p corpus FILE` on a text whose held-out part is shorter
    than the tour's 256-token window. The stored ppl must be the direct one over the tokens there are."""
    from pydoc_data.topics import topics

    from workbench import data
    from workbench.runs import RunStore

    text = tmp_path / "small.txt"
    text.write_text("\n\n".join(topics[key] for key in sorted(topics))[:12_000])
    model, tokenizer = default_model
    _, val = data.train_val_split(data.tokenize(data.load_corpus(str(text)), tokenizer))
    assert 128 <= len(val) < 256  # shorter than the smoke profile's window, long enough for its entropy blocks
    with torch.no_grad():  # one window from token 0: causal attention gives every target its whole prefix in one pass
        logits = model(val[None]).logits[0, :-1].double()
    nll = -F.log_softmax(logits, -1)[torch.arange(len(val) - 1), val[1:]]
    expected, count = math.exp(nll.mean().item()), len(nll)
    env = {**os.environ, "WORKBENCH_HOME": str(tmp_path / "home")}
    subprocess.run([sys.executable, "-m", "workbench", "run", "00_tour", "-p", "corpus", str(text)], env=env,
                   check=True, capture_output=True, timeout=2400)
    row = RunStore(tmp_path / "home" / "runs.db").runs(kind="tour").iloc[0]
    assert row["status"] == "finished"
    assert row["summary"]["ppl"] == pytest.approx(expected, rel=1e-3), count
