"""Builds notebooks/01_attention_similarity.ipynb (no outputs): `python notebooks/builders/attention_similarity.py`."""

from pathlib import Path

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell

cells = [
    md("""# Which layers attend alike? The EchoAtt analysis

**The idea.** Every layer of a transformer computes attention probabilities
A_ℓ = softmax(Q_ℓ K_ℓᵀ/√d + M), one T × T map per head. EchoAtt ("Attend, Copy, then Adjust",
Rajabzadeh, Jafari et al., 2024) observes that many *inner* layers of an LLM produce nearly the same
maps, more so in larger models, and lets consecutive similar layers **share** them: only the first
layer of a group computes A; the others reuse it with their own values, so they lose W_Q and W_K
and skip QKᵀ and the softmax. On TinyLlama-1.1B the paper reports ≈4% fewer parameters, +15%
inference and +25% training speed after knowledge distillation.

**Why measure first.** Which layers may share depends on the model, and "similar" depends on the
metric. Here we measure, on any causal LM:
- three metrics over valid (causal, unpadded) entries: **cosine** of the flattened maps (EchoAtt's),
  **1 − Jensen-Shannon divergence** between matching query rows (each row is a distribution), and
  **linear CKA** (query rows as samples, keys as features: compares how rows differ, ignoring what they share);
- with and without the **attention sink**: most layers park a large share of probability on the
  first token; that column inflates every similarity, so we also drop it and renormalise the rows;
- per head and averaged over heads, and the **spread over texts**, to tell a stable pattern from
  one sentence's accident.

The maps are reduced layer by layer while the model runs (one layer's maps in memory at a time),
then the notebook proposes **sharing groups** and what they would save. The groups go to the run
store, where the EchoAtt distillation notebook and the comparison dashboard read them."""),
    code("""# Parameters (papermill overrides these; "smoke": CPU, tiny; "full": GPU, real size)
model_name = "smollm2-135m"
corpus = "python-docs"  # "python-docs", a text file (e.g. WikiText-2), or "hf:DATASET"
texts = []  # custom texts: if given, they are analysed instead of the corpus
n_texts = None  # None: 4 (smoke) or 64 (full)
seq_len = None  # tokens per text; None: 128 (smoke) or 1024 (full)
metric = "cosine"  # "cosine", "jsd" or "cka": the metric that chooses the groups
sink = "dropped"  # "dropped" (first key column removed) or "kept"
threshold = 0.7  # each follower needs at least this similarity to the first layer of its group
second_threshold = 0.6  # a looser threshold, for comparison
max_block = 3  # longest group (head + followers)
layer_pair = [4, 5]  # the pair shown in detail
head = 0  # the head shown in the map figure (None: mean over heads)
map_tokens = 40  # tokens shown in the attention maps
profile = "smoke\""""),
    code("""import numpy as np
import pandas as pd
from IPython.display import Markdown, display

import workbench.notebook
from workbench import models, runs
from workbench.attention import figures
from workbench.attention.analysis import analyze, similar_block, text_blocks
from workbench.attention.explorer import Explorer, View
from workbench.attention.sharing import choose_groups, sharing_savings

workbench.notebook.setup()
workbench.notebook.check_profile(profile)
n_texts = n_texts or {"smoke": 4, "full": 64}[profile]
seq_len = seq_len or {"smoke": 128, "full": 1024}[profile]
batch_size = {"smoke": 4, "full": 16}[profile]
run = runs.start_run("attention_similarity", f"{model_name} {n_texts}x{seq_len}", dict(
    model=model_name, corpus=corpus if not texts else "custom texts", n_texts=n_texts, seq_len=seq_len, metric=metric, sink=sink,
    threshold=threshold, second_threshold=second_threshold, max_block=max_block, profile=profile))"""),
    md("""## Load the model and the texts
The model keeps its fast attention kernel; the analysis switches it to eager attention (the only
backend that returns probabilities) just while it runs. Texts are blocks of `seq_len` tokens spread
evenly over the corpus."""),
    code("""model, tokenizer = models.load_model(model_name, dtype="float32")  # float32 maps: bfloat16 would round each probability by ~0.4%
n_layers, n_heads = model.config.num_hidden_layers, model.config.num_attention_heads
inputs = texts if texts else text_blocks(tokenizer, corpus, n_texts, seq_len)
print(f"{model_name}: {n_layers} layers x {n_heads} query heads ({model.config.num_key_value_heads} KV heads); "
      f"attention backend {model.config._attn_implementation}; {len(inputs)} texts of up to {seq_len} tokens")"""),
    md("""## Measure: all layer pairs, three metrics, with and without the sink
One pass over the texts. Each layer's maps are reduced in a hook as soon as they exist; the maps of
the first text's first tokens are kept for the pictures below."""),
    code("""result = analyze(model, tokenizer, inputs, metrics=("cosine", "jsd", "cka"), drop_sink="both", keep_maps_for=range(n_layers),
                 map_tokens=map_tokens, seq_len=seq_len, batch_size=batch_size)
print(f"{result.n_texts} texts x {result.seq_len} tokens analysed in {result.seconds:.1f} s; backend afterwards: {model.config._attn_implementation}")
overview = pd.DataFrame([
    dict(metric=m, sink=s, adjacent_mean=result.adjacent(m, s)[0].mean(), all_pairs_mean=result.similarity(m, s)[~np.eye(n_layers, dtype=bool)].mean(),
         spread_over_texts=result.spread(m, s)[~np.eye(n_layers, dtype=bool)].mean())
    for m in result.metrics for s in result.sinks]).round(3)
overview"""),
    md("""## Choose sharing groups
Groups of consecutive layers whose later members are similar enough *to the group's first layer*
(the layer whose attention they would reuse), at most `max_block` long: longer chains compound the
error. The choice is exact (dynamic programming) and deterministic."""),
    code("""similarity = result.similarity(metric, sink)
groups = choose_groups(similarity, threshold=threshold, max_block=max_block)
groups_loose = choose_groups(similarity, threshold=second_threshold, max_block=max_block)
n_params = models.count_parameters(model)
savings = sharing_savings(groups, model.config, seq_len=seq_len, n_parameters=n_params)
savings_loose = sharing_savings(groups_loose, model.config, seq_len=seq_len, n_parameters=n_params)
block = similar_block(similarity, threshold)
pd.DataFrame([dict(threshold=t, groups=str(g), shared_layers=s["n_shared"], qk_params_removed=s["qk_params_removed"],
                   params_pct=100 * s["params_fraction"], forward_flops_pct=100 * s["flops_fraction"])
              for t, g, s in ((threshold, groups, savings), (second_threshold, groups_loose, savings_loose))]).round(2)"""),
    md("""## The similarity map
Hover for both layer numbers and the value. Red boxes: the groups chosen at `threshold`."""),
    code("""figures.similarity_heatmap(result, metric, sink, groups).show()"""),
    md("""### How much the attention sink inflates it
The same matrix with the sink column kept, and the mean probability each layer puts on the first token."""),
    code("""other = "kept" if sink == "dropped" else "dropped"
figures.similarity_heatmap(result, metric, other).show()
sink_effect = (result.similarity(metric, "kept") - result.similarity(metric, "dropped"))[~np.eye(n_layers, dtype=bool)]
print(f"keeping the sink changes {metric} by {sink_effect.mean():+.3f} on average over layer pairs (max {sink_effect.max():+.3f})")
print("mass on the first token per layer:", np.round(result.sink_mass, 2))"""),
    md("""## Neighbours, and how stable the pattern is across texts"""),
    code("""figures.adjacent_curves(result, metric).show()"""),
    md("""## One layer pair in detail: per head, and the maps themselves"""),
    code("""first, second = layer_pair
figures.head_pair_heatmap(result, metric, sink, first, second).show()
figures.map_pair(result, first, second, head).show()"""),
    md("""## Explore (JupyterLab)
Pick the metric, sink handling, layer pair, head and threshold; the figures update from the stored
result without running the model again. (In an executed copy of this notebook the static figures
above are the record.)"""),
    code("""Explorer(result, View(metric, sink, layer_pair[0], layer_pair[1], head, threshold), max_block=max_block)"""),
    md("""## Record the result
Matrices, kept maps and the chosen groups go to the run store (kind `attention_similarity`): the
distillation notebook reads `summary["groups"]`, the dashboard shows the run next to others."""),
    code("""result.save(run, groups=groups)
run.finish(summary=dict(
    model=model_name, metric=metric, sink=sink, threshold=threshold, groups_loose=groups_loose, second_threshold=second_threshold,
    n_shared=savings["n_shared"], params_fraction=savings["params_fraction"], flops_fraction=savings["flops_fraction"],
    block_first=block["first"], block_last=block["last"], block_inside=block["inside"], block_outside=block["outside"],
    sink_effect=float(sink_effect.mean()), analysis_s=result.seconds))
print(f"run {run.id} saved: {len(groups)} groups at threshold {threshold}")"""),
    md("""## Conclusion (written from the numbers above)"""),
    code("""adjacent_mean, adjacent_spread = result.adjacent(metric, sink)
stable = adjacent_spread.mean()
if block["length"] > 1:
    block_text = (f"the longest run of layers whose neighbours stay at or above {threshold} is **layers {block['first']}–{block['last']}** "
                  f"({block['length']} layers). Mean similarity inside it **{block['inside']:.3f}**, outside it **{block['outside']:.3f}**.")
else:
    best = int(np.argmax(adjacent_mean))
    block_text = (f"no two neighbouring layers reach {threshold}; the most similar neighbours are layers {best} and {best + 1} "
                  f"({adjacent_mean[best]:.3f}); mean similarity over all pairs {block['outside']:.3f}.")
display(Markdown(f\"\"\"
- **Similar block.** With {metric} (sink {sink}), {block_text}
- **Sink.** Keeping the first-token column changes the {metric} by {sink_effect.mean():+.3f} on average over layer pairs; the
  first token gets {result.sink_mass.min():.2f}–{result.sink_mass.max():.2f} of the attention, depending on the layer.
- **Stability.** Across {result.n_texts} texts the neighbour similarity varies by ±{stable:.3f} (mean std), against a range
  of {adjacent_mean.min():.2f}–{adjacent_mean.max():.2f} between layer pairs.
- **Sharing.** At threshold {threshold}: {savings['n_shared']} layers could reuse attention, groups {groups}
  (−{100 * savings['params_fraction']:.2f}% parameters, −{100 * savings['flops_fraction']:.2f}% forward FLOPs at {seq_len} tokens).
  At {second_threshold}: {savings_loose['n_shared']} layers, groups {groups_loose} (−{100 * savings_loose['params_fraction']:.2f}% parameters).
- Measured on {result.n_texts} texts × {result.seq_len} tokens ({'custom texts' if texts else corpus}), profile "{profile}", in {result.seconds:.0f} s.
  Similarity alone does not guarantee that copying is harmless: the distillation notebook measures that.
\"\"\"))"""),
]

notebook = nbf.v4.new_notebook(cells=cells)
notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
notebook.metadata["language_info"] = {"name": "python"}
notebook.cells[1].metadata["tags"] = ["parameters"]
target = Path(__file__).resolve().parent.parent / "01_attention_similarity.ipynb"
nbf.write(notebook, target)
print(f"wrote {target}")
