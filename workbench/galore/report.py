"""Figures, a summary table and the generated conclusion of the GaLore experiment (plotly; draws
from `experiment.GaloreResults`, computes nothing new)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..plots import LAYOUT

COLORS = {"AdamW": "#1f77b4", "GaLore": "#ff7f0e", "Natural GaLore": "#2ca02c", "LoRA": "#9467bd"}
PART_TITLES = {"pretrain": "pretraining from scratch", "finetune": "fine-tuning"}
PAPER = {
    "ng_gain": 0.03,
    "galore_gap": 0.04,
    "memory_cut": 65.5,
    "speed_target": 1.3,
}  # 60M row; GaLore abstract; issue target


class LiveCurves:
    """Held-out loss of every run as it trains: a FigureWidget updated in place from `on_eval`."""

    def __init__(self, parts: tuple[str, ...] = ("pretrain", "finetune")):
        self.parts = parts
        self.figure = go.FigureWidget(
            make_subplots(rows=1, cols=len(parts), subplot_titles=[PART_TITLES[p] for p in parts])
        )
        self.figure.update_layout(title="held-out loss while training (live)", height=380, **LAYOUT)
        self.figure.update_xaxes(title_text="step")
        self.figure.update_yaxes(title_text="val loss (nats)", col=1)
        self._traces: dict[str, int] = {}

    def __call__(self, point: dict) -> None:
        name = f"{point['part']}: {point['label']} seed {point['seed']}"
        if name not in self._traces:
            first = not any(key.split(": ", 1)[1].startswith(f"{point['method']} lr=") for key in self._traces)
            self.figure.add_scatter(
                x=[],
                y=[],
                mode="lines+markers",
                name=name,
                legendgroup=point["method"],
                showlegend=first,
                line=dict(color=COLORS[point["method"]], dash="solid" if point["seed"] == 0 else "dot"),
                row=1,
                col=self.parts.index(point["part"]) + 1,
            )
            self._traces[name] = len(self.figure.data) - 1
            if first:
                self.figure.data[-1].name = point["method"]
        trace = self.figure.data[self._traces[name]]
        with self.figure.batch_update():
            trace.x = (*trace.x, point["step"])
            trace.y = (*trace.y, point["val_loss"])


def compared(results) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Table rows and curve points of the compared runs (AdamW's learning-rate sweep left out)."""
    table = results.table[~results.table["swept"].astype(bool)]
    keys = table[["part", "label", "seed"]]
    return table, results.curves.merge(keys, on=["part", "label", "seed"])


def _parts(table: pd.DataFrame) -> list[str]:
    return [p for p in PART_TITLES if p in set(table["part"])]


def loss_curves(results, x: str = "step") -> go.Figure:
    """Held-out loss against steps (x="step") or training time (x="time_s"): mean over seeds, band min..max."""
    table, curves = compared(results)
    parts = _parts(table)
    figure = make_subplots(rows=1, cols=len(parts), subplot_titles=[PART_TITLES[p] for p in parts])
    for col, part in enumerate(parts, start=1):
        for method, rows in curves[curves["part"] == part].groupby("method", sort=False):
            stats = rows.groupby("step").agg(
                x=(x, "mean"),
                mean=("val_loss", "mean"),
                low=("val_loss", "min"),
                high=("val_loss", "max"),
                n=("seed", "nunique"),
            )
            color = COLORS[method]
            band_x = [*stats["x"], *stats["x"][::-1]]
            figure.add_scatter(
                x=band_x,
                y=[*stats["high"], *stats["low"][::-1]],
                fill="toself",
                fillcolor=color,
                opacity=0.2,
                line=dict(width=0),
                hoverinfo="skip",
                showlegend=False,
                row=1,
                col=col,
            )
            figure.add_scatter(
                x=stats["x"],
                y=stats["mean"],
                mode="lines+markers",
                name=f"{method} (n={stats['n'].max()})",
                line=dict(color=color),
                legendgroup=method,
                showlegend=col == 1 or part == "finetune" and method == "LoRA",
                row=1,
                col=col,
            )
    label = {"step": "step", "time_s": "training time (s, evaluation excluded)"}[x]
    figure.update_xaxes(title_text=label)
    figure.update_yaxes(title_text="val loss (nats)", col=1)
    figure.update_layout(title=f"held-out loss against {label}: mean over seeds, band = min..max", height=420, **LAYOUT)
    return figure


