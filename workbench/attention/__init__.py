"""The attention lab: capture attention maps, measure which layers attend alike, choose layers to share.

A measurement tool for any causal LM, used by the attention-similarity notebook and by ideas that
share attention (`workbench.echoatt`):
- `capture`: eager-attention context manager and per-layer hooks on the probabilities.
- `similarity`: cosine, Jensen-Shannon and linear-CKA similarity, accumulated layer by layer.
- `analysis`: `analyze(model, tokenizer, texts)` → `SimilarityResult`, saved to the run store.
- `sharing`: `choose_groups(similarity, threshold | n_shared)`, `followers(groups)` and `sharing_savings`.
- `explorer`: notebook widgets over a `SimilarityResult` (no model needed).
- `figures`: the plotly figures of the analysis.
"""
