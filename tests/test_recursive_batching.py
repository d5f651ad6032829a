"""Depth-wise batching: the scheduler against hand-worked queues, cost measurement, KV-cached decoding."""

import numpy as np
import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from workbench.recursive.batching import (
    cost_function,
    kv_fill_fraction,
    launch_bound,
    loop_step_costs,
    requests_from_exits,
    simulate,
    throughput_table,
    work_cost,
)
from workbench.recursive.convert import convert
from workbench.recursive.model import rms_norm

# Three requests of two tokens; A and C exit every token after loop 1, B needs both loops.
REQUESTS = [np.array([1, 1]), np.array([2, 2]), np.array([1, 1])]


def test_schemes_on_a_hand_worked_queue():
    one = lambda n: 1.0  # every loop step costs 1 s whatever the batch
    # static: batch {A, B}: 2 tokens x 2 loops, then {C}: 2 x 2  -> 8 s
    assert simulate("static", REQUESTS, loops=2, slots=2, cost=one).seconds == 8
    # continuous sequence-wise, no exit: A, B finish together, then C -> 8 s
    assert simulate("csb", REQUESTS, loops=2, slots=2, cost=one).seconds == 8
    # with early exit, but lock-step: B's depth sets each step (2 + 2), then C alone (1 + 1) -> 6 s
    assert simulate("csb_exit", REQUESTS, loops=2, slots=2, cost=one).seconds == 6
    # depth-wise: A's freed slot takes C at loop 1 while B is at loop 2 -> 4 loop steps
    result = simulate("cdb", REQUESTS, loops=2, slots=2, cost=one)
    assert result.seconds == 4 and result.loop_steps == 4 and result.tokens == 6
    assert result.tokens_per_s == 1.5


def test_shrinking_batch_costs_and_bad_scheme():
    linear = lambda n: float(n)
    # csb_exit with cost n: each token step runs loop 1 for A and B (2) and loop 2 for B only (1); then C: 1 + 0
    assert simulate("csb_exit", REQUESTS, loops=2, slots=2, cost=linear).seconds == 3 + 3 + 1 + 1
    with pytest.raises(ValueError, match="unknown scheme"):
        simulate("magic", REQUESTS, loops=2, slots=2, cost=linear)


def test_without_exits_every_scheme_does_all_loops():
    full = [np.full(5, 3) for _ in range(4)]
    one = lambda n: 1.0
    assert {simulate(s, full, loops=3, slots=2, cost=one).seconds for s in ("static", "csb", "csb_exit", "cdb")} == {
        30.0
    }


def test_exited_tokens_owe_their_kv_to_the_next_forward_at_that_loop():
    linear = lambda n: float(n)
    shallow_then_deep = [
        np.array([1, 2])
    ]  # token 1 exits after loop 1; token 2 runs loop 2 and attends to token 1 there
    for scheme in ("csb_exit", "cdb"):
        free = simulate(scheme, shallow_then_deep, loops=2, slots=1, cost=linear)
        owed = simulate(scheme, shallow_then_deep, loops=2, slots=1, cost=linear, kv_fill=0.5)
        assert free.seconds == 3.0 and owed.seconds == 3.5 and owed.kv_fills == 1  # loop 2 carries half a row more
    # a debt nobody needs (the request ends before any later token goes deeper) is never paid
    assert simulate("cdb", [np.array([2, 1])], loops=2, slots=1, cost=linear, kv_fill=0.5).kv_fills == 0


def test_kv_fill_is_the_share_of_the_k_and_v_projections():
    config = LlamaConfig(hidden_size=576, intermediate_size=1536, num_attention_heads=9, num_key_value_heads=3)
    # SmolLM2-135M: k, v 576x192 each; q, o 576x576; gate, up, down 576x1536
    assert kv_fill_fraction(config) == pytest.approx(2 * 192 / (2 * 576 + 2 * 192 + 3 * 1536))


def test_flat_costs_are_called_launch_bound_and_work_costs_scale_with_rows():
    assert launch_bound({1: 7.60e-3, 32: 7.85e-3})  # the H200 run's loop costs
    assert not launch_bound({1: 1.0, 32: 20.0})
    cost = work_cost({1: 7.60e-3, 32: 7.85e-3})
    assert cost(64) == pytest.approx(2 * cost(32)) and cost(32) == pytest.approx(7.85e-3)


def test_throughput_table_has_both_cost_models_every_draw_and_speedups_per_draw():
    rng = np.random.default_rng(0)
    rules = {"oracle": rng.integers(1, 3, 400), "confidence ≥ 0.5": np.full(400, 2)}
    table = throughput_table(rules, 2, {1: 1.0, 4: 1.0}, slots=4, count=12, length=10, draws=2, kv_fill=0.1)
    assert set(table["costs"]) == {"measured", "work"} and set(table["draw"]) == {0, 1}
    assert len(table) == 2 * 2 * (2 + 2 * 2)
    csb = table[table["scheme"] == "csb"]
    assert np.allclose(csb["speedup_vs_csb"], 1.0)
    # exiting nowhere early (confidence rule = B everywhere) gains nothing under work costs
    never = table.query("scheme == 'cdb' and exit_rule == 'confidence ≥ 0.5' and costs == 'work'")
    assert np.allclose(never["speedup_vs_csb"], 1.0)
    # under flat costs the oracle's gain is a ratio of loop steps; under work costs it is smaller or equal
    oracle = table.query("scheme == 'cdb' and exit_rule == 'oracle'").groupby("costs")["speedup_vs_csb"].mean()
    assert oracle["measured"] > 1.0 and oracle["work"] <= oracle["measured"]


def test_cost_function_interpolates_and_never_falls_with_batch_size():
    cost = cost_function({1: 5.0, 2: 1.0, 4: 2.0})
    assert cost(1) == 1.0  # a batch of 1 can run padded to 2
    assert cost(3) == pytest.approx(1.5)
    assert cost(8) == 2.0 and cost(0) == 0.0


def test_requests_are_stretches_of_the_measured_exits():
    exits = np.arange(100) % 3 + 1
    requests = requests_from_exits(exits, length=10, count=20, seed=1)
    assert len(requests) == 20 and all(5 <= len(r) <= 10 for r in requests)
    assert all(np.array_equal(r, np.arange(r[0] - 1, r[0] - 1 + len(r)) % 3 + 1) for r in requests)


@pytest.fixture
def recursive():
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return convert(LlamaForCausalLM(config), 2, "stepwise")


def test_decode_with_cached_keys_equals_the_full_forward(recursive):
    layer, body = recursive.model.layers[1], recursive.model
    hidden = torch.randn(2, 7, 32)
    rope = body.rotary_emb(hidden, position_ids=torch.arange(7)[None])
    full = layer(hidden, position_embeddings=rope)
    _, past_k, past_v = layer._qkv(
        rms_norm(hidden[:, :6], layer.shared.norms.attn, layer.eps), tuple(t[:, :6] for t in rope)
    )
    step, k, v = layer.decode(hidden[:, 6:], tuple(t[:, 6:] for t in rope), past_k, past_v)
    torch.testing.assert_close(step, full[:, 6:], atol=1e-5, rtol=1e-5)
    assert k.shape == (2, 2, 7, 8)


def test_loop_step_costs_are_measured_for_each_batch_size(recursive):
    costs = loop_step_costs(recursive, [1, 4], context_len=16, rounds=2, warmup=1)
    assert set(costs) == {1, 4} and all(c > 0 for c in costs.values())
