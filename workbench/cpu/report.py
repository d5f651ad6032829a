"""Figures, short tables and the generated conclusion of the CPU-inference experiment.

The claims checked, from GEB-1.3B ("GEB-1.3B: Open Lightweight Large Language Model",
arXiv:2406.09900), judged through `workbench.verdicts`: (a) float32 decoding reaches GEB's 12
tokens/s for 1.3B parameters, projected from the measured model by weight bytes read per token;
(b) quantisation makes it faster still (here: int8 at least 1.5x float32, by the range both timings'
spreads allow, with held-out perplexity within 2%); (c) grouped-query attention speeds up
long-context decoding (that it divides the KV cache by H/G is unit-tested, not judged); (d) at equal
parameters it costs no quality: an equivalence over seeds within ±0.02 nats.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import plots, verdicts
from . import llamacpp

GEB_FP32_TOK_S = 12.0  # GEB-1.3B's README: CPU, float32
TARGET_SPEEDUP = 1.5
TARGET_PPL_PCT = 2.0
PRECISION_COLORS = {
    "float32": "#1f77b4",
    "bfloat16": "#9467bd",
    "int8": "#2ca02c",
    "int8-dynamic": "#d62728",
    "int8-torchao": "#8c564b",
    "int4": "#ff7f0e",
    llamacpp.NAME: "#7f7f7f",
}
VARIANT_COLORS = ["#d62728", "#2ca02c", "#1f77b4", "#ff7f0e"]  # MHA, GQA, MQA, GEB-shaped


def _at_max_threads(table: pd.DataFrame) -> pd.DataFrame:
    return table[table["threads"] == table["threads"].max()].set_index("precision")


def precision_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Few named columns, at the largest thread count measured."""
    top = _at_max_threads(table)
    return pd.DataFrame(
        {
            "decode tok/s": top["decode_tok_s"].round(1),
            "± (IQR %)": (100 * top["decode_spread"]).round(0),
            "× float32": top["decode_speedup"].round(2),
            "prefill tok/s": top["prefill_tok_s"].round(0),
            "weights MB": top["weight_mb"].round(0),
            "perplexity": plots.significant(top["ppl"], 5),
            "Δ ppl %": top["ppl_change_pct"].round(2),
            "next-token agreement": top["next_token_agreement"].round(3),
        }
    )


