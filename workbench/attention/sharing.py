"""Choosing which layers share attention (EchoAtt's "Copy" step) and what that saves.

A *sharing group* is a run of consecutive layers [h, h+1, ..., h+k]: the head h computes
A_h = softmax(Q_h K_hᵀ/√d + M) and every follower f reuses it, o_f = W_O^f (A_h V_f), so the
followers lose W_Q and W_K. What matters for a follower is therefore S[h, f], its similarity to
the group's *head*, not only to its neighbour.

Selection is an exact dynamic programme over partitions of the eligible layers into runs of at
most `max_block` layers (long chains compound the error: docs/ideas.md, EchoAtt):
- with a `threshold`: the most followers such that S[h, f] ≥ threshold for every follower
  (ties: the larger total S[h, f]);
- with `n_shared`: exactly n followers with the largest total S[h, f].
Both are deterministic (ties between equal partitions go to the earlier layers).

`similarity` is oriented "higher = more alike" (pass 1 − JSD, not JSD).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import WorkbenchError


def _block_scores(similarity: np.ndarray, start: int, max_block: int, stop: int) -> list[tuple[int, float, float]]:
    """For blocks [start, start+k) of length k = 1..max_block within `stop`: (k, total S[h, f], min S[h, f])."""
    out, total, lowest = [], 0.0, np.inf
    for length in range(1, max_block + 1):
        if start + length > stop:
            break
        if length > 1:
            value = float(similarity[start, start + length - 1])
            total, lowest = total + value, min(lowest, value)
        out.append((length, total, lowest))
    return out


def choose_groups(
    similarity: np.ndarray,
    threshold: float | None = None,
    n_shared: int | None = None,
    max_block: int = 3,
    eligible: range | Sequence[int] | None = None,
) -> list[list[int]]:
    """Groups of consecutive layers [[h, f1, ...], ...]; the first layer computes, the others reuse.

    `similarity`: [L, L], higher = more alike (e.g. the head-averaged, sink-removed cosine).
    Give exactly one of `threshold` (every follower f needs S[h, f] ≥ threshold; as many followers
    as possible) or `n_shared` (exactly that many followers, maximising Σ S[h, f]). `max_block`
    caps a group's length (head included). `eligible`: a consecutive range of layers that may
    take part (default all; e.g. range(1, L − 1) keeps the first and last layers intact).
    Groups of one layer are omitted. The result is sorted and deterministic.
    """
    similarity = np.asarray(similarity, dtype=float)
    if similarity.ndim != 2 or similarity.shape[0] != similarity.shape[1]:
        raise WorkbenchError(f"similarity must be a square [L, L] matrix, got shape {similarity.shape}")
    if (threshold is None) == (n_shared is None):
        raise WorkbenchError("give exactly one of threshold= (e.g. 0.8) or n_shared= (e.g. 6) to choose sharing groups")
    if max_block < 2:
        raise WorkbenchError(f"max_block must be at least 2 (a head and one follower), got {max_block}")
    n_layers = similarity.shape[0]
    layers = list(range(n_layers) if eligible is None else eligible)
    if not layers or layers != list(range(layers[0], layers[-1] + 1)) or layers[0] < 0 or layers[-1] >= n_layers:
        raise WorkbenchError(f"eligible must be a consecutive range of layers inside 0..{n_layers - 1}, got {eligible}")
    first, stop = layers[0], layers[-1] + 1
    if n_shared is not None and not 0 <= n_shared <= (stop - first) * (max_block - 1) // max_block:
        limit = (stop - first) * (max_block - 1) // max_block
        raise WorkbenchError(
            f"n_shared={n_shared} is not possible: at most {limit} followers fit in layers {first}..{stop - 1} "
            f"with max_block={max_block}"
        )

    if threshold is not None:
        # best[i] = (followers, total S) over layers i..stop-1; lexicographic max
        best: list[tuple[int, float, int, list[list[int]]]] = [(0, 0.0, 0, [])] * (stop - first + 1)
        for start in range(stop - 1, first - 1, -1):
            candidates = []
            for length, total, lowest in _block_scores(similarity, start, max_block, stop):
                if length > 1 and lowest < threshold:
                    break  # S[h, f] below threshold: no longer block from this head either
                n_rest, total_rest, _, groups_rest = best[start + length - first]
                group = [[*range(start, start + length)]] if length > 1 else []
                candidates.append((length - 1 + n_rest, total + total_rest, length, group + groups_rest))
            best[start - first] = max(candidates, key=lambda c: c[:3])  # ties: the group that starts here
        return best[0][3]

    # n_shared: table[i][n] = best (total S, groups) over layers i..stop-1 with exactly n followers
    minus = (-np.inf, [])
    table = [[minus] * (n_shared + 1) for _ in range(stop - first + 1)]
    table[stop - first][0] = (0.0, [])
    for start in range(stop - 1, first - 1, -1):
        for n in range(n_shared + 1):
            options = []
            for length, total, _ in _block_scores(similarity, start, max_block, stop):
                if length - 1 > n:
                    break
                rest_total, rest_groups = table[start + length - first][n - (length - 1)]
                if rest_total > -np.inf:
                    group = [[*range(start, start + length)]] if length > 1 else []
                    options.append((total + rest_total, length, group + rest_groups))
            if options:
                table[start - first][n] = max(options, key=lambda o: o[:2])[::2]  # ties: the group that starts here
    return table[0][n_shared][1]


def followers(groups: Sequence[Sequence[int]]) -> list[int]:
    """The layers that reuse attention (and lose W_Q, W_K): all but the first of each group."""
    return sorted(i for group in groups for i in group[1:])


def sharing_savings(
    groups: Sequence[Sequence[int]], config, seq_len: int = 1024, n_parameters: int | None = None
) -> dict:
    """What sharing removes, from the model config: parameters and forward FLOPs per sequence.

    Per follower: |W_Q| + |W_K| = d·(H + H_kv)·d_head (+ biases if the model has them); FLOPs at
    sequence length T: the Q/K projections 2·T·d·(H + H_kv)·d_head, the scores QKᵀ 2·H·T²·d_head
    and the softmax (~5·H·T², as the eager kernel computes it over the full T×T). The values,
    A·V, W_O and the MLP stay. Fractions are of the whole model's parameters (`n_parameters`,
    default estimated from the config) and of its forward FLOPs at T (2·N·T + 4·L·H·T²·d_head).
    """
    d = config.hidden_size
    n_layers, n_heads = config.num_hidden_layers, config.num_attention_heads
    n_kv = getattr(config, "num_key_value_heads", None) or n_heads
    head_dim = getattr(config, "head_dim", None) or d // n_heads
    bias = bool(getattr(config, "attention_bias", False) or getattr(config, "model_type", "") == "gpt2")
    per_layer_params = d * (n_heads + n_kv) * head_dim + (n_heads + n_kv) * head_dim * bias
    shared = followers(groups)
    qk_flops = 2 * seq_len * d * (n_heads + n_kv) * head_dim
    score_flops = 2 * n_heads * seq_len**2 * head_dim + 5 * n_heads * seq_len**2
    if n_parameters is None:  # Q, K, V, O + MLP (gated: 3·d·d_ff; GPT-2: 8·d²) per layer + tied embedding
        d_ff = getattr(config, "intermediate_size", None)
        mlp = 3 * d * d_ff if d_ff else 8 * d * d
        n_parameters = n_layers * (d * 2 * (n_heads + n_kv) * head_dim + mlp) + config.vocab_size * d
    forward_flops = 2 * n_parameters * seq_len + 4 * n_layers * n_heads * seq_len**2 * head_dim
    return {
        "followers": shared,
        "n_shared": len(shared),
        "qk_params_removed": per_layer_params * len(shared),
        "params_fraction": per_layer_params * len(shared) / n_parameters,
        "seq_len": seq_len,
        "attention_flops_skipped": (qk_flops + score_flops) * len(shared),
        "flops_fraction": (qk_flops + score_flops) * len(shared) / forward_flops,
    }