def loss_vs_memory(results) -> go.Figure:
    """Final held-out loss (mean ± sd over seeds) against optimizer-state memory."""
    table, _ = compared(results)
    parts = _parts(table)
    figure = make_subplots(rows=1, cols=len(parts), subplot_titles=[PART_TITLES[p] for p in parts])
    for col, part in enumerate(parts, start=1):
        for method, rows in table[table["part"] == part].groupby("method", sort=False):
            sd = rows["val_loss"].std() if len(rows) > 1 else 0.0
            figure.add_scatter(
                x=[rows["state_mb"].mean()],
                y=[rows["val_loss"].mean()],
                error_y=dict(type="data", array=[sd]),
                mode="markers+text",
                text=[method],
                textposition="top center",
                marker=dict(color=COLORS[method], size=12),
                name=method,
                showlegend=False,
                row=1,
                col=col,
            )
    figure.update_xaxes(title_text="optimizer state (+ LoRA adapters), MB")
    figure.update_yaxes(title_text="final val loss (nats)", col=1)
    figure.update_layout(title="final held-out loss against optimizer-state memory", height=420, **LAYOUT)
    return figure


def cost_bars(results) -> go.Figure:
    """Optimizer-state MB by kind, and one optimizer step (SVD refresh amortised over the gap), per method."""
    table, _ = compared(results)
    memory = (
        table.groupby(["part", "method"], sort=False)[["moments_mb", "projectors_mb", "history_mb", "adapters_mb"]]
        .mean()
        .reset_index()
    )
    memory["arm"] = memory["part"] + " · " + memory["method"]
    timing = results.timing.copy()
    timing["arm"] = timing["part"] + " · " + timing["method"]
    figure = make_subplots(
        rows=1, cols=2, subplot_titles=["optimizer state (MB)", "optimizer step (ms, SVD amortised)"]
    )
    for kind, color in (
        ("moments", "#1f77b4"),
        ("projectors", "#ff7f0e"),
        ("history", "#2ca02c"),
        ("adapters", "#9467bd"),
    ):
        figure.add_bar(x=memory["arm"], y=memory[f"{kind}_mb"], name=kind, marker_color=color, row=1, col=1)
    figure.add_bar(
        x=timing["arm"],
        y=timing["amortised_ms"],
        text=[f"{v:.2f}" for v in timing["amortised_ms"]],
        marker_color=[COLORS[m] for m in timing["method"]],
        showlegend=False,
        row=1,
        col=2,
    )
    figure.update_layout(barmode="stack", title="what each optimizer costs", height=420, **LAYOUT)
    return figure


def _mean_sd(values: pd.Series) -> str:
    return f"{values.mean():.3f}" + (f" ± {values.std():.3f}" if len(values) > 1 else "")


def summary(results) -> pd.DataFrame:
    """Per part and method: held-out loss at 25% and 100% of the budget (mean ± sd), state, time, epochs."""
    table, _ = compared(results)
    timing = results.timing.set_index(["part", "method"])["amortised_ms"]
    rows = []
    for (part, method), group in table.groupby(["part", "method"], sort=False):
        rows.append(
            {
                "part": part,
                "method": method,
                "lr": group["lr"].iloc[0],
                "seeds": len(group),
                "25% step": int(group["step_25"].iloc[0]),
                "val loss @ 25%": _mean_sd(group["val_loss_25"]),
                "val loss @ 100%": _mean_sd(group["val_loss"]),
                "optimizer state MB": round(group["state_mb"].mean(), 1),
                "optimizer step ms": round(timing.get((part, method), np.nan), 2),
                "train step ms": round(group["step_ms"].mean(), 1),
                "epochs": round(group["epochs"].mean(), 2),
            }
        )
    return pd.DataFrame(rows)


