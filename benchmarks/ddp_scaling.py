"""Data-parallel scaling: the same pretraining on 1 and on N GPUs with torchrun, side by side.

    python benchmarks/ddp_scaling.py                        # 1 and 2 GPUs, the 47M LLaMA, 100 steps each
    python benchmarks/ddp_scaling.py --nprocs 1 2 4 --size 112m
    python benchmarks/ddp_scaling.py --smoke                # CPU: 1 and 2 gloo processes, a tiny LLaMA

Each job is `python -m workbench launch --nproc N pretrain ...` (what a user runs), logged from
rank 0 to a run store in a temporary home. The per-rank batch is fixed, so N ranks train on an
N times larger global batch (weak scaling); tokens/s is over all ranks, from the training loop's
own windows, leaving out the first two (compile, warm-up). Efficiency = tokens/s on N / (N x
tokens/s on 1). The table is printed last; with $OUT set, JSON goes to $OUT/ddp_scaling.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def curve(history) -> dict[str, list]:
    """The logged train loss (and held-out perplexity where evaluated) against the optimizer step."""
    logged = history.dropna(subset=["train_loss"])
    return {
        "step": [int(step) for step in logged["step"]],
        "train_loss": [round(float(loss), 4) for loss in logged["train_loss"]],
        "val_ppl": [None if ppl != ppl else round(float(ppl), 2) for ppl in logged["val_ppl"]],
    }


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", default="47m")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32, help="per rank")
    parser.add_argument("--block-len", type=int, default=512)
    parser.add_argument("--corpus", default="python-docs")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    if args.smoke:
        args.size, args.steps, args.batch_size, args.block_len = "tiny", 6, 2, 32

    results = []
    with tempfile.TemporaryDirectory() as folder:
        os.environ["WORKBENCH_HOME"] = folder  # children inherit it; the parent reads the same store
        from workbench.launch import launch
        from workbench.runs import store

        for nproc in args.nprocs:
            start = time.perf_counter()
            job = launch(
                nproc,
                [
                    "pretrain",
                    "--size",
                    args.size,
                    "--steps",
                    str(args.steps),
                    "--batch-size",
                    str(args.batch_size),
                    "--block-len",
                    str(args.block_len),
                    "--corpus",
                    args.corpus,
                    "--log-every",
                    str(max(1, args.steps // 30)),
                    "--eval-windows",
                    "4",
                    "--no-checkpoint",
                ],
            )
            job.wait()
            history = store().history(job.run_id())
            windows = history["tokens_per_s"].dropna().to_numpy()
            steady = windows[2:] if len(windows) > 2 else windows
            results.append(
                {
                    "nproc": nproc,
                    "global_batch": nproc * args.batch_size,
                    "tokens_per_step": nproc * args.batch_size * args.block_len,
                    "tokens_per_s": float(steady.mean()),
                    "final_train_loss": float(history["train_loss"].dropna().iloc[-1]),
                    "val_ppl": float(history["val_ppl"].dropna().iloc[-1]),
                    "wall_s": time.perf_counter() - start,
                    "curve": curve(history),
                }
            )
            print(
                f"{nproc} process(es): {results[-1]['tokens_per_s']:,.0f} tokens/s, {results[-1]['wall_s']:.0f} s",
                flush=True,
            )
    base = results[0]["tokens_per_s"] / results[0]["nproc"]
    for r in results:
        r["efficiency"] = r["tokens_per_s"] / (r["nproc"] * base)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "ddp_scaling.json").write_text(
            json.dumps({"args": vars(args), "results": results}, indent=1)
        )
    print("train loss by step (tokens seen = step × global batch × block length)")
    print(f"{'step':>5} " + " ".join(f"{str(r['nproc']) + ' proc':>8}" for r in results))
    for row, step in enumerate(results[0]["curve"]["step"]):
        print(f"{step:>5} " + " ".join(f"{r['curve']['train_loss'][row]:8.3f}" for r in results))
    print(f"{'procs':>5} {'global batch':>12} {'tokens/s':>10} {'efficiency':>10} {'train loss':>10} {'val ppl':>8}")
    for r in results:
        print(
            f"{r['nproc']:>5} {r['global_batch']:>12} {r['tokens_per_s']:10,.0f} {r['efficiency']:10.0%} "
            f"{r['final_train_loss']:10.3f} {r['val_ppl']:8.1f}"
        )
    return results


if __name__ == "__main__":
    main()
