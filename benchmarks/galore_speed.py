"""Optimizer step time and peak training-step memory: GaLore and Natural GaLore against fused AdamW.

    python benchmarks/galore_speed.py                 # GPU: GaLore's 60M shape (our "47m") and a 300M-class LLaMA
    python benchmarks/galore_speed.py --smoke         # CPU, tiny model, seconds

Per model size, on the same weights and the same fixed gradients (the state of every optimizer allocated):
- one optimizer step of each method, timed in interleaved rounds after warm-up (CUDA events on a
  GPU); GaLore's subspace refresh is timed as a step with update_proj_gap = 1 and amortised over the
  gap (default 200): amortised = step + (refresh step − step) / gap, for Natural GaLore too (same
  refresh). Each method twice: the refresh by full SVD (the paper's) and by subspace iteration
  warm-started from the previous basis (`subspace="iteration"`; its timed refresh is a warm one);
- how much of each gradient the iteration's basis keeps against the SVD's (‖R‖²/‖G‖², ratio per
  matrix, both bases from the same gradients; the iteration's cold-started, its worst case);
- the forward and backward of one training step (bf16 autocast on a GPU, the loss compiled as in
  `workbench.train` unless --no-compile), so "whole step" = forward/backward + amortised optimizer;
- peak memory of a whole training step (forward, backward, optimizer step) for each method alone
  (one optimizer's state allocated), for an ordinary step and for a refresh step (SVD workspace
  included; measured for GaLore, whose SVDs Natural GaLore shares).
Then, with --reference-steps > 0, the loss curve of our GaLoreAdamW against galore-torch's over
that many steps on a tiny LLaMA (skipped, with the reason, where galore-torch cannot be imported).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from contextlib import nullcontext

import torch

from workbench.errors import WorkbenchError
from workbench.galore import GaLoreAdamW, NaturalGaLoreAdamW, galore_param_groups, optimizer_state_bytes
from workbench.galore.galore import SUBSPACES
from workbench.galore.projector import project
from workbench.galore.reference import loss_curves
from workbench.measure import interleaved, synchronize
from workbench.models import MODEL_SIZES, count_parameters, resolve_device, tiny_llama
from workbench.train import causal_lm_loss, compiled_loss

SHAPES = {  # GaLore's 60M ("47m" with our vocabulary and GQA) and 350M (d=1024, 24 layers, FFN 2736) shapes
    "tiny": (MODEL_SIZES["tiny"], 16),
    "47m": (MODEL_SIZES["47m"], 128),
    "300m": (dict(n_layers=24, d_model=1024, n_heads=16, n_kv_heads=4, d_ff=2736), 256),
}


def optimizers(
    model: torch.nn.Module, rank: int, gap: int, lr: float = 1e-3
) -> dict[str, Callable[[], torch.optim.Optimizer]]:
    """Factories, so each peak-memory measurement holds one optimizer's state only."""
    fused = next(model.parameters()).is_cuda

    def groups(g: int) -> list[dict]:
        return galore_param_groups(model, rank=rank, update_proj_gap=g, scale=0.25)

    def subspace(g: int, kind: str) -> list[dict]:
        chosen = groups(g)
        chosen[0]["subspace"] = kind
        return chosen

    methods = {
        "AdamW (fused)" if fused else "AdamW": lambda: torch.optim.AdamW(
            model.parameters(), lr=lr, eps=1e-6, fused=fused
        )
    }
    for kind in SUBSPACES:
        methods[f"GaLore ({kind})"] = lambda kind=kind: GaLoreAdamW(subspace(gap, kind), lr=lr)
        methods[f"Natural GaLore ({kind})"] = lambda kind=kind: NaturalGaLoreAdamW(subspace(gap, kind), lr=lr)
    for kind in SUBSPACES:
        methods[f"refresh ({kind})"] = lambda kind=kind: GaLoreAdamW(subspace(1, kind), lr=lr)
    return methods


