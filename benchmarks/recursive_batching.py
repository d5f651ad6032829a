"""Continuous depth-wise batching against sequence-wise batching and no early exit (Relaxed Recursive
Transformers, arXiv:2410.20672, §3.3).

    python benchmarks/recursive_batching.py            # GPU if there is one: SmolLM2-135M as B=2 Stepwise
    python benchmarks/recursive_batching.py --smoke    # CPU, a tiny random model, seconds

MEASURED: the seconds of one loop (K = L/B shared layers) decoding one token per sequence against a
KV cache of `--context` positions, at each batch size (interleaved rounds, median; CUDA events on a
GPU), and of all B loops, to check that a step of B loops costs B single loops.
SIMULATED: the throughput of each scheme (static and continuous sequence-wise batching without
early exit, sequence-wise with early exit, continuous depth-wise batching with early exit), a queue
of requests driven through `workbench.recursive.batching.simulate` with the measured costs.
The exits: the oracle exits of the newest early-exit run in the run store (the notebook's
`arms="all"` or `"lora"` run stores them), else, and always for `--exit-rates`, tokens exiting
after loop b independently with the given probability of leaving before the last loop (synthetic).
"""

from __future__ import annotations

import argparse

import numpy as np
import pandas as pd

from workbench import runs
from workbench.models import load_model, resolve_device, tiny_llama
from workbench.recursive.batching import (
    cost_function,
    kv_fill_fraction,
    launch_bound,
    loop_step_costs,
    requests_from_exits,
    simulate,
)
from workbench.recursive.convert import convert


def stored_exits() -> tuple[np.ndarray, int] | None:
    """Oracle exits of the newest finished early-exit run, and its run id."""
    table = runs.store().runs(kind="recursive")
    for row in table.itertuples():
        if row.status == "finished" and "oracle_exits.npy" in runs.store().artifacts(row.id):
            return runs.store().load_artifact(row.id, "oracle_exits.npy").astype(int), row.id
    return None


def synthetic_exits(rate: float, loops: int, n: int, seed: int) -> np.ndarray:
    """Exit loop per token: with probability `rate` before the last loop, spread evenly over loops 1..B-1."""
    rng = np.random.default_rng(seed)
    early = rng.random(n) < rate
    return np.where(early, rng.integers(1, max(2, loops), n), loops)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--loops", type=int, default=2)
    parser.add_argument("--slots", type=int, default=None, help="batch slots (default 32; smoke 4)")
    parser.add_argument("--requests", type=int, default=None, help="default 512; smoke 24")
    parser.add_argument("--gen-len", type=int, default=None, help="longest request, tokens (default 256; smoke 16)")
    parser.add_argument("--context", type=int, default=None, help="KV positions while timing (default 512; smoke 64)")
    parser.add_argument("--exit-rates", type=float, nargs="*", default=[0.3, 0.5, 0.7])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    slots, n_requests = args.slots or (4 if args.smoke else 32), args.requests or (24 if args.smoke else 512)
    gen_len, context = args.gen_len or (16 if args.smoke else 256), args.context or (64 if args.smoke else 512)
    device = resolve_device("auto")
    if args.smoke:
        original, _ = tiny_llama(n_layers=6, d_model=64, n_heads=4, n_kv_heads=2, d_ff=128, vocab_size=256)
        original = original.to(device)
    else:
        original, _ = load_model(device=device)
    model = convert(original, args.loops, "stepwise")
    sizes = sorted({1, 2, 4, 8, 16, slots} - {s for s in (8, 16) if s > slots})
    one = loop_step_costs(model, sizes, context, rounds=args.rounds)
    every = loop_step_costs(model, sizes, context, rounds=args.rounds, loops=args.loops)
    costs = pd.DataFrame({"one loop (s)": one, f"{args.loops} loops (s)": every}).rename_axis("batch size")
    costs["ratio to B x one loop"] = costs[f"{args.loops} loops (s)"] / (args.loops * costs["one loop (s)"])
    print(
        f"MEASURED decode step costs on {device} ({model.config.num_hidden_layers} layers as {args.loops} loops, "
        f"KV {context}):"
    )
    print(costs.to_string(float_format=lambda v: f"{v:.3g}"))

    exits = {
        f"synthetic {rate:.0%} early": synthetic_exits(rate, args.loops, 100_000, seed=0) for rate in args.exit_rates
    }
    if (found := stored_exits()) is not None and found[0].max() <= args.loops:
        exits = {f"oracle exits of run {found[1]}": found[0]} | exits
    cost, kv_fill = cost_function(one), kv_fill_fraction(model.config)
    rows = []
    for name, trajectory in exits.items():
        requests = requests_from_exits(trajectory, gen_len, n_requests, seed=0)
        plain = [np.full(len(r), args.loops) for r in requests]
        for scheme, queue in (("static", plain), ("csb", plain), ("csb_exit", requests), ("cdb", requests)):
            result = simulate(scheme, queue, args.loops, slots, cost, kv_fill)
            rows.append(
                {
                    "exits": name,
                    "scheme": scheme,
                    "tokens_per_s": result.tokens_per_s,
                    "loop_steps": result.loop_steps,
                    "kv_fills": result.kv_fills,
                }
            )
    table = pd.DataFrame(rows)
    table["vs csb"] = table["tokens_per_s"] / table.groupby("exits")["tokens_per_s"].transform(lambda s: s.iloc[1])
    table["vs static"] = table["tokens_per_s"] / table.groupby("exits")["tokens_per_s"].transform(lambda s: s.iloc[0])
    print(
        f"\nSIMULATED throughput ({n_requests} requests of {gen_len // 2}-{gen_len} tokens, {slots} slots; "
        f"measured step costs; KV debt of exited tokens filled at {kv_fill:.3f} of a row):"
    )
    if launch_bound(one):
        print("The loop cost is flat in the batch (launch-bound): these ratios are ratios of loop steps.")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return table


if __name__ == "__main__":
    main()
