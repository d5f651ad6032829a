"""Figures, the short table and the generated conclusion of the Relaxed Recursive Transformers notebook.

The verdicts are judged in `claims` through `workbench.verdicts` (paired by seed, on log-perplexity);
`conclusion` and `claims` are re-exported here for the notebook.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .. import plots
from .claims import claims, conclusion

__all__ = ["claims", "conclusion"]  # the notebook's conclusion, judged in `claims`

FAMILY_COLOURS = {"baseline": "#636efa", "recursive": "#ef553b", "svd": "#00cc96", "zero": "#ab63fa"}
INIT_SYMBOLS = {"stepwise": "circle", "average": "square", "lower": "diamond", "": "x"}


def family(row: pd.Series) -> str:
    """What differs between arms, for colours: baselines, plain recursive, SVD- or zero-init LoRA."""
    if row["kind"] != "recursive":
        return "baseline"
    return row["lora"] or "recursive"


class LiveCurves(plots.LiveCurves):
    """Held-out perplexity of every arm against the optimizer step, drawn while the arms train
    (see `workbench.plots.LiveCurves`)."""

    metric, yaxis_title, log_y = "val_ppl", "perplexity (curve windows)", True
    title = "Held-out perplexity during uptraining (live)"


def summary_table(table: pd.DataFrame) -> pd.DataFrame:
    """One row per arm (seeds pooled: mean, and the range when there are several), in named columns."""
    keys = [k for k in ("kind", "loops", "init", "lora", "rank", "loss") if k in table.columns]
    groups = table.groupby(keys, sort=False, dropna=False)
    out = pd.DataFrame(
        {
            "arm": groups["arm"].first(),
            "seeds": groups["seed"].nunique(),
            "non-embedding params (M)": groups["non_emb_params"].first() / 1e6,
            "ppl at conversion": groups["zero_shot_ppl"].mean(),
            "ppl after uptraining": groups["ppl"].mean(),
            "ppl range over seeds": (groups["ppl"].max() - groups["ppl"].min()).where(groups["seed"].nunique() > 1),
            "epochs": groups["epochs"].max(),
        }
    )
    for column, name in (("cloze_acc", "cloze acc (chance 0.20)"), ("choice_acc", "4-way acc (chance 0.25)")):
        if column in table.columns:
            out[name] = groups[column].mean()
    out = out.reset_index(drop=True).round(
        {"non-embedding params (M)": 2, "ppl at conversion": 2, "ppl after uptraining": 2, "ppl range over seeds": 2}
        | {"cloze acc (chance 0.20)": 3, "4-way acc (chance 0.25)": 3}
    )
    out["epochs"] = plots.significant(out["epochs"], 2)  # a smoke run's 0.0040, not 0.0
    range_ = "ppl range over seeds"  # one seed per arm: no range to show (a column of NaN says nothing)
    return out.drop(columns=range_) if out[range_].isna().all() else out


def params_figure(table: pd.DataFrame) -> go.Figure:
    """The paper's main plot: held-out perplexity against non-embedding parameters, every arm."""
    figure = go.Figure()
    rows = table.assign(family=table.apply(family, axis=1))
    for name, group in rows.groupby("family", sort=False):
        figure.add_scatter(
            x=group["non_emb_params"] / 1e6,
            y=group["ppl"],
            mode="markers+text",
            name=name,
            text=group["arm"],
            textposition="top center",
            textfont=dict(size=9),
            marker=dict(size=10, color=FAMILY_COLOURS[name], symbol=[INIT_SYMBOLS.get(i, "x") for i in group["init"]]),
        )
    figure.update_layout(
        title="Held-out perplexity against non-embedding parameters (after equal uptraining)",
        xaxis_title="non-embedding parameters (M)",
        yaxis_title="held-out perplexity",
        yaxis=plots.log_axis(table["ppl"]),
        **plots.LAYOUT,
    )
    return figure


def rank_figure(table: pd.DataFrame) -> go.Figure:
    """Perplexity (mean over seeds) against LoRA rank per initialisation and LoRA init (rank 0: the plain
    model of that initialisation), with the continued full model and the plain Stepwise model of the
    same depth as dashed references."""
    relaxed = table[table["lora"] != ""]
    figure = go.Figure()
    if relaxed.empty:
        return figure.update_layout(title="No LoRA arms in this run", **plots.LAYOUT)
    loops = int(relaxed["loops"].iloc[0])
    plain = table[(table["kind"] == "recursive") & (table["loops"] == loops) & (table["lora"] == "")]
    for (init, lora), group in relaxed.groupby(["init", "lora"], sort=False):
        rows = pd.concat([plain[plain["init"] == init], group]).groupby("rank")["ppl"].mean()
        figure.add_scatter(
            x=rows.index,
            y=rows.values,
            mode="lines+markers",
            name=f"{init.capitalize()} + {lora}-init LoRA",
            line=dict(color=FAMILY_COLOURS[lora], dash="dot" if init == "stepwise" else None),
            marker=dict(symbol=INIT_SYMBOLS.get(init, "x")),
        )
    levels = []
    for label, rows in (
        ("full model, continued", table[table["kind"] == "continued"]),
        (f"B={loops} stepwise, no LoRA", plain[plain["init"] == "stepwise"]),
    ):
        if not rows.empty:
            levels.append(float(rows["ppl"].mean()))
            plots.add_level(figure, levels[-1], label, log_y=True)
    figure.update_layout(
        title=f"Held-out perplexity against LoRA rank (B={loops}, all seven linears)",
        xaxis_title="LoRA rank r",
        yaxis_title="held-out perplexity",
        yaxis=plots.log_axis([y for trace in figure.data for y in trace.y] + levels),
        **plots.LAYOUT,
    )
    return figure


def exit_figure(thresholds: pd.DataFrame) -> go.Figure:
    """Fraction of tokens exiting at each loop, per exit rule (oracle and confidence thresholds)."""
    figure = go.Figure()
    columns = [c for c in thresholds.columns if c.startswith("exit_rate_loop")]
    for column in columns:
        figure.add_bar(x=thresholds["rule"], y=thresholds[column], name=f"loop {column.removeprefix('exit_rate_loop')}")
    figure.update_layout(
        barmode="stack",
        title="Exit rate per loop (after early-exit post-training, held-out tokens)",
        xaxis_title="exit rule",
        yaxis_title="fraction of tokens",
        **plots.LAYOUT,
    )
    return figure


def throughput_figure(throughput: pd.DataFrame) -> go.Figure:
    """Decode throughput of each batching scheme (SIMULATED from measured per-loop costs and exits; with
    several request draws, their median; measured and work-proportional costs side by side)."""
    labels = throughput["scheme"] + " · " + throughput["exit_rule"]
    if "costs" in throughput.columns:
        keys = ["costs", "scheme", "exit_rule"]
        throughput = throughput.groupby(keys, sort=False, as_index=False)["speedup_vs_csb"].median()
        labels = throughput["scheme"] + " · " + throughput["exit_rule"] + " · " + throughput["costs"] + " costs"
    figure = plots.bars(
        labels,
        throughput["speedup_vs_csb"],
        "Throughput relative to continuous sequence-wise batching without early exit "
        "(simulated from measured step costs and exit trajectories)",
        "× tokens/s",
        baseline=1.0,
    )
    return figure
