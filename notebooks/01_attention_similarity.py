# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Which layers attend alike? The EchoAtt analysis
#
# **The idea.** Every layer of a transformer computes attention probabilities
# A_ℓ = softmax(Q_ℓ K_ℓᵀ/√d + M), one T × T map per head. EchoAtt ("Attend, Copy, then Adjust",
# Rajabzadeh, Jafari et al., arXiv 2409.14595) observes that many *inner* layers of an LLM produce nearly the same
# maps, more so in larger models, and lets consecutive similar layers **share** them: only the first
# layer of a group computes A; the others reuse it with their own values, so they lose W_Q and W_K
# and skip QKᵀ and the softmax. On TinyLlama-1.1B the paper reports ≈4% fewer parameters, +15%
# inference and +25% training speed after knowledge distillation.
#
# **Why measure first.** Which layers may share depends on the model, and "similar" depends on the
# metric. Here we measure, on any causal LM:
# - metrics over valid (causal, unpadded) entries: **cosine** of the flattened maps, in two forms,
#   **1 − Jensen-Shannon divergence** between matching query rows (each row is a distribution), and
#   **linear CKA** (query rows as samples, keys as features: compares how rows differ, ignoring what they share);
# - the two cosines differ: **"cosine (head-averaged map)"** (`cosine_map`) averages the heads' maps of a layer
#   first and compares the two layer maps: that is the metric the EchoAtt paper used to choose layers.
#   **"cosine (mean over heads)"** (`cosine`) compares head h with head h and averages the per-head values: stricter,
#   since a head attending elsewhere counts even when the averages agree. **The groups below come from the
#   `metric` parameter, by default "cosine (mean over heads)"** (sink dropped); set `metric = "cosine_map"` for the paper's;
# - with and without the **attention sink**: most layers park a large share of probability on the
#   first token; that column inflates every similarity, so we also drop it and renormalise the rows;
# - per head and averaged over heads, and the **spread over texts**, to tell a stable pattern from
#   one sentence's accident.
#
# The maps are reduced layer by layer while the model runs (one layer's maps in memory at a time),
# then the notebook proposes **sharing groups** and what they would save. The groups go to the run
# store, where the EchoAtt distillation notebook and the comparison dashboard read them.

# %% tags=["parameters"]
profile = "smoke"  # "smoke": CPU, 4 texts x 128 tokens; "full": GPU, 64 texts x 1,024 tokens
# Settings of AttentionLabProfile; None: the profile's value
model_name = None  # a bundled model name, e.g. "smollm2-135m"
corpus = None  # "python-docs", a text file (e.g. WikiText-2), or "hf:DATASET"
texts = None  # custom texts (a list of strings): if given, they are analysed instead of the corpus
n_texts = None  # texts analysed
seq_len = None  # tokens per text
metric = None  # chooses the groups: "cosine" (mean over heads, default), "cosine_map" (head-averaged map: the paper's), "jsd", "cka"
sink = None  # "dropped" (first key column removed) or "kept"
threshold = None  # each follower needs at least this similarity to the first layer of its group (default 0.6, see below)
second_threshold = None  # a stricter threshold, for comparison (default 0.7)
max_block = None  # longest group (head + followers)
layer_pair = None  # the pair shown in detail, e.g. [4, 5]
head = None  # the head shown in the map figure (-1: mean over heads)
map_tokens = None  # tokens shown in the attention maps
map_scale = None  # colours of the maps: "clipped" (99th percentile), "row-normalised" or "absolute"

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

import workbench.notebook
from workbench import models, runs
from workbench.attention import figures
from workbench.attention.analysis import analyze, similar_block, text_blocks
from workbench.attention.explorer import Explorer, View
from workbench.attention.profile import AttentionLabProfile
from workbench.attention.sharing import choose_groups, sharing_savings

workbench.notebook.setup()
settings = AttentionLabProfile.resolve(
    profile, model_name=model_name, corpus=corpus, texts=tuple(texts) if texts else None, n_texts=n_texts, seq_len=seq_len,
    metric=metric, sink=sink, threshold=threshold, second_threshold=second_threshold, max_block=max_block,
    layer_pair=tuple(layer_pair) if layer_pair else None, head=head, map_tokens=map_tokens, map_scale=map_scale,
)
head = None if settings.head < 0 else settings.head  # None: the mean over heads
run = runs.start_run("attention_similarity", f"{settings.model_name} {settings.n_texts}x{settings.seq_len}", settings.as_dict())

# %% [markdown]
# ## Load the model and the texts
# The model keeps its fast attention kernel; the analysis switches it to eager attention (the only
# backend that returns probabilities) just while it runs. Texts are blocks of `seq_len` tokens spread
# evenly over the corpus.

