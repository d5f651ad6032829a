"""Settings of the masked-diffusion notebook: the field defaults are the full (one H200) run.

Compute is fixed per arm in training FLOPs C = 6·N·D with N the *non-embedding* parameters (SMDM's
convention, `pretrain/train_mdm.py`: scaling laws are read against the body, not the 49k-word
embedding table, which is 60-85% of these small models; D: tokens trained on), so each arm trains
steps = C / (6·N·batch·block_len); the total count and 6·N_total·D are recorded beside.
`seeds` are paired: one seed gives both arms the same initial-weight seed and the same batches, and
a verdict needs at least two of them. `part` picks the experiments
(the full profile split over several GPU runs, if needed): "scaling", "sampling" (quality and speed
against steps, and guidance), "reversal", or "all".
"""

from __future__ import annotations

from dataclasses import dataclass

from ..profiles import Profile, setting
from .samplers import ALGORITHMS

PARTS = ("all", "scaling", "sampling", "reversal")

# LLaMA shapes (multi-head attention, as SMDM's configs); non-embedding / total parameters (49,152-word tied embedding)
SIZES = {
    "t1": {"n_layers": 1, "d_model": 32, "n_heads": 2, "n_kv_heads": 2, "d_ff": 64},  # 0.01M / 1.6M: CPU smoke
    "t2": {"n_layers": 2, "d_model": 48, "n_heads": 2, "n_kv_heads": 2, "d_ff": 128},  # 0.06M / 2.4M: CPU smoke
    "t3": {"n_layers": 2, "d_model": 64, "n_heads": 2, "n_kv_heads": 2, "d_ff": 192},  # 0.11M / 3.2M: CPU smoke
    "s": {"n_layers": 4, "d_model": 128, "n_heads": 4, "n_kv_heads": 4, "d_ff": 512},  # 1.05M / 7.3M
    "m": {"n_layers": 6, "d_model": 192, "n_heads": 6, "n_kv_heads": 6, "d_ff": 768},  # 3.5M / 13.0M
    "l": {
        "n_layers": 8,
        "d_model": 256,
        "n_heads": 4,
        "n_kv_heads": 4,
        "d_ff": 1024,
    },  # 8.4M / 21.0M (SMDM's 6M config: 6 layers of d=256)
}


def non_embedding(size: str) -> int:
    """Non-embedding parameters of a SIZES shape (attention, SwiGLU MLP, RMSNorms), as the built model counts them."""
    shape = SIZES[size]
    d, kv_width = shape["d_model"], shape["d_model"] // shape["n_heads"] * shape["n_kv_heads"]
    layer = 2 * d * d + 2 * d * kv_width + 3 * d * shape["d_ff"] + 2 * d
    return shape["n_layers"] * layer + d