def speed_figure(table: pd.DataFrame, machine: str = "") -> go.Figure:
    """Prefill and decode tokens/s against threads, one line per precision (error bars: IQR)."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("prefill tokens/s", "decode tokens/s"))
    for precision, rows in table.groupby("precision", sort=False):
        color = PRECISION_COLORS.get(precision)
        for col, key in ((1, "prefill"), (2, "decode")):
            figure.add_scatter(
                x=rows["threads"],
                y=rows[f"{key}_tok_s"],
                name=precision,
                legendgroup=precision,
                showlegend=col == 1,
                mode="lines+markers",
                line=dict(color=color),
                row=1,
                col=col,
                error_y=dict(type="data", array=rows[f"{key}_tok_s"] * rows[f"{key}_spread"] / 2, visible=True),
            )
    figure.update_xaxes(title_text="threads", type="category")
    figure.update_yaxes(rangemode="normal")
    figure.update_layout(
        title=f"Tokens/s per precision and thread count{f' ({machine})' if machine else ''}", **plots.LAYOUT
    )
    return figure


def tradeoff_figure(table: pd.DataFrame) -> go.Figure:
    """Decode speed-up over float32 against perplexity change, one point per precision: up and left is better."""
    top = _at_max_threads(table)
    figure = go.Figure()
    for precision, row in top.iterrows():
        figure.add_scatter(
            x=[row["ppl_change_pct"]],
            y=[row["decode_speedup"]],
            name=precision,
            mode="markers+text",
            text=[precision],
            textposition="top center",
            marker=dict(size=12, color=PRECISION_COLORS.get(precision)),
        )
    plots.add_level(figure, TARGET_SPEEDUP, f"target {TARGET_SPEEDUP}x")
    figure.add_vrect(x0=-TARGET_PPL_PCT, x1=TARGET_PPL_PCT, fillcolor="green", opacity=0.06, line_width=0)
    figure.update_layout(
        title="Speed against quality (largest thread count)",
        xaxis_title="perplexity change vs float32 (%)",
        yaxis_title="decode speed-up vs float32",
        showlegend=False,
        **plots.LAYOUT,
    )
    return figure


def gqa_figure(table: pd.DataFrame, machine: str = "") -> go.Figure:
    """KV-cache megabytes (measured; the formula's dashed) and decode tokens/s against context, per variant."""
    figure = make_subplots(rows=1, cols=2, subplot_titles=("KV cache (MB, float32)", "decode tokens/s"))
    for i, (variant, rows) in enumerate(table.groupby("variant", sort=False)):
        color = VARIANT_COLORS[i % len(VARIANT_COLORS)]
        figure.add_scatter(
            x=rows["context"],
            y=rows["kv_bytes_measured"] / 1e6,
            name=variant,
            legendgroup=variant,
            mode="lines+markers",
            line=dict(color=color),
            row=1,
            col=1,
        )
        figure.add_scatter(
            x=rows["context"],
            y=rows["kv_bytes_formula"] / 1e6,
            name=f"{variant} formula",
            legendgroup=variant,
            mode="lines",
            line=dict(color=color, dash="dot"),
            showlegend=False,
            row=1,
            col=1,
        )
        figure.add_scatter(
            x=rows["context"],
            y=rows["decode_tok_s"],
            name=variant,
            legendgroup=variant,
            showlegend=False,
            mode="lines+markers",
            line=dict(color=color),
            row=1,
            col=2,
            error_y=dict(type="data", array=rows["decode_tok_s"] * rows["decode_spread"] / 2, visible=True),
        )
    figure.update_xaxes(title_text="cached tokens", **plots.log_axis(table["context"]))
    kv_mb = pd.concat([table["kv_bytes_measured"], table["kv_bytes_formula"]]) / 1e6
    figure.update_yaxes(row=1, col=1, **plots.log_axis(kv_mb))
    figure.update_layout(
        title=f"Grouped-query attention at decode time{f' ({machine})' if machine else ''}", **plots.LAYOUT
    )
    return figure


def training_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread (std over seeds) of the held-out loss per trained arm, with parameters and epochs."""
    grouped = table.groupby("variant", sort=False)
    return pd.DataFrame(
        {
            "params (M)": (grouped["params"].first() / 1e6).round(2),
            "KV heads": grouped["n_kv_heads"].first(),
            "seeds": grouped["seed"].count(),
            "val loss": grouped["val_loss"].mean().round(4),
            "± std": grouped["val_loss"].std(ddof=1).round(4),
            "val ppl": plots.significant(np.exp(grouped["val_loss"].mean()), 4),
            "epochs": plots.significant(grouped["epochs"].first(), 2),
        }
    )


def training_figure(table: pd.DataFrame) -> go.Figure:
    """Held-out loss per arm: mean over seeds with its std, each seed a dot."""
    summary = training_summary(table)
    figure = go.Figure(
        go.Bar(
            x=summary.index,
            y=summary["val loss"],
            error_y=dict(type="data", array=summary["± std"].fillna(0), visible=True),
            marker_color=[VARIANT_COLORS[i % len(VARIANT_COLORS)] for i in range(len(summary))],
            name="mean",
        )
    )
    figure.add_scatter(
        x=table["variant"], y=table["val_loss"], mode="markers", marker=dict(color="black", size=6), name="seeds"
    )
    low, high = table["val_loss"].min(), table["val_loss"].max()
    pad = max(0.05, (high - low) * 0.5)
    figure.update_yaxes(range=[low - pad, high + pad])
    figure.update_layout(
        title="Held-out loss after equal-token training", yaxis_title="validation loss (nats/token)", **plots.LAYOUT
    )
    return figure


class LiveCurves(plots.LiveCurves):
    """Validation loss during training, drawn as it arrives (pass as `callback` to `train_table`;
    see `workbench.plots.LiveCurves`)."""


# -- the conclusion ---------------------------------------------------------------------------------
# GEB-1.3B's config (papers.md §5): 24 layers, d 2048, FFN 5632, 16 query heads of 128, 4 KV heads, vocab 64,896,
# untied embeddings. Decoding reads every matrix once per token and one row of the input embedding.
GEB_READ_PARAMS = 24 * (2 * 2048 * 2048 + 2 * 2048 * 512 + 3 * 2048 * 5632 + 2 * 2048) + 64_896 * 2048 + 2048
GEB_FP32_READ_BYTES = 4 * GEB_READ_PARAMS  # 4.86 GB
GQA_DELTA = 0.02  # nats (about 2% perplexity, int8's quality tolerance): "no quality cost" within it


def _range(value: float, spread: float) -> tuple[float, float]:
    """The interquartile range around a median from its relative spread (IQR / median)."""
    return value * (1 - spread / 2), value * (1 + spread / 2)


def _ratio_range(num: pd.Series, den: pd.Series, key: str = "decode") -> tuple[float, float, float]:
    """Ratio of two medians with the range their two interquartile ranges allow (low/high over high/low)."""
    (n_low, n_high), (d_low, d_high) = _range(num[f"{key}_tok_s"], num[f"{key}_spread"]), _range(
        den[f"{key}_tok_s"], den[f"{key}_spread"]
    )
    return num[f"{key}_tok_s"] / den[f"{key}_tok_s"], n_low / d_high, n_high / d_low


def _precision_verdicts(table: pd.DataFrame) -> tuple[list[verdicts.Verdict], list[str]]:
    top = _at_max_threads(table)
    threads, rounds = int(table["threads"].max()), int(table.attrs.get("rounds", 0))
    fp32 = top.loc["float32"]
    scale = fp32["weight_mb"] * 1e6 / GEB_FP32_READ_BYTES
    low, high = _range(fp32["decode_tok_s"], fp32["decode_spread"])
    found = [
        verdicts.against_bar(
            f"float32 decoding of a GEB-1.3B-sized model reaches GEB's {GEB_FP32_TOK_S:.0f} tokens/s on this CPU "
            "(a projection)",
            scale * fp32["decode_tok_s"], scale * low, scale * high, bar=GEB_FP32_TOK_S, seeds=rounds, unit="round",
            scale="tok/s projected to GEB-1.3B",
            detail=f"measured {fp32['decode_tok_s']:.1f} tok/s with {fp32['weight_mb']:.0f} MB of float32 weights "
            f"at {threads} thread(s), times {fp32['weight_mb'] * 1e6 / 1e9:.2f} / {GEB_FP32_READ_BYTES / 1e9:.2f} GB "
            "read per token by GEB-1.3B (decoding is bound by reading the weights)",
        )
    ]  # fmt: skip
    facts = []
    if "int8" in top.index:
        int8 = top.loc["int8"]
        found.append(
            verdicts.against_bar(
                f"int8 (weight-only) decodes at least {TARGET_SPEEDUP}x faster than float32",
                *_ratio_range(int8, fp32), bar=TARGET_SPEEDUP, seeds=rounds, unit="round", scale="decode tok/s ratio",
                detail="range: the two timings' interquartile ranges combined",
            )
        )  # fmt: skip
        change = abs(int8["ppl_change_pct"])
        found.append(
            verdicts.against_bar(
                f"int8 keeps held-out perplexity within {TARGET_PPL_PCT:.0f}% of float32's",
                change, change, change, bar=TARGET_PPL_PCT, goal="min", seeds=1, unit="evaluation",
                scale="|Δ ppl| %",
                detail=f"{int8['ppl_change_pct']:+.2f}% on the same held-out windows; "
                f"{100 * int8['next_token_agreement']:.1f}% of next-token predictions equal to float32's",
            )
        )  # fmt: skip
    if "int8-dynamic" in top.index:
        dyn = top.loc["int8-dynamic"]
        facts.append(
            f"- int8 with dynamically quantised activations (torch.ao): {dyn['decode_speedup']:.2f}x, perplexity "
            f"{dyn['ppl_change_pct']:+.2f}%, {100 * dyn['next_token_agreement']:.1f}% next-token agreement: "
            f"rounding the activations, not the weights, is what costs quality."
        )
    if llamacpp.NAME in top.index:
        llama = top.loc[llamacpp.NAME]
        versus = [f"{llama['decode_tok_s'] / top.loc[p, 'decode_tok_s']:.1f}x our {p}" for p in ("int8", "int4")
                  if p in top.index]  # fmt: skip
        facts.append(
            f"- **llama.cpp** on the same GGUF file (Q4_1, what a user would pick for CPU inference): "
            f"{llama['decode_tok_s']:.1f} tokens/s, {llama['decode_speedup']:.2f}x float32's decode rate"
            f"{''.join(', ' + v for v in versus)}; perplexity {llama['ppl_change_pct']:+.2f}%, "
            f"{100 * llama['next_token_agreement']:.1f}% next-token agreement with float32."
        )
    for other in ("bfloat16", "int4", "int8-torchao"):
        if other in top.index:
            row = top.loc[other]
            facts.append(
                f"- {other}: {row['decode_speedup']:.2f}x float32's decode rate "
                f"(±{100 * (row['decode_spread'] + fp32['decode_spread']):.0f}%), perplexity "
                f"{row['ppl_change_pct']:+.2f}%, {100 * row['next_token_agreement']:.1f}% next-token agreement, "
                f"{row['weight_mb']:.0f} MB of weights."
            )
    return found, facts


def _gqa_verdicts(table: pd.DataFrame) -> tuple[list[verdicts.Verdict], list[str]]:
    longest = table[table["context"] == table["context"].max()].set_index("variant")
    mha = longest.iloc[int(np.argmax(longest["n_kv_heads"].to_numpy()))]
    rounds = int(table.attrs.get("rounds", 0))
    facts = [
        f"- KV cache at {int(mha['context'])} cached tokens (measured tensors; the formula 2·L·B·T·G·d_head·s gives "
        f"the same bytes, a property the unit tests check): "
        + ", ".join(f"{v} {row['kv_bytes_measured'] / 1e6:.0f} MB" for v, row in longest.iterrows())
        + "."
    ]
    found = []
    for variant, row in longest.iterrows():
        if row["n_kv_heads"] == mha["n_kv_heads"]:
            continue
        found.append(
            verdicts.against_bar(
                f"{variant} decodes faster than MHA at {int(row['context'])} cached tokens",
                *_ratio_range(row, mha), bar=1.0, seeds=rounds, unit="round", scale="decode tok/s ratio",
                detail="range: the two timings' interquartile ranges combined",
            )
        )  # fmt: skip
    return found, facts


def _training_verdicts(table: pd.DataFrame) -> tuple[list[verdicts.Verdict], list[str]]:
    """GQA and MQA against MHA, paired by seed; a variant whose seeds a time limit cut below two (or all of
    them, `attrs["not_trained"]`) is not testable for that reason."""
    cut = [label.rsplit(" seed ", 1)[0] for label in table.attrs.get("not_trained", [])]
    arms = table[table["variant"].str.match(r"^(MHA|GQA|MQA)")] if "variant" in table else table
    if arms.empty:
        return [verdicts.untrained(f"{name} costs no quality against MHA") for name in dict.fromkeys(cut)
                if name.startswith(("GQA", "MQA"))], []  # fmt: skip
    mha_name = arms.loc[arms["n_kv_heads"].idxmax(), "variant"]
    mha = arms[arms["variant"] == mha_name].set_index("seed")["val_loss"]
    found = []
    for name, rows in arms.groupby("variant", sort=False):
        if name == mha_name:
            continue
        own = rows.set_index("seed")["val_loss"]
        seeds = sorted(set(own.index) & set(mha.index))
        claim = f"{name} costs no quality against {mha_name} at equal parameters"
        if len(seeds) < 2 and (name in cut or mha_name in cut):
            found.append(verdicts.untrained(claim, seeds=len(seeds), epochs=float(rows["epochs"].mean())))
            continue
        found.append(
            verdicts.equivalence(
                claim, [own[s] for s in seeds], [mha[s] for s in seeds], delta=GQA_DELTA, scale="nats",
                epochs=float(rows["epochs"].mean()),
            )
        )  # fmt: skip
    trained = set(arms["variant"])
    missing = [name for name in dict.fromkeys(cut) if name.startswith(("GQA", "MQA")) and name not in trained]
    found += [verdicts.untrained(f"{name} costs no quality against {mha_name} at equal parameters") for name in missing]
    summary = training_summary(table)
    facts = [
        f"- {name} ({row['params (M)']:.1f}M parameters, untied embeddings, {row['epochs']:.1f} epochs): "
        f"held-out loss {row['val loss']:.4f} (ppl {row['val ppl']:.1f}) after the same tokens as the variants."
        for name, row in summary[summary.index.str.startswith("GEB")].iterrows()
    ]
    return found, facts


def conclusion(
    precisions: pd.DataFrame,
    gqa: pd.DataFrame | None = None,
    trained: pd.DataFrame | None = None,
    *,
    profile,
) -> str:
    """Markdown, judged by `workbench.verdicts` from the measured tables: which of GEB-1.3B's claims held at
    this scale (ratios by their spread, "no quality cost" as an equivalence over seeds); smoke judges nothing."""
    found, facts = _precision_verdicts(precisions)
    not_trained = trained.attrs.get("not_trained", []) if trained is not None else []
    for part, judge in ((gqa, _gqa_verdicts), (trained, _training_verdicts)):
        if part is not None and (not part.empty or part.attrs.get("not_trained")):
            more, more_facts = judge(part)
            found, facts = found + more, facts + more_facts
    preamble = (
        f"**What the numbers say** on {precisions.attrs.get('cpu', 'this CPU')} (CPU speeds on a shared machine are "
        "noisy: every speed is judged by its interquartile range over interleaved rounds)."
    )
    text = verdicts.conclusion(found, profile=profile, preamble=preamble, not_trained=not_trained)
    return text if getattr(profile, "name", profile) == "smoke" else "\n".join([text, *facts])
