"""Sampling from a masked diffusion model: ancestral and low-confidence remasking, any number of steps.

Generation starts from the prompt followed by `gen_len` mask tokens and walks a time grid
1 = t_0 > t_1 > … > t_N = 0 (N = `steps`). From t to s < t:
- ancestral (MDLM's `ddpm`, SMDM's `origin`): each masked position is revealed with probability
  1 − s/t (all at the last step), with a token drawn from p_θ(x⁰ | x_t);
- low-confidence remasking (SMDM's `greddy`, LLaDA): draw x̂ for every masked position, and reveal
  the n − ⌊n·s/t⌋ of the n masked positions whose p_θ(x̂) is highest; the rest stay masked.
Tokens are drawn by Gumbel-max in float64: argmax(ℓ + τ·g), g ~ Gumbel(0, 1) (τ = 0: greedy). In
float32 the Gumbel noise of improbable tokens is truncated, which lowers the entropy of the
samples and flatters generative perplexity (MDLM/DUO issues; SMDM samples in float64).

The network takes no time input, so when a step reveals nothing in a row its prediction is reused
(MDLM's `ddpm_cache`): only rows where a token changed go through the network again.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import WorkbenchError
from ..generate import SampleConfig, sample
from .mdm import Denoiser

ALGORITHMS = ("low_confidence", "ancestral")


@dataclass
class SamplerConfig:
    """`steps`: network evaluations at most (fewer with the cache); `temperature` τ of the Gumbel noise."""

    steps: int = 64
    algorithm: str = "low_confidence"
    temperature: float = 1.0
    cache: bool = True

    def __post_init__(self) -> None:
        if self.steps < 1 or self.temperature < 0 or self.algorithm not in ALGORITHMS:
            raise WorkbenchError(
                f"a sampler needs steps ≥ 1, temperature ≥ 0 and algorithm in {ALGORITHMS}; got {self}"
            )


@dataclass
class Trace:
    """What a sampler did: the final tokens [B, L], and per step which positions it revealed [B, L]
    and the probability p_θ(x̂) of the token it put there (NaN elsewhere), for the teaching view."""

    tokens: torch.Tensor
    revealed: list[torch.Tensor] = field(default_factory=list)
    confidence: list[torch.Tensor] = field(default_factory=list)
    network_rows: int = 0  # rows that went through the network (the cache's saving shows here)


def gumbel_argmax(logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A token per position of logits [..., V] with probability softmax(ℓ/τ), in float64; τ = 0: argmax."""
    if temperature == 0:
        return logits.argmax(-1)
    u = torch.rand(logits.shape, device=logits.device, dtype=torch.float64, generator=generator)
    gumbel = -torch.log(-torch.log(u.clamp_min(torch.finfo(torch.float64).tiny)))
    return (logits.double() + temperature * gumbel).argmax(-1)


def _keep_masked(n_masked: torch.Tensor, t: float, s: float) -> torch.Tensor:
    """⌊n·s/t⌋ positions stay masked; the tolerance makes steps = length reveal exactly one per step."""
    return torch.floor(n_masked * (s / t) + 1e-6).long()


@torch.no_grad()
def diffusion_generate(
    denoise: Denoiser,
    prompt: torch.Tensor,
    gen_len: int,
    mask_id: int,
    config: SamplerConfig | None = None,
    generator: torch.Generator | None = None,
    trace: bool = False,
) -> Trace:
    """Continue every row of `prompt` [B, P] with `gen_len` tokens; returns a `Trace` (tokens [B, P + gen_len])."""
    if gen_len < 1:
        raise WorkbenchError(f"gen_len must be ≥ 1, got {gen_len}")
    masks = torch.full((prompt.shape[0], gen_len), mask_id, dtype=prompt.dtype, device=prompt.device)
    return unmask(denoise, torch.cat([prompt, masks], dim=1), mask_id, config, generator, trace)


