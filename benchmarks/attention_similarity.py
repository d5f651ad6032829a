"""All-pairs attention similarity: the streaming analysis against the naive path, time and peak memory.

    python benchmarks/attention_similarity.py                      # CPU: 16×256 (speed) and 4×2048 (memory)
    python benchmarks/attention_similarity.py --device cuda --texts 64 --seq-len 1024 --mem-texts 0

Naive path: eager attention with `output_attentions=True`, all layers' maps stacked [L, B, H, T, T],
then compared (`similarity.naive_similarity`). Streaming path: `analysis.analyze`, which reduces
each layer's maps in its hook (`similarity.SimilarityAccumulator`). Both see the same SmolLM2 on
the same WikiText-2 blocks, with the same metrics, batch size and sink handling.

Every measurement runs in a fresh subprocess, so each peak is its own: peak RSS (`ru_maxrss`) of
the process on a CPU, `torch.cuda.max_memory_allocated` on a GPU, each also given above the
level right after loading the model. The streaming and naive matrices are compared (max |Δ|)
to show that the cheap path computes the same thing. Prints a table last; writes JSON to $OUT
(or --out) if set.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WIKITEXT = REPO.parent / "shared" / "data" / "wikitext2-valid.txt"


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def worker(args: argparse.Namespace) -> dict:
    """One measurement in this process: load, pick blocks, run one path, report time, memory, matrices."""
    import numpy as np
    import torch

    from workbench.attention.analysis import analyze, text_blocks
    from workbench.attention.similarity import naive_similarity
    from workbench.measure import synchronize
    from workbench.models import load_model

    device = torch.device(args.device)
    model, tokenizer = load_model(args.model, device=device, dtype="float32")  # same maps on CPU and GPU
    ids = text_blocks(tokenizer, args.corpus, args.texts, args.seq_len)
    metrics = tuple(args.metrics.split(","))
    with torch.no_grad():  # page in the memory-mapped weights now, so the baseline includes them
        sum(float(p.float().sum()) for p in model.parameters())
    cuda = device.type == "cuda"
    synchronize(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    base_rss = peak_rss_mib()
    start = time.perf_counter()
    if args.worker == "streaming":
        result = analyze(
            model, tokenizer, ids, metrics=metrics, drop_sink=args.drop_sink, batch_size=args.batch_size, progress=False
        )
        means = {m: result.mean[f"{m}/{result.sinks[0]}"] for m in metrics}
    else:
        per_text = {m: [] for m in metrics}
        model.set_attn_implementation("eager")
        with torch.no_grad():
            for begin in range(0, len(ids), args.batch_size):
                batch = ids[begin : begin + args.batch_size].to(device)
                backbone = getattr(model, "base_model", model)
                stack = torch.stack(
                    backbone(input_ids=batch, output_attentions=True, use_cache=False).attentions
                )  # [L, B, H, T, T]
                values = naive_similarity(stack.float(), metrics=metrics, drop_sink=args.drop_sink)
                del stack
                for metric in metrics:
                    per_text[metric].extend(values[metric].mean(-1).cpu().numpy())
        means = {m: np.stack(v).mean(0) for m, v in per_text.items()}
    synchronize(device)
    seconds = time.perf_counter() - start
    out = dict(
        path=args.worker,
        texts=args.texts,
        seq_len=args.seq_len,
        metrics=list(metrics),
        seconds=seconds,
        batch_size=args.batch_size,
    )
    if cuda:
        out.update(peak_mib=torch.cuda.max_memory_allocated() / 2**20, base_mib=base, memory="GPU allocated")
    else:
        out.update(peak_mib=peak_rss_mib(), base_mib=base_rss, memory="process RSS")
    np.savez(args.matrices, **means)
    return out


def measure(
    path: str, args: argparse.Namespace, texts: int, seq_len: int, batch_size: int, metrics: str, tag: str
) -> dict:
    matrices = Path(args.scratch) / f"{tag}-{path}.npz"
    command = [
        sys.executable,
        __file__,
        "--worker",
        path,
        "--device",
        args.device,
        "--model",
        args.model,
        "--corpus",
        args.corpus,
        "--texts",
        str(texts),
        "--seq-len",
        str(seq_len),
        "--batch-size",
        str(batch_size),
        "--metrics",
        metrics,
        "--matrices",
        str(matrices),
    ] + (["--keep-sink"] if not args.drop_sink else [])
    cap = int(args.naive_cap_gib * 2**30) if path == "naive" and args.naive_cap_gib else None

    def limit() -> None:  # the naive path may ask for more memory than the machine has: fail it, not the machine
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    python_path = os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])
    )  # keep the caller's site dirs
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": python_path},
        preexec_fn=limit if cap else None,
    )
    if done.returncode != 0:
        return dict(
            path=path,
            texts=texts,
            seq_len=seq_len,
            error=done.stderr.strip().splitlines()[-1] if done.stderr else "failed",
        )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["matrices"] = str(matrices)
    return result


def compare(a: dict, b: dict) -> float | None:
    import numpy as np

    if "matrices" not in a or "matrices" not in b:
        return None
    first, second = np.load(a["matrices"]), np.load(b["matrices"])
    return float(max(np.abs(first[k] - second[k]).max() for k in first.files))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--corpus", default=str(WIKITEXT) if WIKITEXT.is_file() else "python-docs")
    parser.add_argument("--texts", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--metrics", default="cosine,jsd,cka")
    parser.add_argument(
        "--keep-sink",
        dest="drop_sink",
        action="store_false",
        help="compare maps with the sink column (default: removed)",
    )
    parser.add_argument("--mem-texts", type=int, default=4, help="memory run: texts (0 skips it)")
    parser.add_argument("--mem-seq-len", type=int, default=2048)
    parser.add_argument("--mem-metrics", default="cosine,jsd,cka")
    parser.add_argument(
        "--mem-naive-texts",
        type=int,
        default=1,
        help="the naive path at the memory size holds L·H·T² floats per text: "
        "4.5 GB at 2,048 tokens, so by default it runs on one text (its smallest possible peak)",
    )
    parser.add_argument(
        "--mem-naive-metrics",
        default="cosine",
        help="the naive path at the memory size: cosine alone already needs the full stack",
    )
    parser.add_argument(
        "--naive-cap-gib", type=float, default=12.0, help="address-space cap for the naive worker on a CPU (0: none)"
    )
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--out", default=os.environ.get("OUT"))
    parser.add_argument("--worker", choices=("streaming", "naive"), help=argparse.SUPPRESS)
    parser.add_argument("--matrices", help=argparse.SUPPRESS)
    parser.add_argument("--scratch", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return

    import tempfile

    import torch

    args.scratch = args.scratch or tempfile.mkdtemp(prefix="attention-bench-")
    Path(args.scratch).mkdir(parents=True, exist_ok=True)
    rows = []
    if args.device.startswith("cuda"):
        args.naive_cap_gib = 0
    plan = [("speed", args.texts, args.seq_len, args.batch_size, args.metrics, args.texts, args.metrics)]
    if args.mem_texts:
        plan.append(
            (
                "memory",
                args.mem_texts,
                args.mem_seq_len,
                1,
                args.mem_metrics,
                args.mem_naive_texts,
                args.mem_naive_metrics,
            )
        )
    for tag, texts, seq_len, batch_size, metrics, naive_texts, naive_metrics in plan:
        print(f"[{tag}] streaming: {texts} texts × {seq_len} tokens, {metrics}, batch {batch_size} ...", flush=True)
        streaming = measure("streaming", args, texts, seq_len, batch_size, metrics, tag)
        rows.append(dict(run=tag, **streaming))
        if not args.skip_naive and naive_texts:
            print(f"[{tag}] naive: {naive_texts} texts × {seq_len} tokens ...", flush=True)
            naive = measure("naive", args, naive_texts, seq_len, batch_size, naive_metrics, tag)
            naive["max_abs_diff_vs_streaming"] = (
                compare(streaming, naive) if (naive_texts, naive_metrics) == (texts, metrics) else None
            )
            rows.append(dict(run=tag, **naive))

    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else f"cpu ({os.cpu_count()} cores)"
    load = os.getloadavg()[0]
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "attention_similarity_benchmark.json").write_text(
            json.dumps(dict(device=device, load=load, rows=rows), indent=1)
        )
    print(
        f"\ndevice: {device}; torch threads {torch.get_num_threads()}; load average at the end {load:.1f}; "
        f"model {args.model}; corpus {Path(args.corpus).name}"
    )
    print(
        f"{'run':7s} {'path':10s} {'texts×T':>10s} {'metrics':16s} {'time s':>8s} {'peak MiB':>9s} "
        f"{'above load':>10s} {'max|Δ|':>8s}"
    )
    for row in rows:
        if "error" in row:
            print(
                f"{row['run']:7s} {row['path']:10s} {row['texts']:>4d}×{row['seq_len']:<5d} "
                f"failed ({row['error'][:80]})"
            )
            continue
        diff = row.get("max_abs_diff_vs_streaming")
        print(
            f"{row['run']:7s} {row['path']:10s} {row['texts']:>4d}×{row['seq_len']:<5d} {','.join(row['metrics']):16s} "
            f"{row['seconds']:8.1f} {row['peak_mib']:9.0f} {row['peak_mib'] - row['base_mib']:10.0f} "
            f"{'' if diff is None else f'{diff:.1e}':>8s}"
        )
    print(
        f"memory: {rows[0].get('memory', '')}; 'above load' = peak minus the level after loading the model and the text"
    )


if __name__ == "__main__":
    main()
