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

from ..errors import WorkbenchError
from ..profiles import Profile

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


@dataclass(frozen=True)
class DiffusionProfile(Profile):
    part: str = "all"
    corpus: str = "python-docs"
    # mini scaling: every size × budget, for both arms, on the same batches
    sizes: tuple[str, ...] = ("s", "m", "l")
    budgets: tuple[float, ...] = (1e14, 4e14)  # non-embedding FLOPs per arm (l: the steps 2.5e14 / 1e15 total gave)
    batch_size: int = 64
    block_len: int = 128
    lr: float = 1e-3
    warmup_fraction: float = 0.05
    weight_decay: float = 0.1
    ssl_ratio: float = 0.0  # stochastic sequence length (SMDM: 0.01); 0 keeps one compiled shape
    compile: bool | None = None  # None: compiled on a GPU (both losses), eager on a CPU
    eval_blocks: int | None = None  # held-out blocks for the final NLL / ELBO (None: all)
    elbo_samples: int = 32  # Monte Carlo samples of t per block (stratified, fixed seed)
    curve_points: int = 4  # held-out evaluations during each training run (live figure)
    curve_blocks: int = 16
    curve_samples: int = 8
    seed: int = 0  # evaluation seed: ELBO draws, samples, zero-shot items
    seeds: tuple[int, ...] = (0, 1)  # paired training seeds of the scaling grid and of the sampling / guidance models
    cpu_threads: int | None = None  # torch threads on a CPU (None: unchanged); tiny models run fastest on one
    # sampling quality and speed: the largest size; MDM at the largest budget, ARM at every budget
    n_prompts: int = 64
    prompt_len: int = 32
    gen_len: int = 96  # prompt_len + gen_len = block_len: the length the MDM was trained on
    steps: tuple[int, ...] = (8, 16, 32, 64, 96)
    samplers: tuple[str, ...] = ("low_confidence", "ancestral")
    temperature: float = 1.0
    judge: str = "smollm2-135m"
    entropy_tolerance: float = 0.2  # nats: "matched diversity" = unigram entropy within this of the ARM's or the text's
    timing_batches: tuple[int, ...] = (1, 32)
    timing_rounds: int = 3
    # guidance: likelihood of the true continuation, and generation quality, against w
    cond_len: int = 64  # condition (prompt) tokens; the rest of the block is the scored target
    guidance_ws: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0)
    guidance_gen_ws: tuple[float, ...] = (0.0, 0.6, 1.5)
    guidance_steps: int = 32
    choice_items: int = 400  # zero-shot items per task (half tune w, half judge it), from held-out text
    choice_len: int = 16  # tokens of each 4-way continuation
    # reversal curse (SMDM / Berglund et al.): pretrained arms fine-tuned on the facts
    n_people: int = 400  # a third each: name → description only, description → name only, both directions
    paraphrases: int = 30
    reversal_size: str = "m"
    reversal_steps: int = 2500
    reversal_batch: int = 128
    reversal_lr: float = 2e-3
    reversal_cfg: float = 0.8  # SMDM's setting for this task (low-confidence sampler, τ = 0)
    reversal_seeds: tuple[int, ...] = (0, 1, 2)
    reversal_known: float = 0.9  # the reverse direction is judged only once both arms know this much of the seen one

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise WorkbenchError(f"unknown part {self.part!r}: use one of {', '.join(PARTS)}")
        unknown = [s for s in (*self.sizes, self.reversal_size) if s not in SIZES]
        if unknown:
            raise WorkbenchError(f"unknown model size(s) {', '.join(unknown)}: use {', '.join(SIZES)}")
        if max(self.timing_batches) > self.n_prompts:
            raise WorkbenchError(
                f"timing batches ({max(self.timing_batches)}) cannot exceed n_prompts ({self.n_prompts})"
            )
        if self.prompt_len + self.gen_len > self.block_len or self.cond_len >= self.block_len:
            raise WorkbenchError(
                f"prompt_len + gen_len ({self.prompt_len + self.gen_len}) and cond_len must fit in "
                f"block_len ({self.block_len})"
            )

    def runs(self, part: str) -> bool:
        """Whether this profile runs the experiment `part`."""
        return self.part in ("all", part)


DiffusionProfile.presets = {
    # CPU, about a minute: tiny models, a few steps each; every code path of the full run.
    "smoke": {
        "sizes": ("t1", "t2", "t3"),
        "budgets": (1.5e8, 3e8),
        "seeds": (0,),
        "batch_size": 8,
        "block_len": 32,
        "lr": 3e-3,
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
        "reversal_size": "t2",
        "reversal_steps": 20,
        "reversal_batch": 16,
        "reversal_seeds": (0,),
        "cpu_threads": 1,
    },
    "full": {},
}
