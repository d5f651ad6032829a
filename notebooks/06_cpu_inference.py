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
# # A small model on a CPU: precision, threads and grouped-query attention
#
# **The idea.** GEB-1.3B ("GEB-1.3B: Open Lightweight Large Language Model", Wu, Zhu, Shen, Lu, arXiv:2406.09900) is built to run where
# there is no GPU: 1.3B parameters, RoPE, **grouped-query attention** (16 query heads sharing 4 key/value heads) and untied embeddings.
#
# **Why it matters.** Generating a token reads every weight once and does two flops per weight read, so on a CPU decoding is bound by
# memory bandwidth: a smaller model, fewer bytes per weight (quantisation) and a smaller KV cache (GQA) each make it faster.
#
# **What the paper claims** (README): **12 tokens/s on a CPU in float32** for 1.3B parameters; quantisation "planned" to go faster. Checked
# here at SmolLM2-135M's size (also GQA, 9 query / 3 KV heads):
# 1. float32 decoding of a GEB-1.3B-sized model reaches 12 tokens/s on this CPU: a projection, the measured rate times SmolLM2's
#    weight bytes over GEB's (decoding reads every weight once per token, so the rate scales with the bytes read);
# 2. int8 weights make decoding at least **1.5x** faster with perplexity within **2%** (and which int8 keeps quality);
# 3. GQA speeds up decoding at long context (its KV cache is H/G times smaller: a property of the code, unit-tested);
# 4. at equal parameters, GQA costs no quality (a short from-scratch training of MHA, GQA and MQA on the GPU, judged as an equivalence
#    over seeds: "no difference detected" only when the interval lies within ±0.02 nats), and a GEB-shaped small model (GQA 4:1, RoPE,
#    untied embeddings) trains.
#
# **Reading the speeds.** Timings interleave every contender round by round and report the median with the interquartile spread; on a shared
# machine (the CI machine has 2 cores shared by several processes) single timings mean little. On the GPU machine, the CPU parts measure its
# host CPU, and are labelled with it.
#
# Profiles: `smoke`: a tiny *random* model through every step on the CPU in about a minute and a half (70-89 s on 2 shared cores at load 3.4-3.8, 2026-12-02;
# its numbers only show that the code runs); `full`: SmolLM2-135M on the CPU at 1 and 16 threads (`threads=[1, 4, 16]` for the curve), then
# training on the GPU (242 s on a 2×H200 machine's 32-core host on 2026-11-30, with that day's profile).

# %% tags=["parameters"]
profile = "smoke"  # "smoke": tiny random model, CPU, ~90 s on 2 shared cores; "full": SmolLM2-135M + GPU training, ~4 min
# Settings of CpuProfile; None: the profile's value
precisions = None  # e.g. ["float32", "bfloat16", "int8", "int8-dynamic", "int4"]
threads = None  # torch thread counts to time, e.g. [1, 2, 4]
new_tokens = None  # tokens generated per timed call (batch 1, prompt 128 in the full profile)
rounds = None  # interleaved timing rounds
gqa_contexts = None  # cached tokens at which MHA/GQA/MQA decode is timed, e.g. [256, 1024, 4096]
train = None  # train MHA/GQA/MQA and the GEB-shaped model from scratch (GPU)
steps = None  # training steps per arm (the same for every arm)
seeds = None  # seeds per attention variant, e.g. [0, 1, 2]
chat_question = None  # the streaming chat demo's question
corpus = None  # None: the profile's ("python-code" full, "python-docs" smoke), a text file or folder, or "hf:NAME"
allow_repeats = None  # True lets a full run train more than one epoch of its corpus

# %%
from IPython.display import Markdown, display

from workbench import notebook
from workbench.cpu import report
from workbench.cpu.experiment import CpuExperiment
from workbench.cpu.profile import CpuProfile
from workbench.cpu.quantize import DESCRIPTIONS

