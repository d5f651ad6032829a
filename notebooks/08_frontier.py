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
# # The efficiency frontier: every model of every idea on the same axes
#
# Each paper compares its method with its own baselines: an EchoAtt student with its teacher, a
# recursive model with the full one, int8 with float32. A reader of all five asks something none of
# them answers: **for a given budget (parameters, latency, KV-cache memory, training compute), which
# idea buys the most quality, and do the ideas compose?**
#
# Every arm of notebooks 02-06 ends with a **model card** (`workbench.cards`): parameters (total and
# non-embedding), weight bytes at its precision, KV-cache bytes per token (measured), perplexity on
# the **same** held-out windows for every model (python-code's held-out packages and English text; a
# masked diffusion model gives its ELBO bound, drawn as an open circle), zero-shot accuracy, prefill and
# decode speed from the one shared speed measure (`workbench.measure.model_speeds`), training tokens and
# FLOPs. This notebook adds reference points (SmolLM2-135M at four precisions), two **composed** models
# (an EchoAtt student quantised to int8; a relaxed recursive model quantised to int8), and draws the
# Pareto frontier on each budget axis. GPU and CPU speeds are never drawn on one axis.

# %% tags=["parameters"]
profile = "smoke"  # "smoke": tiny models, seconds; "full": SmolLM2-135M references, compositions from stored arms
reference = None  # "smollm2-135m", or "tiny"
precisions = None  # the reference model's precisions (CPU kernels for int8/int4)
echoatt_arm = None  # the stored EchoAtt arm to compose with int8 ("": an untrained student built here)
recursive_arm = None  # the stored recursive arm to compose with int8 ("": an untrained relaxed model built here)
eval_windows = None  # windows of each held-out set on every card
live_seconds = None  # keep redrawing from the store this long while other notebooks run
llamacpp_card = None  # llama.cpp's Q4_1 reference card where llama-cpp-python is installed (full: on; minutes)

# %%
import math

import pandas as pd
import torch
from IPython.display import Markdown, display
from transformers import LlamaConfig, LlamaForCausalLM

from workbench import cards, frontier, notebook, runs
from workbench.cpu import llamacpp
from workbench.cpu.quantize import quantize
from workbench.echoatt.student import build_student
from workbench.frontier import FrontierProfile
from workbench.measure import model_speeds
from workbench.models import GGUF_FILE, chat, gguf_dir, load_model, resolve_device, tiny_llama
from workbench.recursive.convert import convert
from workbench.recursive.relax import relax

notebook.setup()
settings = FrontierProfile.resolve(
    profile, reference=reference, precisions=precisions, echoatt_arm=echoatt_arm, recursive_arm=recursive_arm,
    eval_windows=eval_windows, live_seconds=live_seconds, llamacpp_card=llamacpp_card,
)  # fmt: skip
store = runs.store()
KIND = runs.RunKind("frontier", headline="code_ppl", goal="min", description="reference and composed models' cards")
sweep = f"frontier-{settings.name}"

# %% [markdown]
# ## Reference points: one model at every precision
#
# The default model at float32, bfloat16, int8 (weights per row, `cpu.quantize`) and int4 (groups of 32,
# output layer int8) on the CPU, all timed in the same interleaved rounds; on a GPU machine also
# bfloat16 on the GPU. In smoke, a random tiny LLaMA stands in (it checks the code path only).
#
# Where llama-cpp-python is installed, also **llama.cpp Q4_1**: SmolLM2-135M's own GGUF file (the one
# the float32 model is de-quantised from) in llama.cpp's kernels, timed in the same rounds at the same
# thread count and scored on the same windows (`cpu.llamacpp.write_card`; it runs one sequence, so its
# batch > 1 speeds are n/a, and its KV bytes are derived from the file: f16, llama.cpp's default). Full
# profile only (`-p llamacpp_card true` in smoke): scoring 2 × 32 windows of 512 tokens through llama.cpp's
# logits takes minutes on a CPU, and in smoke its scoring and zero-shot alone take about a minute.

# %%
if settings.reference == "tiny":
    base, tokenizer = tiny_llama(n_layers=4, d_model=64, n_heads=4, n_kv_heads=2, max_len=1024)
else:
    base, tokenizer = load_model(settings.reference, dtype="float32", device="cpu")
base = base.eval()
name = "SmolLM2-135M" if settings.reference == "smollm2-135m" else settings.reference
cpu_shapes = settings.shapes(torch.device("cpu"))
variants = {precision: quantize(base, precision) for precision in settings.precisions}
llama = llamacpp.engine(gguf_dir() / GGUF_FILE) if settings.llamacpp_card and llamacpp.installed() else None
speeds = model_speeds(variants | ({llamacpp.NAME: llama} if llama else {}), cpu_shapes)  # all in the same rounds
reference_cards = {}
for precision, model in variants.items():
    with runs.start_run(KIND, f"reference {name} {precision}", {"precision": precision}, sweep=sweep) as run:
        reference_cards[precision] = cards.write_card(
            run, model, idea="reference", arm=f"{name} {precision}", tokenizer=tokenizer, profile=settings,
            precision=precision, params_of=base, speed=speeds[precision],
        )  # fmt: skip
