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
# # Masked diffusion language models against autoregressive ones
#
# **The idea.** An autoregressive model (ARM) writes text left to right, one token per network call. A *masked diffusion model*
# (MDM) starts from a sequence of mask tokens `[M]` and reveals tokens in any order, several per call, with a bidirectional
# network. "Scaling up Masked Diffusion Models on Text" (SMDM, Nie et al., ICLR 2025, arXiv 2410.18514), building on MDLM (Sahoo
# et al., NeurIPS 2024, arXiv 2406.07524), trains such models at scale with the same LLaMA backbone as an ARM:
#
# - forward process: each token becomes `[M]` independently with probability $t$; the network $p_\theta(x^0 \mid x_t)$ has no
#   time input;
# - objective (an upper bound on the NLL, the negative ELBO):
#   $\;-\log p_\theta(x) \le \mathbb E_{t\sim U(0,1)}\big[\tfrac1t \sum_{i:\,x_t^i=[M]} -\log p_\theta(x^i\mid x_t)\big]$;
# - sampling: from $t$ to $s<t$, reveal masked positions (at random: *ancestral*; the most confident: *low-confidence
#   remasking*), so the number of network calls is a free choice, not the length;
# - unsupervised classifier-free guidance: the unconditional model is the same network with the prompt replaced by `[M]`,
#   $\ell_w = \ell_{uncond} + (w+1)(\ell_{cond}-\ell_{uncond})$.
#
# **Why it matters.** Fewer network calls than tokens could make generation cheaper than an ARM with a KV cache, and a model that
# conditions on any subset of tokens should not suffer the *reversal curse*.
#
# **What the paper claims:** MDM loss scales with compute at a rate comparable to ARMs, with about a **16× compute gap**; a 1.1B
# MDM beats TinyLlama on 4 of 8 zero-shot tasks; with guidance it matches ARM quality while sampling **1.4× faster** than an ARM
# with KV cache; it **breaks the reversal curse**.
#
# **Here, in miniature:** ARMs and MDMs of the same LLaMA shapes (1–8M non-embedding parameters $N$, 7–21M with the 49k-word tied
# embedding) trained from scratch by the workbench's compiled loop on the same blocks of text, compared by training FLOPs
# $C = 6ND$ with $N$ non-embedding (SMDM's convention), each point at two or more paired seeds (a verdict needs two). Profiles:
# `smoke` runs every step with tiny models on a CPU (it checks the code path and judges nothing); `full` is sized for one GPU.
# `part` runs one experiment ("scaling", "sampling", "reversal") or all.

# %% tags=["parameters"]
profile = "smoke"  # "smoke": CPU, tiny models, ~2 min on 2 shared cores; "full": one GPU
# Settings of DiffusionProfile; None: the profile's value
part = None  # "all", "scaling", "sampling" (quality, speed, guidance) or "reversal"
sizes = None  # model sizes, e.g. ["s", "m", "l"] (see workbench.diffusion.profile.SIZES)
budgets = None  # training FLOPs per arm, e.g. [2.5e14, 1e15]
steps = None  # MDM sampling steps, e.g. [8, 16, 32, 64, 96]
guidance_ws = None  # guidance strengths scored by likelihood, e.g. [0, 0.5, 1, 2]
reversal_steps = None  # training steps of each reversal-curse arm
reversal_seeds = None  # seeds of the reversal-curse arms, e.g. [0, 1, 2]
seeds = None  # paired training seeds of the scaling grid, sampling and guidance, e.g. [0, 1]
compile = None  # None: compiled training step on a GPU (both losses); False: eager
corpus = None  # None: the profile's ("python-code" full, "python-docs" smoke), a text file or folder, or "hf:NAME"
allow_repeats = None  # True lets a full run train more than one epoch of its corpus

# %%
from IPython.display import Markdown, display

import workbench.notebook
from workbench import plots
from workbench.diffusion import report
from workbench.diffusion.experiment import DiffusionExperiment
from workbench.diffusion.profile import DiffusionProfile
from workbench.diffusion.view import UnmaskingView

workbench.notebook.setup()
settings = DiffusionProfile.resolve(
    profile, corpus=corpus, allow_repeats=allow_repeats,
    part=part, sizes=sizes, budgets=budgets,
    steps=steps, guidance_ws=guidance_ws,
    reversal_steps=reversal_steps, reversal_seeds=reversal_seeds, compile=compile,
    seeds=seeds,
)
experiment = DiffusionExperiment(settings)
print(f"{experiment.device_name}: {len(experiment.train_tokens):,} training / {len(experiment.val_tokens):,} held-out tokens of "
      f"{settings.corpus}; sweep {experiment.sweep}")
scaling = quality = speed = guidance = reversal = None

