"""Where a compiled static-cache decode step of SmolLM2-135M spends its time on a CPU: torch.profiler's top ops.

    python benchmarks/cpu_decode_profile.py --precision int8 --threads 1            # fused q/k/v and gate/up
    python benchmarks/cpu_decode_profile.py --precision int8 --threads 1 --unfused  # the unfused weights
    python benchmarks/cpu_decode_profile.py --smoke                                  # a tiny random model

The step is compiled and warmed first (decoding the prompt once), then `--new-tokens` greedy tokens
are decoded under the profiler; ops are sorted by self CPU time per token. Inductor's generated C++
kernels are named (`cpp_fused_*`: `cpp.enable_kernel_profile`), so the table separates what the
quantised matmul kernels take from the fused elementwise loops and from what is left in Python.
"""

from __future__ import annotations

import argparse
import os

import torch
from torch._inductor import config as inductor_config
from torch.profiler import ProfilerActivity, profile

from workbench.cpu.fuse import fuse_projections
from workbench.cpu.quantize import PRECISIONS, quantize
from workbench.cpu.static_decode import StaticDecoder
from workbench.data import load_corpus, tokenize, train_val_split
from workbench.models import load_model, tiny_llama


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", default="int8", choices=PRECISIONS)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--unfused", action="store_true", help="profile the unfused projections")
    parser.add_argument("--prompt-len", type=int, default=128)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    if args.smoke:
        args.prompt_len, args.new_tokens = 16, 8
    torch.set_num_threads(args.threads)
    inductor_config.cpp.enable_kernel_profile = True

    model, tokenizer = tiny_llama() if args.smoke else load_model(dtype="float32", device="cpu")
    model = quantize(model.eval() if args.unfused else fuse_projections(model.eval()), args.precision)
    _, val = train_val_split(tokenize(load_corpus("python-docs"), tokenizer))
    prompt = val[: args.prompt_len][None]
    decoder = StaticDecoder(model, args.prompt_len + args.new_tokens)
    decoder.generate(prompt, args.new_tokens)  # compiles, then warm
    token = decoder.prefill(prompt)
    steps = range(args.prompt_len, args.prompt_len + args.new_tokens - 1)
    with torch.no_grad(), profile(activities=[ProfilerActivity.CPU]) as prof:
        for position in steps:
            token = decoder.step(token, torch.tensor([position]))
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(
        f"{args.precision} {'unfused' if args.unfused else 'fused'}, compiled static step, {args.threads} thread(s), "
        f"{len(steps)} tokens after a {args.prompt_len}-token prompt, load average {os.getloadavg()[0]:.1f}: "
        f"{total / 1e3 / len(steps):.2f} ms of self CPU time per token"
    )
    print(f"{'op':<60} {'calls/token':>11} {'ms/token':>9} {'share':>6}")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[: args.top]:
        per_token = e.self_cpu_time_total / 1e3 / len(steps)
        print(f"{e.key[:60]:<60} {e.count / len(steps):>11.1f} {per_token:>9.3f} {e.self_cpu_time_total / total:>6.1%}")


if __name__ == "__main__":
    main()
