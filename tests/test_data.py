"""Corpora, token caching, splits, batches and sliding-window perplexity."""

import math

import pytest
import torch
import torch.nn.functional as F

from workbench import data, evaluate
from workbench.errors import WorkbenchError
from workbench.models import load_tokenizer, tiny_llama


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.mark.slow  # renders the documentation of every standard-library module (seconds to minutes)
def test_embedded_corpus_ships_with_python():
    corpus = data.load_corpus()
    assert corpus.n_chars > 1_000_000 and len(corpus.documents) > 300
    assert data.load_corpus().fingerprint == corpus.fingerprint  # deterministic
    assert any("for_stmt" in d or 'The "for" statement' in d for d in corpus.documents)


def test_local_file_and_folder(tmp_path):
    (tmp_path / "a.txt").write_text("alpha beta")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.md").write_text("gamma")
    assert data.load_corpus(str(tmp_path / "a.txt")).documents == ("alpha beta",)
    assert data.load_corpus(str(tmp_path)).documents == ("alpha beta", "gamma")


def test_missing_corpus_is_one_line(tmp_path):
    with pytest.raises(WorkbenchError, match="not found"):
        data.load_corpus(str(tmp_path / "missing.txt"))


@pytest.mark.slow  # 0.9 s quiet: too long for test-fast's minute
def test_tokenize_is_cached(tmp_path, monkeypatch, tokenizer, wikitext_path):
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    corpus = data.load_corpus(str(wikitext_path))
    first = data.tokenize(corpus, tokenizer)
    assert len(list((tmp_path / "tokens").glob("*.npy"))) == 1
    assert torch.equal(first, data.tokenize(corpus, tokenizer))
    assert 270_000 < len(first) < 280_000  # 273,871 SmolLM2 tokens in the whole file


def test_split_blocks_batches():
    tokens = torch.arange(1000)
    train, val = data.train_val_split(tokens, 0.1)
    assert len(train) == 900 and val[0] == 900
    assert data.blocks(train, 64).shape == (14, 64)
    batch = next(data.batches(train, 8, 64, seed=1))
    assert batch.shape == (8, 64) and bool(((batch[:, 1:] - batch[:, :-1]) == 1).all())
    with pytest.raises(WorkbenchError):
        data.blocks(tokens[:10], 64)


def test_perplexity_matches_direct_cross_entropy():
    model, _ = tiny_llama(n_layers=1, d_model=32, n_heads=2, n_kv_heads=1)
    tokens = torch.randint(0, 49152, (4 * 32,))
    result = evaluate.perplexity(model, tokens, context_len=32, batch_size=3, progress=False)
    with torch.no_grad():
        windows = tokens.view(4, 32)
        nll = F.cross_entropy(model(windows).logits[:, :-1].flatten(0, 1), windows[:, 1:].flatten())
    assert result["n_tokens"] == 4 * 31
    assert math.isclose(result["ppl"], math.exp(nll.item()), rel_tol=1e-4)


def test_strided_perplexity_scores_each_token_once():
    model, _ = tiny_llama(n_layers=1, d_model=32, n_heads=2, n_kv_heads=1)
    tokens = torch.randint(0, 49152, (96,))
    result = evaluate.perplexity(model, tokens, context_len=32, stride=16, progress=False)
    assert result["n_tokens"] == 95  # windows at 0, 16, ..., 64 cover targets 1..95 once each
