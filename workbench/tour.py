"""The tour notebook's settings (notebooks/00_tour): which model and text, and how much to measure.

    settings = TourProfile.resolve("smoke", layer=10)

`smoke` measures a few windows on a CPU in seconds; `full` thousands of held-out tokens on a GPU.
The measurements themselves are the core's (`evaluate.perplexity`, `models.chat`) and the attention
lab's (`attention.entropy`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .profiles import Profile


@dataclass(frozen=True)
class TourProfile(Profile):
    model_name: str = "smollm2-135m"
    corpus: str = "python-docs"
    question: str = "What is the capital of France? Answer in one sentence."
    max_new_tokens: int = 48
    sentence: str = "The cat sat on the mat because it was tired."
    layer: int = 15  # the layer whose attention map is shown
    ppl_windows: int = 64  # held-out windows of `ppl_context` tokens for perplexity
    ppl_context: int = 1024
    entropy_blocks: int = 32  # held-out blocks of `entropy_len` tokens for the attention entropy
    entropy_len: int = 512


TourProfile.presets = {
    "smoke": dict(ppl_windows=8, ppl_context=256, entropy_blocks=4, entropy_len=128),
    "full": {},
}
