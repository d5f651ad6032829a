"""Training speed: a plain transformers loop against the workbench loop, side by side.

    python benchmarks/train_speed.py                # GPU: LLaMAs of 47M and 112M parameters, ~4 min on one H200
    python benchmarks/train_speed.py --smoke        # CPU: a tiny LLaMA, seconds (what the test runs)
    python benchmarks/train_speed.py --sizes 47m --steps 300 --corpus path/to/text.txt

Both arms train the same model (same initial weights), on the same batches, with the same
optimizer settings, schedule and clipping, in the same process. They alternate in segments of
`--segment` steps (plain, workbench, plain, ...), so clock or thermal drift hits both alike; the
first segment of each arm (cuBLAS and torch.compile warm-up) is not timed.

- plain: what a plain transformers loop does: eager forward to the logits, float32
  cross-entropy over them (as transformers' ForCausalLMLoss does), bf16 autocast, fused AdamW,
  gradient clipping, `loss.item()` every step.
- workbench: `workbench.train.train` with its defaults on a GPU: the whole step's loss compiled as
  one graph and replayed as a CUDA graph, flash SDPA, fused AdamW, loss read every 10 steps.
  `--compile-mode default` measures it without CUDA graphs. Its loss (`--loss`): "chunked" (the
  default, `causal_lm_loss`: chunks of `--chunk-tokens` tokens, each chunk's gradients computed in
  the forward pass, so the [B·T, V] logits never exist) or "logits" (the step as it was up to
  2026-12-02: all bf16 logits materialised and kept for the backward, the float32 upcast fused
  into the softmax by inductor).

Reported per arm: tokens/s, step time, the step's peak memory above what was allocated before it
(activations, gradients, temporaries; weights and optimizer states of both arms are resident
throughout; the warm-up segment counts, since that is where CUDA graphs allocate their pool),
MFU = 6·N·tokens/s / 989e12 (N = parameters, tied embeddings once; 989 TFLOP/s =
H200 dense bf16 peak), also with the attention term, (6·N + 12·L·d·T)·tokens/s, and the loss
curves' agreement over the run (10-step window means). The table is printed last; with $OUT set,
the numbers go to $OUT/train_speed.json.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from workbench import train as train_module
from workbench.data import batches, token_splits
from workbench.measure import synchronize
from workbench.models import MODEL_SIZES, count_parameters, tiny_llama
from workbench.runs import RunStore
from workbench.train import (
    TrainConfig,
    causal_lm_loss,
    cosine_schedule,
    decoder_states,
    default_optimizer,
    plain_head,
    train,
)

PEAK_FLOPS = 989e12  # H200 SXM dense bf16, vendor datasheet
EARLIER_PLAIN = {
    "47m": 506e3,
    "112m": 283e3,
}  # tokens/s of a plain loop measured earlier on an H200 (issue 5), for reference


class Clock:
    """Per-arm segment timer: wall time between device syncs, and the peak memory above the start."""

    def __init__(self, device: torch.device):
        self.device, self.segments, self.open = device, {"plain": [], "workbench": []}, None

    def start(self, arm: str) -> None:
        synchronize(self.device)
        base = 0
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            base = torch.cuda.memory_allocated(self.device)
        self.open = (arm, time.perf_counter(), base)

    def stop(self, steps: int) -> None:
        if self.open is None:
            return
        synchronize(self.device)
        arm, began, base = self.open
        peak = torch.cuda.max_memory_allocated(self.device) - base if self.device.type == "cuda" else 0
        self.segments[arm].append({"seconds": time.perf_counter() - began, "steps": steps, "peak_bytes": peak})
        self.open = None


class PlainLoop:
    """The baseline: a plain transformers training loop, stepped `n` steps at a time."""

    def __init__(self, model: torch.nn.Module, stream, config: TrainConfig):
        self.model, self.stream, self.config = model.train(), stream, config
        self.device = next(model.parameters()).device
        self.optimizer = default_optimizer(model, config)
        self.schedule = torch.optim.lr_scheduler.LambdaLR(self.optimizer, cosine_schedule(config))
        self.losses: list[float] = []

    def steps(self, n: int) -> None:
        for _ in range(n):
            batch = next(self.stream)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
                logits = self.model(input_ids=batch[:, :-1]).logits  # [B, T, V]
                loss = F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.schedule.step()
            self.losses.append(loss.item())


def logits_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The compiled step's loss before the chunked one: all [B·T, V] logits in bf16, kept for the backward."""
    hidden = decoder_states(model, batch[:, :-1]).flatten(0, 1)  # [B·T, d]
    return F.cross_entropy(F.linear(hidden, plain_head(model).weight).float(), batch[:, 1:].flatten())


