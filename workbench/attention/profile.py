"""The attention lab's settings (notebooks/01_attention_similarity): model, texts, metrics, what is shown.

    settings = AttentionLabProfile.resolve("smoke", threshold=0.8)

`smoke` analyses 4 texts of 128 tokens on a CPU in seconds; `full` 64 texts of 1,024 tokens on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..profiles import Profile, setting
from .analysis import SINKS
from .figures import SCALES
from .similarity import METRICS


@dataclass(frozen=True)
class AttentionLabProfile(Profile):
    model_name: str = "smollm2-135m"
    corpus: str = "python-docs"  # "python-docs", a text file (e.g. WikiText-2), or "hf:DATASET"
    texts: tuple[str, ...] = ()  # custom texts: if given, they are analysed instead of the corpus
    n_texts: int = setting(64, low=1)
    seq_len: int = setting(1024, low=2)  # tokens per text
    batch_size: int = setting(16, low=1)
    # chooses groups: "cosine" (mean over heads), "cosine_map" (head-averaged map), "jsd", "cka"
    metric: str = setting("cosine", choices=METRICS)
    sink: str = setting("dropped", choices=SINKS)  # "dropped" (first key column removed) or "kept"
    # Chosen on the full run (SmolLM2-135M, 64×1,024 tokens, cosine mean over heads, sink dropped: block 6–8 at
    # 0.702 inside): 0.6 gives groups [[3, 4, 5], [6, 7, 8]], 0.7 only [[6, 7]] (docs/results.md).
    # each follower needs at least this similarity to the first layer of its group
    threshold: float = setting(0.6, low=-1, high=1)
    second_threshold: float = setting(0.7, low=-1, high=1)  # a stricter threshold, for comparison
    max_block: int = setting(3, low=2)  # longest group (head + followers)
    layer_pair: tuple[int, int] = setting((4, 5), low=0)  # the pair shown in detail
    head: int = setting(0, low=-1)  # the head shown in the map figure (-1: mean over heads)
    map_tokens: int = setting(40, low=2)  # tokens shown in the attention maps
    # colours of the maps: "clipped" (99th percentile), "row-normalised" or "absolute"
    map_scale: str = setting("clipped", choices=SCALES)

    def check(self) -> None:
        from ..models import known_shape

        if not self.texts:
            self.check_corpus()
        if self.layer_pair[0] == self.layer_pair[1]:
            raise self.refuse("layer_pair", "two different layers")
        shape = known_shape(self.model_name)
        if shape and max(self.layer_pair) >= shape["n_layers"]:
            raise self.refuse("layer_pair", f"layers below {shape['n_layers']} ({self.model_name}'s depth)")
        if shape and self.head >= shape["n_heads"]:
            raise self.refuse("head", f"-1 or a head below {shape['n_heads']} ({self.model_name}'s heads)")


AttentionLabProfile.presets = {"smoke": dict(n_texts=4, seq_len=128, batch_size=4), "full": {}}