notebook.setup()
settings = CpuProfile.resolve(
    profile, corpus=corpus, allow_repeats=allow_repeats,
    precisions=precisions, threads=threads, new_tokens=new_tokens, rounds=rounds,
    gqa_contexts=gqa_contexts, train=train, steps=steps, seeds=seeds, chat_question=chat_question,
)
experiment = CpuExperiment(settings)
print(f"model {settings.model}; CPU: {experiment.cpu}; threads timed: {experiment.threads}")
if experiment.skipped:
    print(f"not available here (optional extra not installed): {', '.join(experiment.skipped)}")

# %% [markdown]
# ## 1. Precision and threads: prefill and decode tokens/s, with perplexity on the same text
#
# Each precision is a copy of the model (`workbench.cpu.quantize`). The int8 that keeps quality is **weight-only**: one int8 scale per
# output row, activations left in floating point, run through PyTorch's own int8 weight-only CPU kernel. `int8-dynamic` also rounds every
# activation to int8 (the `torch.ao` dynamic path): the contrast. Prefill is one pass over the prompt (a matrix product, compute-bound);
# decode is one token at a time through the KV cache (matrix-vector, memory-bound). Where `llama-cpp-python` is installed (extra `llamacpp`),
# llama.cpp, what a user would pick instead, runs the model's own Q4_1 GGUF file in the same timing rounds and on the same text.

# %%
for name in experiment.precisions:
    print(f"{name:>13}: {DESCRIPTIONS[name]}")
precision_table = experiment.precision_table()
display(report.precision_summary(precision_table))
display(report.speed_figure(precision_table, experiment.cpu))
report.tradeoff_figure(precision_table)

# %% [markdown]
# ## 2. Streaming chat on the CPU
#
# The int8 copy answers; each piece of text is printed as soon as its token is chosen (`workbench.generate.sample` calls back per token).

# %%
print(f"Q: {settings.chat_question}\nA: ", end="")
answer = experiment.chat(settings.chat_question, precision="int8")
print()

# %% [markdown]
# ## 3. Grouped-query attention: KV-cache bytes and decode speed against context
#
# The same shape (SmolLM2-135M's in the full profile: 30 layers, d = 576, 9 query heads) with 9 (MHA), 3 (GQA) and 1 (MQA) key/value heads;
# the FFN of the GQA and MQA variants is widened to keep the parameter count equal. The cache holds
# $2 \cdot L \cdot B \cdot T \cdot G \cdot d_{head} \cdot s$ bytes (dotted: the formula; solid: the measured tensors). Decode speed is timed
# with a cache already holding $T$ tokens (random values: the speed does not depend on them), so long contexts cost no prefill.

# %%
gqa_table = experiment.gqa_table()
display(report.gqa_figure(gqa_table, experiment.cpu))
gqa_table.assign(kv_mb=gqa_table["kv_bytes_measured"] / 1e6)[["variant", "context", "kv_mb", "decode_tok_s", "decode_spread"]].round(3)

# %% [markdown]
# ## 4. Does GQA cost quality? MHA, GQA 4:1 and MQA at equal parameters, and a GEB-shaped model (GPU)
#
# From scratch, each variant trains on the same tokens (`steps` x `batch_size` x `block_len`, the epochs over the corpus are shown) for each
# seed; held-out loss on the last 5% of the corpus. The GEB-shaped model (in the full profile 12 layers, d = 512, GQA 4:1; smoke shrinks it to
# 2 layers, d = 64, 4 heads sharing 1 KV head; always RoPE, untied embeddings, FFN ratio 2.75 as in GEB-1.3B) trains once on the same tokens.
# The curves fill in as training runs.

# %%
trained = None
if settings.train:
    live = report.LiveCurves()
    display(live.figure)
    trained = experiment.train_table(callback=live)  # arms past the time limit (if any) are listed, not trained
    if not trained.empty:
        display(report.training_summary(trained).astype(object).fillna("n/a"))  # ± std of one seed: not measured
        display(report.training_figure(trained))

# %% [markdown]
# ## Conclusion

# %%
Markdown(report.conclusion(precision_table, gqa_table, trained, profile=settings))
