"""The recursive LLaMA: K unique layers looped B times, with per-depth relaxation and an exit per loop.

Relaxed Recursive Transformers (Bae et al., arXiv:2410.20672), §2. With L effective layers and
B loops there are K = L/B shared blocks Φ′_1..Φ′_K. CYCLE tying: effective layer ℓ (0-based here)
runs shared block ℓ mod K,

    h^ℓ = f(h^{ℓ-1}; Φ′_{ℓ mod K}, ΔΦ_ℓ),

where ΔΦ_ℓ is what depth ℓ owns: a LoRA on every linear (h = W′x + B_ℓ A_ℓ x, the relaxation) and,
when norms are not tied, its two RMSNorm weights. CYCLE (rather than SEQUENCE) tying means every
loop applies the same blocks in the same order, which is what lets an exit sit after each loop and
lets tokens at different loops share one batch (depth-wise batching).

The module mirrors transformers' `LlamaForCausalLM` where the core looks (`config`, `model.
embed_tokens / rotary_emb / layers / norm`, `lm_head`), so `workbench.train.causal_lm_loss`,
`workbench.evaluate.perplexity` and `workbench.distill.DistillationLoss` drive it unchanged. Without a
cache its forward is plain tensor code (no masks, no hooks): dynamo traces it as one graph, no breaks.
`model.layers` holds L `EffectiveLayer`s; the k-th, (k+K)-th, ... reference the same `SharedBlock`
(parameters are shared, `parameters()` yields each once).

Incremental decoding speaks transformers' cache API (the forward takes `cache` and `use_cache` and
returns the cache, as `LlamaForCausalLM` does), so `workbench.generate.sample`, `workbench.measure.
model_speeds` and the model card's measured KV bytes treat it like any other causal LM. Each loop
iteration of a shared block is a distinct effective layer with its own keys and values (its input
differs from loop to loop, and so does its LoRA): a `DynamicCache` entry per effective layer ℓ, L = B·K
in all, the paper's per-depth KV indexing. A looped model therefore holds *as much KV cache per token as
the full model*: recursion saves parameters, not KV memory. Only sharing keys/values across loops would
save it (the follow-up Mixture-of-Recursions' recursive KV sharing), which this paper does not do.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache, LlamaConfig
from transformers.cache_utils import Cache
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast
from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding, apply_rotary_pos_emb

ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP = ("gate_proj", "up_proj", "down_proj")
MODULES = ATTENTION + MLP  # the seven linears of a LLaMA layer, each relaxed by its own LoRA
# the outputs' field holding the KV cache under this transformers version's name (`cache`, earlier `past_key_values`)
CACHE = "cache" if "cache" in CausalLMOutputWithPast.__dataclass_fields__ else "past_key_values"
KV_NOTE = (
    "one KV-cache entry per effective layer (L = B·K, as many as the full model's layers): "
    "recursion saves parameters, not KV-cache memory"
)  # what a looped model's card says beside its KV bytes


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm exactly as transformers' LlamaRMSNorm: normalise in float32, scale in the input dtype."""
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def linear_shapes(config: LlamaConfig) -> dict[str, tuple[int, int]]:
    """(out, in) of each linear of one layer, by name."""
    d, ff = config.hidden_size, config.intermediate_size
    head_dim = getattr(config, "head_dim", None) or d // config.num_attention_heads
    q, kv = config.num_attention_heads * head_dim, config.num_key_value_heads * head_dim
    return {
        "q_proj": (q, d),
        "k_proj": (kv, d),
        "v_proj": (kv, d),
        "o_proj": (d, q),
        "gate_proj": (ff, d),
        "up_proj": (ff, d),
        "down_proj": (d, ff),
    }


class Norms(nn.Module):
    """The two RMSNorm weights of a layer (before attention, before the MLP)."""

    def __init__(self, d: int):
        super().__init__()
        self.attn = nn.Parameter(torch.ones(d))
        self.mlp = nn.Parameter(torch.ones(d))


class SharedBlock(nn.Module):
    """One unique layer Φ′_k: the seven linears, and the norms when they are tied across depth."""

    def __init__(self, config: LlamaConfig, tie_norms: bool):
        super().__init__()
        for name, (out_features, in_features) in linear_shapes(config).items():
            setattr(self, name, nn.Linear(in_features, out_features, bias=False))
        self.norms = Norms(config.hidden_size) if tie_norms else None


