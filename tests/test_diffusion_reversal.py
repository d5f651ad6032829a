"""The reversal-curse data set (Berglund et al. / SMDM): one-direction and both-direction subsets, 30
paraphrases, containment scoring."""

import pytest
import torch

from workbench.diffusion import reversal
from workbench.models import load_tokenizer


def test_people_are_unique_and_split_in_three_subsets():
    people = reversal.make_people(40, seed=1)
    assert len({p.name for p in people}) == len({p.description for p in people}) == 40
    trained = [p.trained for p in people]
    assert trained.count("N2D") == trained.count("D2N") == 13 and trained.count(reversal.BOTH) == 14


@pytest.mark.slow  # 0.7 s quiet: too long for test-fast's minute
def test_thirty_paraphrases_per_direction_each_a_prefix_of_its_sentence():
    tokenizer = load_tokenizer()
    assert len(reversal.NAME_TO_DESCRIPTION) == len(reversal.DESCRIPTION_TO_NAME) == 30
    data = reversal.build(tokenizer, 3, paraphrases=30, seed=0)
    assert len(data.rows) == (1 + 1 + 2) * 30  # one person per subset; the "both" person in both directions
    texts = {tokenizer.decode(row[row != data.eos]) for row in data.rows}
    assert len(texts) == len(data.rows)  # 30 distinct sentences per direction


def test_each_person_is_trained_in_its_directions_and_tests_are_prefixes():
    tokenizer = load_tokenizer()
    data = reversal.build(tokenizer, 9, paraphrases=2, seed=0)
    texts = [tokenizer.decode(row[row != data.eos]) for row in data.rows]
    assert len(texts) == (3 + 3 + 2 * 3) * 2
    for person in data.people:
        seen = [t for t in texts if person.name in t]
        assert len(seen) == 2 * len(reversal.trained_directions(person))
        assert all(person.description in t for t in seen)
        if person.trained == reversal.BOTH:
            assert any(t.startswith(person.prompt("N2D", 0)) for t in seen)
            assert any(t.startswith(person.prompt("D2N", 0)) for t in seen)
            continue
        assert all(
            t.startswith(person.prompt(person.trained, 0)) or t.startswith(person.prompt(person.trained, 1))
            for t in seen
        )
        reverse = "D2N" if person.trained == "N2D" else "N2D"
        assert not any(t.startswith(person.prompt(reverse, 0)) for t in seen)  # the reverse question never appears
    first = data.people[0]
    prompt_ids = tokenizer(first.prompt(first.trained), add_special_tokens=False)["input_ids"]
    assert data.rows[0, : len(prompt_ids)].tolist() == prompt_ids  # a test prompt is an exact prefix of its row


def test_accuracy_scores_an_oracle_perfectly_and_a_constant_answer_not():
    tokenizer = load_tokenizer()
    data = reversal.build(tokenizer, 6, paraphrases=1, seed=0)
    answers = {}
    for person in data.people:
        for direction in reversal.DIRECTIONS:
            ids = tokenizer(person.prompt(direction), add_special_tokens=False)["input_ids"]
            answers[tuple(ids)] = tokenizer(f" {person.answer(direction)}.", add_special_tokens=False)["input_ids"]

    def oracle(prompt, n_new):
        rows = [p + answers[tuple(p)] + [data.eos] * n_new for p in prompt.tolist()]
        return torch.tensor([r[: prompt.shape[1] + n_new] for r in rows])

    def constant(prompt, n_new):
        return torch.cat([prompt, torch.full((len(prompt), n_new), data.eos)], 1)

    perfect = reversal.accuracy(oracle, data, tokenizer, "cpu")
    assert perfect["seen"] == perfect["reverse"] == perfect["both"] == perfect["reverse_exact"] == 1.0
    assert reversal.accuracy(constant, data, tokenizer, "cpu")["seen"] == 0.0


def test_containment_counts_an_answer_inside_a_longer_generation():
    # SMDM's evaluate_reverse.py: the reference contained in the generation; exact match would miss it
    tokenizer = load_tokenizer()
    data = reversal.build(tokenizer, 6, paraphrases=1, seed=0)
    answers = {}
    for person in data.people:
        for direction in reversal.DIRECTIONS:
            ids = tokenizer(person.prompt(direction), add_special_tokens=False)["input_ids"]
            answers[tuple(ids)] = tokenizer(f" {person.answer(direction)}, of course.", add_special_tokens=False)[
                "input_ids"
            ]

    def wordy(prompt, n_new):
        rows = [p + answers[tuple(p)] + [data.eos] * n_new for p in prompt.tolist()]
        return torch.tensor([r[: prompt.shape[1] + n_new] for r in rows])

    scores = reversal.accuracy(wordy, data, tokenizer, "cpu")
    assert scores["reverse_exact"] == 0.0 and scores["seen_exact"] == 0.0
    assert scores["seen"] == scores["reverse"] == scores["both"] == 1.0


def test_infill_masks_the_first_entity_of_the_trained_sentence():
    tokenizer = load_tokenizer()
    data = reversal.build(tokenizer, 6, paraphrases=1, seed=0)
    mask = len(tokenizer)
    seen = []

    def oracle(x):
        seen.append(x.clone())
        return torch.where(x == mask, data.rows[: len(x)], x)  # one-direction people first: their template 0 rows

    assert reversal.infill_accuracy(oracle, data, tokenizer, mask, "cpu") == 1.0
    masked = seen[0] == mask
    for person, row in zip([p for p in data.people if p.trained != reversal.BOTH], masked):
        first = row.nonzero().squeeze(1)
        assert len(first) > 0 and (first[1:] == first[:-1] + 1).all()  # one contiguous span
        assert (first[0] == 0) == (person.trained == "N2D")  # the name opens "⟨name⟩ is the …"
    assert reversal.infill_accuracy(lambda x: torch.where(x == mask, data.eos, x), data, tokenizer, mask, "cpu") == 0.0
