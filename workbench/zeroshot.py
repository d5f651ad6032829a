"""Zero-shot accuracy, offline: a last-word cloze and a 4-way continuation choice from held-out text.

EchoAtt and SMDM report zero-shot accuracy (LAMBADA, multiple-choice suites) beside perplexity; this
module builds two such tasks from held-out tokens only (never from training text), so every model
of the workbench is scored on the same items without a download:

- **cloze** (LAMBADA-style): a passage ends just before a word (a space-led, alphabetic word of at
  least `min_word_chars` letters, possibly several tokens); the model must put that word first among
  `cloze_choices` candidates: the true word and other distinct words *of the same passage* (filled,
  when the passage has too few, from words elsewhere in the held-out text). Scored by **ranking**,
  not by greedy decoding: LAMBADA's greedy exact match needs a model's next-token argmax, which a
  masked diffusion model does not have; ranking needs only a log-likelihood (`loglik`), which every
  model here can give (an MDM its ELBO bound), so every model is scored by one rule. Candidates are
  compared by summed log-likelihood of their tokens as they occur in the text (with the leading
  space), the score LAMBADA's greedy rule also rests on. Chance is 1 / `cloze_choices`.
- **choice** (4-way): a context of `context` tokens, and four continuations of `continuation`
  tokens: the true one and three drawn from other held-out positions (far from the item, each
  starting at a word as the truth does). Equal token lengths, so summed log-likelihoods compare
  fairly; the highest wins. Chance is 0.25.

Passages never cross a document boundary: a context is cut after the last end-of-text token in
its window. The truth's position among the candidates is drawn by the seed, and ties are credited
fractionally (a truth tied with t−1 others earns 1/t), so a model that scores everything alike
earns exactly chance, whatever the order. Everything is deterministic given the seed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import WorkbenchError
from .train import decoder_states, plain_head

LogLik = Callable[[list[torch.Tensor], list[torch.Tensor]], torch.Tensor]
CHOICES = 4  # the continuation task's options


@dataclass(frozen=True)
class ClozeItem:
    context: torch.Tensor  # [c] ids before the word
    candidates: tuple[torch.Tensor, ...]  # each a word's ids; candidates[answer] is the true last word
    answer: int


@dataclass(frozen=True)
class ChoiceItem:
    context: torch.Tensor  # [c]
    continuations: tuple[torch.Tensor, ...]  # CHOICES tensors of equal length
    answer: int


@dataclass(frozen=True)
class ZeroShotTasks:
    """The items, built from held-out tokens only (`build_tasks`)."""

    cloze: tuple[ClozeItem, ...]
    choice: tuple[ChoiceItem, ...]
    seed: int = 0

    @property
    def cloze_chance(self) -> float:
        return float(np.mean([1 / len(item.candidates) for item in self.cloze])) if self.cloze else float("nan")

    @property
    def choice_chance(self) -> float:
        return 1 / CHOICES

    def mapped(self, ids: torch.Tensor) -> ZeroShotTasks:
        """The same items with every token id t replaced by ids[t]: for a model trained on renumbered
        tokens (e.g. a reduced vocabulary), tasks are built on the tokenizer's ids and then mapped."""

        def m(t: torch.Tensor) -> torch.Tensor:
            return ids[t]

        return ZeroShotTasks(
            tuple(ClozeItem(m(i.context), tuple(m(c) for c in i.candidates), i.answer) for i in self.cloze),
            tuple(ChoiceItem(m(i.context), tuple(m(c) for c in i.continuations), i.answer) for i in self.choice),
            self.seed,
        )


def _word_tables(tokens: np.ndarray, tokenizer) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per token: does it start a word (a space then letters), does it continue one (letters only), its text."""
    unique, index = np.unique(tokens, return_inverse=True)
    texts = np.array([tokenizer.decode([int(t)]) for t in unique], dtype=object)
    starts = np.array([len(s) > 1 and s[0] == " " and s[1:].isalpha() for s in texts], dtype=bool)
    continues = np.array([s.isalpha() for s in texts], dtype=bool)
    return starts[index], continues[index], texts[index]


def _words(starts: np.ndarray, continues: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) spans of the words in the stream: a word-start token and the letter tokens after it
    (vectorised: a held-out code corpus has millions of tokens)."""
    stops = np.flatnonzero(~(continues & ~starts))  # tokens that cannot extend a word
    first = np.flatnonzero(starts)
    ends = stops[np.searchsorted(stops, first, side="right")] if len(stops) else np.full(len(first), len(starts))
    return list(zip(first.tolist(), ends.tolist(), strict=True))


