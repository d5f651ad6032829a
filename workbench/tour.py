"""The tour notebook's settings (notebooks/00_tour): which model and text, and how much to measure.

    settings = TourProfile.resolve("smoke", layer=10)

`smoke` measures a few windows on a CPU in seconds; `full` thousands of held-out tokens on a GPU.
The measurements themselves are the core's (`evaluate.perplexity`, `models.chat`) and the attention
lab's (`attention.entropy`).
"""

from __future__ import annotations

from dataclasses import dataclass

from .profiles import Profile, setting


@dataclass(frozen=True)
class TourProfile(Profile):
    model_name: str = "smollm2-135m"
    corpus: str = "python-docs"
    question: str = "What is the capital of France? Answer in one sentence."
    max_new_tokens: int = setting(48, low=1)
    sentence: str = "The cat sat on the mat because it was tired."
    layer: int = setting(15, low=0)  # the layer whose attention map is shown
    ppl_windows: int = setting(64, low=1)  # held-out windows of `ppl_context` tokens for perplexity
    ppl_context: int = setting(1024, low=2)
    entropy_blocks: int = setting(32, low=1)  # held-out blocks of `entropy_len` tokens for the attention entropy
    entropy_len: int = setting(512, low=2)

    def check(self) -> None:
        from .models import known_shape

        self.check_corpus()
        shape = known_shape(self.model_name)
        if shape and self.layer >= shape["n_layers"]:
            raise self.refuse("layer", f"below {shape['n_layers']} ({self.model_name} has {shape['n_layers']} layers)")


TourProfile.presets = {
    "smoke": dict(ppl_windows=8, ppl_context=256, entropy_blocks=4, entropy_len=128),
    "full": {},
}
