"""What the tour notebook measures: one layer's attention map and the entropy of every layer.

Attention entropy H = -Σ_j A[i, j] log A[i, j] of each query row says how spread a head's
attention is: 0 when a query attends to one token, log(i + 1) when it spreads evenly over its
i + 1 visible keys. Low entropy in a layer means sharp, pattern-like heads (sinks, previous
token); high entropy means broad averaging. The model must run with eager attention, the only
backend that returns the probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import WorkbenchError


@dataclass
class SentenceAttention:
    tokens: list[str]  # [T] token strings, for axis labels
    maps: list[np.ndarray]  # per layer [H, T, T] attention probabilities


def _require_eager(model) -> None:
    if model.config._attn_implementation != "eager":
        raise WorkbenchError("attention maps need eager attention: load the model with load_model(..., attn='eager')")


@torch.no_grad()
def sentence_attention(model, tokenizer, sentence: str) -> SentenceAttention:
    """Every layer's attention probabilities for one short sentence."""
    _require_eager(model)
    ids = tokenizer(sentence, return_tensors="pt")["input_ids"].to(next(model.parameters()).device)
    attentions = model(input_ids=ids, output_attentions=True).attentions  # L × [1, H, T, T]
    tokens = [tokenizer.decode([i]) for i in ids[0].tolist()]
    return SentenceAttention(tokens, [a[0].float().cpu().numpy() for a in attentions])


@torch.no_grad()
def attention_entropy(model, blocks: torch.Tensor, batch_size: int = 2) -> tuple[np.ndarray, float]:
    """Mean attention entropy per layer [L] (nats) over heads, queries and blocks [N, T].

    Also returns the entropy uniform attention would have over the same causal rows,
    mean_i log(i + 1), the ceiling the layers are compared against.
    """
    _require_eager(model)
    device = next(model.parameters()).device
    totals = torch.zeros(model.config.num_hidden_layers, dtype=torch.float64)
    for start in tqdm(range(0, len(blocks), batch_size), desc="attention entropy", leave=False):
        batch = blocks[start : start + batch_size].to(device)
        for layer, probabilities in enumerate(model(input_ids=batch, output_attentions=True).attentions):
            p = probabilities.float()  # [B, H, T, T], zeros above the diagonal
            entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(-1)  # [B, H, T]
            totals[layer] += entropy.mean(dim=(1, 2)).sum().double().cpu()
    uniform = float(np.log(np.arange(1, blocks.shape[1] + 1)).mean())
    return (totals / len(blocks)).numpy(), uniform
