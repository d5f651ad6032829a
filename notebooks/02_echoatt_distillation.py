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
# # EchoAtt: attend, copy, then adjust
#
# **The idea.** In a trained LLM, many inner layers attend in almost the same way. EchoAtt (Rajabzadeh, Jafari et al., arXiv 2409.14595,
# ENLSP@NeurIPS 2024) turns that into a smaller, faster *student*:
#
# 1. **Attend**: measure how similar the attention probabilities $A_\ell = \mathrm{softmax}(Q_\ell K_\ell^\top/\sqrt d + M)$ of every pair of layers are.
# 2. **Copy**: in a group of consecutive similar layers $[h, f_1, f_2, \dots]$ only the head $h$ computes $A_h$; each follower reuses it with its own
#    values, $o_f = W_O^f (A_h V_f)$, and loses its $W_Q$ and $W_K$.
# 3. **Adjust**: the student (everything else inherited from the teacher) is trained by knowledge distillation from the teacher.
#
# **Why it matters.** A follower skips its Q/K projections, RoPE and $QK^\top$ + softmax, and caches only V: fewer parameters, less compute, a
# smaller KV cache.
#
# **What the paper claims** (TinyLlama-1.1B teacher): about **+15% inference speed**, **+25% training speed**, **about 4% fewer parameters**, and
# zero-shot quality that does not drop (even improves).
#
# **What is known at SmolLM2-135M size** (measured on the CPU on 4 × 512 held-out tokens, recorded in `docs/ideas.md`, EchoAtt, on 2026-11-30):
# naive head-averaged similarity is dominated by the attention-sink column; copying without training is destructive (4 shared layers: perplexity
# 25.2 → 35.9); long chains are much worse than reusing the immediate predecessor.
# So here the similarity is measured per head with the sink column removed, groups are short, and **every** arm is distilled and then compared with
# **fair baselines**: random layers and the last inner layers with the same budget, and the teacher continued-trained on the same tokens.
# "No loss in quality" is judged where the paper makes it, at its cut (the budget nearest −4% parameters), against that continued teacher, and
# over `quality_seeds` batch orders of both (paired by seed), never by the best of all students.
#
# Profiles: `smoke` runs every step on a tiny *random* teacher on the CPU in about a minute (its numbers only show that the code runs);
# `full` runs SmolLM2-135M on a GPU (6 and 12 shared layers; 474 s on one H200 on 2026-11-30, about 30 s per trained arm, before the
# `quality_seeds` arms were added: longer now, by about 30 s per extra arm, not yet timed).

# %% tags=["parameters"]
profile = "smoke"  # "smoke": CPU, tiny random teacher, ~1 min; "full": GPU, SmolLM2-135M teacher, 8+ min
# Settings of EchoAttProfile; None: the profile's value
budgets = None  # numbers of shared layers, e.g. [6, 12]
random_draws = None  # random arms per budget
steps = None  # training steps per arm (the same for every arm)
quality_seeds = None  # seeds of the continued teacher and the similarity student at the paper's cut (paired verdict)
eval_windows = None  # held-out windows of the final evaluation (None: the whole split; fewer: a shorter GPU job)
attention_run = None  # an attention-lab run of notebook 01 (its run id, or "latest"): use its similarity, metric and groups
metric = None  # similarity that chooses the layers when attention_run is None: "cosine", "cosine_map" (the paper's), "jsd", "cka"
drop_sink = None  # remove the attention-sink column before comparing maps
max_block = None  # longest sharing group, head included (2: each follower reuses its predecessor)
corpus = None  # None: the profile's ("python-code" full, "python-docs" smoke), a text file or folder, or "hf:NAME"
allow_repeats = None  # True lets a full run train more than one epoch of its corpus

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

import workbench.notebook
from workbench import plots, runs
from workbench.attention.similarity import NAMES
from workbench.echoatt import report
from workbench.echoatt.experiment import EchoAttExperiment
from workbench.echoatt.profile import EchoAttProfile

workbench.notebook.setup()
settings = EchoAttProfile.resolve(
    profile, corpus=corpus, allow_repeats=allow_repeats,
    budgets=budgets, random_draws=random_draws, steps=steps, quality_seeds=quality_seeds, eval_windows=eval_windows,
    metric=metric,
    attention_run=None if attention_run is None else str(attention_run),
    drop_sink=drop_sink, max_block=max_block,
)

# %%
experiment = EchoAttExperiment(settings)
print(f"teacher {settings.teacher} on {experiment.device_name}: {experiment.n_layers} layers; "
      f"{len(experiment.train_tokens):,} training / {len(experiment.val_tokens):,} held-out tokens of {settings.corpus}")
pd.Series(settings.as_dict()).to_frame("setting")

# %% [markdown]
# ## 1. Attend: which layers attend alike?
#
# With `attention_run` set, the similarity comes from that run of the attention lab (notebook 01), under the metric and sink handling the lab used,
# and is not measured again (the lab's model must be the teacher). Otherwise it is measured here: for each pair of layers $(\ell, m)$ the
# similarity of head $h$ of $\ell$ with head $h$ of $m$, averaged over heads and texts (by default "cosine (mean over heads)" after removing the
# first key column and renormalising the rows, which keeps the attention sink from making every late layer look alike; `metric = "cosine_map"`
# is the paper's cosine of the head-averaged maps).

