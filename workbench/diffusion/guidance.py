"""Unsupervised classifier-free guidance for a masked diffusion model (SMDM, arXiv:2410.18514).

Classifier-free guidance sharpens p(x | c) towards what the condition c adds over the
unconditional model: p_w(x⁰ | c, x_t) ∝ p(x⁰ | c, x_t)^{1+w} / p(x⁰ | x_t)^w. Standard CFG needs a
model trained with the condition dropped; SMDM observes that an MDM already is an unconditional
model: replace the prompt c by mask tokens and the same network predicts p(x⁰ | x_t). In logits
(the normalisers cancel in the softmax):

    ℓ_w = ℓ_uncond + (w + 1)(ℓ_cond − ℓ_uncond)

w = 0 is the conditional model, w = −1 the unconditional one. Both passes run as one batch of 2R
rows, so guidance costs one (twice as large) forward per step, not two launches.

`zero_shot_loglik` is the MDM's log-likelihood for `workbench.zeroshot` (SMDM's `chain_rule`
likelihood in `evaluate_diff.py`, with optional guidance): SMDM judges guidance by accuracy on
multiple-choice tasks at a tuned w, which is what the notebook measures.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from ..train import decoder_states
from .mdm import Denoiser, mask_token_id


def guided(denoise: Denoiser, prompt_len: int, mask_id: int, w: float) -> Denoiser:
    """`denoise` with guidance of strength `w` on the first `prompt_len` positions (the condition)."""

    def guided_denoise(x: torch.Tensor) -> torch.Tensor:
        unconditional = x.clone()
        unconditional[:, :prompt_len] = mask_id  # the prompt replaced by [M]
        cond, uncond = denoise(torch.cat([x, unconditional])).chunk(2)  # one forward of [2R, L]
        return uncond + (w + 1) * (cond - uncond)

    return guided_denoise


def zero_shot_loglik(model: nn.Module, w: float = 0.0, length: int = 0, rows_per_pass: int = 256):
    """log p(continuation | context) of an MDM for `workbench.zeroshot.accuracy`, by the chain rule.

    One row per continuation token k: the context, continuation tokens < k, and [M] everywhere after
    (the scored position, the rest of the continuation, and [M] padding up to `length`: SMDM's
    evaluator pads to the training length, since the model never saw shorter inputs). Guidance
    replaces the context by [M] in a second half of the batch. Only the scored position goes through
    the head, so a pass costs the body plus one row of logits per row.
    """
    mask_id = mask_token_id(model)

    @torch.no_grad()
    def loglik(contexts: Sequence[torch.Tensor], continuations: Sequence[torch.Tensor]) -> torch.Tensor:
        device = next(model.parameters()).device
        size = max([length, *(len(c) + len(x) for c, x in zip(contexts, continuations, strict=True))])
        rows, scored, cond, owner = [], [], [], []
        for i, (c, x) in enumerate(zip(contexts, continuations)):
            c, x = c.long().cpu(), x.long().cpu()
            base = torch.full((size,), mask_id, dtype=torch.long)
            base[: len(c)] = c
            for k in range(len(x)):
                row = base.clone()
                row[len(c) : len(c) + k] = x[:k]
                rows.append(row)
                scored.append((len(c) + k, int(x[k])))
                cond.append(len(c))
                owner.append(i)
        total = torch.zeros(len(contexts), dtype=torch.float64)
        if not rows:
            return total
        x_all, cond_all = torch.stack(rows), torch.tensor(cond)
        position, target = (torch.tensor(v) for v in zip(*scored))
        weight = model.lm_head.weight[:mask_id]
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
        for start in range(0, len(rows), rows_per_pass):
            part = slice(start, start + rows_per_pass)
            x, at = x_all[part].to(device), position[part].to(device)
            if w:
                unconditional = x.clone()
                unconditional[torch.arange(size, device=device)[None] < cond_all[part].to(device)[:, None]] = mask_id
                x = torch.cat([x, unconditional])
            with autocast:
                hidden = decoder_states(model, x)  # [r or 2r, L, d]
                picked = hidden[torch.arange(len(x), device=device), at.repeat(2 if w else 1)]
                logits = F.linear(picked, weight).float()  # [r or 2r, V]
            if w:
                conditional, unconditional_logits = logits.chunk(2)
                logits = unconditional_logits + (w + 1) * (conditional - unconditional_logits)
            logp = torch.log_softmax(logits, -1).gather(1, target[part].to(device)[:, None]).squeeze(1)
            total.index_add_(0, torch.tensor(owner[start : start + rows_per_pass]), logp.double().cpu())
        return total

    return loglik