@torch.no_grad()
def unmask(
    denoise: Denoiser,
    x: torch.Tensor,
    mask_id: int,
    config: SamplerConfig | None = None,
    generator: torch.Generator | None = None,
    trace: bool = False,
) -> Trace:
    """Fill every [M] of x [B, L], wherever it is (a continuation, or infilling inside a sentence)."""
    config = config or SamplerConfig()
    n_rows, device = x.shape[0], x.device
    times = torch.linspace(1, 0, config.steps + 1).tolist()
    result = Trace(tokens=x)
    logits = None
    stale = torch.ones(n_rows, dtype=torch.bool, device=device)  # rows whose prediction must be recomputed
    for t, s in itertools.pairwise(times):
        masked = x == mask_id  # [B, L]
        if logits is None or not config.cache:
            logits, result.network_rows = denoise(x), result.network_rows + n_rows
        elif bool(stale.any()):  # the host read that lets a step with nothing new skip the network
            rows = stale.nonzero().squeeze(1)
            logits[rows] = denoise(x[rows])
            result.network_rows += len(rows)
        if config.algorithm == "ancestral":  # draw tokens only where a position is revealed
            reveal = masked & (torch.rand(masked.shape, device=device, generator=generator) < 1 - s / t)
        else:  # draw at every masked position, rank by confidence
            reveal = masked
        where = reveal.nonzero(as_tuple=True)
        chosen = logits[where]  # [n, V]
        tokens = gumbel_argmax(chosen, config.temperature, generator)  # [n]
        confidence = torch.full(x.shape, -math.inf, device=device)
        confidence[where] = (chosen.gather(-1, tokens[:, None]).squeeze(-1) - chosen.logsumexp(-1)).exp()  # p_θ(x̂)
        proposal = x.clone()
        proposal[where] = tokens
        if config.algorithm == "low_confidence":
            n_masked = masked.sum(1)  # [B]
            n_reveal = n_masked - _keep_masked(n_masked, t, s)  # [B]
            order = confidence.argsort(dim=1, descending=True)  # most confident first (unmasked: -inf, last)
            rank = torch.empty_like(order).scatter_(1, order, torch.arange(x.shape[1], device=device).expand_as(order))
            reveal = masked & (rank < n_reveal[:, None])
        x = torch.where(reveal, proposal, x)
        stale = reveal.any(1)
        if trace:
            result.revealed.append(reveal.cpu())
            result.confidence.append(torch.where(reveal, confidence, math.nan).cpu())
    result.tokens = x
    return result


@torch.no_grad()
def autoregressive_generate(
    model: nn.Module,
    prompt: torch.Tensor,
    gen_len: int,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
    trace: bool = False,
) -> Trace:
    """The ARM's counterpart, through `workbench.generate.sample` (KV cache): one token per step, left to right.

    With `trace`, one teacher-forced forward gives p(x_i | x_<i) of every token drawn, so the
    teaching view can show both models' confidences on the same scale.
    """
    tokens = sample(
        model,
        prompt,
        SampleConfig(max_new_tokens=gen_len, temperature=temperature),
        eos_token_id=None,
        generator=generator,
    )
    result = Trace(tokens=tokens, network_rows=prompt.shape[0] * gen_len)
    if trace:
        probs = torch.softmax(model(input_ids=tokens[:, :-1]).logits.float(), -1)  # [B, L-1, V]
        chosen = probs.gather(-1, tokens[:, 1:, None]).squeeze(-1)  # [B, L-1]: p(x_i | x_<i) for i ≥ 1
        for step in range(gen_len):
            position = prompt.shape[1] + step
            reveal = torch.zeros_like(tokens, dtype=torch.bool)
            reveal[:, position] = True
            result.revealed.append(reveal.cpu())
            result.confidence.append(torch.where(reveal, torch.nn.functional.pad(chosen, (1, 0)), math.nan).cpu())
    return result
