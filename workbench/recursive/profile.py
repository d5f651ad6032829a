"""Settings of the Relaxed Recursive Transformers experiment; defaults are the full (one H200) run.

Budget of the full profile (every arm: `steps` × `batch_size` × `block_len` = 80 × 16 × 512 =
655k tokens, 1.4 epochs of python-docs' training split). Measured on one H200 (2026-11-30):
`arms="no_lora"` ran in 142 s and `arms="lora"` (with the early-exit post-training and the
depth-wise batching measurement) in 165 s, each with the seed-spread arm and the continued-trained
full model; `arms="all"` at 160 steps did not finish 9 of its 15 arms in 285 s. `steps=160`
doubles every arm's tokens at about twice the time.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..profiles import Profile

ARM_SETS = ("all", "no_lora", "lora")


@dataclass(frozen=True)
class RecursiveProfile(Profile):
    model: str = "smollm2-135m"  # "tiny": a random `tiny_llama` of `tiny_layers`, pretrained here for `teacher_steps`
    corpus: str = "python-docs"
    arms: str = (
        "all"  # "no_lora": B ∈ loops × inits + baselines; "lora": Average + LoRA ranks (B = loops[0]) + early exit
    )
    loops: tuple = (2, 3)  # B; each must divide the depth
    inits: tuple = ("stepwise", "average", "lower")
    ranks: tuple = (8, 32, 128)  # SVD-initialised LoRA ranks on the Average model (all seven linears)
    zero_rank: int = 128  # the zero-initialised LoRA arm (the paper compares at its largest rank)
    tie_norms: bool = True  # the paper ties RMSNorm weights too; False keeps them per depth
    steps: int = 80
    batch_size: int = 16
    block_len: int = 512
    lr: float = 5e-4  # uptraining (all parameters); the paper uses 2e-4 for 15B tokens, short runs want more
    scratch_lr: float = 1e-3  # the reduced-depth model trained from scratch
    warmup_steps: int = 20
    kd_alpha: float = 0.5  # CE weight; kd_beta: forward-KL weight (1:1, the paper's KD uptraining)
    kd_beta: float = 0.5
    seed: int = 0
    spread_seeds: int = 3  # the Stepwise B=loops[0] arm repeated with this many data orders: the seed spread
    eval_every: int = 40
    eval_windows: int | None = None  # held-out windows of block_len for the final perplexity (None: all)
    curve_windows: int = 8  # windows for the live curves
    exit_steps: int = 100  # early-exit post-training of the Stepwise B=loops[0] model
    exit_weight: float = 0.1  # c, the paper's aggressive coefficient on the intermediate exits
    thresholds: tuple = (0.5, 0.7, 0.9)  # confidence-threshold exits
    cdb_slots: int = 32
    cdb_requests: int = 512
    cdb_gen_len: int = 256
    cost_batch_sizes: tuple = (1, 2, 4, 8, 16, 32)
    cost_context: int = 512
    teacher_steps: int = 0
    tiny_layers: int = 6
    vocab: int = 0  # tiny model only: keep the most frequent `vocab` - 1 tokens (0: the tokenizer's vocabulary)


RecursiveProfile.presets = {
    "smoke": dict(
        model="tiny",
        vocab=2048,
        teacher_steps=60,
        steps=8,
        batch_size=4,
        block_len=64,
        warmup_steps=2,
        ranks=(4, 16),
        zero_rank=16,
        spread_seeds=2,
        eval_every=4,
        eval_windows=8,
        curve_windows=2,
        exit_steps=6,
        cdb_slots=4,
        cdb_requests=24,
        cdb_gen_len=16,
        cost_batch_sizes=(1, 2, 4),
        cost_context=64,
        lr=2e-3,
    ),  # fmt: skip
    "full": {},
}
