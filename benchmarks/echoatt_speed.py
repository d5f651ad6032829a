"""EchoAtt's speed claims, measured where the GPU is the bottleneck: prefill, a KD training step and
decode of the teacher and of students with n shared layers, every contender timed in the same
interleaved rounds (CUDA events, warm-up excluded), median and spread (IQR / median).

    PYTHONPATH=. WORKBENCH_GGUF_DIR=/root/wb python benchmarks/echoatt_speed.py      # one H200, ~3 min
    python benchmarks/echoatt_speed.py --smoke                                        # a CPU, tiny, seconds

Contenders: the teacher with fused (sdpa) and eager attention; per n, the student on the fused path
(SDPA on the head's Q, K: the default), on the explicit path with sdpa elsewhere, and all-eager
(explicit path, eager elsewhere). Shared layers are the last inner ones in pairs (the speed depends
on how many layers share, not which). Ratios: against the sdpa teacher and, for the all-eager
student, against the eager teacher (>1 = faster). The training step is the same distillation step
(CE + forward KL from the bf16 teacher) for the student and for the teacher itself.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from workbench.echoatt.arms import last_groups
from workbench.echoatt.speed import SpeedShapes, measure_speeds, with_attention
from workbench.echoatt.student import build_student
from workbench.models import load_model, resolve_device, tiny_llama


def contenders(teacher: torch.nn.Module, budgets: list[int]) -> dict[str, torch.nn.Module]:
    """Name -> model: the teacher (sdpa, eager), and per budget the fused, explicit and all-eager students."""
    n_layers = len(teacher.model.layers)
    models = {"teacher (sdpa)": with_attention(teacher, "sdpa"), "teacher (eager)": with_attention(teacher, "eager")}
    for n in budgets:
        groups = last_groups(n_layers, n, max_block=2, eligible=None)
        models[f"n={n} fused"] = build_student(teacher, groups, path="fused")
        models[f"n={n} explicit"] = build_student(teacher, groups, path="explicit")
        models[f"n={n} all-eager"] = with_attention(models[f"n={n} explicit"], "eager")
    return models


def measure(args: argparse.Namespace) -> list[dict]:
    """Every contender timed in the same interleaved rounds (`workbench.echoatt.speed.measure_speeds`)."""
    device = resolve_device("auto")
    if args.smoke:
        teacher, _ = tiny_llama(n_layers=8, d_model=64, n_heads=4, n_kv_heads=2, max_len=256)
        teacher = teacher.to(device)
    else:
        teacher, _ = load_model(args.model, dtype="float32", device=device, attn="sdpa")
    teacher.requires_grad_(False).eval()
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    models = {name: model.to(dtype).eval() for name, model in contenders(teacher, args.budgets).items()}
    shapes = SpeedShapes(
        args.prefill_batch, args.prefill_len, args.train_batch, args.train_len, args.decode_batch,
        args.decode_tokens, args.rounds, args.warmup,
    )  # fmt: skip
    speeds = measure_speeds(models, models["teacher (sdpa)"], shapes, progress=True)
    return [{"contender": name, **row} for name, row in speeds.items()]


def with_ratios(rows: list[dict]) -> list[dict]:
    """× against the sdpa teacher, and for eager contenders against the eager teacher (>1 = faster)."""
    by_name = {row["contender"]: row for row in rows}
    for row in rows:
        reference = by_name["teacher (eager)" if "eager" in row["contender"] else "teacher (sdpa)"]
        row["reference"] = reference["contender"]
        for phase in ("prefill", "train", "decode"):
            row[f"{phase}_x"] = row[f"{phase}_tok_s"] / reference[f"{phase}_tok_s"]
            row[f"{phase}_x_vs_sdpa"] = row[f"{phase}_tok_s"] / by_name["teacher (sdpa)"][f"{phase}_tok_s"]
    return rows


def markdown(rows: list[dict], args: argparse.Namespace, device: str) -> str:
    lines = [
        f"Device: {device}, {time.strftime('%Y-%m-%d')}. Prefill {args.prefill_batch}×{args.prefill_len} tokens; "
        f"KD train step {args.train_batch}×{args.train_len}; decode {args.decode_batch}×{args.decode_tokens} tokens "
        f"(KV cache). {args.rounds} interleaved rounds after {args.warmup} warm-up; ± = IQR / median. "
        "× = against the teacher with the same kernel elsewhere (eager for all-eager, else sdpa).",
        "",
        "| contender | prefill tok/s | prefill × | train tok/s | train × | decode tok/s | decode × |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [r["contender"]]
        for phase in ("prefill", "train", "decode"):
            cells += [f"{r[f'{phase}_tok_s']:,.0f} ±{100 * r[f'{phase}_spread']:.0f}%", f"{r[f'{phase}_x']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--budgets", type=int, nargs="+", default=[6, 12])
    parser.add_argument("--prefill-batch", type=int, default=32)
    parser.add_argument("--prefill-len", type=int, default=1024)
    parser.add_argument("--train-batch", type=int, default=32)
    parser.add_argument("--train-len", type=int, default=512)
    parser.add_argument("--decode-batch", type=int, default=64)
    parser.add_argument("--decode-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="a tiny random model and small shapes (CPU, seconds)")
    args = parser.parse_args()
    if args.smoke:
        args.budgets, args.rounds, args.warmup = [2], 2, 1
        args.prefill_batch, args.prefill_len, args.train_batch, args.train_len = 2, 64, 2, 32
        args.decode_batch, args.decode_tokens = 2, 4
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    rows = with_ratios(measure(args))
    text = markdown(rows, args, device)
    if os.environ.get("OUT"):
        Path(os.environ["OUT"], "echoatt_speed.json").write_text(json.dumps(rows, indent=1))
        Path(os.environ["OUT"], "echoatt_speed.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