# %%
similarity = experiment.attend()
settings = experiment.profile  # with a lab run: its metric and sink
if experiment.lab is not None:
    print(f"similarity from attention-lab run {experiment.lab.run_id} ({experiment.lab.model_name}); its groups at threshold "
          f"{experiment.lab.threshold}: {experiment.lab.groups}")
else:
    print("similarity measured here (no attention_run given)")
label = f"{NAMES[settings.metric]}{', sink removed' if settings.drop_sink else ''}"
display(plots.heatmap(similarity, f"Teacher: attention similarity between layers, {label}", x_title="layer", y_title="layer",
                      value_name="similarity"))
adjacent = pd.DataFrame({"layer pair (l, l+1)": np.arange(len(similarity) - 1), "similarity": np.diag(similarity, 1)})
plots.curves(adjacent, "layer pair (l, l+1)", "similarity", title="Similarity of each layer to the next")

# %% [markdown]
# ## 2. Copy: which layers each arm shares
#
# Every arm removes $W_Q, W_K$ from the same number $n$ of layers (the *followers*), in groups of at most `max_block` consecutive layers:
#
# - **similarity**: the groups that maximise the summed similarity of each follower to its group's head (`sharing.choose_groups`);
# - **random**: followers drawn at random under the same group structure (several draws);
# - **last**: the last inner layers, packed into groups.

# %%
arms = experiment.choose_arms()
pd.DataFrame([{"arm (every label it stands for)": a.run_name, "shared layers n": a.n_shared, "groups (head first)": a.groups} for a in arms])

# %% [markdown]
# ## 3. Adjust: distil every student, train the teacher on the same tokens
#
# Loss of a student $S$ with teacher $T$ (temperature $\tau$, hidden state $h_\ell$ after layer $\ell$):
# $$L = \alpha\,\mathrm{CE}(y, p_S) + \beta\,\tau^2\,\mathrm{KL}(p_T^{(\tau)} \,\|\, p_S^{(\tau)}) + \gamma\,\frac1L\sum_\ell \frac{\|h^S_\ell - h^T_\ell\|^2}{\|h^T_\ell\|^2}$$
# in two stages: first $\beta$ KL + $\gamma$ hidden-state matching (align the inside), then $\alpha$ CE + $\beta$ KL. The teacher runs without
# gradients (bf16 on a GPU); the 49k-vocabulary logits are computed chunk by chunk. The fair baseline, *teacher + CE (continued)*, is the
# teacher trained with plain cross-entropy on exactly the same batches for the same steps.
#
# Every trained arm sees the same, fixed tokens: `steps` × `batch_size` × `block_len` (printed in the settings above), whatever the machine.
# Arms that pick identical groups (at small sizes the similarity choice may equal a random draw or the last layers) are trained once and
# labelled as all of them.
#
# Before training, every model's speed is measured, all models in the **same interleaved rounds** (warm-up excluded, CUDA events on a GPU,
# median and spread): prefill, the **KD training step** (the teacher taking the very same distillation step) and decode, with the kernel named.
# Followers run on the fused path by default: sharing the probabilities $A_h$ is the same as sharing the head's post-RoPE $Q_h, K_h$, so a follower
# calls SDPA on $(Q_h, K_h, V_f)$. The teacher is measured with fused `sdpa` and with `eager` attention; the similarity arm also all-eager (explicit
# probabilities, eager against eager). The full profile times prefill 32×1024 and a KD step of 32×512, where the GPU is the bottleneck; decode of a
# 135M model stays launch-bound. The curves below update live.

# %%
live = report.LiveCurves()
display(live.figure)
result = experiment.adjust(callback=live)

# %% [markdown]
# ## 4. Results
#
# Perplexity on the held-out split; × columns are ratios to the teacher with the same kernel for its unshared layers (above 1 = faster; KD step ×:
# the student's distillation step against the same step of the teacher). The full table, tokens/s with their spread, is the `results.md` artifact
# of the sweep's "table" run in the run store (`runs.store().load_artifact(result.run_ids["table"], "results.md")`).

# %%
table = result.table
report.display_table(table)

# %%
report.perplexity_figure(table)

# %%
report.speed_figure(table)

# %%
store = runs.store()
names: dict[int, str] = {}
for name, run_id in result.run_ids.items():  # an arm standing for identical ones has one run, several labels
    names[run_id] = f"{names[run_id]} = {name}" if run_id in names else name
history = store.metrics(list(names), keys=["train_loss", "val_ppl"])
history["arm"] = history["run_id"].map(names)
display(plots.curves(history[history["key"] == "train_loss"], "step", "value", group="arm", style=report.ArmStyle(),
                     title="Training loss per arm (students: KD loss; baseline: cross-entropy)", log_y=True))
plots.curves(history[history["key"] == "val_ppl"], "step", "value", group="arm", style=report.ArmStyle(),
             title="Held-out perplexity during training", log_y=True)

# %% [markdown]
# ## Conclusion (generated from the measured numbers above)

# %%
caveat = (
    "*Smoke profile: a tiny **random** teacher on a shared CPU. These numbers only show that every step runs; perplexities near the "
    "vocabulary size and speed ratios of a few-millisecond model mean nothing. Run the `full` profile on a GPU for the real comparison.*\n\n"
    if settings.teacher == "tiny" else ""
)
display(Markdown(f"{caveat}Measured on {result.device} (sweep `{result.sweep}` in the run store).\n\n{report.conclusion(table, result.seeds, profile=settings)}"))
