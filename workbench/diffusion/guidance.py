"""Unsupervised classifier-free guidance for a masked diffusion model (SMDM, arXiv:2410.18514).

Classifier-free guidance sharpens p(x | c) towards what the condition c adds over the
unconditional model: p_w(x⁰ | c, x_t) ∝ p(x⁰ | c, x_t)^{1+w} / p(x⁰ | x_t)^w. Standard CFG needs a
model trained with the condition dropped; SMDM observes that an MDM already is an unconditional
model: replace the prompt c by mask tokens and the same network predicts p(x⁰ | x_t). In logits
(the normalisers cancel in the softmax):

    ℓ_w = ℓ_uncond + (w + 1)(ℓ_cond − ℓ_uncond)

w = 0 is the conditional model, w = −1 the unconditional one. Both passes run as one batch of 2R
rows, so guidance costs one (twice as large) forward per step, not two launches.
"""

from __future__ import annotations

import torch

from .mdm import Denoiser


def guided(denoise: Denoiser, prompt_len: int, mask_id: int, w: float) -> Denoiser:
    """`denoise` with guidance of strength `w` on the first `prompt_len` positions (the condition)."""

    def guided_denoise(x: torch.Tensor) -> torch.Tensor:
        unconditional = x.clone()
        unconditional[:, :prompt_len] = mask_id  # the prompt replaced by [M]
        cond, uncond = denoise(torch.cat([x, unconditional])).chunk(2)  # one forward of [2R, L]
        return uncond + (w + 1) * (cond - uncond)

    return guided_denoise
