"""How sharply each layer attends: one sentence's attention maps, and the entropy of every layer.

Attention entropy H = -Σ_j A[i, j] log A[i, j] of each query row says how spread a head's
attention is: 0 when a query attends to one token, log(i + 1) when it spreads evenly over its
i + 1 visible keys. Low entropy in a layer means sharp, pattern-like heads (sinks, previous
token); high entropy means broad averaging. Both read the probabilities through `capture`, which
switches the model to eager attention only meanwhile. The tour notebook (00) shows both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .capture import attention_maps, capture_attention, run_backbone


@dataclass
class SentenceAttention:
    tokens: list[str]  # [T] token strings, for axis labels
    maps: list[np.ndarray]  # per layer [H, T, T] attention probabilities


@torch.no_grad()
def sentence_attention(model, tokenizer, sentence: str) -> SentenceAttention:
    """Every layer's attention probabilities for one short sentence."""
    ids = tokenizer(sentence, return_tensors="pt")["input_ids"].to(next(model.parameters()).device)
    maps = attention_maps(model, ids)  # {ℓ: [1, H, T, T]}
    tokens = [tokenizer.decode([i]) for i in ids[0].tolist()]
    return SentenceAttention(tokens, [maps[layer][0].numpy() for layer in sorted(maps)])


@torch.no_grad()
def attention_entropy(model, blocks: torch.Tensor, batch_size: int = 2) -> tuple[np.ndarray, float]:
    """Mean attention entropy per layer [L] (nats) over heads, queries and blocks [N, T].

    Reduced layer by layer as the forward pass runs, so no two layers' maps are held at once.
    Also returns the entropy uniform attention would have over the same causal rows,
    mean_i log(i + 1), the ceiling the layers are compared against.
    """
    device = next(model.parameters()).device
    totals = torch.zeros(model.config.num_hidden_layers, dtype=torch.float64)

    def add_entropy(layer: int, probabilities: torch.Tensor) -> None:
        p = probabilities.float()  # [B, H, T, T], zeros above the diagonal
        entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(-1)  # [B, H, T]
        totals[layer] += entropy.mean(dim=(1, 2)).sum().double().cpu()

    with capture_attention(model, add_entropy):
        for start in tqdm(range(0, len(blocks), batch_size), desc="attention entropy", leave=False):
            run_backbone(model, blocks[start : start + batch_size].to(device))
    uniform = float(np.log(np.arange(1, blocks.shape[1] + 1)).mean())
    return (totals / len(blocks)).numpy(), uniform
