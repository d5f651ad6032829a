"""Decoding a relaxed recursive model with its KV cache against recomputing the whole prefix at every token.

    python benchmarks/recursive_decode.py               # SmolLM2-135M as B=2 Stepwise, rank-8 SVD LoRA, on the CPU
    python benchmarks/recursive_decode.py --smoke       # a tiny random LLaMA converted the same way, seconds

Relaxed Recursive Transformers (arXiv:2410.20672): every loop of a shared block is its own effective
layer with its own keys and values, so the cache holds L = B·K entries per token, as the full model's
does (`workbench.recursive.model`). Both contenders decode the same prompts greedily with the same
model: "KV cache" is `workbench.generate.sample` (prefill, then one token per forward through the
`DynamicCache`), "recompute" runs the whole sequence again for every new token (no cache). Decode
tokens/s is measured as the one speed measure measures it (`workbench.measure.PhaseSpeed`): prefill +
n tokens minus the prefill alone, over the n − 1 decode forwards, all calls in the same interleaved
rounds. Also printed: whether the two produce the same tokens, KV bytes per token of the recursive
model and of the model it was converted from (measured from the cache), and the load average.
"""

from __future__ import annotations

import argparse
import os

import pandas as pd
import torch

from workbench.cards import kv_bytes_per_token
from workbench.generate import SampleConfig, sample
from workbench.measure import PhaseCalls, phase_calls, time_phases
from workbench.models import load_model, tiny_llama
from workbench.recursive.convert import convert
from workbench.recursive.relax import relax


@torch.no_grad()
def recompute(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int) -> torch.Tensor:
    """Greedy decoding without a cache: every token runs the model over the whole sequence so far."""
    tokens = prompt
    for _ in range(new_tokens):
        tokens = torch.cat([tokens, model(tokens).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return tokens


def recompute_calls(model: torch.nn.Module, prompt: torch.Tensor, new_tokens: int) -> PhaseCalls:
    def prefill() -> object:
        with torch.no_grad():
            return model(prompt, logits_to_keep=1)

    return PhaseCalls(prefill, lambda: recompute(model, prompt, new_tokens), prompt.shape[0], prompt.shape[1],
                      new_tokens)  # fmt: skip


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--loops", type=int, default=2)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--prompts", default=None, help="prompt lengths, comma-separated (default 16,256; smoke 16)")
    parser.add_argument("--batches", default="1,8", help="batch sizes, comma-separated")
    parser.add_argument("--new-tokens", type=int, default=None, help="default 32; smoke 8")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.smoke:
        base, _ = tiny_llama(n_layers=4, d_model=64, n_heads=4, n_kv_heads=2)
        name = "tiny LLaMA (4 layers, d 64)"
    else:
        base, _ = load_model("smollm2-135m", device="cpu", dtype="float32")
        name = "SmolLM2-135M"
    base = base.eval()
    model = convert(base, args.loops, "stepwise")
    model = relax(model, base, ranks=args.rank) if args.rank else model
    n = args.new_tokens or (8 if args.smoke else 32)
    prompts = [int(p) for p in (args.prompts or ("16" if args.smoke else "16,256")).split(",")]
    generator = torch.Generator().manual_seed(0)
    contenders, same = {}, {}
    for length in prompts:
        for batch in (int(b) for b in args.batches.split(",")):
            prompt = torch.randint(1000, 40000, (batch, length), generator=generator)
            cached = sample(model, prompt, SampleConfig(max_new_tokens=n))
            same[length, batch] = float((cached == recompute(model, prompt, n)).float().mean())
            contenders[length, batch, "KV cache"] = phase_calls(model, prompt, n)
            contenders[length, batch, "recompute"] = recompute_calls(model, prompt, n)
    speeds = time_phases(contenders, "cpu", rounds=args.rounds)
    rows = [{"prompt": length, "batch": batch, "decode": how, "decode_tok_s": s.decode_tok_s, "spread": s.decode_spread,
             "same_tokens": same[length, batch]} for (length, batch, how), s in speeds.items()]  # fmt: skip
    table = pd.DataFrame(rows)
    cache_rate = table[table["decode"] == "KV cache"].set_index(["prompt", "batch"])["decode_tok_s"]
    table["cache_speedup"] = [cache_rate[p, b] / r for p, b, r in zip(table["prompt"], table["batch"],
                                                                      table["decode_tok_s"])]  # fmt: skip
    print(f"{name} → B={args.loops} Stepwise, rank {args.rank} SVD LoRA; CPU, {torch.get_num_threads()} threads, "
          f"load average {os.getloadavg()[0]:.2f} (1 min) at the end; {n} new tokens, median of {args.rounds} "
          "rounds")  # fmt: skip
    print(f"KV bytes/token (float32): recursive {kv_bytes_per_token(model):,.0f}, "
          f"original {kv_bytes_per_token(base):,.0f}")  # fmt: skip
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.2f}"))
    return table


if __name__ == "__main__":
    main()
