"""Attention across layers: capture maps, measure which layers attend alike, choose layers to share.

- `capture`: eager-attention context manager and per-layer hooks on the probabilities.
- `similarity`: cosine, Jensen-Shannon and linear-CKA similarity, accumulated layer by layer.
- `analysis`: `analyze(model, tokenizer, texts)` → `SimilarityResult`, saved to the run store.
- `sharing`: `choose_groups(similarity, threshold | n_shared)` and `sharing_savings(groups, config)`.
- `echoatt`: the student whose group followers reuse their head's attention.
"""
