"""Zero-shot tasks: built from held-out tokens only, deterministic, chance for a constant model, 1.0 for
an oracle, and the causal log-likelihood equal to a hand-computed sum on a tiny LLaMA."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from workbench import zeroshot
from workbench.errors import WorkbenchError
from workbench.models import load_tokenizer, tiny_llama

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "river castle garden window silver market forest harbour lantern meadow thunder violin".split()


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


@pytest.fixture(scope="module")
def held_out(tokenizer) -> torch.Tensor:
    """Two documents of varied sentences, separated by end-of-text, as the tokenizer's ids."""
    rng = np.random.default_rng(1)
    ids = []
    for _ in range(2):
        text = " ".join(
            f"The {rng.choice(WORDS)} saw the {rng.choice(WORDS)} near {rng.choice(WORDS)} again." for _ in range(120)
        )
        ids += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return torch.tensor(ids)


@pytest.fixture(scope="module")
def tasks(held_out, tokenizer):
    return zeroshot.build_tasks(held_out, tokenizer, n_items=40, context=32, seed=3)


def _find(stream: torch.Tensor, piece: torch.Tensor) -> list[int]:
    n = len(piece)
    return [i for i in range(len(stream) - n + 1) if torch.equal(stream[i : i + n], piece)]


@pytest.mark.slow  # 1.5 s quiet: too long for test-fast's minute
def test_items_come_from_the_held_out_text_and_passages_end_before_the_truth(tasks, held_out, tokenizer):
    assert len(tasks.cloze) == 40 and len(tasks.choice) == 40
    for item in tasks.cloze:
        truth = item.candidates[item.answer]
        assert any(_find(held_out, torch.cat([item.context, truth])))  # the word follows its passage in the text
        assert len({len(c) for c in item.candidates}) == 1  # as many tokens as the truth
        assert len({tokenizer.decode(c) for c in item.candidates}) == len(item.candidates)  # distinct words
        assert tokenizer.eos_token_id not in item.context.tolist()  # never across a document boundary
    for item in tasks.choice:
        assert len(item.continuations) == 4 and len({len(c) for c in item.continuations}) == 1
        assert any(_find(held_out, torch.cat([item.context, item.continuations[item.answer]])))
        assert all(_find(held_out, c) for c in item.continuations)
    # the truth's place is drawn, not always the same
    assert len({item.answer for item in tasks.choice}) > 1 and len({item.answer for item in tasks.cloze}) > 1


def test_deterministic_given_the_seed(held_out, tokenizer, tasks):
    again = zeroshot.build_tasks(held_out, tokenizer, n_items=40, context=32, seed=3)
    other = zeroshot.build_tasks(held_out, tokenizer, n_items=40, context=32, seed=4)

    def key(t):
        return [(i.context.tolist(), [c.tolist() for c in i.candidates], i.answer) for i in t.cloze] + [
            (i.context.tolist(), [c.tolist() for c in i.continuations], i.answer) for i in t.choice
        ]

    assert key(again) == key(tasks)
    assert key(other) != key(tasks)


def _oracle(tasks: zeroshot.ZeroShotTasks, sign: float = 1.0):
    """A loglik that knows the answers: 0 for the true option, -1 otherwise (times `sign`)."""
    truths = {(tuple(i.context.tolist()), tuple(i.candidates[i.answer].tolist())) for i in tasks.cloze}
    truths |= {(tuple(i.context.tolist()), tuple(i.continuations[i.answer].tolist())) for i in tasks.choice}

    def loglik(contexts, continuations):
        return torch.tensor(
            [
                0.0 if (tuple(c.tolist()), tuple(x.tolist())) in truths else -sign
                for c, x in zip(contexts, continuations)
            ]
        )

    return loglik


def test_an_oracle_scores_one_a_constant_scores_chance_an_anti_oracle_zero(tasks):
    assert zeroshot.accuracy(tasks, _oracle(tasks)) == {"cloze_acc": 1.0, "choice_acc": 1.0}
    constant = zeroshot.accuracy(tasks, lambda contexts, continuations: torch.zeros(len(contexts)))
    assert constant["choice_acc"] == pytest.approx(0.25) == pytest.approx(tasks.choice_chance)
    assert constant["cloze_acc"] == pytest.approx(tasks.cloze_chance) == pytest.approx(1 / 5)
    assert zeroshot.accuracy(tasks, _oracle(tasks, sign=-1.0)) == {"cloze_acc": 0.0, "choice_acc": 0.0}


def test_ties_are_credited_fractionally():
    ctx, options = torch.tensor([1, 2]), tuple(torch.tensor([t]) for t in (5, 6, 7, 8))
    tasks = zeroshot.ZeroShotTasks((), (zeroshot.ChoiceItem(ctx, options, 2),))
    two_tied = {5: 0.0, 6: -3.0, 7: 0.0, 8: -1.0}  # the truth (7) tied with 5 at the top: half a point
    result = zeroshot.accuracy(tasks, lambda c, x: torch.tensor([two_tied[int(t)] for t in x]))
    assert result["choice_acc"] == 0.5 and np.isnan(result["cloze_acc"])


def test_causal_loglik_is_the_summed_token_log_probability_padding_and_all(tokenizer):
    model, _ = tiny_llama(n_layers=2, d_model=32, n_heads=2, n_kv_heads=1, vocab_size=300, seed=0)
    g = torch.Generator().manual_seed(0)
    contexts = [torch.randint(300, (n,), generator=g) for n in (5, 9, 3)]
    continuations = [torch.randint(300, (n,), generator=g) for n in (4, 2, 6)]
    got = zeroshot.causal_loglik(model, "cpu", batch_size=2)(contexts, continuations)
    model.eval()
    for value, c, x in zip(got, contexts, continuations, strict=True):
        with torch.no_grad():
            log_p = F.log_softmax(model(input_ids=torch.cat([c, x])[None]).logits[0].float(), dim=-1)
        expected = sum(float(log_p[len(c) - 1 + t, x[t]]) for t in range(len(x)))
        assert float(value) == pytest.approx(expected, abs=1e-4)


def test_mapped_renumbers_every_id(tasks):
    ids = torch.arange(100_000) + 7
    moved = tasks.mapped(ids)
    assert torch.equal(moved.cloze[0].context, tasks.cloze[0].context + 7)
    assert torch.equal(moved.choice[0].continuations[1], tasks.choice[0].continuations[1] + 7)
    assert moved.choice[0].answer == tasks.choice[0].answer


def test_too_short_a_text_is_a_one_line_error(tokenizer):
    with pytest.raises(WorkbenchError, match="no zero-shot item"):
        zeroshot.build_tasks(torch.tensor([1, 2, 3]), tokenizer, n_items=5, context=16)
