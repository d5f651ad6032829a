"""EchoAtt's settings: one frozen dataclass whose defaults are the real ("full") run, and its presets.

    settings = EchoAttProfile.resolve("smoke", steps=8)   # notebook parameters, CLI -p, library calls

Every trained arm (students and the continued-trained teacher) trains on the same, fixed tokens:
`steps` × `batch_size` × `block_len` (full: 1,250 × 16 × 512 = 10.24M tokens per arm, about 0.1 epoch of
python-code), whatever the machine, so results reproduce. Speeds are measured at their own shapes
(`speed_shapes`), where the GPU is the bottleneck.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..attention.similarity import METRICS
from ..distill import DistillConfig
from ..profiles import Profile, setting
from .speed import SpeedShapes


@dataclass(frozen=True)
class EchoAttProfile(Profile):
    """Everything one experiment does, with its compute budget made explicit."""

    teacher: str = "smollm2-135m"  # a model name for `load_model`, or "tiny" (random tiny LLaMA)
    tiny_layers: int = setting(8, low=2)
    corpus: str = "python-code"  # ~100M tokens: a full run never repeats its data (smoke: python-docs)
    allow_repeats: bool = False  # a full profile refuses more than one epoch of its corpus unless set
    budgets: tuple[int, ...] = setting((6, 12), low=1)  # numbers of shared layers (followers)
    random_draws: int = setting(3, low=0)
    # "no loss in quality" is judged over seeds (batch orders) at the paper's cut (the budget nearest −4% parameters):
    # the similarity student there and the continued teacher train `quality_seeds` times, paired by seed
    quality_seeds: int = setting(3, low=1)
    max_block: int = setting(2, low=2)  # group length: 2 = each follower reuses its immediate predecessor
    eligible: tuple[int, int] | None = setting(None, low=0)  # first and last layer allowed in a group; default (2, L-2)
    # The similarity that chooses layers: "cosine" (mean over heads), "cosine_map" (cosine of the head-averaged
    # maps: the paper's), "jsd" (as 1 − JSD) or "cka". Ignored when `attention_run` names a lab run: its metric rules.
    metric: str = setting("cosine", choices=METRICS)
    attention_run: str | None = None  # an attention-lab run (notebook 01) to take the similarity from: id or "latest"
    drop_sink: bool = True  # remove the attention-sink column before comparing (docs/ideas.md, EchoAtt)
    similarity_texts: int = setting(16, low=1)
    similarity_len: int = setting(512, low=2)
    # training (same for every arm, including the continued-trained teacher)
    steps: int = setting(1250, low=1)
    batch_size: int = setting(16, low=1)
    block_len: int = setting(512, low=2)
    lr: float = setting(2e-4, above=0)
    warmup_steps: int = setting(10, low=0)
    distill: DistillConfig = field(
        default_factory=lambda: DistillConfig(temperature=1.0, alpha=0.5, beta=0.5, gamma=1.0)
    )
    # hidden-state matching + KL for this fraction of steps, then CE + KL
    stage1_fraction: float = setting(0.5, low=0, high=1)
    # evaluation
    eval_context: int = setting(1024, low=2)
    eval_batch: int = setting(16, low=1)
    eval_windows: int | None = setting(None, low=1)  # None: the whole held-out split
    curve_windows: int = setting(8, low=1)  # windows for the perplexity curve during training
    eval_every: int = setting(25, low=1)
    log_every: int = setting(10, low=1)  # training loss logged every this many steps
    # speed: every arm in the same interleaved rounds (`speed.measure_speeds`)
    prefill_batch: int = setting(32, low=1)
    prefill_len: int = setting(1024, low=1)
    train_speed_batch: int = setting(32, low=1)  # the KD training step timed (student and teacher alike)
    train_speed_len: int = setting(512, low=2)
    decode_batch: int = setting(64, low=1)  # decode of a 135M model stays launch-bound (docs/ideas.md, EchoAtt)
    decode_tokens: int = setting(16, low=1)
    speed_rounds: int = setting(5, low=1)
    speed_warmup: int = setting(1, low=0)
    seed: int = setting(0, low=0)
    cpu_threads: int | None = setting(None, low=1)  # torch threads on a CPU while the experiment runs (None: unchanged)

    def check(self) -> None:
        from ..errors import WorkbenchError
        from ..models import known_shape
        from .arms import last_groups

        self.check_corpus()
        layers = self.tiny_layers if self.teacher == "tiny" else (known_shape(self.teacher) or {}).get("n_layers")
        if layers is None:
            return  # another model: its depth is known once it loads
        if self.eligible and not 0 <= self.eligible[0] < self.eligible[1] < layers:
            raise self.refuse("eligible", f"(first, last) with 0 <= first < last < {layers} (the teacher's depth)")
        for n in self.budgets:
            try:
                last_groups(layers, n, self.max_block, self.eligible)  # the densest packing: if it fails, all do
            except WorkbenchError as why:
                raise self.refuse("budgets", f"counts of shared layers that fit the {layers}-layer teacher ({why})") \
                    from None

    @property
    def train_tokens_per_arm(self) -> int:
        """The fixed token budget of every trained arm: steps × batch × length."""
        return self.steps * self.batch_size * self.block_len

    @property
    def speed_shapes(self) -> SpeedShapes:
        return SpeedShapes(
            self.prefill_batch, self.prefill_len, self.train_speed_batch, self.train_speed_len, self.decode_batch,
            self.decode_tokens, self.speed_rounds, self.speed_warmup,
        )  # fmt: skip


EchoAttProfile.presets = {
    # CPU, seconds: a tiny random teacher, a few steps; exercises every code path.
    "smoke": dict(
        teacher="tiny",
        corpus="python-docs",
        budgets=(2,),
        random_draws=1,
        quality_seeds=2,  # the paired-seed code path; smoke judges nothing
        similarity_texts=2,
        similarity_len=32,
        steps=4,
        batch_size=2,
        block_len=32,
        lr=1e-3,
        warmup_steps=1,
        eval_context=64,
        eval_batch=4,
        eval_windows=4,
        curve_windows=2,
        eval_every=1,
        log_every=1,  # several points on the smoke curves
        prefill_batch=1,
        prefill_len=64,
        train_speed_batch=2,
        train_speed_len=32,
        decode_batch=1,
        decode_tokens=4,
        speed_rounds=1,
        speed_warmup=1,
        cpu_threads=1,  # tiny ops gain nothing from threads, and lose a lot on a busy machine
    ),
    # One H200: SmolLM2-135M teacher, up to 11 trained arms × 1,250 steps × 16×512 tokens (fixed), about 140 s per
    # arm at the KD step's measured 73k tokens/s: ~26 minutes, so split over jobs (`budgets`, `random_draws`); at
    # 200 steps the whole notebook took 474 s (2026-11-30), ~1 minute of it speed rounds.
    "full": {},
}
