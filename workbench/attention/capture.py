"""Reading every layer's attention probabilities out of a Hugging Face causal LM, one layer at a time.

The fused attention kernels (SDPA, FlashAttention) never materialise the probability tensor

    A_ℓ = softmax(Q_ℓ K_ℓᵀ / √d + M)                               [B, H, T_q, T_k]

so transformers 5.x returns no attention under them. `eager_attention` switches a model to the
eager backend only for the duration of a `with` block and restores the previous one afterwards,
so training and generation keep the fast path.

`capture_attention` adds a forward hook to every attention module; in eager mode those modules
return `(attn_output, attn_weights)`, and the hook hands `attn_weights` to a callback *while the
forward pass runs*. The callback sees one layer's maps at a time, so a caller that reduces them
right away (see `similarity.SimilarityAccumulator`) never holds all layers' maps at once, unlike
`output_attentions=True`, which returns a tuple of every layer's maps at the end.

Grouped-query models (SmolLM2: 9 query heads over 3 KV heads) repeat K inside the eager kernel,
so the maps come out with one [T, T] map per *query* head.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import WorkbenchError

LayerCallback = Callable[[int, torch.Tensor], None]  # (layer index, probabilities [B, H, T, T])


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention module of every decoder layer, in layer order.

    Works for the LLaMA family (`model.model.layers[i].self_attn`), GPT-2 (`transformer.h[i].attn`)
    and any transformers model whose attention modules carry a `layer_idx`.
    """
    found = {}
    for module in model.modules():
        if type(module).__name__.endswith("Attention") and isinstance(getattr(module, "layer_idx", None), int):
            found.setdefault(module.layer_idx, module)
    n_layers = getattr(model.config, "num_hidden_layers", len(found))
    if sorted(found) != list(range(n_layers)):
        raise WorkbenchError(
            f"found attention modules for layers {sorted(found)} but the model has {n_layers}: "
            "this architecture is not supported (its attention modules need a `layer_idx`)"
        )
    return [found[i] for i in range(n_layers)]


@contextmanager
def eager_attention(model: nn.Module) -> Iterator[nn.Module]:
    """Run `model` with eager attention inside the block; restore the previous backend after it."""
    previous = model.config._attn_implementation
    if previous != "eager":
        model.set_attn_implementation("eager")
    try:
        yield model
    finally:
        if previous != "eager":
            model.set_attn_implementation(previous)


@contextmanager
def capture_attention(model: nn.Module, on_layer: LayerCallback, layers: Sequence[int] | None = None) -> Iterator[None]:
    """Inside the block, every forward pass calls `on_layer(ℓ, A_ℓ)` as each layer's attention finishes.

    `A_ℓ` is the eager kernel's probability tensor [B, H, T_q, T_k] (softmax taken in float32, then
    cast to the model's dtype). `layers` restricts the hooks to some layers (default: all).
    The hooks and the eager backend are removed on exit, also after an exception.
    """
    modules = attention_modules(model)
    chosen = range(len(modules)) if layers is None else layers

    def hook_for(index: int):
        def hook(module, args, output):
            probabilities = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if probabilities is None:
                raise WorkbenchError(
                    f"layer {index}'s attention returned no probabilities: is the model in eager mode?"
                )
            on_layer(index, probabilities)

        return hook

    with eager_attention(model):
        handles = [modules[i].register_forward_hook(hook_for(i)) for i in chosen]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def run_backbone(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> None:
    """One forward pass of the decoder stack without the LM head (its logits are not needed here).

    The head of a 135M model is a 576 × 49,152 matrix: ~20% of the forward FLOPs for nothing.
    """
    backbone = getattr(model, "base_model", model)
    backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)


@torch.no_grad()
def attention_maps(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    layers: Sequence[int] | None = None,
) -> dict[int, torch.Tensor]:
    """Full maps {ℓ: A_ℓ [B, H, T, T]} (float32, on the CPU) of the chosen layers for one batch.

    For looking at a few layers; the all-pairs analysis streams instead (`analysis.analyze`).
    """
    maps: dict[int, torch.Tensor] = {}
    with capture_attention(model, lambda i, a: maps.__setitem__(i, a.float().cpu()), layers):
        run_backbone(model, input_ids, attention_mask)
    return maps
