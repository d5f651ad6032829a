"""A masked diffusion language model (MDM): the model, its training objective and its likelihoods.

The model is the autoregressive LLaMA backbone with two changes (SMDM, "Scaling up Masked
Diffusion Models on Text", arXiv:2410.18514, after MDLM, arXiv:2406.07524):
- attention is bidirectional: every position sees every other one. The layers run through
  `workbench.train.decoder_states` with no mask and each attention module's `is_causal` flag off,
  so scaled-dot-product attention gets `is_causal=False` and keeps its fused (flash) kernel;
- one token is added to the vocabulary, the mask [M] (id = the base vocabulary size). Its embedding
  row exists, its output logit does not: the head scores only the V real tokens, so [M] is never
  predicted. There is no time input: the network only sees which tokens are masked.

Forward process: each token of x is replaced by [M] independently with probability t. The
continuous-time negative ELBO with the linear schedule α_t = 1 − t is

    −log p_θ(x) ≤ E_{t~U(0,1)} [ (1/t) Σ_{i: x_t^i = [M]} −log p_θ(x^i | x_t) ]            (1)

Training draws one t per sequence (stratified over the batch), masks with rate p = (1−ε)t + ε
(ε = 1e-3, so no sequence goes unmasked) and divides the masked tokens' cross-entropy by p,
normalised by B·L. Averaging (1) over t gives exactly the any-order autoregressive NLL over a
uniformly random order (∫₀¹ t^{k−1}(1−t)^{L−k} dt · C(L,k) = 1/k), hence by Jensen it bounds the
NLL of the model's mixture over orders: `tests/test_diffusion_mdm.py` checks both on a tiny model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WorkbenchError
from ..models import tiny_llama
from ..train import decoder_states

MASK_EPS = 1e-3  # ε: the smallest training mask rate
Denoiser = Callable[[torch.Tensor], torch.Tensor]  # x_t [R, L] → float32 logits [R, L, V] over the real tokens


# -- the model ---------------------------------------------------------------------------------
def make_bidirectional(model: nn.Module, mask_token_id: int) -> nn.Module:
    """Turn a LLaMA-family model whose embedding has a row for [M] into an MDM (in place)."""
    if model.get_input_embeddings().num_embeddings <= mask_token_id:
        raise WorkbenchError(
            f"the embedding has {model.get_input_embeddings().num_embeddings} rows: no row for mask id {mask_token_id}"
        )
    for layer in model.model.layers:
        layer.self_attn.is_causal = False  # read by transformers' sdpa_attention_forward → SDPA is_causal=False
    model.config.mask_token_id = mask_token_id
    return model


def masked_diffusion_llama(vocab_size: int | None = None, seed: int = 0, **shape) -> tuple[nn.Module, object]:
    """A random MDM of any `tiny_llama` shape over the SmolLM2 tokenizer's vocabulary (+1 row for [M])."""
    if vocab_size is None:
        from ..models import load_tokenizer

        vocab_size = len(load_tokenizer())
    model, tokenizer = tiny_llama(vocab_size=vocab_size + 1, seed=seed, **shape)
    return make_bidirectional(model, mask_token_id=vocab_size), tokenizer


