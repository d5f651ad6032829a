"""The GaLore experiment: AdamW, GaLore and Natural GaLore (and LoRA) at equal steps and tokens.

Over 400 lines because pretraining and fine-tuning share the optimizer factory, the evaluation and the
run bookkeeping; each part is one function.

Part "pretrain": a LLaMA of GaLore's "60M" shape (`MODEL_SIZES["47m"]`: d=512, 8 layers, SmolLM2's
49k tokenizer) trained from scratch per seed with identical initial weights and batch order per
seed; each method's learning rate is swept (3 values) on the first seed and the best one runs on
every seed; GaLore and Natural GaLore otherwise use the official scripts' settings (rank 128, gap 200,
scale 0.25); Natural GaLore runs twice, with its history cleared on a subspace refresh and kept
across refreshes as the official code does. Part "finetune": SmolLM2-135M continued on the corpus
with its attention and MLP matrices trainable (embeddings and norms frozen in every arm), by AdamW,
GaLore, Natural GaLore and LoRA whose rank is chosen so its adapters plus their Adam moments take
GaLore's optimizer-state bytes.

Per run: held-out loss (mean next-token NLL) along training, training time without evaluation,
optimizer-state bytes by kind, epochs over the training split. Per part: one optimizer step of
each method timed in interleaved rounds on the trained model (GaLore's SVD refresh amortised over
the gap). Every run is a run of kind "galore" in the store, one sweep per experiment; the
reference run is AdamW at its best learning rate, first seed.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import cards
from ..data import batches, check_epochs, token_splits
from ..deadline import ArmClock
from ..errors import WorkbenchError
from ..evaluate import perplexity
from ..measure import interleaved, synchronize
from ..models import MODEL_SIZES, load_model, load_tokenizer, resolve_device, tiny_llama
from ..runs import Run, RunKind, start_run
from ..train import TrainConfig, causal_lm_loss, should_compile, train
from .galore import GaLoreAdamW, optimizer_state_bytes
from .groups import galore_param_groups, projected_weights
from .natural import NaturalGaLoreAdamW
from .profile import PARTS, GaloreProfile
from .reference import loss_curves

KIND = RunKind(
    "galore",
    headline="val_loss",
    goal="min",
    description="GaLore / Natural GaLore against AdamW (and LoRA): held-out loss at a fixed token budget",
)
METHODS = {
    "adamw": "AdamW",
    "galore": "GaLore",
    "natural": "Natural GaLore",
    "natural_official": "Natural GaLore (official history)",
    "lora": "LoRA",
}
LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
OnEval = Callable[[dict], None]  # called with {part, label, method, seed, step, val_loss, time_s}


@dataclass
class GaloreResults:
    """`table`: one row per run; `curves`: held-out loss along training; `timing`: optimizer steps."""

    table: pd.DataFrame
    curves: pd.DataFrame
    timing: pd.DataFrame
    reference: pd.DataFrame | None  # our GaLore vs galore-torch, loss per step (None: not installed)
    reference_note: str
    sweep: str


class _Clock:
    """Training time with evaluation left out: what a user waits for the optimizer and the model."""

    def __init__(self, device: torch.device):
        self.device, self.elapsed, self.mark = device, 0.0, time.perf_counter()

    def pause(self) -> float:
        synchronize(self.device)
        self.elapsed += time.perf_counter() - self.mark
        return self.elapsed

    def resume(self) -> None:
        self.mark = time.perf_counter()


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def _val_loss(model, tokens: torch.Tensor, context_len: int, windows: int | None, device: torch.device) -> float:
    with _autocast(device):
        return perplexity(model, tokens, context_len=context_len, batch_size=16, max_windows=windows, progress=False)[
            "nll"
        ]


def _eval_steps(steps: int, every: int) -> list[int]:
    return sorted(set(range(every, steps + 1, every)) | {steps})


def _optimizer(
    method: str, params, lr: float, profile: GaloreProfile, rank: int, scale: float, gap: int, pretrain: bool
):
    """The optimizer of one arm over `params` (a model for GaLore's grouping, or a parameter list)."""
    fused = all(p.is_cuda for p in params.parameters() if p.requires_grad)
    if method in ("adamw", "lora"):
        trainable = [p for p in params.parameters() if p.requires_grad]
        return torch.optim.AdamW(
            trainable, lr=lr, betas=(0.9, 0.999), eps=1e-6, weight_decay=profile.weight_decay, fused=fused
        )
    groups = galore_param_groups(params, rank=rank, update_proj_gap=gap, scale=scale, train_others=pretrain)
    if method == "galore":
        return GaLoreAdamW(groups, lr=lr, weight_decay=profile.weight_decay)
    return NaturalGaLoreAdamW(
        groups,
        lr=lr,
        weight_decay=profile.weight_decay,
        history=profile.history,
        damping=profile.damping,
        reset_history=profile.reset_history and method == "natural",  # the official code keeps the history
    )


@dataclass
class _Part:
    """What the arms of one part share."""

    name: str
    train_tokens: torch.Tensor
    val_tokens: torch.Tensor
    steps: int
    batch_size: int
    block_len: int
    eval_every: int
    eval_windows: int | None
    clip_norm: float | None
    compile: bool | None


def _train_arm(
    model,
    part: _Part,
    method: str,
    lr: float,
    seed: int,
    optimizer,
    profile: GaloreProfile,
    sweep: str,
    on_eval: OnEval | None,
    progress: bool,
    extra_state_bytes: int = 0,
    extra: dict | None = None,
) -> tuple[dict, list[dict], Run]:
    """Train one arm through `workbench.train.train`; return its table row, curve and run."""
    device = next(model.parameters()).device
    label = f"{METHODS[method]} lr={lr:g}"
    config = TrainConfig(
        steps=part.steps,
        lr=lr,
        warmup_steps=max(1, int(profile.warmup_fraction * part.steps)),
        min_lr_ratio=0.1,
        clip_norm=part.clip_norm,
        log_every=max(1, min(10, part.eval_every)),
        eval_every=part.eval_every,
        checkpoint=False,
        compile=part.compile,
    )
    pending, curve, clock = _eval_steps(part.steps, part.eval_every), [], _Clock(device)

    def evaluate(trained) -> dict[str, float]:
        elapsed = clock.pause()
        loss = _val_loss(trained, part.val_tokens, part.block_len, part.eval_windows, device)
        point = dict(
            part=part.name,
            label=label,
            method=METHODS[method],
            seed=seed,
            step=pending.pop(0),
            val_loss=loss,
            time_s=elapsed,
        )
        curve.append(point)
        if on_eval is not None:
            on_eval(point)
        clock.resume()
        return {"val_loss": loss, "train_time_s": elapsed}

    params = profile.as_dict() | dict(part=part.name, method=method, lr=lr, seed=seed) | (extra or {})
    with start_run(KIND, f"{part.name}/{label} seed={seed}", params=params, sweep=sweep) as run:
        stream = batches(part.train_tokens, part.batch_size, part.block_len + 1, device=device, seed=seed)
        clock.resume()
        train(model, stream, config, optimizer=optimizer, run=run, evaluate=evaluate, progress=progress)
        tokens = part.steps * part.batch_size * part.block_len
        quarter = min(curve, key=lambda p: abs(p["step"] - part.steps / 4))
        best = min(curve, key=lambda p: p["val_loss"])
        state = optimizer_state_bytes(optimizer)
        row = dict(
            part=part.name,
            method=METHODS[method],
            label=label,
            lr=lr,
            seed=seed,
            val_loss=curve[-1]["val_loss"],
            val_loss_25=quarter["val_loss"],
            step_25=quarter["step"],
            best_val_loss=best["val_loss"],
            best_step=best["step"],
            state_mb=(state["total"] + extra_state_bytes) / 2**20,
            moments_mb=state["moments"] / 2**20,
            projectors_mb=state["projectors"] / 2**20,
            history_mb=state["history"] / 2**20,
            adapters_mb=extra_state_bytes / 2**20,
            train_s=curve[-1]["time_s"],
            step_ms=1000 * curve[-1]["time_s"] / part.steps,
            tokens=tokens,
            epochs=tokens / len(part.train_tokens),
            run_id=run.id,
        ) | (extra or {})
        run.update_summary(**{k: v for k, v in row.items() if k not in ("part", "method", "label")})
        cards.write_card(run, model, idea="galore", arm=f"{part.name}/{label}", tokenizer=load_tokenizer(),
                         profile=profile.name, training_tokens=tokens, training_context=part.block_len,
                         corpus=profile.corpus)  # fmt: skip
    return row, curve, run


def _time_steps(
    optimizers: dict[str, torch.optim.Optimizer],
    refresh: dict[str, torch.optim.Optimizer],
    gap: int,
    device: torch.device,
    rounds: int,
    part: str,
) -> list[dict]:
    """Median step of each optimizer on fixed random gradients, interleaved; GaLore's SVD refresh
    (timed as an optimizer with gap 1) is amortised over `gap` for GaLore and Natural GaLore alike."""
    generator = torch.Generator(device=device).manual_seed(0)
    for optimizer in [*optimizers.values(), *refresh.values()]:
        for group in optimizer.param_groups:
            for p in group["params"]:
                p.grad = torch.randn(p.shape, device=device, generator=generator, dtype=p.dtype)
    timed = interleaved({name: opt.step for name, opt in optimizers.items()}, device, rounds=rounds, warmup=1)
    svd = interleaved({name: opt.step for name, opt in refresh.items()}, device, rounds=max(1, rounds // 5), warmup=0)
    rows = []
    for name, timing in timed.items():
        refresh_s = svd["GaLore"].median_s - timed["GaLore"].median_s if name in ("GaLore", "Natural GaLore") else 0.0
        rows.append(
            dict(
                part=part,
                method=name,
                step_ms=1000 * timing.median_s,
                spread=timing.spread,
                amortised_ms=1000 * (timing.median_s + max(refresh_s, 0.0) / gap),
                refresh_ms=1000 * refresh_s,
            )
        )
    return rows


def _pretrain(
    profile: GaloreProfile, device, sweep: str, on_eval, progress, clock: ArmClock
) -> tuple[list, list, list, Run | None]:
    if profile.size not in MODEL_SIZES:
        raise WorkbenchError(f"unknown size {profile.size!r}: use one of {', '.join(MODEL_SIZES)}")
    shape = MODEL_SIZES[profile.size]
    model, tokenizer = tiny_llama(**shape, max_len=profile.block_len, seed=0)
    splits = token_splits(profile.corpus, tokenizer)
    check_epochs(profile, profile.train_tokens_per_arm, splits.n_train)
    model = model.to(device)
    train_tokens, val_tokens = splits.train, splits.val
    part = _Part(
        "pretrain",
        train_tokens,
        val_tokens,
        profile.steps,
        profile.batch_size,
        profile.block_len,
        profile.eval_every,
        profile.eval_windows,
        clip_norm=None,
        compile=None,
    )

    initial: dict[int, dict] = {}  # per seed, built once

    def start(seed: int) -> None:  # same model object for every arm, so the compiled step is reused
        if seed not in initial:
            initial[seed] = tiny_llama(**shape, max_len=profile.block_len, seed=seed)[0].state_dict()
        model.load_state_dict(initial[seed])

    if should_compile(model, TrainConfig(), causal_lm_loss, device):  # compile once, outside every arm's clock
        start(0)
        warm = TrainConfig(steps=2, warmup_steps=1, checkpoint=False, clip_norm=None)
        train(
            model, batches(train_tokens, profile.batch_size, profile.block_len + 1, device=device), warm, progress=False
        )

    rows, curves, runs = [], [], {}

    def arm(method: str, lr: float, seed: int) -> dict | None:
        if not clock.admit(f"pretrain {METHODS[method]} lr={lr:g} seed={seed}", f"pretrain {method}"):
            return None
        with clock.timing(f"pretrain {method}"):
            return trained(method, lr, seed)

    def trained(method: str, lr: float, seed: int) -> dict:
        start(seed)
        optimizer = _optimizer(
            method, model, lr, profile, profile.rank, profile.scale, profile.update_proj_gap, pretrain=True
        )
        row, curve, run = _train_arm(model, part, method, lr, seed, optimizer, profile, sweep, on_eval, progress)
        rows.append(row)
        curves.extend(curve)
        runs[(method, lr, seed)] = run
        return row

    best = {}  # per method, its learning rate swept on the first seed (final held-out loss); the best on every seed
    for method, lrs in (("adamw", profile.adamw_lrs), ("galore", profile.galore_lrs), ("natural", profile.natural_lrs)):
        swept = [row for row in (arm(method, lr, 0) for lr in lrs) if row is not None]  # a time limit may cut some
        if not swept:
            continue
        best[method] = min(swept, key=lambda r: r["val_loss"])["lr"]
        for row in swept:
            row["swept"] = row["lr"] != best[method]
    methods = ["adamw", "galore", "natural"] + (["natural_official"] if profile.reset_history else [])
    if "natural" in best:
        best["natural_official"] = best["natural"]  # the same method and lr; only the history on refresh differs
    for seed in range(profile.seeds):
        for method in methods:
            if seed == 0 and method != "natural_official":
                continue  # trained in the sweep
            if method not in best:  # no learning rate of its sweep trained within the time limit
                clock.skipped.append(f"pretrain {METHODS[method]} seed={seed}")
            elif row := arm(method, best[method], seed):
                row["swept"] = False
    reference = runs.get(("adamw", best.get("adamw"), 0))
    if reference is not None:
        reference.mark_reference()
    if "galore" not in best:  # the step timing is relative to GaLore's refresh
        return rows, curves, [], reference
    optimizers = {
        METHODS[m]: _optimizer(m, model, best[m], profile, profile.rank, profile.scale, profile.update_proj_gap, True)
        for m in ("adamw", "galore", "natural")
        if m in best
    }
    refresh = {"GaLore": _optimizer("galore", model, best["galore"], profile, profile.rank, profile.scale, 1, True)}
    timing = _time_steps(optimizers, refresh, profile.update_proj_gap, device, profile.timing_rounds, "pretrain")
    return rows, curves, timing, reference


def _finetune_model(profile: GaloreProfile, device: torch.device):
    if profile.ft_model == "tiny":
        model, tokenizer = tiny_llama(**MODEL_SIZES["tiny"], max_len=profile.ft_block_len, seed=0)
    else:
        model, tokenizer = load_model(profile.ft_model, dtype=torch.float32, device=device)
    model = model.to(device)
    trainable = {id(p) for p in projected_weights(model)}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)  # the same weights train in every arm: attention and MLP matrices
    return model, tokenizer


def lora_rank(model: torch.nn.Module, rank: int) -> int:
    """LoRA rank whose adapters (m+n)·r' plus their two Adam moments equal GaLore's state at `rank`:
    3·Σ(m+n)·r' = Σ (2·max(m,n) + min(m,n))·r (one-sided projection, `proj_type="std"`)."""
    shapes = [tuple(p.shape) for p in projected_weights(model)]
    galore = sum((2 * max(s) + min(s)) * min(rank, min(s)) for s in shapes)
    return max(1, round(galore / sum(3 * (m + n) for m, n in shapes)))


def _finetune(
    profile: GaloreProfile, device, sweep: str, on_eval, progress, clock: ArmClock
) -> tuple[list, list, list]:
    try:
        from peft import LoraConfig, get_peft_model  # imported here: only this part needs it
    except ImportError as error:
        LoraConfig = None  # noqa: N806
        warnings.warn(f"LoRA arm skipped: peft cannot be imported ({error}); pip install peft", stacklevel=2)

    methods = ("adamw", "galore", "natural", "lora") if LoraConfig else ("adamw", "galore", "natural")
    if not clock.fits("finetune"):  # not even one arm: not worth loading the model
        clock.skipped += [f"finetune {METHODS[method]}" for method in methods]
        return [], [], []
    model, tokenizer = _finetune_model(profile, device)
    splits = token_splits(profile.corpus, tokenizer)
    check_epochs(profile, profile.ft_tokens_per_arm, splits.n_train)
    train_tokens, val_tokens = splits.train, splits.val
    part = _Part(
        "finetune", train_tokens, val_tokens, profile.ft_steps, profile.ft_batch_size, profile.ft_block_len,
        profile.ft_eval_every, profile.ft_eval_windows, clip_norm=1.0, compile=False,
    )  # fmt: skip
    before = _val_loss(model, val_tokens, profile.ft_block_len, profile.ft_eval_windows, device)
    r_lora = lora_rank(model, profile.ft_rank)
    rows, curves, optimizers, galore_model = [], [], {}, None
    for method in methods:
        if not clock.admit(f"finetune {METHODS[method]}", "finetune"):
            continue
        if method != "adamw":
            model, _ = _finetune_model(profile, device)  # fresh weights
        lr, extra_bytes, extra = profile.ft_lr, 0, dict(val_loss_before=before)
        if method == "lora":
            config = LoraConfig(r=r_lora, lora_alpha=2 * r_lora, lora_dropout=0.0, target_modules=LORA_TARGETS)
            model = get_peft_model(model, config).base_model.model  # the LLaMA with LoRA layers: our loss runs on it
            extra_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
            lr, extra = profile.lora_lr, extra | dict(lora_rank=r_lora)
        gap = profile.ft_update_proj_gap
        optimizer = _optimizer(method, model, lr, profile, profile.ft_rank, profile.ft_scale, gap, pretrain=False)
        with clock.timing("finetune"):
            row, curve, run = _train_arm(
                model, part, method, lr, 0, optimizer, profile, sweep, on_eval, progress, extra_bytes, extra
            )
        row["swept"] = False
        if method == "adamw":
            run.mark_reference()
        rows.append(row)
        curves.extend(curve)
        optimizers[METHODS[method]] = optimizer
        galore_model = model if method == "galore" else galore_model
    if galore_model is None:  # not trained within the time limit: the step timing is relative to GaLore's refresh
        return rows, curves, []
    every_step = _optimizer("galore", galore_model, profile.ft_lr, profile, profile.ft_rank, profile.ft_scale, 1, False)
    timing = _time_steps(
        optimizers, {"GaLore": every_step}, profile.ft_update_proj_gap, device, profile.timing_rounds, "finetune"
    )
    return rows, curves, timing


def run_experiment(
    profile: GaloreProfile, on_eval: OnEval | None = None, device: str | None = None, progress: bool = True
) -> GaloreResults:
    """Train every arm of `profile.part`, time the optimizers, compare with galore-torch; draws nothing.

    Under a time limit (`workbench.deadline`) an arm that would end past it is not started (estimate: the longest
    arm of its method and part); the order stays: each method's learning-rate sweep on the first seed, then
    the seeds one after another (every method in a seed), so a cut run loses whole later seeds first and
    the paired verdicts keep the seeds that trained. The skipped arms are in `table.attrs["not_trained"]`."""
    if profile.part not in PARTS:
        raise WorkbenchError(f"unknown part {profile.part!r}: use one of {', '.join(PARTS)}")
    device = resolve_device(device or "auto")
    sweep = f"galore-{profile.name}-{profile.part}-{time.strftime('%Y%m%d-%H%M%S')}"
    threads = torch.get_num_threads()
    if device.type == "cpu" and profile.cpu_threads:
        torch.set_num_threads(profile.cpu_threads)
    clock = ArmClock()
    try:
        rows, curves, timing = [], [], []
        reference, note = None, "not run (finetune part only)"
        parts = ("pretrain", "finetune") if profile.part == "all" else (profile.part,)
        for name in tqdm(parts, desc="parts", disable=not progress):
            if name == "pretrain":
                part_rows, part_curves, part_timing, _ = _pretrain(profile, device, sweep, on_eval, progress, clock)
                try:
                    if clock.fits("reference"):
                        reference, note = loss_curves(steps=profile.reference_steps, device=device)
                    else:
                        note = "not run: it would end past the time limit"
                except WorkbenchError as error:
                    note = str(error)
            else:
                part_rows, part_curves, part_timing = _finetune(profile, device, sweep, on_eval, progress, clock)
            rows += part_rows
            curves += part_curves
            timing += part_timing
    finally:
        torch.set_num_threads(threads)
    table = pd.DataFrame(rows)
    table.attrs["not_trained"] = clock.announce()
    return GaloreResults(table, pd.DataFrame(curves), pd.DataFrame(timing), reference, note, sweep)
