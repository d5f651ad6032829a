"""Evaluation every experiment shares: summed sequence NLL and held-out perplexity.

Perplexity is exp of the mean next-token negative log-likelihood over the tokens actually scored.
It is computed on the held-out split that `data.train_val_split` keeps apart, in windows of
`context_len` tokens; the sums stay on the device and are read once, so evaluating during training
costs one host sync.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .errors import WorkbenchError
from .train import decoder_states, linear_cross_entropy, plain_head


def sequence_nll(model: torch.nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Summed NLL of `targets` [B, T] (-100: not scored) given `inputs` [B, T], as a device tensor.

    Batched, no float32 logits for LLaMA-family models, and no host sync, so a caller can sum over
    batches and read the total once.
    """
    flat = targets.flatten()
    head = plain_head(model)
    if head is None:
        logits = model(input_ids=inputs).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), flat, ignore_index=-100, reduction="sum")
    hidden = decoder_states(model, inputs)  # [B, T, d]
    return linear_cross_entropy(hidden.flatten(0, 1), head.weight, flat) * (flat != -100).sum()


@torch.no_grad()
def perplexity(
    model: torch.nn.Module,
    tokens: torch.Tensor,
    context_len: int = 512,
    stride: int | None = None,
    batch_size: int = 4,
    max_windows: int | None = None,
    progress: bool = True,
) -> dict:
    """Token-level perplexity exp(mean NLL) with a sliding window.

    Windows of `context_len` tokens start every `stride` tokens (default: `context_len`, i.e.
    disjoint windows); each window scores only tokens no earlier window scored, so every token is
    predicted once, with at least `context_len - stride` tokens of context after the first window.
    A text shorter than one window is scored as one shorter window, with a warning.
    """
    stride = stride or context_len
    if not 0 < stride <= context_len:
        raise WorkbenchError(f"stride must be in 1..context_len ({context_len}), got {stride}")
    if len(tokens) < 2:
        raise WorkbenchError(f"perplexity needs at least 2 held-out tokens, got {len(tokens)}: use a longer text")
    if len(tokens) < context_len:
        warnings.warn(
            f"the held-out text has {len(tokens)} tokens, fewer than one window of {context_len}: "
            f"scoring {len(tokens) - 1} tokens with shorter context",
            stacklevel=2,
        )
    device = next(model.parameters()).device
    starts = list(range(0, max(1, len(tokens) - context_len + 1), stride))[:max_windows]
    total_nll = torch.zeros((), dtype=torch.float64, device=device)  # summed on the device: one sync at the end
    total_count = torch.zeros((), dtype=torch.int64, device=device)
    for i in tqdm(range(0, len(starts), batch_size), desc="perplexity", leave=False, disable=not progress):
        chunk = starts[i : i + batch_size]
        inputs = torch.stack([tokens[s : s + context_len] for s in chunk]).to(device)
        # First window scores everything; later ones only their last `stride` targets.
        targets = inputs[:, 1:].clone()
        for row, start in enumerate(chunk):
            first = 0 if start == 0 else max(0, context_len - 1 - stride)
            targets[row, :first] = -100
        total_count += (targets != -100).sum()
        total_nll += sequence_nll(model, inputs[:, :-1], targets).double()
    count = int(total_count.item())
    mean_nll = total_nll.item() / count
    return {
        "ppl": float(np.exp(mean_nll)),
        "nll": mean_nll,
        "n_tokens": count,
        "context_len": context_len,
        "stride": stride,
    }