class LoRA(nn.Module):
    """Per-depth low-rank deltas ΔW = B A, A [r, in], B [out, r], one pair per relaxed linear."""

    def __init__(self, config: LlamaConfig, ranks: dict[str, int]):
        super().__init__()
        shapes = linear_shapes(config)
        self.A = nn.ParameterDict(
            {name: nn.Parameter(torch.zeros(r, shapes[name][1])) for name, r in ranks.items() if r > 0}
        )
        self.B = nn.ParameterDict(
            {name: nn.Parameter(torch.zeros(shapes[name][0], r)) for name, r in ranks.items() if r > 0}
        )

    def ranks(self) -> dict[str, int]:
        return {name: a.shape[0] for name, a in self.A.items()}

    def forward(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """B_ℓ A_ℓ x for the relaxed linear `name`; called as a module so that `cards.forward_flops` counts it."""
        return F.linear(F.linear(x, self.A[name]), self.B[name])

    def weights_applied(self, name: str, x: torch.Tensor) -> int:
        """Weights one call multiplies per token, r·(in + out): what `cards.forward_flops` adds for it."""
        return self.A[name].numel() + self.B[name].numel()


class GroupedAttention(nn.Module):
    """Causal grouped-query attention of t queries against the last s keys/values (s > t: a cached prefix).
    No weights; a module so that `cards.forward_flops` counts one attention application per effective layer."""

    def __init__(self, n_heads: int, n_kv_heads: int):
        super().__init__()
        self.n_heads, self.n_kv_heads = n_heads, n_kv_heads

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        groups = self.n_heads // self.n_kv_heads  # each KV head serves `groups` query heads
        k = k.repeat_interleave(groups, dim=1)  # [b, H, s, hd]
        v = v.repeat_interleave(groups, dim=1)
        t, s = q.shape[2], k.shape[2]
        if t == s:
            out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # [b, H, t, hd]
        elif t == 1:  # one new token sees every position
            out = F.scaled_dot_product_attention(q, k, v)
        else:  # query i sits at position s − t + i (SDPA's is_causal would align it to position i)
            mask = torch.ones(t, s, dtype=torch.bool, device=q.device).tril(s - t)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out.transpose(1, 2).flatten(2)  # [b, t, H·hd]


class EffectiveLayer(nn.Module):
    """Effective layer ℓ: the shared block Φ′_{ℓ mod K} plus what depth ℓ owns (LoRA, untied norms)."""

    def __init__(self, depth: int, shared: SharedBlock, config: LlamaConfig):
        super().__init__()
        self.depth = depth
        self.shared = shared
        self.norms = None if shared.norms is not None else Norms(config.hidden_size)
        self.lora: LoRA | None = None
        self.eps = config.rms_norm_eps
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        self.n_heads, self.n_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.attention = GroupedAttention(self.n_heads, self.n_kv_heads)

    def linear(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """W′x (+ B_ℓ A_ℓ x when depth ℓ relaxes this linear). The shared linear is called as a module, so a
        quantised copy of it (an int8 layer without a float `weight`) runs its own kernel."""
        y = getattr(self.shared, name)(x)
        if self.lora is not None and name in self.lora.A:
            y = y + self.lora(name, x)
        return y

    def _norms(self) -> Norms:
        return self.norms if self.norms is not None else self.shared.norms

    def _qkv(self, x: torch.Tensor, position_embeddings: tuple[torch.Tensor, torch.Tensor]):
        b, t, _ = x.shape
        q = self.linear("q_proj", x).view(b, t, self.n_heads, self.head_dim).transpose(1, 2)  # [b, H, t, hd]
        k = self.linear("k_proj", x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)  # [b, H_kv, t, hd]
        v = self.linear("v_proj", x).view(b, t, self.n_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = position_embeddings
        q, k = apply_rotary_pos_emb(q, k, cos, sin)
        return q, k, v

    def _mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear("down_proj", F.silu(self.linear("gate_proj", x)) * self.linear("up_proj", x))  # SwiGLU

    def forward(
        self,
        hidden_states: torch.Tensor,  # [b, t, d]
        attention_mask: torch.Tensor | None = None,  # accepted for `decoder_states`; causal attention needs none
        position_ids: torch.Tensor | None = None,
        position_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None,
        cache: Cache | None = None,
        **kwargs,
    ) -> torch.Tensor:
        """`cache`: this depth's keys/values are appended at index ℓ = `depth` (its own entry, not its block's)."""
        extend = None if cache is None else lambda k, v: cache.update(k, v, self.depth)
        return self._block(hidden_states, position_embeddings, extend)[0]

    def decode(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        past_k: torch.Tensor,
        past_v: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One new token per sequence [b, 1, d] against cached keys/values [b, H_kv, s, hd]: (hidden, k, v)."""

        def extend(k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return torch.cat([past_k, k], dim=2), torch.cat([past_v, v], dim=2)

        return self._block(hidden_states, position_embeddings, extend)

    def _block(self, hidden_states: torch.Tensor, position_embeddings, extend: Callable | None = None):
        """(hidden, k, v): the layer on [b, t, d], keys/values extended by `extend(k, v)` with a cached prefix."""
        norms = self._norms()
        q, k, v = self._qkv(rms_norm(hidden_states, norms.attn, self.eps), position_embeddings)
        if extend is not None:
            k, v = extend(k, v)
        hidden_states = hidden_states + self.linear("o_proj", self.attention(q, k, v))
        return hidden_states + self._mlp(rms_norm(hidden_states, norms.mlp, self.eps)), k, v


class RecursiveLlamaModel(nn.Module):
    """The body: embedding, K shared blocks run as L = B·K effective layers, final norm."""

    def __init__(self, config: LlamaConfig, loops: int, tie_norms: bool):
        super().__init__()
        self.loops, self.n_unique = loops, config.num_hidden_layers // loops
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.rotary_emb = LlamaRotaryEmbedding(config)
        self.blocks = nn.ModuleList(SharedBlock(config, tie_norms) for _ in range(self.n_unique))
        self.layers = nn.ModuleList(
            EffectiveLayer(ell, self.blocks[ell % self.n_unique], config) for ell in range(config.num_hidden_layers)
        )
        self.norm = LlamaRMSNorm(config.hidden_size, eps=config.rms_norm_eps)

    def forward(
        self,
        input_ids: torch.Tensor,
        output_loops: bool = False,
        cache: Cache | None = None,
        use_cache: bool = False,
        **kwargs,
    ) -> BaseModelOutputWithPast:
        """`last_hidden_state` [b, t, d] after the final norm; with `output_loops`, `hidden_states` holds
        the normed state after each loop (the input of each early exit), the last one being the final.
        `input_ids` continue the positions `cache` holds (`use_cache` without one starts a `DynamicCache`);
        the cache, one entry per effective layer, is returned as `cache`."""
        if use_cache and cache is None:
            cache = DynamicCache()  # entries appear as effective layers 0..L−1 write them
        past = 0 if cache is None else cache.get_seq_length()
        hidden = self.embed_tokens(input_ids)  # [b, t, d]
        position_ids = torch.arange(past, past + input_ids.shape[1], device=input_ids.device)[None]  # [1, t]
        position_embeddings = self.rotary_emb(hidden, position_ids=position_ids)  # (cos, sin) [1, t, hd]
        exits = []
        for ell, layer in enumerate(self.layers):
            hidden = layer(hidden, position_embeddings=position_embeddings, cache=cache)
            if output_loops and (ell + 1) % self.n_unique == 0 and ell + 1 < len(self.layers):
                exits.append(self.norm(hidden))
        last = self.norm(hidden)
        return BaseModelOutputWithPast(
            last_hidden_state=last, hidden_states=(*exits, last) if output_loops else None, **{CACHE: cache}
        )

    def loop_layers(self, loop: int) -> nn.ModuleList:
        """The K effective layers of loop `loop` (0-based)."""
        return self.layers[loop * self.n_unique : (loop + 1) * self.n_unique]


class RecursiveLlamaForCausalLM(nn.Module):
    """A looped LLaMA with the head tied to the embedding (as SmolLM2's), and an exit after each loop."""

    def __init__(self, config: LlamaConfig, loops: int, tie_norms: bool = True):
        super().__init__()
        self.config = copy.deepcopy(config)
        self.loops, self.tie_norms = loops, tie_norms
        self.model = RecursiveLlamaModel(self.config, loops, tie_norms)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.lm_head.weight = self.model.embed_tokens.weight  # tied: the exit after every loop shares it too

    @property
    def n_unique(self) -> int:
        return self.model.n_unique

    def forward(
        self,
        input_ids: torch.Tensor,
        cache: Cache | None = None,
        use_cache: bool = False,
        logits_to_keep: int = 0,
        **kwargs,
    ) -> CausalLMOutputWithPast:
        """Logits [b, t, V] (of the last `logits_to_keep` positions, 0: all) and, with `use_cache` or a
        `cache`, the KV cache to continue from: `LlamaForCausalLM`'s calling convention."""
        out = self.model(input_ids, cache=cache, use_cache=use_cache)
        hidden = out.last_hidden_state if not logits_to_keep else out.last_hidden_state[:, -logits_to_keep:]
        return CausalLMOutputWithPast(logits=self.lm_head(hidden), **{CACHE: getattr(out, CACHE)})

    def loop_logits(self, input_ids: torch.Tensor) -> list[torch.Tensor]:
        """Logits [b, t, V] of the exit after each loop, the last being the model's output."""
        return [self.lm_head(h) for h in self.model(input_ids, output_loops=True).hidden_states]
