"""Settings of the CPU-inference experiment (GEB-1.3B's claims at SmolLM2-135M's scale).

    settings = CpuProfile.resolve("smoke", threads=(1,))   # notebook parameters, CLI -p, library calls

Three parts, each with a fixed budget named here:
- precisions: prefill and decode tokens/s of `model` at each precision and thread count (batch
  `batch`, a `prompt_len`-token prompt, `new_tokens` generated), timed in `rounds` interleaved rounds;
  held-out perplexity on `ppl_windows` windows of `ppl_context` tokens; greedy agreement with float32.
- grouped-query attention: MHA/GQA/MQA variants of one from-scratch shape (`gqa_*`), KV-cache bytes
  and decode tokens/s with a cache of each of `gqa_contexts` tokens.
- training (GPU in the full profile): the same three variants at equal parameters (`train_*`), and a
  GEB-shaped model (`geb_*`), each trained on `steps` x `batch_size` x `block_len` tokens per seed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..profiles import Profile, setting
from .quantize import PRECISIONS


@dataclass(frozen=True)
class CpuProfile(Profile):
    """Every measurement of one experiment, with its budget explicit (field defaults: the full run)."""

    model: str = "smollm2-135m"  # a model name for `load_model`, or "tiny" (random tiny LLaMA, smoke)
    precisions: tuple[str, ...] = setting(("float32", "bfloat16", "int8", "int8-dynamic", "int4"), choices=PRECISIONS)
    # torch threads; a count above the machine's cores means all cores
    threads: tuple[int, ...] = setting((1, 16), low=1)
    batch: int = setting(1, low=1)
    prompt_len: int = setting(128, low=1)
    new_tokens: int = setting(64, low=1)
    rounds: int = setting(3, low=1)  # interleaved timing rounds (median and interquartile spread)
    warmup: int = setting(1, low=0)
    corpus: str = "python-code"  # ~100M tokens: a full run never repeats its data (smoke: python-docs)
    allow_repeats: bool = False  # a full profile refuses more than one epoch of its corpus unless set
    ppl_context: int = setting(256, low=2)
    ppl_windows: int = setting(8, low=1)  # held-out windows scored per precision (the same text for every precision)
    agreement_tokens: int = setting(32, low=1)  # greedy tokens compared with float32's
    llamacpp: bool = True  # llama.cpp on the default model's GGUF file beside the precisions, where it is installed
    chat_tokens: int = setting(48, low=1)
    chat_question: str = "How do I read a file line by line in Python?"  # the streaming chat demo's question
    # the chat demo's model, int8 on the CPU: the embedded SmolLM2 even in smoke, where a random tiny model says nothing
    chat_model: str = "smollm2-135m"
    # grouped-query attention on the CPU: one shape (SmolLM2-135M's), n_kv_heads varied
    gqa_layers: int = setting(30, low=1)
    gqa_d_model: int = setting(576, low=1)
    gqa_heads: int = setting(9, low=1)
    gqa_kv_heads: tuple[int, ...] = setting((9, 3, 1), low=1)  # MHA, GQA 3:1 (SmolLM2's), MQA
    gqa_d_ff: int = setting(1536, low=1)  # of the first variant; the others' FFN is widened to equal parameters
    gqa_contexts: tuple[int, ...] = setting((256, 1024, 4096), low=1)
    gqa_decode_tokens: int = setting(16, low=1)
    gqa_threads: int | None = setting(None, low=1)  # None: all cores
    # from-scratch training of the variants at equal parameters, and the GEB-shaped model
    train: bool = True
    train_layers: int = setting(8, low=1)
    train_d_model: int = setting(512, low=1)
    train_heads: int = setting(8, low=1)
    train_kv_heads: tuple[int, ...] = setting((8, 2, 1), low=1)  # MHA, GQA 4:1 (GEB's ratio), MQA
    train_d_ff: int = setting(1344, low=1)  # of the first variant (MHA); the others' FFN is widened to equal parameters
    # GEB-1.3B: 24 layers, d 2048, 16 heads / 4 KV heads, FFN 5632, untied embeddings
    geb_layers: int = setting(12, low=1)
    geb_d_model: int = setting(512, low=1)
    geb_heads: int = setting(8, low=1)
    geb_kv_heads: int = setting(2, low=1)
    geb_d_ff: int = setting(1408, low=1)  # GEB's FFN ratio 5632 / 2048 = 2.75
    steps: int = setting(1000, low=1)
    batch_size: int = setting(32, low=1)
    block_len: int = setting(512, low=2)
    lr: float = setting(1e-3, above=0)
    warmup_steps: int = setting(20, low=0)
    seeds: tuple[int, ...] = setting((0, 1, 2), low=0)
    eval_windows: int = setting(32, low=1)  # held-out windows of `block_len` tokens for validation loss
    eval_every: int = setting(50, low=1)
    compile: bool = False  # short runs: torch.compile's one-off cost per shape exceeds what it saves
    seed: int = setting(0, low=0)

    @property
    def train_tokens_per_arm(self) -> int:
        """The from-scratch training budget of every variant and seed: steps × batch × length."""
        return self.steps * self.batch_size * self.block_len

    def check(self) -> None:
        self.check_corpus()
        for prefix in ("gqa", "train", "geb"):
            heads, kv = getattr(self, f"{prefix}_heads"), getattr(self, f"{prefix}_kv_heads")
            if getattr(self, f"{prefix}_d_model") % heads:
                raise self.refuse(f"{prefix}_d_model", f"a multiple of {prefix}_heads ({heads})")
            if any(heads % k for k in (kv if isinstance(kv, tuple) else (kv,))):
                raise self.refuse(f"{prefix}_kv_heads", f"divisors of {prefix}_heads ({heads})")


CpuProfile.presets = {
    # CPU, about a minute: a random tiny LLaMA through every code path (its numbers mean nothing).
    "smoke": dict(
        model="tiny",
        corpus="python-docs",
        threads=(1,),
        prompt_len=16,
        new_tokens=8,
        rounds=2,
        ppl_context=32,
        ppl_windows=2,
        agreement_tokens=8,
        chat_tokens=24,
        gqa_layers=2,
        gqa_d_model=64,
        gqa_heads=4,
        gqa_kv_heads=(4, 2, 1),
        gqa_d_ff=128,
        gqa_contexts=(32, 128),
        gqa_decode_tokens=4,
        train_layers=2,
        train_d_model=64,
        train_heads=4,
        train_kv_heads=(4, 2, 1),
        train_d_ff=128,
        geb_layers=2,
        geb_d_model=64,
        geb_heads=4,
        geb_kv_heads=1,
        geb_d_ff=176,
        steps=3,
        batch_size=2,
        block_len=32,
        warmup_steps=1,
        seeds=(0,),
        eval_windows=2,
        eval_every=3,
    ),
    # One H200 machine (242 s measured at 100 steps, 2026-11-30): the CPU parts on its host CPU (labelled so), then
    # 3 variants x 3 seeds + the GEB-shaped model, each 1,000 x 32 x 512 = 16.4M tokens of python-code (about 0.15
    # epoch: trained until the held-out loss plateaus, where 1.6M tokens stopped at ppl ~450); batches of 32 rather
    # than 16: half the launches of an eager loop that a small model leaves launch-bound.
    "full": {},
}
