"""What an arm costs and how well it predicts: held-out perplexity, prefill/decode speed, KV cache, a training step.

Times come from `workbench.measure` (warm-up excluded, interleaved rounds, CUDA events on a GPU).
Inference is measured as deployed: bf16 autocast on a GPU, float32 on a CPU.
"""

from __future__ import annotations

import copy
import gc
from contextlib import nullcontext

import torch
from torch import nn

from ..distill import DistillationLoss, DistillConfig
from ..evaluate import perplexity
from ..generate import SampleConfig, output_cache, sample
from ..measure import interleaved
from .profile import EchoAttProfile
from .student import set_path


def autocast(device: torch.device):
    """bf16 autocast on a GPU, nothing on a CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def free(device: torch.device) -> None:
    """Return what a measured copy held (on a GPU, also to the driver's cache)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def held_out_ppl(model: nn.Module, tokens: torch.Tensor, profile: EchoAttProfile, max_windows: int | None) -> float:
    """Perplexity on `tokens` in windows of `profile.eval_context` (the first `max_windows`; None: all)."""
    device = next(model.parameters()).device
    with autocast(device):
        return perplexity(
            model,
            tokens,
            context_len=profile.eval_context,
            batch_size=profile.eval_batch,
            max_windows=max_windows,
            progress=False,
        )["ppl"]


@torch.no_grad()
def inference_speed(model: nn.Module, profile: EchoAttProfile) -> dict[str, float]:
    """Prefill tokens/s (batch × prefill_len, no cache), decode tokens/s (greedy, KV cache), and the
    KV cache's size after the prefill; prefill and decode timed in interleaved rounds."""
    device, vocab = next(model.parameters()).device, model.config.vocab_size
    generator = torch.Generator().manual_seed(0)
    prompt = torch.randint(vocab, (profile.prefill_batch, profile.prefill_len), generator=generator).to(device)
    start = torch.randint(vocab, (profile.decode_batch, 16), generator=generator).to(device)
    n = profile.decode_tokens
    timings = interleaved(
        {
            "prefill": lambda: model(input_ids=prompt, use_cache=False),
            # no end-of-text: every call decodes n tokens
            "decode": lambda: sample(model, start, SampleConfig(max_new_tokens=n)),
        },
        device,
        rounds=profile.speed_repeats,
        warmup=1,
    )
    return {
        "prefill_tok_s": timings["prefill"].per_second(prompt.numel()),
        "decode_tok_s": timings["decode"].per_second(profile.decode_batch * n),
        "kv_cache_mb": kv_cache_mb(model, prompt),
    }


@torch.no_grad()
def kv_cache_mb(model: nn.Module, prompt: torch.Tensor) -> float:
    """Megabytes the KV cache holds after a prefill of `prompt` (followers hold values only)."""
    cache = output_cache(model(input_ids=prompt, use_cache=True))
    tensors = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    return sum(t.numel() * t.element_size() for t in tensors) / 2**20


def train_step_time(model: nn.Module, profile: EchoAttProfile, loss_fn: DistillationLoss | None = None) -> float:
    """Seconds per optimizer step (forward, backward, AdamW) on a copy of `model` (median of
    `profile.train_speed_steps` after one warm-up step).

    Default loss: next-token cross-entropy (the same for every model, so the times compare the
    architectures); pass a `DistillationLoss` to time a distillation step, teacher included.
    """
    clone = copy.deepcopy(model).float().train().requires_grad_(True)
    device = next(clone.parameters()).device
    optimizer = torch.optim.AdamW(clone.parameters(), lr=1e-6, fused=device.type == "cuda")
    loss_fn = loss_fn or DistillationLoss(
        None, DistillConfig(alpha=1.0, beta=0.0, chunk_tokens=profile.distill.chunk_tokens)
    )
    shape = (profile.batch_size, profile.block_len + 1)
    batch = torch.randint(clone.config.vocab_size, shape, generator=torch.Generator().manual_seed(0)).to(device)

    def step(clone: nn.Module = clone, optimizer: torch.optim.Optimizer = optimizer) -> None:
        with autocast(device):
            loss = loss_fn(clone, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    seconds = interleaved({"step": step}, device, rounds=profile.train_speed_steps, warmup=1)["step"].median_s
    del step, clone, optimizer  # the copy and its optimizer state go before the memory is returned
    free(device)
    return seconds


def with_attention(model: nn.Module, attn: str) -> nn.Module:
    """A copy of `model` whose unshared layers run the `attn` kernel ("sdpa" or "eager"). An eager
    student shares explicit probabilities (eager against eager); an sdpa one stays fused."""
    clone = copy.deepcopy(model)
    clone.set_attn_implementation(attn)
    if getattr(clone, "echoatt_groups", None):
        set_path(clone, "explicit" if attn == "eager" else "fused")
    return clone