# -- the conclusion ----------------------------------------------------------------------------
def _stats(table: pd.DataFrame, part: str, method: str, column: str = "val_loss") -> tuple[float, float, int]:
    values = table[(table["part"] == part) & (table["method"] == method) & ~table["swept"].astype(bool)][column]
    return float(values.mean()), float(values.std()) if len(values) > 1 else float("nan"), len(values)


def _difference(
    table: pd.DataFrame, part: str, worse: str, better: str, column: str = "val_loss"
) -> tuple[float, float]:
    """mean(worse) − mean(better) and its standard error over seeds (NaN with one seed)."""
    (m1, s1, n1), (m2, s2, n2) = _stats(table, part, worse, column), _stats(table, part, better, column)
    return m1 - m2, math.sqrt(s1**2 / n1 + s2**2 / n2) if n1 > 1 and n2 > 1 else float("nan")


def _verdict(effect: float, se: float) -> str:
    if math.isnan(se):
        return "held (one seed: no spread to judge it by)" if effect > 0 else "did not hold (one seed)"
    if effect > 2 * se:
        return f"**held** (effect {effect:+.3f} nats > 2 × its standard error {se:.3f})"
    if effect > 0:
        return f"**within seed noise** (effect {effect:+.3f} nats, standard error {se:.3f})"
    return f"**did not hold** (effect {effect:+.3f} nats, standard error {se:.3f})"


def _gap_verdict(gap: float, se: float) -> str:
    """GaLore's loss above AdamW's against the paper's +0.04 nats."""
    if gap <= PAPER["galore_gap"]:
        return "**held**."
    if not math.isnan(se) and gap - 2 * se <= PAPER["galore_gap"]:
        return "**within seed noise** of the paper's gap (not shown larger)."
    return "**did not hold**."


def conclusion(table: pd.DataFrame) -> str:
    """Markdown: which of the papers' claims held here, from the measured run table."""
    lines = []
    if "pretrain" in set(table["part"]):
        lines += _pretrain_conclusion(table)
    if "finetune" in set(table["part"]):
        lines += _finetune_conclusion(table)
    return "\n".join(lines)