def _context(tokens: torch.Tensor, end: int, length: int, eos: int | None) -> torch.Tensor:
    window = tokens[max(0, end - length) : end]
    if eos is not None and (cut := torch.nonzero(window == eos)).numel():
        window = window[int(cut[-1]) + 1 :]
    return window.clone()


def _place(truth: torch.Tensor, others: list[torch.Tensor], rng: np.random.Generator):
    answer = int(rng.integers(len(others) + 1))
    return tuple(others[:answer] + [truth] + others[answer:]), answer


def build_tasks(
    val_tokens: torch.Tensor,
    tokenizer,
    *,
    n_items: int,
    context: int,
    seed: int = 0,
    continuation: int = 16,
    cloze_choices: int = 5,
    min_word_chars: int = 4,
    min_context: int = 8,
) -> ZeroShotTasks:
    """Up to `n_items` cloze and `n_items` choice items from the held-out stream `val_tokens` (ids of
    `tokenizer`); fewer when the text has fewer usable positions. Raises when it has none."""
    tokens = torch.as_tensor(val_tokens).long().cpu()
    array = tokens.numpy()
    eos = tokenizer.eos_token_id
    starts, continues, pieces = _word_tables(array, tokenizer)
    spans = _words(np.append(starts, False), np.append(continues, False))  # a sentinel ends the last word
    rng = np.random.default_rng(seed)
    chars = np.concatenate([[0], np.cumsum([len(p) for p in pieces])])  # text length of any span by difference

    def text(span: tuple[int, int]) -> str:
        return "".join(pieces[span[0] : span[1]])

    def usable(span: tuple[int, int]) -> bool:
        return chars[span[1]] - chars[span[0]] - 1 >= min_word_chars and span[0] >= min_context

    targets = [s for s in spans if usable(s)]
    target_starts = [s[0] for s in targets]
    by_length: dict[int, list[tuple[int, int]]] = {}
    for span in targets:
        by_length.setdefault(span[1] - span[0], []).append(span)
    cloze = []
    for k in sorted(rng.choice(len(targets), min(n_items, len(targets)), replace=False)) if targets else []:
        start, end = targets[k]
        ctx = _context(tokens, start, context, eos)
        if len(ctx) < min_context:
            continue
        # Candidates have as many tokens as the truth (summed log-likelihoods then compare fairly):
        # the passage's own words first, most recent first, then words from anywhere in the held-out text.
        same = by_length[end - start]
        inside = targets[bisect_left(target_starts, start - len(ctx)) : bisect_left(target_starts, start)]
        pool = [s for s in inside[::-1] if s[1] - s[0] == end - start] + [
            same[j] for j in rng.choice(len(same), min(len(same), 8 * cloze_choices), replace=False)
        ]
        seen, others = {text((start, end))}, []
        for span in pool:
            if len(others) == cloze_choices - 1:
                break
            if text(span) not in seen:
                seen.add(text(span))
                others.append(tokens[span[0] : span[1]].clone())
        if len(others) < cloze_choices - 1:
            continue
        order = rng.permutation(len(others))
        candidates, answer = _place(tokens[start:end].clone(), [others[j] for j in order], rng)
        cloze.append(ClozeItem(ctx, candidates, answer))

    positions = np.array([s[0] for s in spans if s[0] >= min_context and s[0] + continuation <= len(array)])
    choice = []
    far = context + continuation
    for p in sorted(rng.choice(positions, min(n_items, len(positions)), replace=False)) if len(positions) else []:
        ctx = _context(tokens, int(p), context, eos)
        away = positions[np.abs(positions - p) >= far]
        if len(ctx) < min_context or len(away) < CHOICES - 1:
            continue
        truth = tokens[p : p + continuation]
        others = [tokens[q : q + continuation].clone() for q in rng.permutation(away)[: 4 * CHOICES]]
        others = [o for o in others if not torch.equal(o, truth)][: CHOICES - 1]  # repeated text is no distractor
        if len(others) < CHOICES - 1:
            continue
        continuations, answer = _place(truth.clone(), others, rng)
        choice.append(ChoiceItem(ctx, continuations, answer))
    if not cloze and not choice:
        raise WorkbenchError(
            f"no zero-shot item could be built from {len(tokens)} held-out tokens: use a longer held-out text"
        )
    return ZeroShotTasks(tuple(cloze), tuple(choice), seed)