logits_loss.compile_safe = True
LOSSES = {"chunked": causal_lm_loss, "logits": logits_loss}


def kernel_names(device: torch.device, step) -> list[tuple[str, float]]:
    """(name, microseconds) of the GPU kernels one call of `step()` launches (empty on a CPU or without a profiler)."""
    profiler = Profiler(device)
    step()
    return profiler.stop()


class Profiler:
    """torch.profiler over GPU kernels, started now; `stop()` returns the kernel names. Optional:
    where the profiler cannot start, it records nothing and the benchmark goes on."""

    def __init__(self, device: torch.device):
        self.device, self.profile = device, None
        if device.type == "cuda":
            synchronize(device)  # earlier kernels are not this step's
            try:
                self.profile = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA])
                self.profile.__enter__()
            except Exception as error:  # noqa: BLE001 - profiling is a nice-to-have here
                print(f"(no kernel profile: {error})")
                self.profile = None

    def stop(self) -> list[tuple[str, float]]:
        """(kernel name, microseconds) of every kernel launched since the start."""
        if self.profile is None:
            return []
        synchronize(self.device)
        try:
            self.profile.__exit__(None, None, None)
            return [
                (e.name, e.time_range.elapsed_us())
                for e in self.profile.events()
                if e.device_type == torch.autograd.DeviceType.CUDA
            ]
        except Exception as error:  # noqa: BLE001
            print(f"(no kernel profile: {error})")
            return []


def attention_kernels(kernels: list[tuple[str, float]]) -> list[str]:
    return sorted(
        {n[:60] for n, _ in kernels if any(k in n.lower() for k in ("flash", "fmha", "attention", "sdpa", "cudnn"))}
    )


def top_kernels(kernels: list[tuple[str, float]], n: int = 6) -> list[tuple[str, float]]:
    """The `n` kernels that take most of a step's GPU time, as (name, share of the kernels' total)."""
    total: dict[str, float] = {}
    for name, us in kernels:
        total[name[:50]] = total.get(name[:50], 0.0) + us
    busy = sum(total.values()) or 1.0
    return [(name, us / busy) for name, us in sorted(total.items(), key=lambda item: -item[1])[:n]]


def alternate(fast_stream, plain: PlainLoop, clock: Clock, steps: int, segment: int, profiles: dict):
    """The workbench loop's batches; before each of its segments, the plain loop runs one segment.

    The last step of each arm's first (warm-up) segment runs under the profiler, so the kernels
    it launches are recorded without touching a timed segment.
    """
    for step in range(steps):
        if step % segment == 0:
            clock.stop(segment)  # closes the workbench segment that just ended
            clock.start("plain")
            if step == 0:
                plain.steps(segment - 1)
                profiles["plain"] = kernel_names(clock.device, lambda: plain.steps(1))
            else:
                plain.steps(segment)
            clock.stop(segment)
            clock.start("workbench")
        if step == segment - 1:
            profiler = Profiler(clock.device)
            yield next(fast_stream)
            profiles["workbench"] = profiler.stop()
            continue
        yield next(fast_stream)


