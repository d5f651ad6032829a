"""Model cards and the frontier: every number against a hand computation, Pareto on constructed points."""

import codecs
import math
import this

import pandas as pd
import pytest
import torch

from workbench import cards, frontier
from workbench.errors import WorkbenchError
from workbench.models import count_parameters, tiny_llama
from workbench.runs import RunStore

ZEN = codecs.decode(this.s, "rot13")  # English words, in the standard library: no corpus needed


@pytest.fixture
def heldout(monkeypatch):
    """The common evaluation's held-out tokens from a short English text (the real ones take seconds to build)."""
    seen = []

    def fake(which: str, tokenizer) -> torch.Tensor:
        seen.append(which)
        text = ZEN * (3 if which == "code" else 4)
        return torch.tensor(tokenizer(text)["input_ids"])

    monkeypatch.setattr(cards, "_heldout", fake)
    monkeypatch.setattr(cards, "_TASKS", {}, raising=False)  # zero-shot items built from the fake text
    getattr(cards._tasks, "cache_clear", lambda: None)()
    yield seen
    getattr(cards._tasks, "cache_clear", lambda: None)()


@pytest.mark.slow  # 1.1 s quiet: too long for test-fast's minute
def test_card_of_a_tiny_model_and_its_kept_weights(tmp_path, heldout):
    model, tokenizer = tiny_llama(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, d_ff=128)
    model.eval()
    store = RunStore(tmp_path / "runs.db")
    with store.start_run("test", "tiny arm") as run:
        card = cards.write_card(run, model, idea="test", arm="tiny", tokenizer=tokenizer, profile="smoke",
                                training_tokens=1000, training_context=64, corpus="python-code")  # fmt: skip
    vocab, d = model.config.vocab_size, 64
    assert card.params == count_parameters(model)
    assert card.non_embedding_params == card.params - vocab * d  # the tied embedding counted once, then left out
    assert card.weight_bytes == 4 * card.params  # float32, tied once, no rotary table
    assert card.kv_bytes_per_token == 2 * 2 * 2 * 16 * 4  # K and V × layers × KV heads × head_dim × float32
    assert set(heldout) == {"code", "english"} and card.code_ppl > 1 and card.english_ppl > 1
    assert not card.quality_is_bound and card.eval_spec == "4x64" and card.device_kind == "cpu"
    assert 0 <= card.cloze_acc <= 1 and 0 <= card.choice_acc <= 1
    assert card.speed["prefill_tok_s"] > 0 and set(card.speed) >= {"decode_b1_tok_s", "decode_b4_tok_s"}
    frame = cards.load_cards(store)
    assert len(frame) == 1 and frame.loc[0, "run"] == "tiny arm" and frame.loc[0, "weights_kept"]
    again = cards.load_model(store, card.run_id)
    ids = torch.randint(0, 1000, (1, 9))
    assert torch.equal(again(input_ids=ids).logits, model(input_ids=ids).logits)


@pytest.mark.parametrize("kv_heads", [4, 2, 1])  # MHA, GQA, MQA
@pytest.mark.slow  # 0.8 s quiet: too long for test-fast's minute
def test_kv_bytes_per_token_follow_the_attention_layout(kv_heads):
    model, _ = tiny_llama(n_layers=3, d_model=64, n_heads=4, n_kv_heads=kv_heads)
    assert cards.kv_bytes_per_token(model.eval()) == 2 * 3 * kv_heads * 16 * 4
    assert cards.kv_bytes_per_token(model.to(torch.bfloat16)) == 2 * 3 * kv_heads * 16 * 2


def test_training_flops_against_a_hand_computation():
    model, _ = tiny_llama(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, d_ff=128)
    vocab = model.config.vocab_size
    per_layer = 64 * 64 + 2 * (64 * 32) + 64 * 64 + 3 * (64 * 128)  # q, k and v (2 KV heads of 16), o, SwiGLU
    matmul_weights = 2 * per_layer + 64 * vocab  # the tied output layer is a matmul every token
    attention = 4 * 128 * 64  # QKᵀ and AV over a 128-token window, d_attn = 64, per layer
    forward = 2 * matmul_weights + 2 * attention
    assert cards.forward_flops(model, tokens=1000, context=128) == 1000 * forward
    assert cards.train_flops(model, tokens=1000, context=128) == 3 * 1000 * forward


def test_a_card_refuses_nan(tmp_path, heldout):
    base = dict(idea="x", arm="a", run_id=1, params=10, non_embedding_params=5, precision="float32", weight_bytes=40,
                kv_bytes_per_token=8.0, code_ppl=10.0, english_ppl=12.0, quality_is_bound=False, eval_spec="4x64",
                device="cpu", device_kind="cpu", date="2026-01-01")  # fmt: skip
    cards.Card(**base)
    with pytest.raises(WorkbenchError, match="code_ppl is nan"):
        cards.Card(**{**base, "code_ppl": math.nan})
    with pytest.raises(WorkbenchError, match="decode_b1_tok_s is inf"):
        cards.Card(**base, speed={"decode_b1_tok_s": math.inf})
    model, tokenizer = tiny_llama()
    with torch.no_grad():
        model.model.norm.weight.fill_(math.nan)  # a diverged model
    with RunStore(tmp_path / "runs.db").start_run("test", "nan") as run, pytest.raises(WorkbenchError):
        cards.write_card(run, model.eval(), idea="x", arm="nan", tokenizer=tokenizer, profile="smoke")


