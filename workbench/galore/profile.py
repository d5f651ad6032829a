"""Settings of the GaLore notebook: defaults are the full run on one H200; presets override them.

Budget (full, one H200, estimated from the loop's measured 1.09M tokens/s for the 47M LLaMA plus
the SVD refreshes): pretraining 18 runs × 600 steps × 32×256 tokens (3 learning rates per method on
the first seed, 2 more seeds of AdamW, GaLore and Natural GaLore, Natural GaLore with the official
history on 3 seeds), about 4.5 minutes with the one-off compile; fine-tuning 4 arms × 100 steps ×
16×512 tokens of SmolLM2-135M (eager, no compile), about 1.5 minutes. `part` splits the two halves
into separate runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..profiles import Profile

PARTS = ("all", "pretrain", "finetune")


@dataclass(frozen=True)
class GaloreProfile(Profile):
    part: str = "all"  # "pretrain", "finetune" or "all"
    corpus: str = "python-docs"
    # -- pretraining from scratch: GaLore's "60M" shape (d=512, 8 layers) with the SmolLM2 tokenizer
    size: str = "47m"  # a key of workbench.models.MODEL_SIZES
    steps: int = 600
    batch_size: int = 32
    block_len: int = 256  # GaLore's sequence length
    warmup_fraction: float = 0.1  # of the steps, then cosine down to 10% (official scripts)
    seeds: int = 3
    # official scripts: lr 0.01, rank 128, gap 200, scale 0.25 (60M); the lr is swept like AdamW's (it also drives
    # the full-rank tied embedding here), the best on the first seed runs on every seed
    galore_lrs: tuple[float, ...] = (3e-3, 6e-3, 1e-2)
    natural_lrs: tuple[float, ...] = (3e-3, 6e-3, 1e-2)
    rank: int = 128
    update_proj_gap: int = 200
    scale: float = 0.25
    weight_decay: float = 0.0
    adamw_lrs: tuple[float, ...] = (1e-3, 3e-3, 6e-3)  # swept on the first seed; the best runs on every seed
    history: int = 20  # Natural GaLore: s, λ, history cleared on a subspace refresh
    damping: float = 1e-3
    reset_history: bool = True  # True adds the official behaviour (history kept across refreshes) as a fourth arm
    eval_every: int = 50
    eval_windows: int | None = None  # held-out windows of block_len per evaluation (None: all)
    # -- fine-tuning SmolLM2-135M: attention and MLP matrices train, embeddings and norms frozen
    ft_model: str = "smollm2-135m"  # a load_model name, or "tiny" (random tiny LLaMA, for the smoke test)
    ft_steps: int = 100
    ft_batch_size: int = 16
    ft_block_len: int = 512
    ft_lr: float = 5e-5  # AdamW, GaLore and Natural GaLore
    ft_rank: int = 64
    ft_scale: float = 4.0  # GaLore's fine-tuning recipes use scale 4 (GLUE; GaLore issue #15)
    ft_update_proj_gap: int = 200
    lora_lr: float = 5e-4  # LoRA's rank is chosen to match GaLore's optimizer-state bytes
    ft_eval_every: int = 25
    ft_eval_windows: int | None = None
    # -- timing of one optimizer step (interleaved rounds, after a warm-up call)
    timing_rounds: int = 10
    cpu_threads: int | None = None  # torch threads on a CPU while the experiment runs (None: unchanged)
    # -- side by side with galore-torch's GaLoreAdamW on a tiny LLaMA (skipped if it is not installed)
    reference_steps: int = 300


GaloreProfile.presets = {
    # CPU, about a minute: tiny random LLaMAs, every code path (sweep, seeds, fine-tuning with LoRA).
    "smoke": dict(
        size="tiny",
        steps=8,
        batch_size=2,
        block_len=32,
        seeds=2,
        adamw_lrs=(1e-3, 3e-3),  # the sweep's code path, two values; one for the GaLore family
        galore_lrs=(1e-2,),
        natural_lrs=(1e-2,),
        rank=8,
        update_proj_gap=3,
        history=3,
        eval_every=4,
        eval_windows=4,
        ft_model="tiny",
        ft_steps=4,
        ft_batch_size=2,
        ft_block_len=32,
        ft_rank=8,
        ft_update_proj_gap=2,
        ft_eval_every=2,
        ft_eval_windows=4,
        timing_rounds=1,
        reference_steps=10,
        cpu_threads=1,  # tiny ops gain nothing from threads and lose a lot on a busy machine
    ),
    "full": {},
}
