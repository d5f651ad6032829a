"""Multi-head, grouped-query and multi-query attention: the same model shape with fewer KV heads.

Grouped-query attention ("GQA: Training Generalized Multi-Query Transformer Models from Multi-Head
Checkpoints", arXiv:2305.13245) lets H query heads share G key/value heads (H/G queries per group);
G = H is multi-head attention (MHA), G = 1 multi-query attention (MQA, "Fast Transformer Decoding:
One Write-Head is All You Need", arXiv:1911.02150). GEB-1.3B uses 16 query heads and 4 KV heads
(4:1); SmolLM2-135M 9 and 3 (3:1). What it buys at inference is the KV cache: per generated token,
every layer stores one key and one value vector per KV head, so

    cache bytes = 2 · L · B · T · G · d_head · s      (K and V; L layers, batch B, T cached tokens, s bytes per value)

and each decode step reads all of it. At long context that read, not the weights, sets the pace.
To compare at equal parameters, the KV projections a variant saves, 2 · d · d_head · (G_ref − G)
per layer, go into a wider FFN (3 · d · d_ff parameters per layer with SwiGLU).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from ..errors import WorkbenchError
from ..generate import cache_keyword
from ..measure import Timing, interleaved


@dataclass(frozen=True)
class Shape:
    """A LLaMA shape; `n_kv_heads` is G, the number of key/value heads (divides `n_heads`)."""

    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    d_ff: int
    vocab_size: int
    tie_embeddings: bool = True
    max_len: int = 8192

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise WorkbenchError(
                f"d_model ({self.d_model}) must divide by n_heads ({self.n_heads}), "
                f"and n_heads by n_kv_heads ({self.n_kv_heads})"
            )

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def name(self) -> str:
        if self.n_kv_heads == self.n_heads:
            return f"MHA {self.n_heads}/{self.n_kv_heads}"
        return f"MQA {self.n_heads}/1" if self.n_kv_heads == 1 else f"GQA {self.n_heads}/{self.n_kv_heads}"

    def config(self, tokenizer=None) -> LlamaConfig:
        """The transformers config of this shape (RoPE, RMSNorm, SwiGLU, no biases)."""
        special = (
            {}
            if tokenizer is None
            else dict(
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        return LlamaConfig(
            vocab_size=self.vocab_size,
            hidden_size=self.d_model,
            intermediate_size=self.d_ff,
            num_hidden_layers=self.n_layers,
            num_attention_heads=self.n_heads,
            num_key_value_heads=self.n_kv_heads,
            max_position_embeddings=self.max_len,
            rope_theta=1e5,
            tie_word_embeddings=self.tie_embeddings,
            attn_implementation="sdpa",
            **special,
        )


def build(shape: Shape, seed: int = 0, tokenizer=None) -> LlamaForCausalLM:
    """A randomly initialised model of `shape` (the same seed gives the same initialisation)."""
    torch.manual_seed(seed)
    return LlamaForCausalLM(shape.config(tokenizer)).eval()


def equal_parameter_d_ff(reference: Shape, n_kv_heads: int) -> int:
    """FFN width that gives a variant with `n_kv_heads` the parameters of `reference`: the
    2 · d · d_head · (G_ref − G) KV-projection parameters saved per layer, spread over 3 · d."""
    saved = 2 * reference.d_model * reference.head_dim * (reference.n_kv_heads - n_kv_heads)
    return reference.d_ff + round(saved / (3 * reference.d_model))


def variants(reference: Shape, kv_heads: tuple[int, ...]) -> list[Shape]:
    """`reference` with each number of KV heads, FFN widened to keep the parameter count."""
    return [
        Shape(
            reference.n_layers,
            reference.d_model,
            reference.n_heads,
            g,
            equal_parameter_d_ff(reference, g),
            reference.vocab_size,
            reference.tie_embeddings,
            reference.max_len,
        )
        for g in kv_heads
    ]


def kv_cache_bytes(shape: Shape, context: int, batch: int = 1, dtype: torch.dtype = torch.float32) -> int:
    """2 · L · B · T · G · d_head · s: keys and values of every layer for `context` cached tokens."""
    size = torch.empty((), dtype=dtype).element_size()
    return 2 * shape.n_layers * batch * context * shape.n_kv_heads * shape.head_dim * size


def measured_cache_bytes(cache) -> int:
    """Bytes held by the key and value tensors of a transformers KV cache (what the formula predicts)."""
    total = 0
    for layer in cache.layers:
        for tensor in (layer.keys, layer.values):
            if tensor is not None:
                total += tensor.numel() * tensor.element_size()
    return total


def filled_cache(
    shape: Shape, context: int, batch: int = 1, dtype: torch.dtype = torch.float32, seed: int = 0
) -> DynamicCache:
    """A KV cache holding `context` random tokens' keys and values [B, G, T, d_head] per layer: decode
    speed depends on the cache's size, not its values, so a long context costs no prefill."""
    generator = torch.Generator().manual_seed(seed)
    layers = [
        tuple(
            torch.randn(batch, shape.n_kv_heads, context, shape.head_dim, generator=generator, dtype=dtype)
            for _ in range(2)
        )
        for _ in range(shape.n_layers)
    ]
    return DynamicCache(ddp_cache_data=layers, config=shape.config())


@torch.no_grad()
def decode_steps(model: nn.Module, cache, steps: int, batch: int = 1) -> None:
    """`steps` greedy decode forwards on top of `cache`, then the cache is cut back to its length,
    so every timed call starts from the same context."""
    keyword = cache_keyword(model)
    token = torch.zeros(batch, 1, dtype=torch.long)
    for _ in range(steps):
        logits = model(input_ids=token, use_cache=True, logits_to_keep=1, **{keyword: cache}).logits  # [B, 1, V]
        token = logits[:, -1].argmax(dim=-1, keepdim=True)
    cache.crop(-steps)  # negative: remove that many tokens (the form every transformers version reads)


def decode_speed_vs_context(
    shapes: list[Shape],
    contexts: tuple[int, ...],
    steps: int,
    rounds: int,
    warmup: int = 1,
    threads: int | None = None,
    seed: int = 0,
) -> list[dict]:
    """Per shape and context: the cache's bytes (formula and measured) and decode tokens/s, timed in
    interleaved rounds over every (shape, context) pair."""
    before = torch.get_num_threads()
    threads = threads or before
    torch.set_num_threads(threads)
    models = {shape.name: build(shape, seed) for shape in shapes}
    caches = {(shape.name, t): filled_cache(shape, t, seed=seed) for shape in shapes for t in contexts}
    contenders: dict[str, Callable[[], object]] = {
        f"{name}|{t}": (lambda m=models[name], c=cache: decode_steps(m, c, steps))
        for (name, t), cache in caches.items()
    }
    try:
        timings: dict[str, Timing] = interleaved(contenders, "cpu", rounds=rounds, warmup=warmup)
    finally:
        torch.set_num_threads(before)
    rows = []
    for shape in shapes:
        for t in contexts:
            timing = timings[f"{shape.name}|{t}"]
            rows.append(
                {
                    "variant": shape.name,
                    "n_kv_heads": shape.n_kv_heads,
                    "context": t,
                    "params": sum(p.numel() for p in {id(p): p for p in models[shape.name].parameters()}.values()),
                    "kv_bytes_formula": kv_cache_bytes(shape, t),
                    "kv_bytes_measured": measured_cache_bytes(caches[(shape.name, t)]),
                    "decode_tok_s": timing.per_second(steps),
                    "decode_spread": timing.spread,
                    "threads": threads,
                }
            )
    return rows