def _credit(scores: torch.Tensor, answer: int) -> float:
    """1/t when the truth is among the t options tied at the best score, else 0."""
    best = scores == scores.max()
    return float(best[answer]) / float(best.sum())


def accuracy(tasks: ZeroShotTasks, loglik: LogLik) -> dict[str, float]:
    """{"cloze_acc", "choice_acc"}: the mean credit of the true option under `loglik` (NaN for a task
    with no items). `loglik(contexts, continuations)` is called once with every (context, option) pair."""
    groups = [(i.context, i.candidates, i.answer) for i in tasks.cloze] + [
        (i.context, i.continuations, i.answer) for i in tasks.choice
    ]
    contexts = [ctx for ctx, options, _ in groups for _ in options]
    options = [option for _, opts, _ in groups for option in opts]
    scores = torch.as_tensor(loglik(contexts, options), dtype=torch.float64).flatten().cpu() if options else None
    credits, at = [], 0
    for _, opts, answer in groups:
        credits.append(_credit(scores[at : at + len(opts)], answer))
        at += len(opts)
    n = len(tasks.cloze)
    return {
        "cloze_acc": float(np.mean(credits[:n])) if n else float("nan"),
        "choice_acc": float(np.mean(credits[n:])) if tasks.choice else float("nan"),
    }


def causal_loglik(model: torch.nn.Module, device: str | torch.device, batch_size: int = 16) -> LogLik:
    """The log-likelihood of a causal LM: Σ_t log p(continuation_t | context, continuation_<t), per pair.

    Pairs are right-padded into batches (padding after the scored tokens cannot reach them through a
    causal mask); for LLaMA-family bodies only the scored positions go through the head.
    """
    device = torch.device(device)

    @torch.no_grad()
    def loglik(contexts: Sequence[torch.Tensor], continuations: Sequence[torch.Tensor]) -> torch.Tensor:
        if any(len(c) == 0 for c in contexts):
            raise WorkbenchError("causal_loglik needs a non-empty context for every pair (it predicts the first token)")
        was_training = model.training
        model.eval()
        out = []
        head = plain_head(model)
        for b in range(0, len(contexts), batch_size):
            pairs = list(zip(contexts[b : b + batch_size], continuations[b : b + batch_size], strict=True))
            length = max(len(c) + len(x) for c, x in pairs)
            inputs = torch.zeros(len(pairs), length, dtype=torch.long)
            for row, (c, x) in enumerate(pairs):
                inputs[row, : len(c) + len(x)] = torch.cat([c, x])
            inputs = inputs.to(device)
            rows = torch.cat([torch.full((len(x),), row) for row, (_, x) in enumerate(pairs)]).to(device)
            cols = torch.cat([torch.arange(len(c) - 1, len(c) + len(x) - 1) for c, x in pairs]).to(device)
            targets = torch.cat([x for _, x in pairs]).to(device)  # the continuation tokens, row after row
            if head is not None:
                scores = head(decoder_states(model, inputs)[rows, cols])  # [n, V]: only the scored positions
            else:
                scores = model(input_ids=inputs).logits[rows, cols]
            token_ll = F.log_softmax(scores.float(), dim=-1).gather(1, targets[:, None]).squeeze(1).double()
            out.append(torch.zeros(len(pairs), dtype=torch.float64, device=device).index_add_(0, rows, token_ll))
        model.train(was_training)
        return torch.cat(out).cpu() if out else torch.zeros(0, dtype=torch.float64)

    return loglik
