"""Figures and short tables of the masked-diffusion notebook; its verdicts are `judge`'s.

Nothing here measures: everything reads the experiment's tables. Colour says which kind of model
(ARM blue, MDM orange), the line dash or marker says what else differs. Tables with several training
seeds are drawn as their mean over seeds (perplexities: geometric mean).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from ..plots import LAYOUT, add_level, log_axis, significant
from .judge import compute_gap, conclusion, fit_lines  # noqa: F401 (the notebook reads them here)

COLOURS = {"ARM": "#1f77b4", "MDM": "#ff7f0e", "held-out text": "#2ca02c"}
DASHES = ("solid", "dash", "dot", "dashdot")
SCALING_COLUMNS = {
    "arm": "arm",
    "size": "size",
    "seed": "seed",
    "non_emb_params": "N, non-embedding (M)",
    "total_params": "total params (M)",
    "flops": "training FLOPs (6·N·D)",
    "tokens": "tokens (M)",
    "epochs": "epochs",
    "val_nll": "held-out nats/token",
    "tokens_per_s": "train tokens/s",
}


def _kind(name: str) -> str:
    return "MDM" if name.startswith("MDM") else "ARM" if name.startswith("ARM") else name


def scaling_display(table: pd.DataFrame) -> pd.DataFrame:
    shown = table[[c for c in SCALING_COLUMNS if c in table]].assign(
        non_emb_params=table["non_emb_params"] / 1e6,
        total_params=table["total_params"] / 1e6,
        tokens=table["tokens"] / 1e6,
    )
    shown = shown.rename(columns=SCALING_COLUMNS).round(
        {"N, non-embedding (M)": 2, "total params (M)": 2, "held-out nats/token": 3, "train tokens/s": 0}
    )
    # significant digits: a smoke run's 0.0012 M tokens and 0.0004 epochs, not columns of 0.0; FLOPs as 2.51e+13
    shown = shown.assign(**{c: significant(shown[c], 2) for c in ("tokens (M)", "epochs") if c in shown})
    if "training FLOPs (6·N·D)" in shown:
        shown["training FLOPs (6·N·D)"] = [f"{flops:.3g}" for flops in shown["training FLOPs (6·N·D)"]]
    if "train tokens/s" in shown:
        shown["train tokens/s"] = shown["train tokens/s"].round().astype("Int64")
    return shown


def seed_means(table: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One row per `keys` (order kept): the mean over seeds, perplexities and times geometric."""
    if "seed" not in table or table.groupby(keys, sort=False).size().max() == 1:
        return table
    geometric = {c for c in ("judge_ppl", "s_per_sample") if c in table}
    numeric = [c for c in table.select_dtypes("number").columns if c not in keys and c != "seed"]
    logged = table.assign(**{c: np.log(table[c]) for c in geometric})
    means = logged.groupby(keys, sort=False)[numeric].mean().reset_index()
    return means.assign(**{c: np.exp(means[c]) for c in geometric})


class LiveCurves:
    """Held-out nats/token against training FLOPs, one line per run, updated in place during training."""

    def __init__(self, sizes: tuple[str, ...]):
        self.dash = {size: DASHES[i % len(DASHES)] for i, size in enumerate(sizes)}
        self.figure = go.FigureWidget(
            layout=go.Layout(
                title="Held-out loss during training (ARM: NLL; MDM: ELBO, an upper bound)",
                xaxis=dict(title="training FLOPs (6·N·tokens)", type="log"),
                yaxis_title="nats/token",
                **LAYOUT,
            )
        )

    def __call__(self, name: str, flops: float, value: float) -> None:
        traces = {t.name: t for t in self.figure.data}
        if name not in traces:
            size = name.split()[1]
            self.figure.add_scatter(
                x=[flops],
                y=[value],
                name=name,
                mode="lines+markers",
                line=dict(color=COLOURS[_kind(name)], dash=self.dash.get(size, "solid")),
            )
        else:
            with self.figure.batch_update():
                traces[name].x = (*traces[name].x, flops)
                traces[name].y = (*traces[name].y, value)
        # range and ticks follow the FLOPs seen so far: plotly's own labels a short log axis with bare digits
        self.figure.update_xaxes(**log_axis([x for trace in self.figure.data for x in trace.x]))


