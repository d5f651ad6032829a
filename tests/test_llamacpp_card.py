"""The llama.cpp reference card: measured as a torch card is (checked against a stand-in `llama_cpp` whose
logits come from a torch model, so a card of the same model must match the torch card's quality numbers
exactly), its facts read from the real GGUF file, and, where llama-cpp-python is installed, its
perplexity on the cards' windows within Q4_1's measured gap of float32 SmolLM2's."""

import codecs
import dataclasses
import sys
import this
import types

import pandas as pd
import pytest
import torch

from workbench import cards
from workbench.cpu import llamacpp
from workbench.errors import WorkbenchError
from workbench.models import GGUF_FILE, gguf_dir, tiny_llama
from workbench.runs import RunStore

ZEN = codecs.decode(this.s, "rot13")


class TorchLlama:
    """The part of `llama_cpp.Llama` the card uses, computed by a torch model: `n_tokens` is where the next
    `eval` writes (what was evaluated after it is dropped), `scores` the logits after every position."""

    model = None
    tokenizer = None
    shift = 0  # > 0: a file whose tokenizer numbers text otherwise

    def __init__(
        self,
        path,
        n_ctx=512,
        n_batch=512,
        n_threads=None,
        n_threads_batch=None,
        logits_all=False,
        verbose=True,
        vocab_only=False,
    ):
        self.ids: list[int] = []
        self.n_tokens = 0
        self.scores = None

    def n_vocab(self) -> int:
        return self.model.config.vocab_size

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        return [i + self.shift for i in self.tokenizer(text.decode(), add_special_tokens=False)["input_ids"]]

    def reset(self) -> None:
        self.n_tokens = 0

    def eval(self, tokens) -> None:
        self.ids = self.ids[: self.n_tokens] + list(tokens)
        self.n_tokens = len(self.ids)
        with torch.no_grad():
            self.scores = self.model(input_ids=torch.tensor([self.ids])).logits[0].numpy()

    def sample(self, top_k: int = 40) -> int:
        return int(self.scores[self.n_tokens - 1].argmax())


@pytest.fixture
def stand_in(monkeypatch):
    """A tiny model behind the stand-in, its facts as a GGUF header would give them, short held-out text."""
    model, tokenizer = tiny_llama(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, d_ff=128)
    TorchLlama.model, TorchLlama.tokenizer, TorchLlama.shift = model.eval(), tokenizer, 0
    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=TorchLlama, __version__="stand-in"))
    total, non_embedding = cards.parameter_counts(model)
    facts = llamacpp.GgufFacts(total, non_embedding, tensor_bytes=total // 2, file_bytes=total,
                               vocab_size=len(tokenizer), layers=2, kv_heads=2, head_dim=16)  # fmt: skip
    monkeypatch.setattr(llamacpp, "gguf_facts", lambda path: facts)
    monkeypatch.setattr(cards, "_heldout", lambda which, tok: torch.tensor(tok(ZEN * 3)["input_ids"]))
    monkeypatch.setattr(cards, "_TASKS", {})
    return model, tokenizer, facts


@pytest.mark.slow  # two cards with zero-shot and speed rounds: 24-28 s of test-fast under load
def test_card_matches_the_torch_card_of_the_same_model_and_round_trips(tmp_path, stand_in):
    model, tokenizer, facts = stand_in
    store = RunStore(tmp_path / "runs.db")
    with store.start_run("test", "torch") as run:
        torch_card = cards.write_card(run, model, idea="reference", arm="float32", tokenizer=tokenizer, profile="smoke")
    with store.start_run("test", "llama.cpp") as run:
        card = llamacpp.write_card(run, tmp_path / "model.gguf", tokenizer, cards.CardProfile.resolve("smoke"),
                                   arm="tiny llama.cpp", threads=1)  # fmt: skip
    assert card.code_ppl == pytest.approx(torch_card.code_ppl, rel=1e-5)
    assert card.english_ppl == pytest.approx(torch_card.english_ppl, rel=1e-5)
    assert (card.cloze_acc, card.choice_acc) == pytest.approx((torch_card.cloze_acc, torch_card.choice_acc))
    assert card.kv_bytes_per_token == torch_card.kv_bytes_per_token / 2  # f16 where torch holds float32
    assert (card.params, card.weight_bytes, card.eval_spec) == (torch_card.params, facts.file_bytes, "4x64")
    assert card.device.endswith(", 1 threads") and card.precision == "Q4_1" and not card.weights_kept
    assert card.speed["decode_b1_tok_s"] > 0  # a batch of one: measured
    assert card.speed["decode_b4_tok_s"] is None and card.speed["prefill_tok_s"] is None  # smoke prefills 2 x 64
    frame = cards.load_cards(store)
    row = frame[frame["arm"] == "tiny llama.cpp"].iloc[0]
    for key, value in card.as_row().items():  # None: unmeasured (NaN in a column the torch card fills)
        assert row[key] == value or (value is None and pd.isna(row[key])), key


