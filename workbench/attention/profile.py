"""The attention lab's settings (notebooks/01_attention_similarity): model, texts, metrics, what is shown.

    settings = AttentionLabProfile.resolve("smoke", threshold=0.8)

`smoke` analyses 4 texts of 128 tokens on a CPU in seconds; `full` 64 texts of 1,024 tokens on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..profiles import Profile


@dataclass(frozen=True)
class AttentionLabProfile(Profile):
    model_name: str = "smollm2-135m"
    corpus: str = "python-docs"  # "python-docs", a text file (e.g. WikiText-2), or "hf:DATASET"
    texts: tuple[str, ...] = ()  # custom texts: if given, they are analysed instead of the corpus
    n_texts: int = 64
    seq_len: int = 1024  # tokens per text
    batch_size: int = 16
    metric: str = "cosine"  # chooses groups: "cosine" (mean over heads), "cosine_map" (head-averaged map), "jsd", "cka"
    sink: str = "dropped"  # "dropped" (first key column removed) or "kept"
    # Chosen on the full run (SmolLM2-135M, 64×1,024 tokens, cosine mean over heads, sink dropped: block 6–8 at
    # 0.702 inside): 0.6 gives groups [[3, 4, 5], [6, 7, 8]], 0.7 only [[6, 7]] (docs/results.md).
    threshold: float = 0.6  # each follower needs at least this similarity to the first layer of its group
    second_threshold: float = 0.7  # a stricter threshold, for comparison
    max_block: int = 3  # longest group (head + followers)
    layer_pair: tuple[int, int] = (4, 5)  # the pair shown in detail
    head: int = 0  # the head shown in the map figure (-1: mean over heads)
    map_tokens: int = 40  # tokens shown in the attention maps
    map_scale: str = "clipped"  # colours of the maps: "clipped" (99th percentile), "row-normalised" or "absolute"


AttentionLabProfile.presets = {"smoke": dict(n_texts=4, seq_len=128, batch_size=4), "full": {}}
