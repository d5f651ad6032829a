"""Sampling speed: a masked diffusion model (MDM) against an autoregressive model (ARM) with a KV cache.

    python benchmarks/diffusion_sampling.py            # GPU if there is one: the "l" shape (21M), 32 + 96 tokens
    python benchmarks/diffusion_sampling.py --smoke    # CPU, seconds

Both models have the same LLaMA shape (the MDM: bidirectional, one extra embedding row for [M]) and
random weights: speed does not depend on training. Each writes `--new-tokens` tokens after a
`--prompt-len` prompt, at batch 1 and `--batch`: the ARM through `workbench.generate.sample` (KV
cache, one token per forward), the MDM with the low-confidence sampler at each of `--steps` (one
forward of the whole sequence per step; float64 Gumbel sampling at temperature 1). All contenders
are timed in interleaved rounds after a warm-up call (`workbench.measure.interleaved`: CUDA events
on a GPU), bf16 autocast on a GPU. Reported: seconds per sample and the MDM's speed relative to the ARM.
"""

from __future__ import annotations

import argparse
from contextlib import nullcontext

import pandas as pd
import torch

from workbench.diffusion import mdm
from workbench.diffusion.profile import SIZES
from workbench.diffusion.samplers import SamplerConfig, autoregressive_generate, diffusion_generate
from workbench.measure import interleaved
from workbench.models import resolve_device, tiny_llama


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--size", default=None, help=f"one of {', '.join(SIZES)} (default l; smoke t1)")
    parser.add_argument("--prompt-len", type=int, default=None, help="default 32; smoke 8")
    parser.add_argument("--new-tokens", type=int, default=None, help="default 96; smoke 16")
    parser.add_argument("--batch", type=int, default=None, help="the larger batch (default 32; smoke 4)")
    parser.add_argument(
        "--steps", type=int, nargs="+", default=None, help="MDM steps (default 8 16 32 64 96; smoke 4 16)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    size = args.size or ("t1" if args.smoke else "l")
    prompt_len, new = args.prompt_len or (8 if args.smoke else 32), args.new_tokens or (16 if args.smoke else 96)
    batch, steps = (
        args.batch or (4 if args.smoke else 32),
        args.steps or ([4, 16] if args.smoke else [8, 16, 32, 64, 96]),
    )
    device = torch.device("cpu") if args.smoke else resolve_device("auto")
    if device.type == "cpu":
        torch.set_num_threads(1)  # tiny models: one thread is fastest on a shared machine
    arm = tiny_llama(seed=0, **SIZES[size])[0].to(device).eval()
    diffusion, tokenizer = mdm.masked_diffusion_llama(seed=0, **SIZES[size])
    diffusion = diffusion.to(device).eval()
    mask = mdm.mask_token_id(diffusion)
    prompts = torch.randint(
        0, len(tokenizer), (batch, prompt_len), device=device, generator=torch.Generator().manual_seed(0)
    )
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()

    def arm_call(b: int):
        with autocast:
            return autoregressive_generate(arm, prompts[:b], new, temperature=1.0)

    def mdm_call(b: int, k: int):
        with autocast:
            return diffusion_generate(
                mdm.denoiser(diffusion), prompts[:b], new, mask, SamplerConfig(steps=k, temperature=1.0)
            )

    contenders = {}
    for b in (1, batch):
        contenders[("ARM (KV cache)", new, b)] = lambda b=b: arm_call(b)
        for k in steps:
            contenders[("MDM low-confidence", k, b)] = lambda b=b, k=k: mdm_call(b, k)
    timings = interleaved(contenders, device, rounds=args.rounds, warmup=1)
    rows = [
        {"model": m, "forwards": k, "batch": b, "s_per_sample": t.median_s / b, "spread": t.spread}
        for (m, k, b), t in timings.items()
    ]
    table = pd.DataFrame(rows)
    arm_time = table[table["model"].str.startswith("ARM")].set_index("batch")["s_per_sample"]
    table["speed_vs_arm"] = arm_time.loc[table["batch"]].to_numpy() / table["s_per_sample"]
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "CPU"
    n_params = sum(p.numel() for p in arm.parameters()) / 1e6
    print(f"{name}, shape {size} ({n_params:.1f}M parameters), prompt {prompt_len} + {new} new tokens")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    return table


if __name__ == "__main__":
    main()