def bench_size(size: str, tokens: torch.Tensor, args, device: torch.device, store: RunStore) -> dict:
    spec = dict(MODEL_SIZES[size])
    model, _ = tiny_llama(**spec, max_len=args.block_len, seed=args.seed)
    model.to(device)
    plain_model = copy.deepcopy(model)
    n_params = count_parameters(model)
    compile = {"auto": None, "on": True, "off": False}[args.compile]
    config = TrainConfig(
        steps=args.steps,
        lr=args.lr,
        warmup_steps=args.warmup,
        log_every=args.window,
        checkpoint=False,
        compile=compile,
        compile_mode=args.compile_mode,
    )
    stream = lambda: batches(tokens, args.batch_size, args.block_len + 1, device, seed=args.seed)  # noqa: E731
    plain = PlainLoop(plain_model, stream(), config)
    clock, profiles = Clock(device), {}
    run = store.start_run("benchmark", f"train_speed {size}", {"size": size, **spec})
    wall = time.perf_counter()
    fast = alternate(stream(), plain, clock, args.steps, args.segment, profiles)
    train(model, fast, config, loss_fn=LOSSES[args.loss], run=run, progress=False)
    clock.stop(args.steps % args.segment or args.segment)
    wall = time.perf_counter() - wall
    run.finish()

    history = store.history(run.id)
    fast_windows = history["train_loss"].to_numpy()
    plain_losses = np.array(plain.losses[: args.steps])
    per_window = plain_losses[: len(fast_windows) * args.window].reshape(-1, args.window)
    plain_windows, noise = per_window.mean(1), per_window.std(1, ddof=1) / np.sqrt(args.window)
    diff = fast_windows - plain_windows

    tokens_per_step = args.batch_size * args.block_len
    flops_6n = 6 * n_params
    flops_attn = flops_6n + 12 * spec["n_layers"] * spec["d_model"] * args.block_len
    result = {
        "size": size,
        "params": n_params,
        **spec,
        "batch": args.batch_size,
        "seq": args.block_len,
        "steps": args.steps,
        "segment": args.segment,
        "loss_kind": args.loss,
        "chunk_tokens": args.chunk_tokens if args.loss == "chunked" else None,
        "wall_s": wall,
        "arms": {},
    }
    for arm, segments in clock.segments.items():
        timed = segments[1:] or segments  # the first segment is warm-up (compile, cuBLAS)
        seconds, steps = sum(s["seconds"] for s in timed), sum(s["steps"] for s in timed)
        tok_s = steps * tokens_per_step / seconds
        result["arms"][arm] = {
            "tokens_per_s": tok_s,
            "step_ms": 1000 * seconds / steps,
            "timed_steps": steps,
            "warmup_s": segments[0]["seconds"],
            "peak_step_mem_gb": max(s["peak_bytes"] for s in segments) / 1e9,
            "mfu_6n": flops_6n * tok_s / PEAK_FLOPS if device.type == "cuda" else None,
            "mfu_6n_attn": flops_attn * tok_s / PEAK_FLOPS if device.type == "cuda" else None,
            "kernels_per_step": len(profiles.get(arm, [])) or None,
            "attention_kernels": attention_kernels(profiles.get(arm, [])),
            "kernel_busy_ms": sum(us for _, us in profiles.get(arm, [])) / 1000 or None,
            "top_kernels": top_kernels(profiles.get(arm, [])),
        }
    result["speedup"] = result["arms"]["workbench"]["tokens_per_s"] / result["arms"]["plain"]["tokens_per_s"]
    result["loss"] = {
        "window": args.window,
        "plain": plain_windows.tolist(),
        "workbench": fast_windows.tolist(),
        "max_abs_diff": float(np.abs(diff).max()),
        "final_diff": float(diff[-1]),
        "final_plain": float(plain_windows[-1]),
        "windows_within_3se": int((np.abs(diff) <= 3 * noise).sum()),
        "windows": len(diff),
    }
    del model, plain_model, plain
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def table(results: list[dict], device: torch.device) -> str:
    lines = [
        f"{'size':>5} {'params':>7} {'arm':>9} {'tokens/s':>10} {'step ms':>8} {'step mem GB':>11} {'MFU 6N':>7} "
        f"{'MFU +attn':>9} {'kernels':>7} {'speed-up':>8}"
    ]
    for r in results:
        for arm in ("plain", "workbench"):
            a = r["arms"][arm]
            mfu = f"{a['mfu_6n']:7.1%} {a['mfu_6n_attn']:9.1%}" if a["mfu_6n"] is not None else f"{'-':>7} {'-':>9}"
            ratio = f"{r['speedup']:7.2f}x" if arm == "workbench" else ""
            lines.append(
                f"{r['size']:>5} {r['params'] / 1e6:6.1f}M {arm:>9} {a['tokens_per_s']:10.0f} {a['step_ms']:8.1f} "
                f"{a['peak_step_mem_gb']:11.2f} {mfu} {a['kernels_per_step'] or '-':>7} {ratio:>8}"
            )
    for r in results:
        if "note" in r:
            lines.append(f"{r['size']}: the workbench arm ran WITHOUT compile: {r['note']}")
        if r["size"] in EARLIER_PLAIN:
            earlier = EARLIER_PLAIN[r["size"]]
            lines.append(
                f"{r['size']}: the plain loop measured earlier on an H200 ran {earlier:,.0f} tokens/s; "
                "this run's plain arm "
                f"{r['arms']['plain']['tokens_per_s'] / earlier:.2f}x that, the workbench arm "
                f"{r['arms']['workbench']['tokens_per_s'] / earlier:.2f}x that"
            )
    for r in results:
        chunk = f", {r['chunk_tokens']} tokens per chunk" if r.get("chunk_tokens") else ""
        lines.append(f"{r['size']}: the workbench arm's loss: {r.get('loss_kind', 'chunked')}{chunk}")
    lines.append("")
    lines.append(f"loss curves ({results[0]['loss']['window']}-step window means, same batches): ")
    for r in results:
        loss = r["loss"]
        lines.append(
            f"  {r['size']}: final plain {loss['final_plain']:.3f}, workbench - plain {loss['final_diff']:+.4f} "
            f"(max |diff| {loss['max_abs_diff']:.4f}); {loss['windows_within_3se']}/{loss['windows']} windows within "
            f"3 standard errors of the plain loop's step-to-step noise"
        )
    for r in results:
        for arm in ("plain", "workbench"):
            a = r["arms"][arm]
            if a["attention_kernels"]:
                lines.append(f"  {r['size']} {arm} attention kernels: {', '.join(a['attention_kernels'])}")
            if a["kernel_busy_ms"]:
                top = "; ".join(f"{share:.0%} {name}" for name, share in a["top_kernels"])
                lines.append(
                    f"  {r['size']} {arm}: GPU busy {a['kernel_busy_ms']:.1f} of {a['step_ms']:.1f} ms per step; {top}"
                )
    if device.type == "cuda":
        lines.append(
            f"device: {torch.cuda.get_device_name(device)}; MFU against {PEAK_FLOPS / 1e12:.0f} TFLOP/s dense bf16"
        )
    return "\n".join(lines)


