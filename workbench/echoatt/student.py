"""EchoAtt's student: layers that reuse the attention probabilities of an earlier, similar layer.

"Attend, Copy, then Adjust" (Rajabzadeh, Jafari et al., arXiv 2409.14595). Consecutive layers whose
attention maps are similar form a *sharing group* [h, f1, f2, ...]. The group head h computes its
attention probabilities as usual,

    A_h = softmax(Q_h K_hᵀ / √d + M)                              [B, H, T_q, T_k]

and every follower f reuses them with its own values and output projection,

    o_f = W_O^f · (A_h · V_f)

so a follower owns no W_Q and no W_K: those are removed (the "about 4% fewer parameters" of the
paper), together with the Q/K projections, RoPE and the QKᵀ + softmax of that layer (the speed-up).
Everything else (V, O, MLP, norms, embeddings) is inherited from the teacher.

Two paths give the same result (tested):
- "fused" (the default, for training and inference): sharing A_h is sharing what A_h is made of,
  the head's post-RoPE queries and keys. The head publishes (Q_h, K_h); a follower calls
  scaled-dot-product attention on (Q_h, K_h, V_f), so every layer stays on the fused SDPA kernel
  (flash on a GPU) and no [B, H, T, T] map is ever stored. The follower still owns no W_Q, W_K
  and computes no RoPE; it repeats the head's QKᵀ inside the kernel, which on a GPU costs less
  than leaving the fused path.
- "explicit": the head computes A_h as a tensor (eager) and followers multiply it by their
  values. Needed where the probabilities themselves are read (analysis, eager comparisons).

How it plugs into transformers: only the `self_attn` module of group layers is replaced.
`EchoAttentionHead` wraps the teacher layer's projections and publishes its (Q_h, K_h) or A_h on
an `AttentionBus`; `EchoAttentionFollower` holds only v_proj and o_proj and reads them from the
bus. Layers outside any group keep the teacher's attention module and kernel.

KV cache: a follower needs no keys of its own (it reads the head's cached K), so it caches only V.
It stores a zero-width key tensor [B, H_kv, T, 0] beside its values in the transformers cache (no
memory, and the cache stays a normal `DynamicCache`), which is what makes cached greedy generation work unchanged.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Sequence

import torch
from torch import nn
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb, repeat_kv

from ..attention.sharing import followers
from ..errors import WorkbenchError
from ..generate import cache_argument

PATHS = ("fused", "explicit")


class AttentionBus:
    """Carries each group head's attention to the group's followers within one forward pass:
    (Q_h, K_h) on the fused path, A_h on the explicit one.

    A plain object, not a module: it holds activations, never parameters. The last follower of a
    group drops the entry, so nothing outlives the forward pass (autograd keeps what the backward
    pass needs by itself).
    """

    def __init__(self) -> None:
        self.attention: dict[int, tuple[torch.Tensor, ...]] = {}

    def publish(self, head: int, *tensors: torch.Tensor) -> None:
        self.attention[head] = tensors

    def read(self, head: int, release: bool) -> tuple[torch.Tensor, ...]:
        if head not in self.attention:
            raise RuntimeError(f"layer {head}'s attention was not computed before its followers ran")
        return self.attention.pop(head) if release else self.attention[head]


def _additive_mask(attention_mask: torch.Tensor | None, q_len: int, k_len: int, like: torch.Tensor) -> torch.Tensor:
    """The mask M as an additive [.., T_q, T_k] tensor, from any form transformers hands us.

    Fused-kernel models pass None (pure causal: the kernel's is_causal flag) or a boolean mask
    (True = attend); eager models pass an additive float mask. Queries are the last T_q of T_k
    positions (a KV cache holds the first T_k − T_q).
    """
    if attention_mask is None:
        query = torch.arange(q_len, device=like.device)[:, None] + (k_len - q_len)
        allowed = torch.arange(k_len, device=like.device)[None, :] <= query
    elif attention_mask.dtype == torch.bool:
        allowed = attention_mask[..., :k_len]
    else:
        return attention_mask[..., :k_len].to(like.dtype)
    return torch.zeros(allowed.shape, dtype=like.dtype, device=like.device).masked_fill(
        ~allowed, torch.finfo(like.dtype).min
    )


class EchoAttentionHead(nn.Module):
    """The first layer of a sharing group: ordinary attention that also publishes (Q_h, K_h)
    (fused path) or A_h (explicit path). Same weights and same result as the teacher's attention.
    """

    is_causal = True  # read by transformers' SDPA wrapper

    def __init__(self, teacher_attention: nn.Module, bus: AttentionBus, path: str = "fused"):
        super().__init__()
        self.path = path
        self.layer_idx = teacher_attention.layer_idx
        self.head_dim = teacher_attention.head_dim
        self.num_key_value_groups = teacher_attention.num_key_value_groups
        self.scaling = teacher_attention.scaling
        self.q_proj, self.k_proj = teacher_attention.q_proj, teacher_attention.k_proj
        self.v_proj, self.o_proj = teacher_attention.v_proj, teacher_attention.o_proj
        self.bus = bus

    def forward(
        self,
        hidden_states: torch.Tensor,  # [B, T, d]
        position_embeddings: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> tuple[torch.Tensor, None]:
        cache = cache_argument(kwargs)
        batch, q_len, _ = hidden_states.shape
        shape = (batch, q_len, -1, self.head_dim)
        query = self.q_proj(hidden_states).view(shape).transpose(1, 2)  # [B, H, T, D]
        key = self.k_proj(hidden_states).view(shape).transpose(1, 2)  # [B, H_kv, T, D]
        value = self.v_proj(hidden_states).view(shape).transpose(1, 2)  # [B, H_kv, T, D]
        cos, sin = position_embeddings
        query, key = apply_rotary_pos_emb(query, key, cos, sin)
        if cache is not None:
            key, value = cache.update(key, value, self.layer_idx)  # [B, H_kv, T_k, D]
        if self.path == "fused":
            self.bus.publish(self.layer_idx, query, key)
            output, _ = sdpa_attention_forward(self, query, key, value, attention_mask, scaling=self.scaling)
            return self.o_proj(output.reshape(batch, q_len, -1)), None  # output [B, T, H, D]

        key, value = repeat_kv(key, self.num_key_value_groups), repeat_kv(value, self.num_key_value_groups)
        scores = query @ key.transpose(2, 3) * self.scaling  # [B, H, T, T_k]
        scores = scores + _additive_mask(attention_mask, q_len, key.shape[-2], scores)
        probabilities = torch.softmax(scores, dim=-1, dtype=torch.float32).to(query.dtype)  # A_h
        self.bus.publish(self.layer_idx, probabilities)

        output = (probabilities @ value).transpose(1, 2).reshape(batch, q_len, -1)  # [B, T, H·D]
        return self.o_proj(output), None


class EchoAttentionFollower(nn.Module):
    """A later layer of a sharing group: o_f = W_O^f · (A_h · V_f); no W_Q, no W_K.

    Fused path: SDPA(Q_h, K_h, V_f), the same A_h inside the kernel. `release` is set on the
    group's last follower, which drops the head's entry from the bus after use.
    """

    is_causal = True  # read by transformers' SDPA wrapper

    def __init__(self, teacher_attention: nn.Module, bus: AttentionBus, head: int, release: bool):
        super().__init__()
        self.scaling = teacher_attention.scaling
        self.layer_idx = teacher_attention.layer_idx
        self.head_dim = teacher_attention.head_dim
        self.num_key_value_groups = teacher_attention.num_key_value_groups
        self.v_proj, self.o_proj = teacher_attention.v_proj, teacher_attention.o_proj
        self.bus, self.head, self.release = bus, head, release

    def forward(
        self, hidden_states: torch.Tensor, position_embeddings=None, attention_mask=None, **kwargs
    ) -> tuple[torch.Tensor, None]:
        cache = cache_argument(kwargs)
        batch, q_len, _ = hidden_states.shape
        value = self.v_proj(hidden_states).view(batch, q_len, -1, self.head_dim).transpose(1, 2)  # [B, H_kv, T, D]
        if cache is not None:
            no_keys = value.new_empty(*value.shape[:-1], 0)  # [B, H_kv, T, 0]: only V is cached
            _, value = cache.update(no_keys, value, self.layer_idx)  # [B, H_kv, T_k, D]
        shared = self.bus.read(self.head, self.release)
        if len(shared) == 2:  # fused: the head's (Q_h [B, H, T, D], K_h [B, H_kv, T_k, D])
            query, key = shared
            output, _ = sdpa_attention_forward(self, query, key, value, attention_mask, scaling=self.scaling)
            return self.o_proj(output.reshape(batch, q_len, -1)), None  # output [B, T, H, D]
        (probabilities,) = shared  # explicit: A_h [B, H, T, T_k]
        output = probabilities @ repeat_kv(value, self.num_key_value_groups)  # [B, H, T, D]
        return self.o_proj(output.transpose(1, 2).reshape(batch, q_len, -1)), None

    def extra_repr(self) -> str:
        return f"reuses the attention of layer {self.head}"


def check_groups(groups: Sequence[Sequence[int]], n_layers: int, max_block: int = 3) -> list[list[int]]:
    """Validate sharing groups: consecutive, disjoint layer indices inside the model.

    A group longer than `max_block` is allowed but warned about: errors compound along a chain
    (docs/ideas.md, EchoAtt: blocks of 6 reusing one head multiply zero-shot perplexity by ~80).
    """
    checked, seen = [], set()
    for group in groups:
        group = [int(i) for i in group]
        if not group:
            raise WorkbenchError(
                "an empty sharing group: each group lists consecutive layers, e.g. [[4, 5], [10, 11, 12]]"
            )
        if any(not 0 <= i < n_layers for i in group):
            raise WorkbenchError(
                f"sharing group {group} names a layer outside 0..{n_layers - 1}: this model has {n_layers} layers"
            )
        if group != list(range(group[0], group[0] + len(group))):
            raise WorkbenchError(f"sharing group {group} is not a run of consecutive layers: write it as [h, h+1, ...]")
        if seen & set(group):
            raise WorkbenchError(
                f"sharing group {group} overlaps another group: each layer belongs to at most one group"
            )
        seen |= set(group)
        if len(group) > max_block:
            warnings.warn(
                f"sharing group {group} is longer than {max_block} layers: long chains hurt quality badly", stacklevel=2
            )
        checked.append(group)
    return checked


def build_student(
    teacher: nn.Module, groups: Sequence[Sequence[int]], max_block: int = 3, path: str = "fused"
) -> nn.Module:
    """A deep copy of a LLaMA-family `teacher` whose group followers reuse their head's attention.

    `groups`: e.g. [[4, 5], [10, 11, 12]]: layer 4 computes attention that layer 5 reuses;
    layer 10's is reused by 11 and 12. Groups of one layer change nothing. `path`: "fused" (SDPA
    on the head's Q and K) or "explicit" (materialised probabilities); see the module docstring.
    The teacher is left untouched; the student's `echoatt_groups` and `echoatt_path` record them.
    """
    if path not in PATHS:
        raise WorkbenchError(f"unknown sharing path {path!r}: use 'fused' (SDPA, the default) or 'explicit'")
    layers = teacher.model.layers
    groups = check_groups(groups, len(layers), max_block)
    student = copy.deepcopy(teacher)
    bus = AttentionBus()
    for group in groups:
        if len(group) == 1:
            continue
        head, *rest = group
        attention = student.model.layers[head].self_attn
        student.model.layers[head].self_attn = EchoAttentionHead(attention, bus, path)
        for i, layer in enumerate(rest):
            attention = student.model.layers[layer].self_attn
            student.model.layers[layer].self_attn = EchoAttentionFollower(
                attention, bus, head, release=i == len(rest) - 1
            )
    student.echoatt_groups, student.echoatt_path = groups, path
    return student


def set_path(student: nn.Module, path: str) -> nn.Module:
    """Switch a student between the fused and the explicit path in place (same weights, same result)."""
    if path not in PATHS:
        raise WorkbenchError(f"unknown sharing path {path!r}: use 'fused' (SDPA, the default) or 'explicit'")
    for module in student.modules():
        if isinstance(module, EchoAttentionHead):
            module.path = path
    student.echoatt_path = path
    return student


def removed_parameters(teacher: nn.Module, groups: Sequence[Sequence[int]]) -> int:
    """|W_Q| + |W_K| (and their biases) summed over the followers: what sharing removes."""
    total = 0
    for layer in followers(groups):
        attention = teacher.model.layers[layer].self_attn
        total += sum(p.numel() for p in (*attention.q_proj.parameters(), *attention.k_proj.parameters()))
    return total


def attention_kernel(model: nn.Module) -> str:
    """Which attention path each layer takes, in words (for the speed tables)."""
    base = model.config._attn_implementation
    groups = getattr(model, "echoatt_groups", None)
    if not groups or not followers(groups):
        return base
    if getattr(model, "echoatt_path", "explicit") == "fused":
        return f"{base} (unshared layers) + sdpa on the head's Q, K (sharing groups)"
    return f"{base} (unshared layers) + explicit probabilities (sharing groups)"