@dataclass(frozen=True)
class DiffusionProfile(Profile):
    part: str = setting("all", choices=PARTS)
    corpus: str = "python-code"  # ~100M tokens: a full run never repeats its data (smoke: python-docs)
    allow_repeats: bool = False  # a full profile refuses more than one epoch of its corpus unless set
    # mini scaling: every size × budget, for both arms, on the same batches
    sizes: tuple[str, ...] = setting(("s", "m", "l"), choices=SIZES)
    # non-embedding training FLOPs per arm, spanning 16x (SMDM's gap); s at 4e14 reads 61M tokens (< 1 epoch)
    budgets: tuple[float, ...] = setting((2.5e13, 1e14, 4e14), above=0)
    batch_size: int = setting(64, low=1)
    block_len: int = setting(128, low=2)
    lr: float = setting(1e-3, above=0)
    warmup_fraction: float = setting(0.05, low=0, high=1)
    weight_decay: float = setting(0.1, low=0)
    # stochastic sequence length (SMDM: 0.01); 0 keeps one compiled shape
    ssl_ratio: float = setting(0.0, low=0, high=1)
    compile: bool | None = None  # None: compiled on a GPU (both losses), eager on a CPU
    eval_blocks: int | None = setting(1024, low=1)  # held-out blocks for the final NLL / ELBO (None: all)
    elbo_samples: int = setting(32, low=1)  # Monte Carlo samples of t per block (stratified, fixed seed)
    curve_points: int = setting(4, low=1)  # held-out evaluations during each training run (live figure)
    curve_blocks: int = setting(16, low=1)
    curve_samples: int = setting(8, low=1)
    seed: int = setting(0, low=0)  # evaluation seed: ELBO draws, samples, zero-shot items
    # paired training seeds of the scaling grid and of the sampling / guidance models
    seeds: tuple[int, ...] = setting((0, 1), low=0)
    # torch threads on a CPU (None: unchanged); tiny models run fastest on one
    cpu_threads: int | None = setting(None, low=1)
    # sampling quality and speed: the largest size; MDM at the largest budget, ARM at every budget
    n_prompts: int = setting(64, low=1)
    prompt_len: int = setting(32, low=1)
    gen_len: int = setting(96, low=1)  # prompt_len + gen_len = block_len: the length the MDM was trained on
    steps: tuple[int, ...] = setting((8, 16, 32, 64, 96), low=1)
    samplers: tuple[str, ...] = setting(("low_confidence", "ancestral"), choices=ALGORITHMS)
    temperature: float = setting(1.0, low=0)
    judge: str = "smollm2-135m"
    # nats: "matched diversity" = unigram entropy within this of the ARM's or the text's
    entropy_tolerance: float = setting(0.2, low=0)
    # FLOPs of the two models the unmasking view traces (None: the largest budget's, trained already); smoke
    # sets one above its grid, where a few steps leave every token at p ~ 1/49,152 and the view one colour
    trace_budget: float | None = setting(None, above=0)
    timing_batches: tuple[int, ...] = setting((1, 32), low=1)
    timing_rounds: int = setting(3, low=1)
    # guidance: likelihood of the true continuation, and generation quality, against w
    cond_len: int = setting(64, low=1)  # condition (prompt) tokens; the rest of the block is the scored target
    guidance_ws: tuple[float, ...] = setting((0.0, 0.5, 1.0, 2.0), low=0)
    guidance_gen_ws: tuple[float, ...] = setting((0.0, 0.6, 1.5), low=0)
    guidance_steps: int = setting(32, low=1)
    choice_items: int = setting(400, low=2)  # zero-shot items per task (half tune w, half judge it), from held-out text
    choice_len: int = setting(16, low=1)  # tokens of each 4-way continuation
    # reversal curse (SMDM / Berglund et al.): pretrained arms fine-tuned on the facts
    # a third each: name → description only, description → name only, both directions
    n_people: int = setting(400, low=3)  # at least one person per subset
    paraphrases: int = setting(30, low=1, high=30)  # templates per direction (reversal.py has 30)
    reversal_size: str = setting("m", choices=SIZES)
    reversal_steps: int = setting(2500, low=1)
    reversal_batch: int = setting(128, low=1)
    reversal_lr: float = setting(2e-3, above=0)
    reversal_cfg: float = setting(0.8, low=0)  # SMDM's setting for this task (low-confidence sampler, τ = 0)
    reversal_seeds: tuple[int, ...] = setting((0, 1, 2), low=0)
    # the reverse direction is judged only once both arms know this much of the seen one
    reversal_known: float = setting(0.9, low=0, high=1)

    @property
    def train_tokens_per_arm(self) -> int:
        """Tokens of the arm that reads the most corpus: the smallest model at the largest budget
        (steps = C / (6·N·batch·block_len), N non-embedding, as the experiment rounds them)."""
        tokens_per_step = self.batch_size * self.block_len
        return max(
            max(1, round(max(self.budgets) / (6 * non_embedding(size) * tokens_per_step))) * tokens_per_step
            for size in self.sizes
        )

    def check(self) -> None:
        self.check_corpus()
        if max(self.timing_batches) > self.n_prompts:
            raise self.refuse("timing_batches", f"at most n_prompts ({self.n_prompts})")
        if self.prompt_len + self.gen_len > self.block_len:
            raise self.refuse("gen_len", f"at most block_len - prompt_len ({self.block_len - self.prompt_len})")
        if self.cond_len >= self.block_len:
            raise self.refuse("cond_len", f"below block_len ({self.block_len})")

    def runs(self, part: str) -> bool:
        """Whether this profile runs the experiment `part`."""
        return self.part in ("all", part)


DiffusionProfile.presets = {
    # CPU, about a minute: tiny models, a few steps each; every code path of the full run.
    "smoke": {
        "corpus": "python-docs",
        "sizes": ("t1", "t3"),
        "budgets": (1.5e8, 3e8),
        "seeds": (0,),
        "batch_size": 8,
        "block_len": 32,
        "lr": 3e-2,  # a dozen steps of the traced models move p off uniform (3e-3: every token at log10 p ~ -4.6)
        "trace_budget": 2e9,
        "eval_blocks": 4,
        "elbo_samples": 4,
        "curve_points": 2,
        "curve_blocks": 2,
        "curve_samples": 2,
        "n_prompts": 4,
        "prompt_len": 8,
        "gen_len": 16,
        "steps": (4, 16),
        "timing_batches": (1, 4),
        "timing_rounds": 1,
        "cond_len": 16,
        "guidance_ws": (0.0, 1.0),
        "guidance_gen_ws": (0.0, 1.0),
        "guidance_steps": 8,
        "choice_items": 8,
        "choice_len": 8,
        "n_people": 8,
        "paraphrases": 2,
        "reversal_size": "t1",
        "reversal_steps": 20,
        "reversal_batch": 16,
        "reversal_seeds": (0,),
        "cpu_threads": 1,
    },
    "full": {},
}
