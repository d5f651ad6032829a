"""Sampling without per-token host syncs: same tokens as transformers' generate, right distribution."""

import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.generate import SampleConfig, next_tokens, sample
from workbench.models import tiny_llama


@pytest.mark.slow
def test_greedy_matches_transformers_generate(default_model):
    model, tokenizer = default_model
    prompt = tokenizer(["The capital of France is"] * 2, return_tensors="pt")["input_ids"]  # a batch of 2
    ours = sample(model, prompt, SampleConfig(max_new_tokens=12))
    theirs = model.generate(
        prompt,
        attention_mask=torch.ones_like(prompt),
        max_new_tokens=12,
        min_new_tokens=12,
        do_sample=False,
        pad_token_id=tokenizer.pad_token_id,
    )
    assert torch.equal(ours, theirs)


@pytest.mark.slow  # 0.7 s quiet: too long for test-fast's minute
def test_rows_that_end_are_padded_and_the_loop_stops():
    model, _ = tiny_llama(seed=0)
    prompt = torch.randint(0, 1000, (3, 5), generator=torch.Generator().manual_seed(0))
    free = sample(model, prompt, SampleConfig(max_new_tokens=40))
    eos = int(free[0, 5])  # row 0's first new token (greedy decoding is deterministic)
    pad = 1 + max(int(free.max()), eos)  # a token id that appears nowhere else
    out = sample(model, prompt, SampleConfig(max_new_tokens=40, check_every=4), eos_token_id=eos, pad_token_id=pad)
    assert torch.equal(out[0, :6], free[0, :6]) and (out[0, 6:] == pad).all()
    for row in out[:, 5:]:
        hits = (row == eos).nonzero()
        if len(hits):
            assert (row[int(hits[0]) + 1 :] == pad).all()
    ended_by = max(int((row == eos).nonzero()[0]) if (row == eos).any() else 40 for row in out[:, 5:])
    assert out.shape[1] - 5 == min(40, 4 * (ended_by // 4 + 1))  # stops at the first check after every row ended


def test_sampling_follows_the_distribution_and_top_k():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(20_000, 1)
    generator = torch.Generator().manual_seed(0)
    counts = torch.bincount(next_tokens(logits, SampleConfig(temperature=1.0), generator), minlength=4) / 20_000
    assert torch.allclose(counts, torch.tensor([0.5, 0.3, 0.15, 0.05]), atol=0.015)
    top2 = torch.bincount(next_tokens(logits, SampleConfig(temperature=1.0, top_k=2), generator), minlength=4) / 20_000
    assert top2[2:].sum() == 0 and abs(top2[0] - 0.625) < 0.015


def test_bad_sampling_settings_are_one_line_errors():
    with pytest.raises(WorkbenchError, match="temperature"):
        SampleConfig(temperature=-1.0)
