# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Relaxed Recursive Transformers: one block looped, relaxed by per-depth LoRA, exiting early
#
# **The idea.** *Relaxed Recursive Transformers: Effective Parameter Sharing with Layer-wise LoRA* (Bae, Fisch, Harutyunyan, Ji, Kim,
# Schuster; arXiv:2410.20672, ICLR 2025) turns a pretrained model with $L$ layers into one with only $K = L/B$ unique layers that are
# **looped** $B$ times (CYCLE sharing: effective layer $\ell$ runs shared layer $\ell \bmod K$). The shared layers are initialised from
# the pretrained ones (**Stepwise**: every few layers, keeping first and last; **Average**: the mean of the layers that will share;
# **Lower**: the first $K$), then the model is *uptrained*. The **relaxed** version gives every depth its own LoRA on all seven
# linears, $h = W'x + B_\ell A_\ell x$, initialised by truncated SVD of what sharing took away, $W_\ell - W'$.
#
# **Why it matters.** Half (B=2) or a third (B=3) of the non-embedding parameters; and because every loop runs the same weights,
# tokens at *different* depths can share one batch, so with early exits a server keeps its batch full (**continuous depth-wise
# batching**).
#
# **What the paper claims** (Gemma 2B → 2 loops, 15B uptraining tokens, average few-shot accuracy): full model 60.1; recursive Stepwise
# 51.7 (Average 46.7, Lower 47.1: Stepwise is the best plain initialisation); reduced-depth model trained from scratch 38.2; Average
# + SVD-LoRA improves with rank up to 55.5 at r=512, and SVD init beats zero init (49.0 at r=512); simulated throughput ×2.66 with
# depth-wise batching and early exits.
#
# **At SmolLM2-135M** (measured on the CPU before any training, 4 × 512 held-out tokens; `docs/ideas.md`, recorded 2026-11-30): nothing survives conversion untrained (perplexity
# in the millions for every variant, Stepwise least bad); tying the RMSNorm weights alone costs perplexity 25 → 14,796 even with a
# full-rank relaxation. So every arm here is **uptrained** for the same steps on the same tokens with the same loss, cross-entropy
# plus forward KL from the full model, and compared with fair baselines trained the same way: the full model continued-trained on the
# same tokens, and a model of the reduced depth trained from scratch. Every arm runs once per seed (`seeds`); a claim is judged on
# log-perplexity differences paired by seed, and needs two seeds at least. Each arm is also scored zero-shot on held-out text
# (`workbench.zeroshot`: a last-word cloze and a 4-way continuation choice).
#
# Profiles: `smoke` runs every step on a tiny *random* model on the CPU (its numbers only show the code runs); `full` runs SmolLM2-135M
# on one GPU (`arms="no_lora"` and `arms="lora"` split it in two: 142 s and 165 s on an H200 on 2026-11-30, 80 steps per arm, one seed,
# with that day's profile; the whole, `arms="all"`, did not finish within 285 s then).

# %% tags=["parameters"]
profile = "smoke"  # "smoke": CPU, tiny random model, ~3 min on 2 shared cores; "full": GPU, SmolLM2-135M
# Settings of RecursiveProfile; None: the profile's value
arms = None  # "all", "no_lora" (plain recursive + baselines) or "lora" (Average + LoRA ranks, early exit, batching)
loops = None  # numbers of loops B, e.g. [2, 3]
ranks = None  # SVD-initialised LoRA ranks on the Average model, e.g. [8, 32, 128]
zero_rank = None  # rank of the zero-initialised LoRA arm
tie_norms = None  # tie RMSNorm weights across depth (the paper) or keep them per depth
steps = None  # uptraining steps per arm (the same for every arm)
lr = None  # uptraining learning rate
exit_steps = None  # early-exit post-training steps
seeds = None  # data orders per arm: every arm runs once per seed (a claim needs 2 at least)
lora_inits = None  # initialisations relaxed with SVD-LoRA at every rank, e.g. ["average", "stepwise"]
inits = None  # initialisations of the plain recursive arms, e.g. ["stepwise", "average", "lower"]
eval_windows = None  # held-out windows of block_len for each arm's final perplexity (None: all)
zeroshot_items = None  # items of each zero-shot task per arm
corpus = None  # None: the profile's ("python-code" full, "python-docs" smoke), a text file or folder, or "hf:NAME"
allow_repeats = None  # True lets a full run train more than one epoch of its corpus

