"""Greedy decoding on a CPU without per-token Python overhead: a static KV cache and a compiled step.

At 135M parameters a decode step of SmolLM2 reads 135 MB of int8 weights (about 10 ms at a few
GB/s per core), but eager PyTorch spends as long again in Python and in launching ~15 small ops
per layer for 30 layers (issue 26: 34 tokens/s eager int8 against llama.cpp's 104 at 2 threads).
Here the one-token step is compiled whole (`torch.compile`, inductor's C++ backend): RMSNorm,
RoPE, the attention over the cache, SwiGLU and residual adds become a few fused loops, and the
int8 matmuls stay `aten._weight_int8pack_mm` calls. The KV cache is transformers' `StaticCache`,
allocated once at `max_len` positions and written in place, so every step has the same shapes and
the compiled graph is reused without recompiling. The prompt's prefill runs eagerly (one call).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers import StaticCache

from ..generate import cache_keyword
from .decode import Phases


class StaticDecoder:
    """Greedy continuation of a [B, T] prompt by `new_tokens` tokens through a static cache.

    `compile=False` runs the same static-cache step eagerly (the comparison that isolates what
    compiling buys). The first call of a compiled decoder compiles (tens of seconds on 2 cores).
    """

    def __init__(self, model: nn.Module, max_len: int, batch: int = 1, compile: bool = True):
        self.model, self.max_len, self.batch = model, max_len, batch
        self.cache = StaticCache(config=model.config, max_cache_len=max_len)
        self.cache_keyword = cache_keyword(model)  # `cache` in transformers >= 5.24 (`past_key_values` warns)
        self.step = torch.compile(self._step, dynamic=False) if compile else self._step

    def _step(self, token: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """One token [B, 1] at cache position `position` [1] → the next greedy token [B, 1]."""
        logits = self.model(
            input_ids=token,
            **{self.cache_keyword: self.cache},
            cache_position=position,
            position_ids=position[None],
            use_cache=True,
        ).logits  # [B, 1, V]
        return logits[:, -1].argmax(-1, keepdim=True)

    @torch.no_grad()
    def prefill(self, prompt: torch.Tensor) -> torch.Tensor:
        """Reset the cache, run the prompt [B, T] once; returns the first new token [B, 1]."""
        self.cache.reset()
        positions = torch.arange(prompt.shape[1])
        logits = self.model(
            input_ids=prompt,
            **{self.cache_keyword: self.cache},
            cache_position=positions,
            use_cache=True,
            logits_to_keep=1,
        ).logits
        return logits[:, -1].argmax(-1, keepdim=True)

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
        """[B, T + new_tokens]: the prompt and its greedy continuation (no EOS stop, as the benchmark times it)."""
        if prompt.shape[1] + new_tokens > self.max_len:
            raise ValueError(f"prompt {prompt.shape[1]} + {new_tokens} new tokens exceed the cache's {self.max_len}")
        token = self.prefill(prompt)
        tokens = [token]
        for position in range(prompt.shape[1], prompt.shape[1] + new_tokens - 1):
            token = self.step(token, torch.tensor([position]))
            tokens.append(token)
        return torch.cat([prompt, *tokens], dim=1)


def static_phases(model: nn.Module, prompt: torch.Tensor, new_tokens: int, compile: bool = True) -> Phases:
    """`decode.measure_phases(external=...)` contenders: prefill alone, and prefill + `new_tokens` tokens."""
    decoder = StaticDecoder(model, prompt.shape[1] + new_tokens, batch=prompt.shape[0], compile=compile)

    def at(threads: int) -> dict[str, Callable[[], object]]:
        def prefill() -> object:
            torch.set_num_threads(threads)
            return decoder.prefill(prompt)

        def generate() -> object:
            torch.set_num_threads(threads)
            return decoder.generate(prompt, new_tokens)

        return {"prefill": prefill, "generate": generate}

    return at
