"""Convert a pretrained LLaMA-family model into a recursive one (CYCLE sharing, three initialisations).

Relaxed Recursive Transformers (Bae et al., arXiv:2410.20672), §2.2 and Fig. 2. An L-layer model
becomes K = L/B unique layers looped B times; effective layer ℓ (0-based) runs shared layer ℓ mod K.
The K shared layers are initialised from the pretrained ones in one of three ways:

- Stepwise: layers at a fixed interval, keeping the first and the last: source ⌊k(L−1)/(K−1)⌋,
  k = 0..K−1 (L=6, K=3 → layers 0, 2, 5, the paper's figure; L=30, K=15 → 0, 2, 4, ..., 26, 29).
- Average: W′_k = (1/B) Σ_b W_{k+bK}, the mean of the layers that will share it (norms included).
- Lower: W′_k = W_k, the first K layers.

`tie_norms=True` is the paper (RMSNorm weights are shared like everything else, initialised the
same way as the linears); `tie_norms=False` keeps each depth's own norms, copied from the layer it
replaces (2·d parameters per effective layer), which is what lets a full-rank relaxation reproduce
the original model exactly.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..errors import WorkbenchError
from .model import MODULES, RecursiveLlamaForCausalLM

INITS = ("stepwise", "average", "lower")


def stepwise_indices(n_layers: int, n_unique: int) -> list[int]:
    """Source layers of the Stepwise initialisation: a fixed interval keeping the first and last."""
    if n_unique == 1:
        return [0]
    return [k * (n_layers - 1) // (n_unique - 1) for k in range(n_unique)]


def source_layers(init: str, n_layers: int, loops: int) -> list[list[int]]:
    """For each shared layer k, the pretrained layers whose weights it starts from (averaged)."""
    if init not in INITS:
        raise WorkbenchError(f"unknown initialisation {init!r}: use one of {', '.join(INITS)}")
    if loops < 1 or n_layers % loops:
        raise WorkbenchError(
            f"{n_layers} layers cannot be looped {loops} times: the number of loops must divide the depth"
        )
    n_unique = n_layers // loops
    if init == "stepwise":
        return [[i] for i in stepwise_indices(n_layers, n_unique)]
    if init == "average":
        return [[k + b * n_unique for b in range(loops)] for k in range(n_unique)]
    return [[k] for k in range(n_unique)]


def _decoder_layers(model: nn.Module) -> nn.ModuleList:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None or not hasattr(layers[0], "self_attn") or not hasattr(layers[0], "mlp"):
        raise WorkbenchError("conversion needs a LLaMA-family causal LM (model.model.layers[i].self_attn / .mlp)")
    return layers


def original_weight(layer: nn.Module, name: str) -> torch.Tensor:
    """The weight of linear `name` in a transformers LLaMA decoder layer."""
    return getattr(layer.self_attn if name in ("q_proj", "k_proj", "v_proj", "o_proj") else layer.mlp, name).weight


def _mean(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.stack([t.detach().float() for t in tensors]).mean(0)


@torch.no_grad()
def convert(model: nn.Module, loops: int, init: str = "stepwise", tie_norms: bool = True) -> RecursiveLlamaForCausalLM:
    """A recursive copy of `model` with `loops` loops; `model` itself is left untouched."""
    layers = _decoder_layers(model)
    config = model.config
    sources = source_layers(init, config.num_hidden_layers, loops)
    param = next(model.parameters())
    recursive = RecursiveLlamaForCausalLM(config, loops, tie_norms).to(device=param.device, dtype=param.dtype)
    body = recursive.model
    body.embed_tokens.weight.copy_(model.model.embed_tokens.weight)
    body.norm.weight.copy_(model.model.norm.weight)
    body.rotary_emb = copy.deepcopy(model.model.rotary_emb)
    for block, source in zip(body.blocks, sources, strict=True):
        for name in MODULES:
            getattr(block, name).weight.copy_(_mean([original_weight(layers[i], name) for i in source]))
        if tie_norms:
            block.norms.attn.copy_(_mean([layers[i].input_layernorm.weight for i in source]))
            block.norms.mlp.copy_(_mean([layers[i].post_attention_layernorm.weight for i in source]))
    if not tie_norms:
        for layer, original in zip(body.layers, layers, strict=True):
            layer.norms.attn.copy_(original.input_layernorm.weight)
            layer.norms.mlp.copy_(original.post_attention_layernorm.weight)
    return recursive.eval()
