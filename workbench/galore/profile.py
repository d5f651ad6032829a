"""Settings of the GaLore notebook: defaults are the full run on one H200; presets override them.

Budget (full, one H200): pretraining 18 runs × 2,500 steps × 32×256 tokens = 20.5M tokens of
python-code per run, about 0.2 epoch (3 learning rates per method on the first seed, 2 more seeds of
AdamW, GaLore and Natural GaLore, Natural GaLore with the official history on 3 seeds): about 15
minutes from the measured steps (8.5 / 15.6 / 28.6 ms for AdamW / GaLore / Natural GaLore), so split
over jobs (`part`, `seeds`); fine-tuning 4 arms × 100 steps ×
16×512 tokens of SmolLM2-135M (eager, no compile), about 1.5 minutes. `part` splits the two halves
into separate runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..profiles import Profile, setting

PARTS = ("all", "pretrain", "finetune")


@dataclass(frozen=True)
class GaloreProfile(Profile):
    part: str = setting("all", choices=PARTS)  # "pretrain", "finetune" or "all"
    corpus: str = "python-code"  # ~100M tokens: a full run never repeats its data (smoke: python-docs)
    allow_repeats: bool = False  # a full profile refuses more than one epoch of its corpus unless set
    # -- pretraining from scratch: GaLore's "60M" shape (d=512, 8 layers) with the SmolLM2 tokenizer
    size: str = "47m"  # a key of workbench.models.MODEL_SIZES
    steps: int = setting(2500, low=1)
    batch_size: int = setting(32, low=1)
    block_len: int = setting(256, low=2)  # GaLore's sequence length
    warmup_fraction: float = setting(0.1, low=0, high=1)  # of the steps, then cosine down to 10% (official scripts)
    seeds: int = setting(3, low=1)
    # official scripts: lr 0.01, rank 128, gap 200, scale 0.25 (60M); the lr is swept like AdamW's (it also drives
    # the full-rank tied embedding here), the best on the first seed runs on every seed
    galore_lrs: tuple[float, ...] = setting((3e-3, 6e-3, 1e-2), above=0)
    natural_lrs: tuple[float, ...] = setting((3e-3, 6e-3, 1e-2), above=0)
    rank: int = setting(128, low=1)
    update_proj_gap: int = setting(200, low=1)
    scale: float = setting(0.25, above=0)
    weight_decay: float = setting(0.0, low=0)
    # swept on the first seed; the best runs on every seed
    adamw_lrs: tuple[float, ...] = setting((1e-3, 3e-3, 6e-3), above=0)
    history: int = setting(20, low=1)  # Natural GaLore: s, λ, history cleared on a subspace refresh
    damping: float = setting(1e-3, low=0)
    reset_history: bool = True  # True adds the official behaviour (history kept across refreshes) as a fourth arm
    eval_every: int = setting(100, low=1)
    eval_windows: int | None = setting(512, low=1)  # held-out windows of block_len per evaluation (None: all)
    # -- fine-tuning SmolLM2-135M: attention and MLP matrices train, embeddings and norms frozen
    ft_model: str = "smollm2-135m"  # a load_model name, or "tiny" (random tiny LLaMA, for the smoke test)
    ft_steps: int = setting(100, low=1)
    ft_batch_size: int = setting(16, low=1)
    ft_block_len: int = setting(512, low=2)
    ft_lr: float = setting(5e-5, above=0)  # AdamW, GaLore and Natural GaLore
    ft_rank: int = setting(64, low=1)
    ft_scale: float = setting(4.0, above=0)  # GaLore's fine-tuning recipes use scale 4 (GLUE; GaLore issue #15)
    ft_update_proj_gap: int = setting(200, low=1)
    lora_lr: float = setting(5e-4, above=0)  # LoRA's rank is chosen to match GaLore's optimizer-state bytes
    ft_eval_every: int = setting(25, low=1)
    ft_eval_windows: int | None = setting(256, low=1)
    # -- timing of one optimizer step (interleaved rounds, after a warm-up call)
    timing_rounds: int = setting(10, low=1)
    cpu_threads: int | None = setting(None, low=1)  # torch threads on a CPU while the experiment runs (None: unchanged)
    # -- side by side with galore-torch's GaLoreAdamW on a tiny LLaMA (skipped if it is not installed)
    reference_steps: int = setting(300, low=1)

    @property
    def train_tokens_per_arm(self) -> int:
        """The fixed token budget of every pretraining run: steps × batch × length."""
        return self.steps * self.batch_size * self.block_len

    @property
    def ft_tokens_per_arm(self) -> int:
        """The fine-tuning arms' budget: ft_steps × ft_batch_size × ft_block_len."""
        return self.ft_steps * self.ft_batch_size * self.ft_block_len

    def check(self) -> None:
        from ..models import MODEL_SIZES, known_shape

        self.check_corpus()
        if self.size not in MODEL_SIZES:
            raise self.refuse("size", f"one of {', '.join(map(repr, MODEL_SIZES))} (workbench.models.MODEL_SIZES)")
        for key, model in (("rank", self.size), ("ft_rank", self.ft_model)):
            shape = known_shape(model)
            if shape and getattr(self, key) > shape["d_model"]:
                raise self.refuse(key, f"<= {shape['d_model']} (the {model} model's width)")


GaloreProfile.presets = {
    # CPU, about a minute: tiny random LLaMAs, every code path (sweep, seeds, fine-tuning with LoRA).
    "smoke": dict(
        corpus="python-docs",
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
