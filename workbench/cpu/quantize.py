"""Weight precision for CPU decoding: float32, bfloat16, int8 and int4, and which int8 keeps quality.

Decoding one token reads every weight once and does two flops per weight read, so on a CPU it is
bound by memory bandwidth: fewer bytes per weight should mean more tokens per second (GEB-1.3B,
"GEB-1.3B: Open Lightweight Large Language Model", arXiv:2406.09900, reports 12 tokens/s in FP32
for 1.3B parameters and plans quantisation to go faster). Each precision here is a copy of the model:

- float32: the reference. bfloat16: every parameter in bfloat16 (half the bytes; fast only on CPUs
  with bf16 instructions).
- int8 (weight-only, the one that keeps quality): each output row r of every `nn.Linear` weight W
  is stored as int8 q with one scale, W_r ≈ s_r q_r, s_r = max_k |W_rk| / 127 (symmetric, per row:
  torchao's int8 weight-only scheme), s_r kept in float32 so that the worst weight error is half a
  quantisation step (bfloat16 scales would add up to 127·2⁻⁹ ≈ 0.25 of a step). Activations stay
  floating point (bfloat16 into the matmul), so only the weight rounding changes the output. It runs
  through PyTorch's own int8 weight-only CPU kernel `aten._weight_int8pack_mm`, which converts the
  int8 weights in registers; the kernel wants scales in its activations' dtype, so it runs with unit
  scales and the float32 s_r multiplies its output (float32 activations would take its scalar path,
  ~10x slower); torchao's
  `Int8WeightOnlyConfig` (same numbers, "int8-torchao" here when torchao is installed) dequantises
  the whole weight on every call on a CPU, which is slower than float32.
- int8-dynamic: `torch.ao` dynamic quantisation (fbgemm): weights int8 per tensor AND each input
  activation quantised to int8 per tensor on the fly. Fast, but the activation rounding is what
  costs quality (on SmolLM2 it changes a quarter of next-token choices); kept as the contrast.
- int4 (weight-only): groups of g = 32 weights along the input dimension, asymmetric:
  W_rk ≈ (q_rk − 8) s_rg + z_rg, q ∈ [0, 15], s = (max − min) / 15, z = min + 8 s, run through
  `aten._weight_int4pack_mm_for_cpu` (no compiler needed). Linear layers whose input width is not a
  multiple of g stay in float. The output layer (the logits, the most sensitive matrix) stays int8,
  as llama.cpp's 4-bit files keep it at 8 bits (all of int4 raised SmolLM2's perplexity by 7%).

The embedding table stays float32 in every quantised copy: a lookup reads one row per token.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import logging
import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import WorkbenchError

PRECISIONS = ("float32", "bfloat16", "int8", "int8-dynamic", "int8-torchao", "int4")
INT4_GROUP = 32
DESCRIPTIONS = {
    "float32": "float32 weights and activations (reference)",
    "bfloat16": "bfloat16 weights and activations",
    "int8": "int8 weights per row (float32 scales), bfloat16 activations (aten._weight_int8pack_mm)",
    "int8-dynamic": "int8 weights per tensor and int8 activations per tensor (torch.ao dynamic, fbgemm)",
    "int8-torchao": "int8 weights per row, float32 activations (torchao Int8WeightOnlyConfig)",
    "int4": f"int4 weights in groups of {INT4_GROUP} (output layer int8), bfloat16 activations (aten int4pack)",
}


class Int8Linear(nn.Module):
    """y = x Wᵀ with W_r ≈ s_r q_r: int8 weights [N, K] (per-row symmetric, float32 s), bfloat16 activations."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()  # [N, K]
        scale = w.abs().amax(dim=1).clamp(min=1e-12) / 127  # [N]
        self.register_buffer("qweight", torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8))
        self.register_buffer("scale", scale)  # float32 [N]
        self.register_buffer("unit", torch.ones_like(scale, dtype=torch.bfloat16))  # the kernel's; s multiplies after
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def dequantized(self) -> torch.Tensor:
        """The weight this layer computes with, [N, K] float32 (for tests and error analysis)."""
        return self.qweight.float() * self.scale[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)  # [M, K]
        if flat.shape[0] == 1 and torch.compiler.is_compiling():
            # One row, compiled (a decode step): inductor's own loop over the int8 rows streams them at about twice
            # the aten kernel's rate at batch 1 (10-12 against 5 GB/s on one core). Same numbers: bfloat16 inputs,
            # float32 sums, the output rounded to bfloat16 as the kernel rounds it; only the order of the sums differs.
            y = (flat.float()[:, None, :] * self.qweight.float()).sum(-1).to(torch.bfloat16).float() * self.scale
        else:
            y = torch.ops.aten._weight_int8pack_mm(flat, self.qweight, self.unit).float() * self.scale  # [M, N]
        y = y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        return y if self.bias is None else y + self.bias


