"""Relaxation: a LoRA per effective layer on every linear of the shared layer, and parameter accounting.

Relaxed Recursive Transformers (Bae et al., arXiv:2410.20672), §2.3. Depth ℓ computes
h = W′x + B_ℓ A_ℓ x. With the SVD initialisation the pair starts as the best rank-r approximation
of what sharing took away from layer ℓ, the residual R_ℓ = W_ℓ − W′_{ℓ mod K}:

    U_r Σ_r V_rᵀ = TruncSVD(R_ℓ; r),   B_ℓ = U_r Σ_r,   A_ℓ = V_rᵀ   (no α/r scaling).

r = 0 is the plain recursive model; r = min(out, in) restores W_ℓ exactly, so with per-depth
norms the relaxed model *is* the original. Where R_ℓ = 0 (the loop whose layer was the Stepwise
or Lower source) and for the zero initialisation, the standard LoRA init: A Gaussian, B = 0, so
the model starts as the plain recursive one. Ranks are per module type (the paper finds K/V cheap
to compress and the FFN rank the one that matters). All parameters train during uptraining.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import WorkbenchError
from .convert import _decoder_layers, original_weight
from .model import MODULES, LoRA, RecursiveLlamaForCausalLM, linear_shapes

LORA_INITS = ("svd", "zero")


def rank_per_module(ranks: int | dict[str, int]) -> dict[str, int]:
    """A rank for each of the seven linears from one rank or a {module: rank} mapping (missing: 0)."""
    if isinstance(ranks, int):
        ranks = dict.fromkeys(MODULES, ranks)
    unknown = sorted(set(ranks) - set(MODULES))
    if unknown or any(r < 0 for r in ranks.values()):
        raise WorkbenchError(f"LoRA ranks must be >= 0 for modules among {', '.join(MODULES)}; got {ranks}")
    return {name: int(ranks.get(name, 0)) for name in MODULES}


Factors = dict[tuple[int, str], tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None]


@torch.no_grad()
def residual_factors(recursive: RecursiveLlamaForCausalLM, original: nn.Module) -> Factors:
    """SVD U Σ Vᵀ of every residual R_ℓ = W_ℓ − W′ by (depth ℓ, linear); None where R_ℓ = 0.

    They do not depend on the rank, so arms that differ only in rank can share them (an SVD of
    a 1536×576 matrix takes tens of milliseconds even on a GPU, and there are 7·L of them)."""
    originals = _decoder_layers(original)
    if len(originals) != len(recursive.model.layers):
        raise WorkbenchError(
            f"the original model has {len(originals)} layers, "
            f"the recursive one {len(recursive.model.layers)} effective layers"
        )
    factors: Factors = {}
    for depth, (layer, source) in enumerate(zip(recursive.model.layers, originals, strict=True)):
        for name in MODULES:
            residual = original_weight(source, name).float() - getattr(layer.shared, name).weight.float()  # [out, in]
            nonzero = bool(residual.abs().max() > 0)
            factors[depth, name] = torch.linalg.svd(residual, full_matrices=False) if nonzero else None
    return factors


@torch.no_grad()
def relax(
    recursive: RecursiveLlamaForCausalLM,
    original: nn.Module,
    ranks: int | dict[str, int],
    init: str = "svd",
    seed: int = 0,
    factors: Factors | None = None,
) -> RecursiveLlamaForCausalLM:
    """Give every effective layer of `recursive` its LoRA (in place; returns it). A rank above
    min(out, in) of a linear is full rank. `original` is the model `recursive` was converted from;
    `factors` (from `residual_factors` of the same conversion) saves recomputing the SVDs."""
    if init not in LORA_INITS:
        raise WorkbenchError(f"unknown LoRA initialisation {init!r}: use one of {', '.join(LORA_INITS)}")
    if init == "svd" and factors is None:
        factors = residual_factors(recursive, original)
    shapes = linear_shapes(recursive.config)
    ranks = {name: min(r, *shapes[name]) for name, r in rank_per_module(ranks).items()}
    generator = torch.Generator().manual_seed(seed)
    param = next(recursive.parameters())
    for depth, layer in enumerate(recursive.model.layers):
        lora = LoRA(recursive.config, ranks)
        for name in lora.A:
            r = ranks[name]
            svd = factors[depth, name] if init == "svd" else None
            if svd is not None:
                U, S, Vh = svd
                lora.B[name].copy_(U[:, :r] * S[:r])  # U_r Σ_r
                lora.A[name].copy_(Vh[:r])  # V_rᵀ
            else:  # zero init, or R_ℓ = 0: standard LoRA init, the product starts at zero, A Gaussian (std 1/r)
                lora.A[name].copy_(torch.randn(lora.A[name].shape, generator=generator) / r)
        layer.lora = lora.to(device=param.device, dtype=param.dtype)
    return recursive


def layer_linear_parameters(config) -> int:
    """Parameters of the seven linears of one layer."""
    return sum(out_features * in_features for out_features, in_features in linear_shapes(config).values())


def expected_non_embedding_parameters(config, loops: int, tie_norms: bool, ranks: int | dict[str, int] = 0) -> int:
    """Non-embedding parameters of a (relaxed) recursive model, by formula:

        K·|Φ′| + (K if tied else L)·2d + d + L·Σ_m r_m (out_m + in_m),

    with K = L/B shared layers of |Φ′| linear parameters, two RMSNorm weights per layer, the final
    norm, and the LoRA of every effective layer (for SmolLM2: 10,176·r per effective layer)."""
    n_layers, d = config.num_hidden_layers, config.hidden_size
    n_unique = n_layers // loops
    shapes = linear_shapes(config)
    lora = sum(min(r, *shapes[name]) * sum(shapes[name]) for name, r in rank_per_module(ranks).items())
    return (
        n_unique * layer_linear_parameters(config) + (n_unique if tie_norms else n_layers) * 2 * d + d + n_layers * lora
    )


def non_embedding_parameters(model: nn.Module) -> int:
    """Unique parameters minus the (tied) token embedding, counted in the model."""
    unique = {id(p): p for p in model.parameters()}
    embedding = (
        model.get_input_embeddings().weight
        if hasattr(model, "get_input_embeddings")
        else model.model.embed_tokens.weight
    )
    return sum(p.numel() for p in unique.values()) - embedding.numel()