def scaling_figure(table: pd.DataFrame) -> go.Figure:
    figure = go.Figure()
    sizes = list(dict.fromkeys(table["size"]))
    table = seed_means(table, ["arm", "size", "budget"])
    for (arm, size), rows in table.groupby(["arm", "size"], sort=False):
        figure.add_scatter(
            x=rows["flops"],
            y=rows["val_nll"],
            name=f"{arm} {size} (N = {rows['non_emb_params'].iloc[0] / 1e6:.2f}M non-embedding)",
            mode="lines+markers",
            line=dict(color=COLOURS[arm], dash=DASHES[sizes.index(size) % len(DASHES)]),
            customdata=rows["epochs"],
            hovertemplate="%{x:.2e} FLOPs<br>%{y:.3f} nats/token<br>%{customdata:.1f} epochs",
        )
    for arm, (a, b) in fit_lines(table).items():
        x = np.array([table["flops"].min(), table["flops"].max()])
        figure.add_scatter(
            x=x,
            y=a + b * np.log10(x),
            name=f"{arm} frontier fit",
            mode="lines",
            line=dict(color=COLOURS[arm], width=1, dash="longdash"),
            opacity=0.5,
        )
    figure.update_layout(
        title="Mini scaling: held-out loss against training compute (mean over seeds)",
        xaxis=dict(title="training FLOPs (6·N·tokens, N non-embedding)", **log_axis(table["flops"])),
        yaxis_title="nats/token (ARM: exact NLL; MDM: ELBO)",
        **LAYOUT,
    )
    return figure


def quality_figure(quality: pd.DataFrame) -> go.Figure:
    """Judge perplexity against sampling steps: MDM samplers as lines, ARMs and the real text as levels."""
    figure = go.Figure()
    quality = seed_means(quality, ["model", "sampler", "steps"])
    for (model, sampler), rows in quality.groupby(["model", "sampler"], sort=False):
        if _kind(model) == "MDM":
            figure.add_scatter(
                x=rows["steps"],
                y=rows["judge_ppl"],
                name=f"{model} {sampler}",
                mode="lines+markers",
                line=dict(color=COLOURS["MDM"], dash="solid" if sampler == "low_confidence" else "dot"),
            )
        else:
            add_level(figure, float(rows["judge_ppl"].iloc[0]), f"{model} ({rows['judge_ppl'].iloc[0]:.1f})",
                      log_y=True, color=COLOURS[_kind(model)])  # fmt: skip
    figure.update_layout(
        title="Sample quality against steps (judge: perplexity of the continuation)",
        xaxis=dict(title="MDM steps", **log_axis([x for trace in figure.data for x in trace.x])),
        yaxis=dict(title="judge perplexity", **log_axis(quality["judge_ppl"])),
        **LAYOUT,
    )
    return figure


def speed_quality_figure(quality: pd.DataFrame, speed: pd.DataFrame) -> go.Figure:
    """Quality against wall time per sample, one panel-free plot: marker = batch size."""
    keys = ["model", "sampler", "steps"]
    joined = seed_means(speed, [*keys, "batch"]).merge(seed_means(quality, keys)[[*keys, "judge_ppl"]], on=keys)
    figure = go.Figure()
    for (model, sampler, batch), rows in joined.groupby(["model", "sampler", "batch"], sort=False):
        figure.add_scatter(
            x=rows["s_per_sample"],
            y=rows["judge_ppl"],
            name=f"{model} {sampler} batch {batch}",
            text=rows["steps"],
            mode="lines+markers",
            marker=dict(symbol="circle" if batch == joined["batch"].min() else "square", size=9),
            line=dict(color=COLOURS[_kind(model)], dash="solid" if batch == joined["batch"].min() else "dot"),
            hovertemplate="%{x:.4f} s/sample<br>judge ppl %{y:.1f}<br>%{text} steps",
        )
    figure.update_layout(
        title="Quality against latency (lower left is better)",
        xaxis=dict(title="seconds per sample", **log_axis(joined["s_per_sample"])),
        yaxis=dict(title="judge perplexity", **log_axis(joined["judge_ppl"])),
        **LAYOUT,
    )
    return figure