class Int4Linear(nn.Module):
    """y = x Wᵀ with W_rk ≈ (q_rk − 8) s_rg + z_rg, int4 q in groups g of the input dimension."""

    def __init__(self, linear: nn.Linear, group_size: int = INT4_GROUP):
        super().__init__()
        n, k = linear.weight.shape
        if k % group_size:
            raise WorkbenchError(f"int4 needs the input width ({k}) to be a multiple of the group size ({group_size})")
        w = linear.weight.detach().float().view(n, k // group_size, group_size)  # [N, K/g, g]
        low, high = w.amin(dim=-1), w.amax(dim=-1)  # [N, K/g]
        scale = ((high - low) / 15).clamp(min=1e-12)
        q = torch.round((w - low[..., None]) / scale[..., None]).clamp(0, 15).to(torch.int32).view(n, k)
        zero = low + 8 * scale  # the kernel computes (q − 8)·s + z
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1))
        self.register_buffer(
            "scales_and_zeros", torch.stack([scale, zero], dim=-1).transpose(0, 1).contiguous().to(torch.bfloat16)
        )
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        self.in_features, self.out_features, self.group_size = k, n, group_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16)  # [M, K]
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.packed, self.group_size, self.scales_and_zeros)
        y = y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)
        return y if self.bias is None else y + self.bias


def _replace_linears(model: nn.Module, make) -> int:
    """Swap every `nn.Linear` below `model` for `make(linear)` (None: keep it); returns how many were swapped."""
    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                replacement = make(child)
                if replacement is not None:
                    setattr(parent, name, replacement)
                    swapped += 1
    return swapped


def available(precision: str) -> bool:
    """Whether this machine can run `precision` (torchao is an optional extra)."""
    return precision != "int8-torchao" or importlib.util.find_spec("torchao") is not None


def quantize(model: nn.Module, precision: str) -> nn.Module:
    """A CPU copy of `model` (float32) in `precision`, in eval mode; `model` itself is left unchanged."""
    if precision not in PRECISIONS:
        raise WorkbenchError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if not available(precision):
        raise WorkbenchError("precision 'int8-torchao' needs torchao: pip install 'workbench[quant]' (torchao>=0.18)")
    copied = copy.deepcopy(model).to("cpu", torch.float32).eval()
    if precision == "float32":
        return copied
    if precision == "bfloat16":
        return copied.to(torch.bfloat16)
    if precision == "int8":
        _replace_linears(copied, Int8Linear)
    elif precision == "int4":
        head = copied.get_output_embeddings() if hasattr(copied, "get_output_embeddings") else None

        def make(linear: nn.Linear) -> nn.Module | None:
            if linear is head:
                return Int8Linear(linear)
            return Int4Linear(linear) if linear.in_features % INT4_GROUP == 0 else None

        _replace_linears(copied, make)
    elif precision == "int8-dynamic":
        with warnings.catch_warnings():  # torch.ao's eager quantisation is deprecated in favour of torchao
            warnings.simplefilter("ignore")
            copied = torch.ao.quantization.quantize_dynamic(copied, {nn.Linear}, dtype=torch.qint8)
    else:
        logging.getLogger("torchao").setLevel(logging.ERROR)  # it logs each CUDA-only extension it cannot load
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        quantize_(copied, Int8WeightOnlyConfig())
    return copied.requires_grad_(False)


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the model's serialized state dict: what it takes to store and, per token, to read."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        state = {k: v for k, v in model.state_dict().items() if not isinstance(v, torch.dtype)}
        torch.save(state, buffer)
    return buffer.tell()


@torch.no_grad()
def next_token_quality(
    model: nn.Module, windows: torch.Tensor, reference: torch.Tensor | None = None, batch_size: int = 4
) -> dict:
    """Perplexity of `windows` [W, T] (every token after the first scored, as `workbench.evaluate.perplexity`
    scores disjoint windows) and the share of positions whose most likely next token equals `reference`
    [W, T−1] (another precision's `argmax`, returned here). Logits are computed whole, since a quantised
    output layer is not a plain weight that the fused loss could read."""
    device = next(model.parameters()).device
    total_nll, argmax = 0.0, []
    for chunk in windows.split(batch_size):
        chunk = chunk.to(device)
        logits = model(input_ids=chunk[:, :-1]).logits.float()  # [b, T-1, V]
        total_nll += F.cross_entropy(logits.flatten(0, 1), chunk[:, 1:].flatten(), reduction="sum").item()
        argmax.append(logits.argmax(dim=-1).cpu())
    argmax = torch.cat(argmax)  # [W, T-1]
    count = argmax.numel()
    agreement = float((argmax == reference).float().mean()) if reference is not None else 1.0
    return {
        "ppl": math.exp(total_nll / count),
        "nll": total_nll / count,
        "n_tokens": count,
        "agreement": agreement,
        "argmax": argmax,
    }