# %% [markdown]
# ## 1. Mini scaling: held-out loss against training compute
#
# Every size × FLOP budget × seed, for both arms, trained on the *same* random blocks of the training split (the ARM's block has
# one more token: its last target; a seed fixes both arms' initial weights and blocks). Steps
# $= C / (6 N \cdot \text{batch} \cdot \text{length})$ with $N$ the non-embedding parameters, as SMDM counts them (the tied
# 49k-word embedding is 60–85% of these models; the table shows both counts). Held-out loss on the same blocks for both: the ARM's
# exact NLL of tokens 2…T given token 1, the MDM's Monte Carlo ELBO of the same tokens given the same first token (stratified $t$,
# fixed seed: an upper bound on its NLL). The curves update live as each run is evaluated.

# %%
if settings.runs("scaling"):
    live = report.LiveCurves(settings.sizes)
    display(live.figure)
    scaling = experiment.scaling(callback=live)
    display(report.scaling_display(scaling))

# %%
if scaling is not None:
    display(report.scaling_figure(scaling))
    display(plots.readable(report.compute_gap(scaling)).rename(columns={"budget": "budget (FLOPs)", "mdm_nll": "MDM best ELBO",
                                                          "arm_flops_same_nll": "ARM FLOPs for that loss", "gap": "compute gap ×"}))

# %% [markdown]
# ## 2. Sample quality against steps, and speed
#
# Continuations of held-out prompts by the largest ARMs (KV cache, `workbench.generate.sample`) and the largest MDM (both
# samplers; Gumbel-max in float64, temperature as set; a cache skips the network when no token changed). Quality: perplexity of
# the continuation under SmolLM2-135M (the judge) and the unigram entropy of each sample (a collapse into repeated tokens would
# flatter the judge). Every sampler runs at the same temperature, and "faster at matched quality" only counts settings whose
# samples are as diverse as the ARM's or the real text's (entropy within `entropy_tolerance` nats): low-confidence remasking is
# judged beside the like-for-like ancestral sampler. Speed: wall time per sample at batch 1 and at a larger batch, all contenders
# timed in interleaved rounds.

# %%
if settings.runs("sampling"):
    quality, speed = experiment.sampling()
    display(plots.readable(quality))
    display(report.quality_figure(quality))

# %%
if speed is not None:
    display(speed.pivot_table(index=["model", "sampler", "steps"], columns="batch", values="s_per_sample").round(5))
    display(report.speed_quality_figure(quality, speed))

# %% [markdown]
# ### Watch one sample being written
#
# Slide through the steps: the MDM reveals tokens anywhere, most confident first; the ARM writes left to right. Colour: the
# probability the model gave the token it wrote, when it wrote it. Both models are trained at `trace_budget` FLOPs (default: the
# grid's largest budget; smoke trains two more above its grid, where a few steps leave every token at $p \approx 1/49{,}152$).

# %%
if settings.runs("sampling"):
    view = UnmaskingView(experiment.traces(steps=min(16, settings.gen_len)), experiment.tokenizer, settings.prompt_len)
    display(view.widget)
    view.snapshots().show()  # the MDM; the record an HTML copy keeps: the prompt, two steps between, the final sample

# %% [markdown]
# ## 3. Unsupervised classifier-free guidance
#
# SMDM judges guidance by zero-shot accuracy at a tuned $w$. Here: a 4-way continuation choice and a last-word cloze built from
# held-out text (`workbench.zeroshot`), scored by the guided MDM's chain-rule likelihood (the ARM's exact one beside); $w$ is tuned
# on half of the items and judged on the other half. Beside it, the likelihood of true continuations (ELBO and chain-rule NLL of
# the last `block_len - cond_len` tokens of held-out blocks) and the quality of generated samples against $w$.

# %%
if settings.runs("sampling"):
    guidance = experiment.guidance()
    display(plots.readable(guidance))
    display(report.guidance_accuracy_figure(guidance))
    display(report.guidance_figure(guidance))

# %% [markdown]
# ## 4. The reversal curse
#
# SMDM's protocol (Berglund et al.'s data, in miniature): both arms are first pretrained on the corpus (the scaling part's
# checkpoints at the largest budget), then fine-tuned for the same steps on the same batches of facts about fictitious people: a
# third seen only as "⟨name⟩ is the ⟨description⟩.", a third only as "The ⟨description⟩ is ⟨name⟩.", a third in both directions,
# each direction in up to 30 paraphrases. Each arm is asked both directions (greedy; the MDM with the low-confidence sampler, one
# token per step, with and without guidance); an answer counts when the reference is contained in the generation. The reverse
# direction is judged only once both arms know the seen one (≥ 90%): before that, a miss says nothing about the curse.

# %%
if settings.runs("reversal"):
    reversal = experiment.reversal()
    display(plots.readable(report.reversal_summary(reversal)).astype(object).fillna("n/a"))  # n/a: one seed, or an ARM (no infill)
    display(report.reversal_figure(reversal))

# %% [markdown]
# ## Conclusion (generated from the measured numbers above)

# %%
display(Markdown(f"Measured on {experiment.device_name} (sweep `{experiment.sweep}` in the run store).\n\n"
                 + report.conclusion(scaling, quality, speed, guidance, reversal, profile=settings.name,
                                     entropy_tolerance=settings.entropy_tolerance, known=settings.reversal_known,
                                     reversal_w=settings.reversal_cfg)))