# %%
model, tokenizer = models.load_model(settings.model_name, dtype="float32")  # float32 maps: bfloat16 would round each probability by ~0.4%
n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
inputs = settings.texts if settings.texts else text_blocks(tokenizer, settings.corpus, settings.n_texts, settings.seq_len)
print(f"{settings.model_name}: {n_layers} layers x {n_heads} query heads ({model.config.num_key_value_heads} KV heads); "
      f"attention backend {model.config._attn_implementation}; {len(inputs)} texts of up to {settings.seq_len} tokens")

# %% [markdown]
# ## Measure: all layer pairs, three metrics, with and without the sink
# One pass over the texts. Each layer's maps are reduced in a hook as soon as they exist; the maps of
# the first text's first tokens are kept for the pictures below.

# %%
result = analyze(model, tokenizer, inputs, metrics=("cosine", "cosine_map", "jsd", "cka"), drop_sink="both", keep_maps_for=range(n_layers),
                 map_tokens=settings.map_tokens, seq_len=settings.seq_len, batch_size=settings.batch_size)
print(f"{result.n_texts} texts x {result.seq_len} tokens analysed in {result.seconds:.1f} s; backend afterwards: {model.config._attn_implementation}")
overview = pd.DataFrame([
    dict(metric=figures.LABELS[m], sink=s, adjacent_mean=result.adjacent(m, s)[0].mean(), all_pairs_mean=result.similarity(m, s)[~np.eye(n_layers, dtype=bool)].mean(),
         spread_over_texts=result.spread(m, s)[~np.eye(n_layers, dtype=bool)].mean())
    for m in result.metrics for s in result.sinks]).round(3)
overview

# %% [markdown]
# ## Choose sharing groups
# Groups of consecutive layers whose later members are similar enough *to the group's first layer*
# (the layer whose attention they would reuse), at most `max_block` long: longer chains compound the
# error. The choice is exact (dynamic programming) and deterministic.
#
# **How the default threshold was chosen.** The full profile measured on 2026-11-29 (SmolLM2-135M, 64 texts of
# WikiText-2 × 1,024 tokens, one H200; `docs/results.md`) gave a cosine (mean over heads, sink dropped) of 0.702 inside
# the most similar block, layers 6–8: at 0.7 only one group formed, [[6, 7]]; at 0.6, [[3, 4, 5], [6, 7, 8]]. The default, 0.6, is the highest round value that yields more
# than one group on the default model; 0.7 is shown beside it. Both are choices for illustration, not the paper's
# (the paper picks groups by a layer budget, as the distillation notebook does).

# %%
similarity = result.similarity(settings.metric, settings.sink)
groups = choose_groups(similarity, threshold=settings.threshold, max_block=settings.max_block)
second_groups = choose_groups(similarity, threshold=settings.second_threshold, max_block=settings.max_block)
n_params = models.count_parameters(model)
savings = sharing_savings(groups, model.config, seq_len=settings.seq_len, n_parameters=n_params)
second_savings = sharing_savings(second_groups, model.config, seq_len=settings.seq_len, n_parameters=n_params)
block = similar_block(similarity, settings.threshold)
pd.DataFrame([dict(threshold=t, groups=str(g), shared_layers=s["n_shared"], qk_params_removed=s["qk_params_removed"],
                   params_pct=100 * s["params_fraction"], forward_flops_pct=100 * s["flops_fraction"])
              for t, g, s in ((settings.threshold, groups, savings), (settings.second_threshold, second_groups, second_savings))]).round(2)

# %%
print(f"This run ({settings.name} profile, {settings.n_texts} texts × {settings.seq_len} tokens): groups at "
      f"{settings.threshold}: {groups or 'none'}; at {settings.second_threshold}: {second_groups or 'none'}; most similar "
      f"block: layers {block['first']}–{block['last']} (mean {block['inside']:.3f} inside, {block['outside']:.3f} outside).")

# %% [markdown]
# ## The similarity map
# Hover for both layer numbers and the value. Red boxes: the groups chosen at `threshold`.

# %%
figures.similarity_heatmap(result, settings.metric, settings.sink, groups).show()

# %% [markdown]
# ### How much the attention sink inflates it
# The same matrix with the sink column kept, and the mean probability each layer puts on the first token.

# %%
other = "kept" if settings.sink == "dropped" else "dropped"
figures.similarity_heatmap(result, settings.metric, other).show()
sink_effect = (result.similarity(settings.metric, "kept") - result.similarity(settings.metric, "dropped"))[~np.eye(n_layers, dtype=bool)]
print(f"keeping the sink changes {settings.metric} by {sink_effect.mean():+.3f} on average over layer pairs (max {sink_effect.max():+.3f})")
print("mass on the first token, layer: mass =", ", ".join(f"{layer}: {mass:.2f}" for layer, mass in enumerate(result.sink_mass)))