if resolve_device("auto").type == "cuda":
    with runs.start_run(KIND, f"reference {name} bfloat16 (GPU)", {"precision": "bfloat16"}, sweep=sweep) as run:
        cards.write_card(run, base.to("cuda"), idea="reference", arm=f"{name} bfloat16", tokenizer=tokenizer,
                         profile=settings, precision="bfloat16")  # fmt: skip
    base = base.to("cpu")
if not settings.llamacpp_card:
    print("llama.cpp reference: not in this profile (-p llamacpp_card true)")
elif llama is None:
    print("llama.cpp reference: not installed (pip install 'workbench[llamacpp]')")
else:
    with runs.start_run(KIND, f"reference SmolLM2-135M {llamacpp.NAME}", {"precision": "Q4_1"}, sweep=sweep) as run:
        reference_cards[llamacpp.NAME] = llamacpp.write_card(
            run, llama.gguf_file, tokenizer, settings, arm=f"SmolLM2-135M {llamacpp.NAME}", threads=llama.threads,
            speed=speeds[llamacpp.NAME],
        )  # fmt: skip
pd.DataFrame([c.as_row() for c in reference_cards.values()])[
    ["arm", "weight_bytes", "code_ppl", "english_ppl", "decode_latency_ms", "prefill_tok_s"]
].astype(object).fillna("n/a")  # n/a: not measurable there (llama.cpp runs one sequence)

# %% [markdown]
# ## Composition: do two ideas' gains multiply, add or cancel?
#
# A (an idea's model) and B (int8 weights, `cpu.quantize`) each change the base model; A∘B is A's
# model quantised. The four models (base, A, B, A∘B) are timed on the CPU in the same interleaved rounds
# and scored on the same windows. Gains are ratios to the base (>1: better): if A∘B's gain is nearest
# to A's × B's they **multiply**, nearest to the sum of the two improvements they **add**, and below the
# better of the two they **cancel**. In full, A comes from the store (an arm's kept weights); in smoke,
# a tiny untrained model is built here (the numbers judge nothing).


# %%
def newest_kept(idea: str, arm: str) -> pd.Series | None:
    """The newest card of `idea` whose arm contains `arm` and whose weights are kept."""
    table = cards.load_cards(store)
    if table.empty:
        return None
    found = table[(table["idea"] == idea) & table["arm"].str.contains(arm, regex=False) & table["weights_kept"]]
    return found.sort_values("run_id").iloc[-1] if len(found) else None


def echoatt_student() -> tuple[torch.nn.Module, torch.nn.Module, str]:
    """(teacher, student) on the CPU in float32: a stored EchoAtt arm, or an untrained one (smoke)."""
    if not settings.echoatt_arm:
        return base, build_student(base, [[0, 1], [2, 3]]), "untrained EchoAtt student (layers 1, 3 share)"
    card = newest_kept("echoatt", settings.echoatt_arm)
    if card is None:
        raise LookupError(f"no EchoAtt card with kept weights whose arm contains {settings.echoatt_arm!r}")
    groups = store.load_artifact(card["run_id"], "card.json")["extra"]["groups"]
    student = cards.load_model(
        store, card["run_id"], lambda cfg: build_student(LlamaForCausalLM(LlamaConfig(**cfg)), groups)
    )
    return base, student.float(), f"EchoAtt {card['arm']} (run {card['run_id']})"


def recursive_model() -> tuple[torch.nn.Module, torch.nn.Module, str]:
    """(full model, relaxed recursive model) on the CPU in float32: a stored arm, or an untrained one (smoke)."""
    if not settings.recursive_arm:
        return base, relax(convert(base, loops=2), base, ranks=8), "untrained relaxed recursive model (2 loops, rank 8)"
    card = newest_kept("recursive", settings.recursive_arm)
    if card is None:
        raise LookupError(f"no recursive card with kept weights whose arm contains {settings.recursive_arm!r}")
    extra = store.load_artifact(card["run_id"], "card.json")["extra"]

    def build(cfg: dict) -> torch.nn.Module:
        looped = convert(base, loops=extra["loops"], init=extra["init"])
        return relax(looped, base, ranks=extra["rank"], init="zero") if extra["rank"] else looped  # weights load next

    looped = cards.load_model(store, card["run_id"], build).float()
    return base, looped, f"recursive {card['arm']} (run {card['run_id']})"


