"""Decoding: `workbench.generate.sample` against transformers' `generate`, side by side.

    python benchmarks/generate_speed.py               # GPU if there is one: SmolLM2-135M, batch 8, 256 new tokens
    python benchmarks/generate_speed.py --smoke       # CPU, seconds

Both decode the same prompts greedily with the same model and KV cache, alternating, `--repeats`
times each. Reported per loop: tokens/s, and on a GPU the host-device synchronisations it makes
(counted with `torch.cuda.set_sync_debug_mode("warn")`, which warns at every synchronising call),
per generated token, and the share of generated tokens equal to `generate`'s (in float32 on a CPU
all of them; in bf16 a near-tie may flip where the attention kernels differ, and the rest of that
row follows from the flipped token).
"""

from __future__ import annotations

import argparse
import warnings

import torch

from workbench.generate import SampleConfig, sample
from workbench.measure import interleaved
from workbench.models import load_model


def count_syncs(fn, device: torch.device) -> int | None:
    """Synchronising CUDA calls made by `fn()` (None on a CPU, where there is nothing to wait for)."""
    if device.type != "cuda":
        return None
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch", type=int, default=None, help="default 8; smoke 2")
    parser.add_argument("--new-tokens", type=int, default=None, help="default 256; smoke 16")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    batch, n = args.batch or (2 if args.smoke else 8), args.new_tokens or (16 if args.smoke else 256)
    model, tokenizer = load_model(
        args.model, device="cpu" if args.smoke else "auto", dtype=torch.float32 if args.smoke else "auto"
    )
    device = next(model.parameters()).device
    prompt = torch.randint(1000, 40000, (batch, 32), generator=torch.Generator().manual_seed(0)).to(device)
    eos = tokenizer.eos_token_id
    loops = {
        # eos given and min_new_tokens = n: generate runs its per-token stopping check, we run ours every 16 tokens
        "transformers generate": lambda: model.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),
            max_new_tokens=n,
            min_new_tokens=n,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=eos,
        ),
        "workbench sample": lambda: sample(model, prompt, SampleConfig(max_new_tokens=n), eos_token_id=None),
        "workbench sample, eos check": lambda: sample(model, prompt, SampleConfig(max_new_tokens=n), eos_token_id=eos),
    }
    outputs = {}

    def keeping(name, fn):
        return lambda: outputs.__setitem__(name, fn())

    # one untimed call each (cuBLAS handles, caches), then interleaved rounds
    timings = interleaved(
        {name: keeping(name, fn) for name, fn in loops.items()}, device, rounds=args.repeats, warmup=1
    )
    reference = outputs["transformers generate"][:, prompt.shape[1] :]
    agree = {name: float((o[:, prompt.shape[1] :] == reference).float().mean()) for name, o in outputs.items()}
    syncs = {name: count_syncs(fn, device) for name, fn in loops.items()}
    rows = {
        name: {
            "tokens_per_s": t.per_second(batch * n),
            "spread": t.spread,
            "syncs": syncs[name],
            "same_tokens": agree[name],
        }
        for name, t in timings.items()
    }
    base = rows["transformers generate"]["tokens_per_s"]
    print(
        f"{args.model} on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
        f"{model.dtype}, batch {batch}, {n} new tokens, median of {args.repeats}"
    )
    print(
        f"{'loop':<30} {'tokens/s':>10} {'ratio':>6} {'host syncs':>10} {'per token':>9} "
        f"{'same tokens as generate':>23}"
    )
    for name, row in rows.items():
        per = f"{row['syncs'] / n:9.2f}" if row["syncs"] is not None else f"{'-':>9}"
        syncs = row["syncs"] if row["syncs"] is not None else "-"
        print(
            f"{name:<30} {row['tokens_per_s']:10.0f} {row['tokens_per_s'] / base:5.2f}x {syncs:>10} {per} "
            f"{row['same_tokens']:23.1%}"
        )
    print(
        "(bf16 greedy decoding: a near-tie between two tokens may resolve differently under different "
        "attention kernels)"
    )
    return rows


if __name__ == "__main__":
    main()