# %% [markdown]
# ## Neighbours, and how stable the pattern is across texts

# %%
figures.adjacent_curves(result, settings.metric).show()

# %% [markdown]
# ## One layer pair in detail: per head, and the maps themselves

# %%
first, second = settings.layer_pair
figures.head_pair_heatmap(result, settings.metric, settings.sink, first, second).show()
figures.map_pair(result, first, second, head, settings.sink, settings.map_scale).show()

# %% [markdown]
# ## Explore (JupyterLab)
# Pick the metric, sink handling (it applies to the maps too), layer pair, head, threshold and the maps' colour
# scale; the figures update from the stored result without running the model again. (In an executed HTML copy of
# this notebook the widgets do not run: the static figures above are the record.)

# %%
Explorer(result, View(settings.metric, settings.sink, settings.layer_pair[0], settings.layer_pair[1], head, settings.threshold, settings.map_scale),
         max_block=settings.max_block)

# %% [markdown]
# ## Record the result
# Matrices, kept maps and the chosen groups go to the run store (kind `attention_similarity`): the
# distillation notebook (02) takes this run's id (or "latest") as its `attention_run` parameter and uses its
# similarity matrix under the same metric and sink, and shows its groups; the dashboard shows the run next to others.

# %%
result.save(run, groups=groups)
run.finish(summary=dict(
    model=settings.model_name, metric=settings.metric, sink=settings.sink, threshold=settings.threshold, second_groups=second_groups, second_threshold=settings.second_threshold,
    n_shared=savings["n_shared"], params_fraction=savings["params_fraction"], flops_fraction=savings["flops_fraction"],
    block_first=block["first"], block_last=block["last"], block_inside=block["inside"], block_outside=block["outside"],
    sink_effect=float(sink_effect.mean()), analysis_s=result.seconds))
print(f"run {run.id} saved: {len(groups)} groups at threshold {settings.threshold}")

# %% [markdown]
# ## Conclusion (written from the numbers above)

# %%
adjacent_mean, adjacent_spread = result.adjacent(settings.metric, settings.sink)
stable = adjacent_spread.mean()
if block["length"] > 1:
    block_text = (f"the longest run of layers whose neighbours stay at or above {settings.threshold} is **layers {block['first']}–{block['last']}** "
                  f"({block['length']} layers). Mean similarity inside it **{block['inside']:.3f}**, outside it **{block['outside']:.3f}**.")
else:
    best = int(np.argmax(adjacent_mean))
    block_text = (f"no two neighbouring layers reach {settings.threshold}; the most similar neighbours are layers {best} and {best + 1} "
                  f"({adjacent_mean[best]:.3f}); mean similarity over all pairs {block['outside']:.3f}.")
display(Markdown(f"""
- **Similar block.** With {figures.LABELS[settings.metric]} (sink {settings.sink}), {block_text}
- **The paper's metric.** Cosine of the head-averaged maps, adjacent layers: {result.adjacent("cosine_map", settings.sink)[0].mean():.3f} on
  average, against {result.adjacent("cosine", settings.sink)[0].mean():.3f} for the mean of per-head cosines (the groups use {figures.LABELS[settings.metric]}).
- **Sink.** Keeping the first-token column changes the {settings.metric} by {sink_effect.mean():+.3f} on average over layer pairs; the
  first token gets {result.sink_mass.min():.2f}–{result.sink_mass.max():.2f} of the attention, depending on the layer.
- **Stability.** Across {result.n_texts} texts the neighbour similarity varies by ±{stable:.3f} (mean std), against a range
  of {adjacent_mean.min():.2f}–{adjacent_mean.max():.2f} between layer pairs.
- **Sharing.** At threshold {settings.threshold}: {savings['n_shared']} layers could reuse attention, groups {groups}
  (−{100 * savings['params_fraction']:.2f}% parameters, −{100 * savings['flops_fraction']:.2f}% forward FLOPs at {settings.seq_len} tokens).
  At {settings.second_threshold}: {f"{second_savings['n_shared']} layers, groups {second_groups} (−{100 * second_savings['params_fraction']:.2f}% parameters)" if second_groups else "no group forms"}.
- Measured on {result.n_texts} texts × {result.seq_len} tokens ({'custom texts' if settings.texts else settings.corpus}), profile "{profile}", in {result.seconds:.0f} s.
  Similarity alone does not guarantee that copying is harmless: the distillation notebook measures that.
"""))