def energy_ratios(svd: torch.optim.Optimizer, iteration: torch.optim.Optimizer) -> torch.Tensor:
    """Per projected matrix: ‖R‖²/‖G‖² with the iteration's basis over the same with the SVD's (same gradients)."""
    ratios = []
    for p, state in svd.state.items():
        if "side" in state:
            kept = [project(p.grad.float(), s.get("P"), s.get("Q")).pow(2).sum() for s in (state, iteration.state[p])]
            ratios.append(kept[1] / kept[0])
    return torch.stack(ratios).cpu()


def peak_gb(fn, device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    synchronize(device)
    return torch.cuda.max_memory_allocated(device) / 2**30


def bench_size(size: str, args, device: torch.device) -> list[dict]:
    shape, rank = SHAPES[size]
    model, _ = tiny_llama(**shape, max_len=args.block_len, seed=0)
    model = model.to(device).train()
    batch = torch.randint(0, model.config.vocab_size, (args.batch, args.block_len + 1), device=device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()
    loss_fn = compiled_loss(causal_lm_loss, "default") if device.type == "cuda" and args.compile else causal_lm_loss

    def forward_backward() -> None:
        with autocast:
            loss = loss_fn(model, batch)
        loss.backward()

    def train_step(opt: torch.optim.Optimizer):
        def run() -> None:
            forward_backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        return run

    forward_backward()  # compile, cuBLAS warm-up
    grads = {p: p.grad.detach().clone() for p in model.parameters()}
    factories = optimizers(model, rank, args.gap)
    opts = {name: make() for name, make in factories.items()}
    for name, opt in opts.items():  # allocate the states (a first step refreshes; the refresh contenders always do)
        if not name.startswith("refresh") or name == "refresh (iteration)":  # that one's timed refresh is a warm one
            opt.step()
    energy = energy_ratios(opts["GaLore (svd)"], opts["GaLore (iteration)"])
    fwd_bwd = interleaved({"fwd+bwd": forward_backward}, device, rounds=args.rounds, warmup=1)["fwd+bwd"]
    for p, g in grads.items():
        p.grad = g
    plain = {name: opt.step for name, opt in opts.items() if not name.startswith("refresh")}
    steps = interleaved(plain, device, rounds=args.rounds, warmup=1)
    refresh = {  # seconds of one refresh's basis computation, over an ordinary step of the same optimizer
        kind: max(
            interleaved({"refresh": opts[f"refresh ({kind})"].step}, device, rounds=args.refresh_rounds, warmup=0)[
                "refresh"
            ].median_s
            - steps[f"GaLore ({kind})"].median_s,
            0.0,
        )
        for kind in SUBSPACES
    }
    states = {name: optimizer_state_bytes(opt)["total"] for name, opt in opts.items()}
    del opts
    if device.type == "cuda":
        torch.cuda.empty_cache()

    rows, adamw = [], next(iter(plain))
    for name in plain:
        kind = next((k for k in SUBSPACES if name.endswith(f"({k})")), None)
        refresh_s = refresh[kind] if kind else 0.0
        amortised = steps[name].median_s + refresh_s / args.gap
        opt = factories[name]()
        train_step(opt)()  # state allocated (a refresh step for GaLore)
        peak = peak_gb(train_step(opt), device)  # an ordinary step
        for group in opt.param_groups:
            if "rank" in group:
                group["update_proj_gap"] = 1  # the next step refreshes: SVD workspace included
        peak_refresh = peak_gb(train_step(opt), device) if name.startswith("GaLore") else None  # NG: the same
        del opt
        rows.append(
            dict(
                size=size,
                params_m=count_parameters(model) / 1e6,
                rank=rank if name != adamw else None,
                method=name,
                step_ms=1000 * steps[name].median_s,
                spread=steps[name].spread,
                refresh_ms=1000 * refresh_s,
                amortised_ms=1000 * amortised,
                whole_step_ms=1000 * (fwd_bwd.median_s + amortised),
                state_mb=states[name] / 2**20,
                peak_gb=peak,
                peak_refresh_gb=peak_refresh,
            )
        )
    base = rows[0]
    for row in rows:
        row["optimizer_vs_adamw"] = row["amortised_ms"] / base["amortised_ms"]
        row["whole_step_vs_adamw"] = row["whole_step_ms"] / base["whole_step_ms"]
    print(
        f"{size}: forward+backward {1000 * fwd_bwd.median_s:.1f} ms (±{100 * fwd_bwd.spread:.0f}%), "
        f"batch {args.batch}×{args.block_len}; the iteration's basis keeps {energy.median():.4f} (median), "
        f"{energy.min():.4f} (worst) of the energy the SVD's keeps, over {len(energy)} matrices"
    )
    for row in rows:
        row["energy_vs_svd_median"], row["energy_vs_svd_min"] = float(energy.median()), float(energy.min())
    return rows


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny model")
    parser.add_argument(
        "--sizes", nargs="+", default=None, help=f"of {', '.join(SHAPES)}; default 47m 300m (smoke: tiny)"
    )
    parser.add_argument("--batch", type=int, default=None, help="default 16; smoke 2")
    parser.add_argument("--block-len", type=int, default=None, help="default 512; smoke 32")
    parser.add_argument("--gap", type=int, default=200, help="update_proj_gap over which the SVD refresh is amortised")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per optimizer (default 20; smoke 3)")
    parser.add_argument("--refresh-rounds", type=int, default=1, help="timed refresh steps (each runs every SVD)")
    parser.add_argument("--no-compile", dest="compile", action="store_false")
    parser.add_argument(
        "--reference-steps", type=int, default=None, help="galore-torch side by side (default 300; smoke 20; 0: skip)"
    )
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    device = torch.device("cpu") if args.smoke else resolve_device("auto")
    args.sizes = args.sizes or (["tiny"] if args.smoke else ["47m", "300m"])
    args.batch, args.block_len = args.batch or (2 if args.smoke else 16), args.block_len or (32 if args.smoke else 512)
    args.rounds = args.rounds or (3 if args.smoke else 20)
    reference_steps = args.reference_steps if args.reference_steps is not None else (20 if args.smoke else 300)
    print(
        f"device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else 'cpu'}, torch {torch.__version__}"
    )

    rows = []
    for size in args.sizes:
        rows += bench_size(size, args, device)
    header = [
        "size",
        "method",
        "state MB",
        "opt step ms",
        "refresh ms",
        f"amortised ms (gap {args.gap})",
        "vs AdamW",
        "whole step ms",
        "vs AdamW",
        "peak GB",
        "peak GB (refresh)",
    ]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for r in rows:
        cells = [
            r["size"],
            r["method"],
            f"{r['state_mb']:.0f}",
            f"{r['step_ms']:.2f} (±{100 * r['spread']:.0f}%)",
            f"{r['refresh_ms']:.0f}",
            f"{r['amortised_ms']:.2f}",
            f"{r['optimizer_vs_adamw']:.2f}x",
            f"{r['whole_step_ms']:.1f}",
            f"{r['whole_step_vs_adamw']:.2f}x",
            "-" if r["peak_gb"] is None else f"{r['peak_gb']:.2f}",
            "-" if r["peak_refresh_gb"] is None else f"{r['peak_refresh_gb']:.2f}",
        ]
        print("| " + " | ".join(cells) + " |")

    result = {"device": str(device), "rows": rows, "reference": None}
    if reference_steps:
        try:
            table, note = loss_curves(steps=reference_steps, device=device)
            result["reference"] = dict(
                note=note,
                steps=reference_steps,
                max_abs_diff=float(table["abs_diff"].max()),
                final_ours=float(table["ours"].iloc[-1]),
                final_reference=float(table["reference"].iloc[-1]),
            )
            print(
                f"side by side with {note}: {reference_steps} steps, "
                f"max |loss ours − reference| = {table['abs_diff'].max():.2e} "
                f"(final loss {table['ours'].iloc[-1]:.4f} vs {table['reference'].iloc[-1]:.4f})"
            )
        except WorkbenchError as error:
            result["reference"] = dict(note=f"skipped: {error}")
            print(f"side by side with galore-torch skipped: {error}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1, default=str)
    return result


if __name__ == "__main__":
    main()