def guidance_accuracy_figure(table: pd.DataFrame) -> go.Figure:
    """4-way choice and cloze accuracy against w (mean over seeds), on the half of the items that tunes w
    and on the half that judges it; the ARM and chance as levels."""
    figure = go.Figure()
    scored = seed_means(table.dropna(subset=["choice_acc_test"]), ["w"])
    for column, label, dash in (
        ("choice_acc_tune", "MDM 4-way choice (tuning half)", "dot"),
        ("choice_acc_test", "MDM 4-way choice (judged half)", "solid"),
        ("cloze_acc_test", "MDM cloze (judged half)", "dash"),
    ):
        figure.add_scatter(
            x=scored["w"],
            y=scored[column],
            name=label,
            mode="lines+markers",
            line=dict(color=COLOURS["MDM"], dash=dash),
        )
    add_level(
        figure, float(scored["arm_choice_acc_test"].mean()), "ARM 4-way choice (judged half)", color=COLOURS["ARM"]
    )
    chance = table.attrs.get("chance", {}).get("choice", 0.25)
    add_level(figure, chance, "chance (4-way)", color="#7f7f7f")
    figure.update_layout(
        title="Unsupervised guidance: zero-shot accuracy on held-out text against w",
        xaxis_title="guidance w",
        yaxis=dict(title="accuracy", tickformat=".0%"),
        **LAYOUT,
    )
    return figure


def guidance_figure(table: pd.DataFrame) -> go.Figure:
    figure = go.Figure()
    scored = table.dropna(subset=["chain_rule_nll"]) if "chain_rule_nll" in table else table.iloc[:0]
    scored = seed_means(scored, ["w"])
    for column, label in (("chain_rule_nll", "MDM chain-rule NLL"), ("elbo", "MDM ELBO")):
        if column in scored:
            figure.add_scatter(
                x=scored["w"],
                y=scored[column],
                name=label,
                mode="lines+markers",
                line=dict(color=COLOURS["MDM"], dash="solid" if column == "elbo" else "dot"),
            )
    add_level(figure, float(table["arm_nll"].iloc[0]), "ARM exact NLL", color=COLOURS["ARM"])
    figure.update_layout(
        title="Unsupervised guidance: likelihood of the true continuation",
        xaxis_title="guidance w",
        yaxis_title="nats/token",
        **LAYOUT,
    )
    return figure


def reversal_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread (std over seeds) of accuracy (answer contained in the generation) per arm and guidance."""
    grouped = table.groupby(["arm", "w"])
    columns = [c for c in ("seen_acc", "reverse_acc", "both_acc", "reverse_infill_acc", "epochs") if c in table]
    summary = grouped[columns].mean()
    several = grouped.size() > 1  # one seed has no spread: NaN (shown as n/a), not a measured 0.0
    summary["seen_std"] = grouped["seen_acc"].std(ddof=0).where(several)
    summary["reverse_std"] = grouped["reverse_acc"].std(ddof=0).where(several)
    summary["reverse_infill_std"] = grouped["reverse_infill_acc"].std(ddof=0).where(several)
    summary["seeds"] = grouped.size()
    return summary.reset_index()


def reversal_figure(table: pd.DataFrame) -> go.Figure:
    summary = reversal_summary(table)
    labels = [f"{r.arm} w={r.w:g}" for r in summary.itertuples()]
    figure = go.Figure()
    for column, spread, name, opacity in (
        ("seen_acc", "seen_std", "direction seen", 1.0),
        ("reverse_acc", "reverse_std", "reverse (question)", 0.55),
        ("both_acc", None, "both-directions subset", 0.45),
        ("reverse_infill_acc", "reverse_infill_std", "reverse (infill, MDM only)", 0.3),
    ):
        if column not in summary:
            continue
        figure.add_bar(
            x=labels,
            y=summary[column],
            name=name,
            error_y=dict(type="data", array=summary[spread]) if spread else None,
            opacity=opacity,
            marker_color=[COLOURS[a] for a in summary["arm"]],
            text=["" if pd.isna(v) else f"{v:.0%}" for v in summary[column]],
        )
    figure.update_layout(
        title="Reversal curse: answer contained in the generation (mean ± std over seeds)",
        barmode="group",
        yaxis=dict(title="accuracy", tickformat=".0%"),
        **LAYOUT,
    )
    return figure