def _pretrain_conclusion(table: pd.DataFrame) -> list[str]:
    adamw, galore, natural = (_stats(table, "pretrain", m) for m in ("AdamW", "GaLore", "Natural GaLore"))
    rows = table[(table["part"] == "pretrain") & ~table["swept"].astype(bool)]
    gain, gain_se = _difference(table, "pretrain", "GaLore", "Natural GaLore")
    gain25, gain25_se = _difference(table, "pretrain", "GaLore", "Natural GaLore", "val_loss_25")
    gap, gap_se = _difference(table, "pretrain", "GaLore", "AdamW")
    closed = gain / gap if gap > 0 else float("nan")
    state = {m: rows[rows["method"] == m]["state_mb"].mean() for m in ("AdamW", "GaLore", "Natural GaLore")}
    speed = {m: rows[rows["method"] == m]["step_ms"].mean() for m in ("AdamW", "GaLore", "Natural GaLore")}
    epochs = rows["epochs"].mean()
    lines = [
        f"**Pretraining from scratch** ({adamw[2]}/{galore[2]}/{natural[2]} seeds, {epochs:.3g} epochs of the text). "
        f"Final held-out loss: AdamW {adamw[0]:.3f}, Natural GaLore {natural[0]:.3f}, GaLore {galore[0]:.3f} "
        f"(paper, 60M on C4: 3.52 / 3.53 / 3.56).",
        "",
        f"- *Natural GaLore ends below GaLore* (paper: −{PAPER['ng_gain']:.2f} nats): {_verdict(gain, gain_se)}.",
        f"- *Its gain is larger early* (at 25% of the budget: {gain25:+.3f} ± {gain25_se:.3f}; at 100%: {gain:+.3f}): "
        + (
            "**held**."
            if gain25 > gain and gain25 > 2 * (gain25_se if not math.isnan(gain25_se) else 0)
            else "**did not hold**."
        ),
        f"- *GaLore comes within a few hundredths of AdamW* (paper: +{PAPER['galore_gap']:.2f}): GaLore − AdamW = "
        f"{gap:+.3f} ± {gap_se:.3f}: "
        + _gap_verdict(gap, gap_se),
    ]
    if gap > 0 and not math.isnan(closed):
        lines.append(
            f"- *Natural GaLore closes most of that gap*: it closes {100 * closed:.0f}% of it: "
            + (
                "**held**."
                if closed > 0.5 and gain > 2 * (0 if math.isnan(gain_se) else gain_se)
                else "**did not hold**."
            )
        )
    cut, ratio = 100 * (1 - state["GaLore"] / state["AdamW"]), speed["GaLore"] / speed["AdamW"]
    lines += [
        f"- *GaLore cuts optimizer-state memory* (paper: up to {PAPER['memory_cut']}%): {cut:.1f}% less than AdamW "
        f"({state['GaLore']:.0f} vs {state['AdamW']:.0f} MB; the embeddings stay full-rank): "
        + ("**held**." if cut > 0 else "**did not hold**."),
        f"- Natural GaLore's history of s gradients: {state['Natural GaLore'] / state['AdamW']:.2f}× AdamW's state "
        f"({state['Natural GaLore']:.0f} MB): with one-sided projection each matrix keeps s·r·max(m, n) floats.",
        f"- *Speed* (target: within {PAPER['speed_target']}× AdamW's step): training step GaLore {ratio:.2f}×, "
        f"Natural GaLore {speed['Natural GaLore'] / speed['AdamW']:.2f}× AdamW's, SVD refreshes included: "
        + ("**held**." if ratio <= PAPER["speed_target"] else "**did not hold**."),
    ]
    overfit = rows[rows["val_loss"] - rows["best_val_loss"] > 0.01]
    if len(overfit):
        worst = overfit.loc[(overfit["val_loss"] - overfit["best_val_loss"]).idxmax()]
        lines.append(
            f"- Repetition: {len(overfit)} of {len(rows)} runs ended above their best held-out loss "
            f"({worst['method']} seed {worst['seed']}: "
            f"best {worst['best_val_loss']:.3f} at step {worst['best_step']}, final {worst['val_loss']:.3f}); over "
            f"{epochs:.3g} epochs memorising the text can favour the optimizer that fits it least."
        )
    return lines


def _finetune_conclusion(table: pd.DataFrame) -> list[str]:
    rows = table[(table["part"] == "finetune") & ~table["swept"].astype(bool)].sort_values("val_loss")
    before = rows["val_loss_before"].iloc[0] if "val_loss_before" in rows else float("nan")
    ranking = ", ".join(f"{r.method} {r.val_loss:.3f} ({r.state_mb:.0f} MB)" for r in rows.itertuples())
    lines = [
        "",
        f"**Fine-tuning** (one seed, {rows['epochs'].mean():.3g} epochs; held-out loss before: {before:.3f}). "
        f"Final held-out loss, best first, with optimizer state: {ranking}.",
    ]
    by = rows.set_index("method")
    if {"GaLore", "Natural GaLore", "LoRA"} <= set(by.index):
        ng_gain = by.loc["GaLore", "val_loss"] - by.loc["Natural GaLore", "val_loss"]
        lora_gap = by.loc["LoRA", "val_loss"] - min(by.loc["GaLore", "val_loss"], by.loc["Natural GaLore", "val_loss"])
        lines.append(
            f"- *Natural GaLore beats GaLore in fine-tuning* (paper: GLUE 86.05 vs 85.89): {ng_gain:+.3f} nats: "
            + ("**held**" if ng_gain > 0 else "**did not hold**")
            + " (one seed: no spread measured)."
        )
        lines.append(
            f"- *GaLore-family beats LoRA at a similar state budget* (paper: GLUE 85.89 / 86.05 vs 85.61): "
            f"LoRA − best GaLore = "
            f"{lora_gap:+.3f} nats: " + ("**held**" if lora_gap > 0 else "**did not hold**") + " (one seed)."
        )
    return lines
