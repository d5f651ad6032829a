"""Sampling from an autoregressive LM: KV cache, batched, and no host sync per token.

`transformers`' `generate` asks the GPU after every token whether all sequences have ended, a
host-device synchronisation that leaves the GPU idle while Python decides. Here the loop keeps
everything on the device (the next token, the "ended" flags, the sampling noise) and reads one
boolean every `check_every` tokens, so the CPU can queue many decode steps ahead of the GPU.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .errors import WorkbenchError


@dataclass
class SampleConfig:
    """`temperature` 0 is greedy decoding; `top_k` keeps only the k likeliest tokens before sampling;
    `check_every`: tokens between the host reads that stop the loop once every sequence has ended."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_k: int | None = None
    check_every: int = 16

    def __post_init__(self) -> None:
        if (
            self.max_new_tokens < 1
            or self.temperature < 0
            or self.check_every < 1
            or (self.top_k is not None and self.top_k < 1)
        ):
            raise WorkbenchError(
                f"sampling needs max_new_tokens ≥ 1, temperature ≥ 0, check_every ≥ 1 and top_k ≥ 1 or None; got {self}"
            )


def next_tokens(logits: torch.Tensor, config: SampleConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of `logits` [B, V] → [B], without leaving the device.

    Sampling uses the exponential race: argmax_v p_v / E_v with E_v ~ Exp(1) picks v with
    probability p_v (the Gumbel-max trick in another form), so no `multinomial` and its checks.
    """
    if config.temperature == 0:
        return logits.argmax(dim=-1)
    scores = logits.float() / config.temperature  # [B, V]
    if config.top_k is not None and config.top_k < scores.shape[-1]:
        kth = scores.topk(config.top_k, dim=-1).values[:, -1:]  # [B, 1]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    probs = scores.softmax(dim=-1)
    race = torch.empty_like(probs).exponential_(generator=generator)
    return (probs / race).argmax(dim=-1)


def output_cache(output) -> object:
    """The KV cache a forward pass returned, under this transformers version's name for it."""
    return getattr(output, "cache", None) or output.past_key_values


def cache_keyword(model: nn.Module) -> str:
    """The KV cache's keyword in this transformers version's forward (`cache`, earlier `past_key_values`)."""
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def cache_argument(kwargs: dict) -> object | None:
    """The KV cache handed to an attention module's forward, under either name (removed from `kwargs`)."""
    cache, past = kwargs.pop("cache", None), kwargs.pop("past_key_values", None)
    return cache if cache is not None else past


@torch.no_grad()
def sample(
    model: nn.Module,
    prompt: torch.Tensor,
    config: SampleConfig | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int = 0,
    generator: torch.Generator | None = None,
    on_token: Callable[[torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Continue every row of `prompt` [B, T] (same length, no padding); returns [B, T + n], n ≤ max_new_tokens.

    After a row emits `eos_token_id` it is filled with `pad_token_id`. The prompt runs once
    (prefill, logits of its last position only), then one token per step through the KV cache.
    `on_token(token [B])` sees each step's tokens as they are chosen (streaming: printing them is a
    host read per token, which costs nothing on a CPU and is the point of a chat demo).
    """
    config = config or SampleConfig()
    keyword = cache_keyword(model)
    output = model(input_ids=prompt, use_cache=True, logits_to_keep=1)
    cache = output_cache(output)
    ended = torch.zeros(prompt.shape[0], dtype=torch.bool, device=prompt.device)  # [B]
    new: list[torch.Tensor] = []
    for step in range(config.max_new_tokens):
        token = next_tokens(output.logits[:, -1], config, generator)  # [B]
        token = token.masked_fill(ended, pad_token_id)
        new.append(token)
        if on_token is not None:
            on_token(token)
        if eos_token_id is not None:
            ended |= token == eos_token_id
            if (step + 1) % config.check_every == 0 and bool(ended.all()):  # the loop's only host read
                break
        if step + 1 < config.max_new_tokens:
            output = model(input_ids=token[:, None], use_cache=True, **{keyword: cache})
    return torch.cat([prompt, torch.stack(new, dim=1)], dim=1)