def test_pareto_on_constructed_points():
    points = pd.DataFrame({"non_embedding_params": [1, 2, 3, 4, 2, None], "code_ppl": [30, 20, 25, 10, 20, 1]})
    # (3, 25) is dominated by (2, 20); the two (2, 20) tie and neither dominates the other; a missing x is never optimal
    assert frontier.pareto(points, "non_embedding_params", "code_ppl").tolist() == [1, 1, 0, 1, 1, 0]
    speeds = pd.DataFrame({"decode_b32_tok_s": [100, 200, 150], "cloze_acc": [0.5, 0.4, 0.3]})  # both "max"
    assert frontier.pareto(speeds, "decode_b32_tok_s", "cloze_acc").tolist() == [True, True, False]


def constructed_cards() -> pd.DataFrame:
    rows = []
    for i, (idea, kind, params, ppl, latency) in enumerate([
        ("echoatt", "gpu", 100, 20.0, 10.0), ("echoatt", "gpu", 80, 22.0, 8.0), ("recursive", "gpu", 50, 25.0, 12.0),
        ("cpu", "cpu", 100, 21.0, 30.0), ("cpu", "cpu", 100, 23.0, 15.0), ("diffusion", "gpu", 60, 40.0, None),
    ]):  # fmt: skip
        rows.append({"idea": idea, "arm": f"arm{i}", "run_id": i, "run": f"run {i}", "precision": "bfloat16",
                     "device": kind, "device_kind": kind, "non_embedding_params": params, "code_ppl": ppl,
                     "decode_latency_ms": latency, "quality_is_bound": idea == "diffusion", "composed": i == 4,
                     "eval_spec": "4x64", "corpus": "python-code"})  # fmt: skip
    return pd.DataFrame(rows)


def test_frontier_figure_marks_pareto_points_and_never_mixes_devices():
    table = constructed_cards()
    figure = frontier.frontier_figure(table, "non_embedding_params", "code_ppl")
    pareto = [t for t in figure.data if t.name == "Pareto frontier"]
    assert len(pareto) == 1 and list(pareto[0].x) == [50, 80, 100]  # recursive, then echoatt twice
    assert {t.name for t in figure.data} == {"echoatt", "recursive", "cpu", "diffusion", "Pareto frontier"}
    assert any("run 2" in text and "arm2" in text for t in figure.data for text in t.hovertext)
    by_device = frontier.frontier_figure(table, "decode_latency_ms", "code_ppl")
    assert [a.text for a in by_device.layout.annotations] == ["GPU", "CPU"]  # one panel each
    panels = {t.xaxis: set(t.x) for t in by_device.data if t.name == "Pareto frontier"}
    assert panels == {"x": {8.0, 10.0}, "x2": {15.0, 30.0}}  # a GPU and a CPU latency never share a frontier
    lines = frontier.conclusion(table, "decode_latency_ms")
    assert "(GPU)" in lines and "(CPU)" in lines and "**echoatt** from 8 to 10" in lines
    assert frontier.frontier_table(table, "non_embedding_params")["arm"].tolist() == ["arm2", "arm1", "arm0"]
    assert len(frontier.select(table, ideas=["cpu"], device_kind="cpu")) == 2
    empty = frontier.frontier_figure(frontier.select(table, ideas=["none"]), "non_embedding_params")
    assert len(empty.data) == 0
    low, high = figure.layout.yaxis.range  # log10 units: room beyond the extreme points for the ringed markers
    assert low <= math.log10(20.0 / 1.1) and high >= math.log10(40.0 * 1.1)
    flops = frontier.conclusion(
        table.assign(training_flops=[6.45e13, 9.4e13, 2.6e14, 1e15, 1.9e15, 3e15]), "training_flops"
    )
    assert "arm0 (6.45e+13: 20)" in flops and "64,450" not in flops  # FLOPs in scientific notation, not 14 digits


def test_composition_says_multiply_add_or_cancel():
    base, a, b = {"decode_latency_ms": 12.0}, {"decode_latency_ms": 6.0}, {"decode_latency_ms": 4.0}
    assert frontier.composition(base, a, b, {"decode_latency_ms": 2.0}, "decode_latency_ms").verdict == "multiply"
    assert frontier.composition(base, a, b, {"decode_latency_ms": 3.0}, "decode_latency_ms").verdict == "add"
    assert frontier.composition(base, a, b, {"decode_latency_ms": 5.0}, "decode_latency_ms").verdict == "cancel"
    noisy = frontier.composition(base, a, b, {"decode_latency_ms": 2.5}, "decode_latency_ms", spread=0.5)
    assert noisy.verdict == "cannot be told apart (within spread)" and "×6" in noisy.sentence()


def test_a_timed_composition_is_as_noisy_as_its_noisiest_timing():
    """The 2-core check of 2026-12-02 judged prefill with no spread at all, and one timing read "cancel"
    (×1.01 and ×1.02 alone, ×0.90 together); with the four timings' 9% spread it is not told apart."""
    speeds = [{"prefill_spread": s, "decode_b1_spread": 0.02} for s in (0.03, 0.09, 0.05, math.nan)]
    assert frontier.timing_spread(speeds, "prefill_tok_s") == 0.09
    assert frontier.timing_spread(speeds, "decode_latency_ms") == 0.02
    assert frontier.timing_spread(speeds, "weight_bytes") == 0.0  # exact: the same bytes every time
    base, a, b, both = ({"prefill_tok_s": v} for v in (100.0, 101.0, 102.0, 90.1))
    assert frontier.composition(base, a, b, both, "prefill_tok_s").verdict == "cancel"
    spread = frontier.timing_spread(speeds, "prefill_tok_s")
    assert frontier.composition(base, a, b, both, "prefill_tok_s", spread=spread).verdict != "cancel"