# %%
import pandas as pd
from IPython.display import Markdown, display

import workbench.notebook
from workbench.recursive import report
from workbench.recursive.experiment import RecursiveExperiment
from workbench.recursive.profile import RecursiveProfile

workbench.notebook.setup()
settings = RecursiveProfile.resolve(
    profile, corpus=corpus, allow_repeats=allow_repeats,
    arms=arms, loops=loops, ranks=ranks, zero_rank=zero_rank,
    tie_norms=tie_norms, steps=steps, lr=lr, exit_steps=exit_steps, seeds=seeds,
    lora_inits=lora_inits, inits=inits, eval_windows=eval_windows, zeroshot_items=zeroshot_items,
)

# %%
live = report.LiveCurves()
experiment = RecursiveExperiment(settings, callback=live)
print(f"{settings.model} on {experiment.device}: {experiment.teacher.config.num_hidden_layers} layers; "
      f"{len(experiment.train_tokens):,} training / {len(experiment.val_tokens):,} held-out tokens of {settings.corpus}; "
      f"every arm sees {settings.steps * settings.batch_size * settings.block_len:,} tokens ({experiment.epochs():.2g} epochs)")
pd.DataFrame([a.__dict__ for a in experiment.arms]).drop(columns="kind")

# %% [markdown]
# ## 1. Uptraining every arm (live)
#
# Held-out perplexity of each arm during uptraining; the first point of each curve is the model right after conversion.

# %%
display(live.figure)
result = experiment.run()

# %% [markdown]
# ## 2. Perplexity against parameters: the paper's main plot
#
# Every arm after the same uptraining, against its non-embedding parameters (LoRA included). Colours: what differs (baselines,
# plain recursive, SVD- or zero-initialised LoRA); symbols: the initialisation.

# %%
display(report.summary_table(result.table))
report.params_figure(result.table)

# %% [markdown]
# ## 3. Relaxation: perplexity against LoRA rank
#
# Rank 0 is the plain model of each initialisation; the paper finds Average + SVD-initialised LoRA improving with rank and beating
# zero initialisation, and Stepwise + SVD-LoRA U-shaped (mid ranks worse than none, the largest rank recovering).

# %%
report.rank_figure(result.table)

# %% [markdown]
# ## 4. Early exit: how many tokens could leave after the first loop?
#
# The Stepwise model of the first B is post-trained with $L_\text{final} + 0.1 \sum_{b<B} \mathrm{KL}(\mathrm{sg}(p_B) \,\|\, p_b)$. The
# oracle exits a token at the first loop whose argmax equals the final one; a confidence rule exits when the top probability reaches τ.

# %%
if result.thresholds.empty:
    display(Markdown("No early-exit arm in this run (`arms='no_lora'`)."))
else:
    display(result.exits.round(3))
    display(result.thresholds.round(3))
    display(report.exit_figure(result.thresholds))

# %% [markdown]
# ## 5. Continuous depth-wise batching (simulated)
#
# Decode throughput of a queue of requests whose per-token exit loops are the measured held-out ones, served with the **measured**
# cost of one loop at each batch size; the schemes are described in `workbench/recursive/batching.py`. These throughputs are
# **simulated** (as in the paper); only the step costs and the exits are measured. A token that exits early still owes the keys and
# values of the loops it skipped (the next forward at that loop fills them, at the cost of the K/V projections). Two cost models: the
# measured loop costs (flat in the batch at this size: launch-bound, so their ratios are ratios of loop steps) and work-proportional
# costs (no batching economy). The verdict uses the deployable confidence exits; the oracle is the ceiling.

# %%
if result.throughput.empty:
    display(Markdown("No batching simulation in this run (`arms='no_lora'`)."))
else:
    display(pd.Series(result.costs, name="seconds per loop").rename_axis("batch size").to_frame())
    display(result.throughput.round(3))
    display(report.throughput_figure(result.throughput))

# %% [markdown]
# ## 6. Conclusion

# %%
display(Markdown(report.conclusion(result.table, result.throughput, result.thresholds, costs=result.costs, profile=settings)))
