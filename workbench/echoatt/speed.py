"""What an arm costs: prefill, a KD training step and decode, timed where the GPU is the bottleneck.

One implementation for the experiment and for `benchmarks/echoatt_speed.py`: every contender (the
teacher with fused and with eager attention, each student) is timed in the SAME interleaved rounds
(warm-up excluded, CUDA events on a GPU), and reported as median tokens/s with its spread (IQR /
median). Prefill and decode are the workbench's one speed measure (`workbench.measure.model_speeds`,
decode = prefill + n tokens minus prefill, the numbers every model card carries); the KD training
step, which only this idea times, is a thin layer on the same timer (`measure.interleaved`). Shapes
are named in `SpeedShapes`; the full profile uses prefill 32×1024 and a KD step of 32×512, where
SmolLM2-135M keeps an H200 busy. Decode of a 135M model
stays launch-bound at any batch that fits the sample loop (per-token host overhead dominates): its
ratios are reported, with their spread, but they do not measure the GPU.

The training step is the same distillation step for every contender, the teacher included (CE +
forward KL from the bf16 teacher), so "train ×" compares like with like. Inference is measured as
deployed: bf16 on a GPU (autocast for training), float32 on a CPU.
"""

from __future__ import annotations

import copy
import gc
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from .. import measure
from ..distill import DistillationLoss, DistillConfig
from ..evaluate import perplexity
from ..generate import output_cache
from ..measure import Timing, interleaved, model_speeds
from .student import attention_kernel, set_path

PHASES = ("prefill", "train", "decode")


@dataclass(frozen=True)
class SpeedShapes:
    """Token shapes and rounds of one speed measurement (tokens per call = batch × length)."""

    prefill_batch: int = 32
    prefill_len: int = 1024
    train_batch: int = 32
    train_len: int = 512
    decode_batch: int = 64
    decode_tokens: int = 16
    rounds: int = 7
    warmup: int = 2


def autocast(device: torch.device):
    """bf16 autocast on a GPU, nothing on a CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def free(device: torch.device) -> None:
    """Return what a measured copy held (on a GPU, also to the driver's cache)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def held_out_ppl(model: nn.Module, tokens: torch.Tensor, context: int, batch: int, max_windows: int | None) -> float:
    """Perplexity on `tokens` in windows of `context` tokens (the first `max_windows`; None: all)."""
    device = next(model.parameters()).device
    with autocast(device):
        return perplexity(
            model, tokens, context_len=context, batch_size=batch, max_windows=max_windows, progress=False
        )["ppl"]


@torch.no_grad()
def kv_cache_mb(model: nn.Module, prompt: torch.Tensor) -> float:
    """Megabytes the KV cache holds after a prefill of `prompt` (followers hold values only)."""
    cache = output_cache(model(input_ids=prompt, use_cache=True))
    tensors = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def with_attention(model: nn.Module, attn: str) -> nn.Module:
    """A copy of `model` whose unshared layers run the `attn` kernel ("sdpa" or "eager"). An eager
    student shares explicit probabilities (eager against eager); an sdpa one stays fused."""
    clone = copy.deepcopy(model)
    clone.set_attn_implementation(attn)
    if getattr(clone, "echoatt_groups", None):
        set_path(clone, "explicit" if attn == "eager" else "fused")
    return clone


def train_step(model: nn.Module, loss_fn: DistillationLoss, batch: torch.Tensor) -> Callable[[], None]:
    """One distillation step (forward, backward, AdamW) of a float32 master copy of `model`, bf16 autocast on a GPU."""
    model = copy.deepcopy(model).float().train().requires_grad_(True)
    device = batch.device
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-7, fused=device.type == "cuda")

    def step() -> None:
        with autocast(device):
            loss = loss_fn(model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def measure_speeds(
    models: dict[str, nn.Module],
    kd_teacher: nn.Module,
    shapes: SpeedShapes,
    kd: DistillConfig | None = None,
    progress: bool = False,
) -> dict[str, dict]:
    """Name -> {prefill/train/decode _tok_s and _spread, kv_cache_mb, kernel} for every contender.

    `models`: eval-mode models in the inference dtype (bf16 on a GPU), all on one device. Each phase
    times every contender in the same interleaved rounds; the KD step distils from `kd_teacher`
    (defaults: α = β = 0.5, no hidden-state term, the costlier stage-1 term being the same for all).
    """
    device = next(kd_teacher.parameters()).device
    s = shapes
    vocab, generator = kd_teacher.config.vocab_size, torch.Generator().manual_seed(0)
    prompt = torch.randint(vocab, (s.prefill_batch, s.prefill_len), generator=generator).to(device)
    batch = torch.randint(vocab, (s.train_batch, s.train_len + 1), generator=generator).to(device)
    inference = measure.SpeedShapes(s.prefill_batch, s.prefill_len, (s.decode_batch,), new_tokens=s.decode_tokens,
                            rounds=s.rounds, warmup=s.warmup)  # fmt: skip
    rows = {name: {"kernel": attention_kernel(model)} for name, model in models.items()}
    bar = tqdm(total=len(PHASES), desc="speed (interleaved rounds)", disable=not progress)
    with torch.no_grad():
        for name, model in models.items():
            rows[name]["kv_cache_mb"] = kv_cache_mb(model, prompt)
    for name, speed in model_speeds(models, inference, device).items():  # the one speed measure: prefill, decode
        rows[name] |= {"prefill_tok_s": speed["prefill_tok_s"], "prefill_spread": speed["prefill_spread"],
                       "decode_tok_s": speed[f"decode_b{s.decode_batch}_tok_s"],
                       "decode_spread": speed[f"decode_b{s.decode_batch}_spread"]}  # fmt: skip
    bar.update(2)
    loss = DistillationLoss(kd_teacher, kd or DistillConfig(alpha=0.5, beta=0.5, gamma=0.0))
    steps = {name: train_step(model, loss, batch) for name, model in models.items()}
    record(rows, "train", interleaved(steps, device, s.rounds, s.warmup), batch[:, :-1].numel())
    bar.update()
    bar.close()
    del steps  # the float32 copies and their optimizer states
    free(device)
    return rows


def record(rows: dict[str, dict], phase: str, timings: dict[str, Timing], tokens: int) -> None:
    """Store each contender's median tokens/s and spread for `phase`."""
    for name, timing in timings.items():
        rows[name][f"{phase}_tok_s"] = timing.per_second(tokens)
        rows[name][f"{phase}_spread"] = timing.spread
