"""Settings of the Relaxed Recursive Transformers experiment; defaults are the full (one H200) run.

Budget of the full profile (every arm: `steps` × `batch_size` × `block_len` = 1,250 × 16 × 512 =
10.24M tokens of python-code, about 0.1 epoch). Measured on one H200 (2026-11-30) at 80 steps on
python-docs: `arms="no_lora"` ran in 142 s and `arms="lora"` (with the early-exit post-training and
the depth-wise batching measurement) in 165 s, about 65k tokens/s per uptrained arm; at 1,250 steps
an arm takes about 2.6 minutes, so the full profile is split over jobs (`arms`, `loops`, `inits`).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..profiles import Profile, setting
from .convert import INITS

ARM_SETS = ("all", "no_lora", "lora")


@dataclass(frozen=True)
class RecursiveProfile(Profile):
    model: str = "smollm2-135m"  # "tiny": a random `tiny_llama` of `tiny_layers`, pretrained here for `teacher_steps`
    corpus: str = "python-code"  # ~100M tokens: a full run never repeats its data (smoke: python-docs)
    allow_repeats: bool = False  # a full profile refuses more than one epoch of its corpus unless set
    # "no_lora": B ∈ loops × inits + baselines; "lora": Average + LoRA ranks (B = loops[0]) + early exit
    arms: str = setting("all", choices=ARM_SETS)
    loops: tuple[int, ...] = setting((2, 3), low=1)  # B; each must divide the depth
    inits: tuple[str, ...] = setting(("stepwise", "average", "lower"), choices=INITS)
    # SVD-initialised LoRA ranks on the Average model (all seven linears)
    ranks: tuple[int, ...] = setting((8, 32, 128), low=1)
    zero_rank: int = setting(128, low=1)  # the zero-initialised LoRA arm (the paper compares at its largest rank)
    tie_norms: bool = True  # the paper ties RMSNorm weights too; False keeps them per depth
    steps: int = setting(1250, low=1)
    batch_size: int = setting(16, low=1)
    block_len: int = setting(512, low=2)
    # uptraining (all parameters); the paper uses 2e-4 for 15B tokens, short runs want more
    lr: float = setting(5e-4, above=0)
    scratch_lr: float = setting(1e-3, above=0)  # the reduced-depth model trained from scratch
    warmup_steps: int = setting(20, low=0)
    kd_alpha: float = setting(0.5, low=0)  # CE weight; kd_beta: forward-KL weight (1:1, the paper's KD uptraining)
    kd_beta: float = setting(0.5, low=0)
    seed: int = setting(0, low=0)
    # every arm trained with this many data orders (seed, seed+1, ...); claims are judged on differences
    # paired by seed, and a claim needs >= 2 (each seed adds one run of every arm)
    seeds: int = setting(2, low=1)
    # initialisations relaxed with SVD-LoRA at every rank of `ranks` (the paper: Average rises with rank,
    # Stepwise is U-shaped)
    lora_inits: tuple[str, ...] = setting(("average", "stepwise"), choices=INITS)
    # also train the two baselines with cross-entropy alone (the old protocol), reported beside, never judged
    ce_baselines: bool = False
    zeroshot_items: int = setting(200, low=1)  # items of each zero-shot task (workbench.zeroshot), held-out text
    zeroshot_context: int = setting(128, low=8)  # context tokens of a zero-shot item
    cdb_draws: int = setting(3, low=1)  # request queues drawn for the batching verdicts (their spread)
    eval_every: int = setting(40, low=1)
    # held-out windows of block_len for the final perplexity (None: all)
    eval_windows: int | None = setting(None, low=1)
    curve_windows: int = setting(8, low=1)  # windows for the live curves
    exit_steps: int = setting(100, low=1)  # early-exit post-training of the Stepwise B=loops[0] model
    exit_weight: float = setting(0.1, low=0)  # c, the paper's aggressive coefficient on the intermediate exits
    thresholds: tuple[float, ...] = setting((0.5, 0.7, 0.9), low=0, high=1)  # confidence-threshold exits
    cdb_slots: int = setting(32, low=1)
    cdb_requests: int = setting(512, low=1)
    cdb_gen_len: int = setting(256, low=1)
    cost_batch_sizes: tuple[int, ...] = setting((1, 2, 4, 8, 16, 32), low=1)
    cost_context: int = setting(512, low=1)
    teacher_steps: int = setting(0, low=0)
    tiny_layers: int = setting(6, low=1)
    # tiny model only: keep the most frequent `vocab` - 1 tokens (0: the tokenizer's vocabulary)
    vocab: int = setting(0, low=0)

    @property
    def train_tokens_per_arm(self) -> int:
        """The fixed token budget of every trained arm: steps × batch × length."""
        return self.steps * self.batch_size * self.block_len

    def check(self) -> None:
        from ..models import MODEL_SIZES, known_shape

        self.check_corpus()
        tiny = {**MODEL_SIZES["tiny"], "n_layers": self.tiny_layers}
        shape = tiny if self.model == "tiny" else known_shape(self.model)
        if shape is None:
            return  # another model: its depth and width are known once it loads
        depth, width = shape["n_layers"], shape["d_model"]
        bad = [b for b in self.loops if depth % b]
        if bad:
            raise self.refuse("loops", f"divisors of the depth ({depth} layers cannot be looped {bad[0]} times)")
        for key, largest in (("ranks", max(self.ranks)), ("zero_rank", self.zero_rank)):
            if largest > width:
                raise self.refuse(key, f"<= {width} (the model's width)")


RecursiveProfile.presets = {
    "smoke": dict(
        model="tiny",
        corpus="python-docs",
        vocab=2048,
        teacher_steps=60,
        steps=8,
        batch_size=4,
        block_len=64,
        warmup_steps=2,
        ranks=(4, 16),
        zero_rank=16,
        seeds=1,
        zeroshot_items=24,
        zeroshot_context=32,
        cdb_draws=2,
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