def measured(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def compose(idea: str, make, axes: tuple[str, ...]) -> list[str]:
    """Cards of A and A∘B (base and B are the reference cards), and one sentence per axis."""
    try:
        _, model, label = make()
    except LookupError as missing:
        return [f"- {idea} ∘ int8: not testable here ({missing})"]
    models = {"base": base, "B": variants["int8"], "A": model.eval(), "A∘B": quantize(model, "int8")}
    speeds = model_speeds(models, cpu_shapes)
    rows = {"base": reference_cards["float32"].as_row(), "B": reference_cards["int8"].as_row()}
    for key, arm in (("A", label), ("A∘B", f"{label} ∘ int8")):
        with runs.start_run(KIND, f"composed {arm}", {"composed_of": arm}, sweep=sweep) as run:
            card = cards.write_card(
                run, models[key], idea=idea, arm=arm, tokenizer=tokenizer, profile=settings, params_of=model,
                precision="int8" if key == "A∘B" else "float32", speed=speeds[key],
                extra={"composed_of": [label, "int8"]} if key == "A∘B" else {"source": label},
            )  # fmt: skip
        rows[key] = card.as_row()
    for key in ("base", "B"):  # the base and B timed again in these rounds: drift hits all four alike
        rows[key] |= {k: v for k, v in speeds[key].items() if not math.isnan(v)}
        rows[key]["decode_latency_ms"] = (
            1000 / speeds[key]["decode_b1_tok_s"] if "decode_b1_tok_s" in speeds[key] else None
        )
    lines = []
    for axis in axes:
        if not all(measured(rows[k].get(axis)) for k in rows):
            lines.append(f"- {label} ∘ int8, {axis}: not measured for every model (no KV-cache decode).")
            continue
        spread = frontier.timing_spread(speeds.values(), axis)
        result = frontier.composition(rows["base"], rows["A"], rows["B"], rows["A∘B"], axis, spread=spread)
        lines.append(f"- {label} ∘ int8, {result.sentence()}")
    return lines


composition_lines = compose("echoatt", echoatt_student, ("decode_latency_ms", "weight_bytes", "code_ppl"))
composition_lines += compose(
    "recursive", recursive_model, ("decode_latency_ms", "weight_bytes", "prefill_tok_s", "code_ppl")
)
display(Markdown("\n".join(composition_lines)))

# %% [markdown]
# ## The frontier, per budget axis
#
# Points are coloured by idea; composed models are stars, MDM bounds open circles; the Pareto-optimal
# points are ringed and joined. Hover names the run and the arm. A looped (recursive) model keeps one
# KV-cache entry per effective layer, so on the KV axis it sits with the full model it came from:
# recursion saves parameters, not KV memory. The figure below reads the store and
# redraws as cards land (`live_seconds` keeps it watching while notebooks 02-06 run).

# %%
if settings.live_seconds:  # a FigureWidget redrawn from the store while other notebooks write cards
    live = frontier.LiveFrontier(store, "non_embedding_params", "code_ppl")
    display(live.figure)
    live.watch(settings.live_seconds)
else:
    display(frontier.frontier_figure(frontier.select(cards.load_cards(store)), "non_embedding_params", "code_ppl"))

# %%
table = frontier.select(cards.load_cards(store))
print(f"{len(table)} cards on the common evaluation {table['eval_spec'].iloc[0]}; ideas: {sorted(set(table['idea']))}")
for x in ("decode_latency_ms", "kv_bytes_per_token", "training_flops"):
    display(frontier.frontier_figure(table, x, "code_ppl"))

# %% [markdown]
# ## Pareto points, and what they say

# %%
budgets = ("non_embedding_params", "decode_latency_ms", "kv_bytes_per_token", "training_flops")
pareto_table = pd.concat(
    [frontier.frontier_table(table, x).assign(axis=x).rename(columns={x: "budget"}) for x in budgets],
    ignore_index=True,
)
display(pareto_table)

# %%
conclusion = "\n".join(frontier.conclusion(table, x) for x in budgets)
notice = "" if settings.name == "full" else "*A smoke run checks code paths on tiny models and judges nothing.*\n\n"
display(Markdown(f"{notice}**Frontier** ({table['eval_spec'].iloc[0]} windows, code held-out perplexity):\n\n"
                 f"{conclusion}\n\n**Composition**:\n\n" + "\n".join(composition_lines)))  # fmt: skip

# %% [markdown]
# A frontier point's weights are kept with its run (when small enough): reload it and talk to it.

# %%
kept = table[table["weights_kept"] & (table["idea"] == "reference") & (table["precision"] == "float32")]
if len(kept):
    again = cards.load_model(store, int(kept.sort_values("run_id").iloc[-1]["run_id"]))
    print(chat(again, tokenizer, "What is a Python list?", max_new_tokens=24))