def test_loglik_keeps_a_shared_context_and_scores_as_torch_does(stand_in):
    model, _, _ = stand_in
    context, other = torch.tensor([5, 9, 13]), torch.tensor([7, 2])
    options = [torch.tensor([4]), torch.tensor([8, 1]), torch.tensor([3, 3, 3])]
    contexts = [context, context, context, other]  # three options of one context, then another context
    expected = cards.zeroshot.causal_loglik(model, "cpu")(contexts, [*options, options[0]])
    assert torch.allclose(llamacpp.loglik("model.gguf")(contexts, [*options, options[0]]), expected, rtol=1e-5)


def test_a_file_numbering_text_otherwise_is_refused(stand_in):
    _, tokenizer, _ = stand_in
    TorchLlama.shift = 1
    windows = {"code": torch.tensor([tokenizer(ZEN)["input_ids"][:16]])}
    with pytest.raises(WorkbenchError, match="numbers the code held-out text otherwise"):
        llamacpp.check_tokenizer("model.gguf", tokenizer, windows)


@pytest.mark.slow
def test_llama_cpp_card_is_float32_smollm2_within_q4_1s_gap(tmp_path):
    """On the real file: the card's perplexities within TOLERANCE of float32 SmolLM2's card on the same windows
    (the float32 model is this file de-quantised, so the gap is llama.cpp's arithmetic: Q8_1 activations in its
    Q4_1 matmuls, an f16 KV cache), its facts those of the torch model, and it round-trips through the store."""
    pytest.importorskip("llama_cpp")
    from workbench.models import load_model

    tolerance = 0.01  # measured gap: see docs/results.md (frontier, llama.cpp reference)
    model, tokenizer = load_model(dtype="float32", device="cpu")
    settings = dataclasses.replace(
        cards.CardProfile.resolve("smoke"), eval_windows=8, eval_context=128, cpu_zeroshot=False
    )  # zero-shot: the unit tests check its scoring; here minutes
    store = RunStore(tmp_path / "runs.db")
    with store.start_run("test", "float32") as run:
        reference = cards.write_card(run, model.eval(), idea="reference", arm="float32", tokenizer=tokenizer,
                                     profile=settings)  # fmt: skip
    with store.start_run("test", "llama.cpp") as run:
        card = llamacpp.write_card(run, gguf_dir() / GGUF_FILE, tokenizer, settings, arm="llama.cpp Q4_1")
    for key in ("code_ppl", "english_ppl"):
        assert abs(getattr(card, key) / getattr(reference, key) - 1) < tolerance, (key, card, reference)
    assert (card.params, card.non_embedding_params) == (reference.params, reference.non_embedding_params)
    assert card.kv_bytes_per_token == reference.kv_bytes_per_token / 2
    assert card.speed["decode_b1_tok_s"] > 0 and card.speed["prefill_tok_s"] is None
    row = cards.load_cards(store).set_index("arm").loc["llama.cpp Q4_1"]
    assert (row["code_ppl"], row["english_ppl"], row["weight_bytes"]) == (card.code_ppl, card.english_ppl,
                                                                           card.weight_bytes)  # fmt: skip