def markdown(results: list[dict]) -> str:
    """The table for docs/results.md."""
    lines = [
        "| model | arm | tokens/s | step ms | step memory GB | MFU (6N) | MFU (6N + attention) | speed-up "
        "| loss, last window |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for arm in ("plain", "workbench"):
            a, loss = r["arms"][arm], r["loss"]
            mfu = f"{a['mfu_6n']:.1%} | {a['mfu_6n_attn']:.1%}" if a["mfu_6n"] is not None else "- | -"
            last = loss["final_plain"] + (loss["final_diff"] if arm == "workbench" else 0)
            ratio = f"**{r['speedup']:.2f}x**" if arm == "workbench" else ""
            lines.append(
                f"| {r['params'] / 1e6:.1f}M (d={r['d_model']}, {r['n_layers']} layers) | {arm} | "
                f"{a['tokens_per_s']:,.0f} | "
                f"{a['step_ms']:.1f} | {a['peak_step_mem_gb']:.2f} | {mfu} | {ratio} | {last:.3f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny CPU configuration (seconds)")
    parser.add_argument("--sizes", nargs="+", default=None, choices=sorted(MODEL_SIZES))
    parser.add_argument("--steps", type=int, default=None, help="steps per arm (default 200; smoke 8)")
    parser.add_argument("--segment", type=int, default=None, help="steps per alternation segment (default 25; smoke 4)")
    parser.add_argument("--batch-size", type=int, default=None, help="default 32; smoke 4")
    parser.add_argument("--block-len", type=int, default=None, help="tokens per sequence (default 512; smoke 64)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--compile", default="auto", choices=["auto", "on", "off"], help="the workbench arm's compile (auto: on a GPU)"
    )
    parser.add_argument(
        "--compile-mode", default="auto", help="torch.compile mode of the workbench arm (auto: CUDA graphs here)"
    )
    parser.add_argument("--loss", default="chunked", choices=sorted(LOSSES), help="the workbench arm's loss")
    parser.add_argument("--chunk-tokens", type=int, default=train_module.LOSS_CHUNK_TOKENS, help="tokens per chunk")
    parser.add_argument("--corpus", default="python-docs", help="'python-docs' (embedded) or a text file")
    args = parser.parse_args(argv)
    smoke = args.smoke
    args.sizes = args.sizes or (["tiny"] if smoke else ["47m", "112m"])
    args.steps = args.steps or (8 if smoke else 200)
    args.segment = args.segment or (4 if smoke else 25)
    args.batch_size = args.batch_size or (4 if smoke else 32)
    args.block_len = args.block_len or (64 if smoke else 512)
    args.warmup = min(args.warmup, args.steps // 2)
    args.window = 4 if smoke else 10  # loss-curve window = the workbench loop's log_every

    device = torch.device("cuda" if torch.cuda.is_available() and not smoke else "cpu")
    train_module.LOSS_CHUNK_TOKENS = args.chunk_tokens
    torch.set_float32_matmul_precision("high")
    from workbench.models import load_tokenizer

    start = time.perf_counter()
    tokens = token_splits(args.corpus, load_tokenizer()).train
    print(
        f"corpus {args.corpus}: {len(tokens):,} training tokens ({time.perf_counter() - start:.1f} s); "
        f"device {device}; "
        f"torch {torch.__version__}; {args.steps} steps per arm, alternating every {args.segment}; "
        f"workbench loss {args.loss}" + (f" ({args.chunk_tokens} tokens per chunk)" if args.loss == "chunked" else ""),
        flush=True,
    )
    results = []
    with tempfile.TemporaryDirectory() as folder:
        store = RunStore(Path(folder) / "runs.db")
        for size in args.sizes:
            try:
                results.append(bench_size(size, tokens, args, device, store))
            except Exception as error:  # noqa: BLE001 - a compile failure should still leave numbers from this GPU job
                if args.compile == "off":
                    raise
                traceback.print_exc()
                print(
                    f"{size}: the workbench arm failed ({type(error).__name__}); measuring again without compile",
                    flush=True,
                )
                results.append(
                    bench_size(size, tokens, argparse.Namespace(**{**vars(args), "compile": "off"}), device, store)
                )
                results[-1]["note"] = (
                    f"compile failed: {type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
                )
            r = results[-1]
            print(
                f"{size}: {r['speedup']:.2f}x in {r['wall_s']:.0f} s (workbench warm-up incl. compile "
                f"{r['arms']['workbench']['warmup_s']:.0f} s)",
                flush=True,
            )
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "train_speed.json").write_text(
            json.dumps(
                {"device": str(device), "torch": torch.__version__, "args": vars(args), "results": results}, indent=1
            )
        )
        Path(os.environ["OUT"], "train_speed.md").write_text(markdown(results) + "\n")
    print(table(results, device))
    return results


if __name__ == "__main__":
    main()
