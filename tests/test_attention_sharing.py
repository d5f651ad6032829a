"""Choosing sharing groups from a similarity matrix: constructed matrices with known answers."""

import numpy as np
import pytest

from workbench.attention.sharing import choose_groups, followers, sharing_savings
from workbench.errors import WorkbenchError


def chain(n: int, adjacent: dict[tuple[int, int], float], base: float = 0.1) -> np.ndarray:
    """A symmetric [n, n] matrix: 1 on the diagonal, `base` elsewhere, given entries set."""
    matrix = np.full((n, n), base)
    np.fill_diagonal(matrix, 1.0)
    for (i, j), value in adjacent.items():
        matrix[i, j] = matrix[j, i] = value
    return matrix


def test_threshold_finds_the_similar_blocks():
    # layers 2-4 all alike (a block of 3), 6-7 alike, the rest not
    matrix = chain(10, {(2, 3): 0.9, (2, 4): 0.85, (3, 4): 0.9, (6, 7): 0.95})
    assert choose_groups(matrix, threshold=0.8) == [[2, 3, 4], [6, 7]]
    # a block is judged by S[head, follower]: layer 4 is too far from layer 2 at 0.88
    assert choose_groups(matrix, threshold=0.88) == [[2, 3], [6, 7]]
    assert choose_groups(matrix, threshold=0.99) == []


def test_chain_needs_similarity_to_the_head_not_the_neighbour():
    # 0-1-2-3 adjacent pairs alike, but 2 and 3 are far from 0 and from 1: best is [0,1], [2,3]
    matrix = chain(4, {(0, 1): 0.9, (1, 2): 0.9, (2, 3): 0.9})
    assert choose_groups(matrix, threshold=0.8, max_block=3) == [[0, 1], [2, 3]]


def test_max_block_caps_group_length():
    matrix = np.full((6, 6), 0.95)
    assert choose_groups(matrix, threshold=0.9, max_block=3) == [[0, 1, 2], [3, 4, 5]]
    assert choose_groups(matrix, threshold=0.9, max_block=2) == [[0, 1], [2, 3], [4, 5]]
    assert choose_groups(matrix, threshold=0.9, max_block=6) == [[0, 1, 2, 3, 4, 5]]


def test_n_shared_takes_the_most_similar_followers():
    matrix = chain(8, {(1, 2): 0.7, (4, 5): 0.9, (6, 7): 0.8})
    assert choose_groups(matrix, n_shared=1) == [[4, 5]]
    assert choose_groups(matrix, n_shared=2) == [[4, 5], [6, 7]]
    assert choose_groups(matrix, n_shared=3) == [[1, 2], [4, 5], [6, 7]]
    assert len(followers(choose_groups(matrix, n_shared=5))) == 5
    assert choose_groups(matrix, n_shared=0) == []


def test_eligible_range_and_ties_are_deterministic():
    matrix = np.full((6, 6), 0.9)
    # all equal: ties go to the groups that start earliest
    assert choose_groups(matrix, n_shared=1) == [[0, 1]]
    assert choose_groups(matrix, n_shared=1, eligible=range(2, 5)) == [[2, 3]]
    # layers 1-4: two followers either way ([1,2,3] or [1,2],[3,4]); the tie goes to the longer first group
    assert choose_groups(matrix, threshold=0.5, eligible=range(1, 5)) == [[1, 2, 3]]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(threshold=0.5, n_shared=2),
        dict(n_shared=7),
        dict(threshold=0.5, max_block=1),
        dict(threshold=0.5, eligible=[1, 3]),
    ],
)
def test_bad_requests_raise_one_line_errors(kwargs):
    with pytest.raises(WorkbenchError):
        choose_groups(np.eye(6), **kwargs)
    with pytest.raises(WorkbenchError):
        choose_groups(np.ones((3, 4)), threshold=0.5)


def test_savings_match_the_model_weights():
    from workbench.models import tiny_llama

    model, _ = tiny_llama(n_layers=4, d_model=64, n_heads=4, n_kv_heads=2)
    groups = [[0, 1, 2]]
    removed = sum(
        p.numel()
        for layer in (1, 2)
        for name in ("q_proj", "k_proj")
        for p in getattr(model.model.layers[layer].self_attn, name).parameters()
    )
    savings = sharing_savings(groups, model.config, seq_len=128)
    assert savings["followers"] == [1, 2] and savings["n_shared"] == 2
    assert savings["qk_params_removed"] == removed
    assert 0 < savings["flops_fraction"] < 1 and savings["attention_flops_skipped"] > 0


def test_savings_for_smollm2_config():
    from transformers import LlamaConfig

    config = LlamaConfig(
        hidden_size=576,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        head_dim=64,
        intermediate_size=1536,
        vocab_size=49152,
    )
    savings = sharing_savings([[3, 4], [7, 8, 9]], config)
    assert savings["qk_params_removed"] == 3 * 442_368  # |W_Q| + |W_K| per layer, docs/ideas.md
    assert savings["params_fraction"] == pytest.approx(3 * 442_368 / 134_515_008, rel=1e-3)
