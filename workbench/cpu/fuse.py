"""Fused projections for batch-1 CPU decoding: one QKV matmul and one gate/up matmul per layer.

At batch 1 a decode step of SmolLM2-135M is 30 layers x 7 matrix-vector products plus the output
layer; each of q, k, v (576, 192, 192 rows) and gate, up (1,536 rows each) reads the same input
vector. Concatenating their weights along the output dimension turns seven kernel calls per layer
into four (qkv, o, gate_up, down): fewer calls, each with more rows to spread over threads and to
stream through the cache (the fused-QKV layout of GPT-2 and vLLM, and llama.cpp's fused kernels).

The fusion is done on the float weights, before `quantize`: the concatenated `nn.Linear` is then
quantised like any other, and since int8 scales are per output row and int4 groups run along the
input dimension of one row, every row gets exactly the scales it had unfused. So the fused model
computes the same numbers as the unfused one up to the order of float additions in the kernels.

`fuse_projections` handles transformers' LLaMA blocks (SmolLM2, `tiny_llama`); the attention
forward below repeats `LlamaAttention.forward` (transformers 5.x) with the three projections
replaced by one, and leaves RoPE, the cache update and the attention kernel to transformers.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from transformers.models.llama.modeling_llama import (
    ALL_ATTENTION_FUNCTIONS,
    LlamaAttention,
    LlamaMLP,
    apply_rotary_pos_emb,
    eager_attention_forward,
)

from ..errors import WorkbenchError


def concat_linear(*linears: nn.Linear) -> nn.Linear:
    """One `nn.Linear` whose output is the outputs of `linears` (same input width) side by side."""
    bias = linears[0].bias is not None
    fused = nn.Linear(linears[0].in_features, sum(lin.out_features for lin in linears), bias=bias)
    fused.weight = nn.Parameter(torch.cat([lin.weight.detach() for lin in linears]), requires_grad=False)
    if bias:
        fused.bias = nn.Parameter(torch.cat([lin.bias.detach() for lin in linears]), requires_grad=False)
    return fused.to(linears[0].weight.dtype)


class FusedQKVAttention(nn.Module):
    """`LlamaAttention` with q, k and v computed by one projection `qkv_proj` and split."""

    def __init__(self, attention: LlamaAttention):
        super().__init__()
        self.config, self.layer_idx, self.head_dim = attention.config, attention.layer_idx, attention.head_dim
        self.num_key_value_groups, self.scaling = attention.num_key_value_groups, attention.scaling
        self.attention_dropout, self.is_causal = attention.attention_dropout, attention.is_causal
        self.qkv_proj = concat_linear(attention.q_proj, attention.k_proj, attention.v_proj)
        self.sizes = (attention.q_proj.out_features, attention.k_proj.out_features, attention.v_proj.out_features)
        self.o_proj = attention.o_proj

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        cache=None,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]  # [B, T]
        hidden_shape = (*input_shape, -1, self.head_dim)
        query, key, value = self.qkv_proj(hidden_states).split(self.sizes, dim=-1)
        query = query.view(hidden_shape).transpose(1, 2)  # [B, H, T, hd]
        key = key.view(hidden_shape).transpose(1, 2)  # [B, H_kv, T, hd]
        value = value.view(hidden_shape).transpose(1, 2)
        query, key = apply_rotary_pos_emb(query, key, *position_embeddings)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx, kwargs=kwargs)
        if self._one_query_sdpa(query, attention_mask):
            return self.o_proj(self._attend_one_query(query, key, value, attention_mask).flatten(2)), None
        attend = ALL_ATTENTION_FUNCTIONS.get_interface(self.config._attn_implementation, eager_attention_forward)
        dropout = 0.0 if not self.training else self.attention_dropout
        out, weights = attend(self, query, key, value, attention_mask, dropout=dropout, scaling=self.scaling, **kwargs)
        return self.o_proj(out.reshape(*input_shape, -1).contiguous()), weights

    def _one_query_sdpa(self, query: torch.Tensor, mask: torch.Tensor | None) -> bool:
        """A decode step (one query) of grouped-query sdpa, with a mask shared by every head (or none)."""
        shared_mask = mask is None or (mask.dim() == 4 and mask.shape[1:3] == (1, 1))
        return (
            query.shape[2] == 1
            and self.num_key_value_groups > 1
            and self.config._attn_implementation == "sdpa"
            and shared_mask
        )

    def _attend_one_query(self, query, key, value, mask) -> torch.Tensor:
        """[B, 1, H, hd]: one query per head against the cache, the G query heads of a KV head as G rows of one
        attention, so K and V are read as they are stored. Transformers' sdpa path repeats K and V G times under
        torch.compile (a copy of the whole cache per layer and step: 4% of a compiled int8 step at 1 thread)."""
        b, h, _, d = query.shape
        grouped = query.reshape(b, h // self.num_key_value_groups, self.num_key_value_groups, d)  # head = kv·G + g
        # products summed explicitly, not sdpa: inductor fuses them into its loops, where the CPU flash kernel took
        # ~100 us a call on a 1 x 192 attention (its set-up, not its arithmetic)
        scores = (grouped[:, :, :, None, :] * key[:, :, None]).sum(-1).float() * self.scaling  # [B, H_kv, G, S]
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
        probs = scores.softmax(dim=-1).to(value.dtype)
        out = (probs[..., None] * value[:, :, None]).sum(-2)  # [B, H_kv, G, hd]
        return out.reshape(b, 1, h, d)


class FusedGateUpMLP(nn.Module):
    """SwiGLU `down(act(gate x) * up x)` with gate and up computed by one projection `gate_up_proj`."""

    def __init__(self, mlp: LlamaMLP):
        super().__init__()
        self.gate_up_proj = concat_linear(mlp.gate_proj, mlp.up_proj)
        self.down_proj, self.act_fn = mlp.down_proj, mlp.act_fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(self.act_fn(gate) * up)


def fuse_projections(model: nn.Module) -> nn.Module:
    """A copy of the float `model` with every LLaMA attention's q/k/v and MLP's gate/up fused (quantise it after)."""
    fused = copy.deepcopy(model)
    swaps = 0
    for parent in list(fused.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is LlamaAttention or type(child) is LlamaMLP:
                if not isinstance(getattr(child, "q_proj", getattr(child, "gate_proj", None)), nn.Linear):
                    raise WorkbenchError("fuse_projections needs nn.Linear projections: fuse first, quantise after")
                wrap = FusedQKVAttention if type(child) is LlamaAttention else FusedGateUpMLP
                setattr(parent, name, wrap(child))
                swaps += 1
    if not swaps:
        raise WorkbenchError(f"fuse_projections found no LLaMA attention or MLP in {type(model).__name__}")
    return fused