def mask_token_id(model: nn.Module) -> int:
    mask = getattr(model.config, "mask_token_id", None)
    if mask is None:
        raise WorkbenchError(
            "this model is not a masked diffusion model: build it with masked_diffusion_llama or make_bidirectional"
        )
    return mask


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Float32 logits [R, L, V] of p_θ(x⁰ | x_t) over the V real tokens (no [M] column)."""
    with _autocast(x.device):
        hidden = decoder_states(model, x)  # [R, L, d]
        out = F.linear(hidden, model.lm_head.weight[: mask_token_id(model)])  # [R, L, V]
    return out.float()


def denoiser(model: nn.Module) -> Denoiser:
    """The model as a function x_t → logits (what the samplers, the ELBO and guidance call)."""
    return lambda x: logits(model, x)


# -- training objective ------------------------------------------------------------------------
def stratified_times(n: int, device: torch.device | str, generator: torch.Generator | None = None) -> torch.Tensor:
    """n times in (0, 1), one per stratum: t_j = (u + j/n) mod 1 with one u ~ U(0,1) (MDLM's antithetic sampling)."""
    u = torch.rand((), device=device, generator=generator)
    return (u + torch.arange(n, device=device) / n) % 1


def forward_process(
    x: torch.Tensor,
    rate: torch.Tensor,
    mask_id: int,
    maskable: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """x [R, L], mask rate [R] → (x_t, masked [R, L]): each (maskable) token becomes [M] with probability rate."""
    masked = torch.rand(x.shape, device=x.device, generator=generator) < rate[:, None]
    if maskable is not None:
        masked &= maskable
    return torch.where(masked, mask_id, x), masked


def weighted_cross_entropy(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, scale: torch.Tensor, dense: bool
) -> torch.Tensor:
    """Σ_i scale_i · CE(h_i Wᵀ, y_i) over the rows with scale_i ≠ 0. hidden [N, d], weight [V, d], targets, scale [N].

    `dense` (inside torch.compile): every row, zero-weighted where unmasked, so shapes stay static
    and inductor fuses the float32 upcast into the softmax. Eager: only the masked rows, which
    halves the logits on average.
    """
    if dense:
        ce = F.cross_entropy(F.linear(hidden, weight).float(), targets, reduction="none")  # [N]
        return (ce * scale).sum()
    rows = scale.nonzero().squeeze(1)  # [n]
    ce = F.cross_entropy(F.linear(hidden[rows], weight).float(), targets[rows], reduction="none")  # [n]
    return (ce * scale[rows]).sum()


def diffusion_loss(model: nn.Module, batch: torch.Tensor, eps: float = MASK_EPS) -> torch.Tensor:
    """SMDM's objective on clean blocks batch [B, L]:

        L = 1/(B·L) Σ_b Σ_{i masked} CE(logits_{b,i}, x_{b,i}) / p_b,   p_b = (1−ε) t_b + ε,

    t stratified over the batch. `diffusion_loss.compile_safe` tells `workbench.train` to compile it
    (and replay it as a CUDA graph) on a GPU, as it does the causal LM loss.
    """
    n_rows, length = batch.shape
    mask_id = mask_token_id(model)
    rate = (1 - eps) * stratified_times(n_rows, batch.device) + eps  # [B]
    noisy, masked = forward_process(batch, rate, mask_id)
    hidden = decoder_states(model, noisy).flatten(0, 1)  # [B·L, d]
    scale = (masked / rate[:, None]).flatten()  # [B·L]: 1/p at masked positions, 0 elsewhere
    total = weighted_cross_entropy(
        hidden, model.lm_head.weight[:mask_id], batch.flatten(), scale, torch.compiler.is_compiling()
    )
    return total / (n_rows * length)


diffusion_loss.compile_safe = True


def stochastic_length(batches: Iterator[torch.Tensor], ratio: float, seed: int = 0) -> Iterator[torch.Tensor]:
    """SMDM's stochastic sequence length: with probability `ratio` a batch [B, T] becomes [B·T/ℓ, ℓ].

    SMDM truncates to ℓ ~ U{1..T} so that the model meets short inputs. Here ℓ is T/2, T/4 or T/8:
    reshaping keeps every token (FLOPs and tokens seen are unchanged) and gives a compiled step
    three extra shapes instead of T.
    """
    rng = torch.Generator().manual_seed(seed)
    for batch in batches:
        length = batch.shape[1]
        if ratio > 0 and torch.rand((), generator=rng) < ratio:
            divisor = 2 ** int(torch.randint(1, 4, (), generator=rng))
            if length % divisor == 0:
                batch = batch.reshape(-1, length // divisor)
        yield batch


# -- likelihoods -------------------------------------------------------------------------------
def _target_logprob(denoise: Denoiser, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p_θ(targets | x) at every position: [R, L] (float32)."""
    return torch.log_softmax(denoise(x), dim=-1).gather(-1, targets[..., None]).squeeze(-1)


@torch.no_grad()
def elbo(
    denoise: Denoiser,
    tokens: torch.Tensor,
    prompt_len: int,
    mask_id: int,
    samples: int = 32,
    seed: int = 0,
    rows_per_pass: int = 128,
) -> torch.Tensor:
    """Monte Carlo estimate of (1) for the continuation tokens[:, prompt_len:] given the prompt: [B] nats.

    Per row, `samples` times t_j stratified over (0, 1) from a fixed seed (the same draws for every
    model: comparisons carry no extra noise); only continuation positions are masked, with rate
    t exactly (no ε: the estimator of the bound itself).
    """
    n_rows, length = tokens.shape
    if not 0 <= prompt_len < length:
        raise WorkbenchError(f"prompt_len must be in 0..{length - 1}, got {prompt_len}")
    generator = torch.Generator(device=tokens.device).manual_seed(seed)
    times = torch.stack([stratified_times(samples, tokens.device, generator) for _ in range(n_rows)])  # [B, S]
    maskable = (torch.arange(length, device=tokens.device) >= prompt_len)[None]  # [1, L]
    rows = tokens.repeat_interleave(samples, dim=0)  # [B·S, L]
    rate = times.flatten()  # [B·S]
    terms = []
    for start in range(0, len(rows), rows_per_pass):
        x, t = rows[start : start + rows_per_pass], rate[start : start + rows_per_pass]
        noisy, masked = forward_process(x, t, mask_id, maskable, generator)
        nll = -_target_logprob(denoise, noisy, x)  # [r, L]
        terms.append((nll * masked).sum(-1) / t)  # [r]
    return torch.cat(terms).view(n_rows, samples).mean(-1)


@torch.no_grad()
def chain_rule_nll(
    denoise: Denoiser, tokens: torch.Tensor, prompt_len: int, mask_id: int, rows_per_pass: int = 128
) -> torch.Tensor:
    """Exact NLL of the continuation tokens[:, prompt_len:] under left-to-right unmasking: [B] nats.

    −log p(x_P..x_{L−1} | prompt) = Σ_k −log p_θ(x_{P+k} | prompt, x_P..x_{P+k−1}, [M]…[M]): one
    forward per continuation token (SMDM's `chain_rule` likelihood), all of them batched.
    """
    n_rows, length = tokens.shape
    if not 0 <= prompt_len < length:
        raise WorkbenchError(f"prompt_len must be in 0..{length - 1}, got {prompt_len}")
    positions = torch.arange(prompt_len, length, device=tokens.device)  # [K]: the position scored by each forward
    n_steps = len(positions)
    rows = tokens.repeat_interleave(n_steps, dim=0)  # [B·K, L]
    scored = positions.repeat(n_rows)  # [B·K]
    noisy = torch.where(
        torch.arange(length, device=tokens.device)[None] >= scored[:, None], mask_id, rows
    )  # future masked
    terms = []
    for start in range(0, len(rows), rows_per_pass):
        logprob = _target_logprob(
            denoise, noisy[start : start + rows_per_pass], rows[start : start + rows_per_pass]
        )  # [r, L]
        terms.append(-logprob.gather(1, scored[start : start + rows_per_pass, None]).squeeze(1))
    return torch.cat(terms).view(n_rows, n_steps).sum(-1)
