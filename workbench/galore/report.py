"""Figures, a summary table and the generated conclusion of the GaLore experiment (plotly; draws
from `experiment.GaloreResults`, computes nothing new)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import verdicts
from ..plots import LAYOUT, significant

COLORS = {
    "AdamW": "#1f77b4",
    "GaLore": "#ff7f0e",
    "Natural GaLore": "#2ca02c",
    "Natural GaLore (official history)": "#17becf",
    "LoRA": "#9467bd",
}
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
                "lr": f"{group['lr'].iloc[0]:g}",
                "seeds": len(group),
                "25% step": int(group["step_25"].iloc[0]),
                "val loss @ 25%": _mean_sd(group["val_loss_25"]),
                "val loss @ 100%": _mean_sd(group["val_loss"]),
                "optimizer state MB": round(group["state_mb"].mean(), 1),
                "optimizer step ms": round(timing.get((part, method), np.nan), 2),
                "train step ms": round(group["step_ms"].mean(), 1),
                "epochs": significant(group["epochs"].mean(), 2),
            }
        )
    return pd.DataFrame(rows)


# -- the conclusion ----------------------------------------------------------------------------
NG_OFFICIAL = "Natural GaLore (official history)"


def _paired(rows: pd.DataFrame, method: str, baseline: str, column: str = "val_loss") -> tuple[list, list]:
    """Values of `method` and `baseline` on the seeds both ran (same initial weights and batches per seed)."""
    a = rows[rows["method"] == method].set_index("seed")[column]
    b = rows[rows["method"] == baseline].set_index("seed")[column]
    seeds = sorted(set(a.index) & set(b.index))
    return [float(a[s]) for s in seeds], [float(b[s]) for s in seeds]


def _at(column: str) -> str:
    return {"val_loss": "last checkpoint", "best_val_loss": "best held-out checkpoint"}[column]


def conclusion(table: pd.DataFrame, *, profile) -> str:
    """Markdown: the papers' claims judged by `workbench.verdicts` on the measured run table (paired over
    seeds, nats); a smoke profile gets only the notice that it judges nothing."""
    not_trained = table.attrs.get("not_trained", [])
    if getattr(profile, "name", profile) == "smoke":
        return verdicts.conclusion([], profile=profile, not_trained=not_trained)
    parts = []
    done = set(table["part"]) if "part" in table else set()
    if "pretrain" in done:
        parts.append(_pretrain_conclusion(table, profile))
    if "finetune" in done:
        parts.append(_finetune_conclusion(table, profile))
    return "\n\n".join([*parts, verdicts.conclusion([], profile=profile, not_trained=not_trained)]).strip()


def _pretrain_verdicts(rows: pd.DataFrame, epochs: float) -> list[verdicts.Verdict]:
    """Each loss claim at the last and at the best held-out checkpoint (repetition can separate them)."""
    out = []
    for column in ("val_loss", "best_val_loss"):
        at = _at(column)
        out.append(
            verdicts.superiority(
                f"Natural GaLore ends below GaLore (paper: −{PAPER['ng_gain']:.2f} nats), {at}",
                *_paired(rows, "Natural GaLore", "GaLore", column),
                scale="nats",
                epochs=epochs,
            )
        )
        if NG_OFFICIAL in set(rows["method"]):
            out.append(
                verdicts.superiority(
                    f"Natural GaLore with the official history (kept across refreshes) ends below GaLore, {at}",
                    *_paired(rows, NG_OFFICIAL, "GaLore", column),
                    scale="nats",
                    epochs=epochs,
                )
            )
        out.append(
            verdicts.equivalence(
                f"GaLore comes within {PAPER['galore_gap']:.2f} nats of AdamW, {at}",
                *_paired(rows, "GaLore", "AdamW", column),
                delta=PAPER["galore_gap"],
                scale="nats",
                epochs=epochs,
            )
        )
        galore, adamw = _paired(rows, "GaLore", "AdamW", column)
        natural, _ = _paired(rows, "Natural GaLore", "AdamW", column)
        claim = f"Natural GaLore closes most (over half) of GaLore's gap to AdamW, {at}"
        if not galore or np.mean(galore) <= np.mean(adamw):
            out.append(verdicts.not_testable(claim, "GaLore is not above AdamW here: no gap to close", epochs=epochs))
        else:
            midpoint = [(g + a) / 2 for g, a in zip(galore, adamw)]
            out.append(verdicts.superiority(claim, natural, midpoint, scale="nats", epochs=epochs))
    early = [g - n for g, n in zip(*_paired(rows, "GaLore", "Natural GaLore", "val_loss_25"))]
    late = [g - n for g, n in zip(*_paired(rows, "GaLore", "Natural GaLore", "val_loss"))]
    out.append(
        verdicts.superiority(
            "Natural GaLore's gain over GaLore is larger early (at 25% of the budget than at 100%)",
            early, late, goal="max", scale="nats", epochs=epochs,
        )
    )  # fmt: skip
    return out


def _pretrain_conclusion(table: pd.DataFrame, profile) -> str:
    rows = table[(table["part"] == "pretrain") & ~table["swept"].astype(bool)]
    methods = [m for m in ("AdamW", "GaLore", "Natural GaLore", NG_OFFICIAL) if m in set(rows["method"])]
    if not {"AdamW", "GaLore", "Natural GaLore"} <= set(methods):  # a time limit cut a whole method
        return verdicts.conclusion(
            [verdicts.untrained("Pretraining: Natural GaLore, GaLore and AdamW compared")],
            profile=profile, preamble=f"**Pretraining from scratch**: trained {', '.join(methods) or 'no method'}.",
        )  # fmt: skip
    by = rows.groupby("method")
    epochs = float(rows["epochs"].mean())
    seeds = "/".join(str(by.get_group(m)["seed"].nunique()) for m in methods)
    mean = {c: by[c].mean() for c in ("val_loss", "best_val_loss", "state_mb")}
    lrs = ", ".join(f"{m} {by.get_group(m)['lr'].iloc[0]:g}" for m in methods)
    preamble = (
        f"**Pretraining from scratch** ({seeds} seeds, {epochs:.3g} epochs of the text; learning rates, the best "
        f"of each method's sweep on the first seed: {lrs}). Held-out loss, last / best checkpoint: "
        + ", ".join(f"{m} {mean['val_loss'][m]:.3f} / {mean['best_val_loss'][m]:.3f}" for m in methods)
        + " (paper, 60M on C4: AdamW 3.52, Natural GaLore 3.53, GaLore 3.56). Effects are paired over seeds, "
        "method − baseline in nats, 95% t intervals."
    )
    found = _pretrain_verdicts(rows, epochs)
    state = mean["state_mb"]
    cut = 100 * (1 - state["GaLore"] / state["AdamW"])
    n = int(by.get_group("GaLore")["seed"].nunique())
    found.append(
        verdicts.against_bar(
            f"GaLore cuts optimizer-state memory (paper: up to {PAPER['memory_cut']}%)",
            cut, cut, cut, bar=0.0, goal="max", seeds=n, scale="% less state than AdamW",
            detail=f"{state['GaLore']:.0f} vs {state['AdamW']:.0f} MB counted; the embeddings stay full-rank",
        )
    )  # fmt: skip
    found.append(
        verdicts.not_testable(
            "Natural GaLore keeps GaLore's memory saving",
            f"cannot hold by design here: with one-sided projection each matrix keeps s·r·max(m, n) floats of "
            f"gradient history ({state['Natural GaLore']:.0f} MB, {state['Natural GaLore'] / state['AdamW']:.2f}× "
            "AdamW's state); the official code projects both sides (Tucker, an r×r core) where the history is small",
            seeds=n,
        )
    )
    galore_ms, adamw_ms = _paired(rows, "GaLore", "AdamW", "step_ms")
    found.append(
        verdicts.ratio(
            f"GaLore's training step stays within {PAPER['speed_target']}× AdamW's (SVD refreshes included)",
            galore_ms, adamw_ms, bar=PAPER["speed_target"], goal="min", scale="step-time ratio", unit="seed",
        )
    )  # fmt: skip
    if table.attrs.get("not_trained") and getattr(profile, "seeds", 1) > 1:  # seeds planned, cut by the time limit
        found = verdicts.time_limited(found)
    text = verdicts.conclusion(found, profile=profile, preamble=preamble)
    overfit = rows[rows["val_loss"] - rows["best_val_loss"] > 0.01]
    if len(overfit):
        worst = overfit.loc[(overfit["val_loss"] - overfit["best_val_loss"]).idxmax()]
        text += (
            f"\n\nRepetition: {len(overfit)} of {len(rows)} runs ended above their best held-out loss "
            f"({worst['method']} seed {worst['seed']}: best {worst['best_val_loss']:.3f} at step {worst['best_step']}, "
            f"final {worst['val_loss']:.3f}); over {epochs:.3g} epochs memorising the text can favour the optimizer "
            "that fits it least, hence each claim judged at the best checkpoint too."
        )
    return text


def _finetune_conclusion(table: pd.DataFrame, profile) -> str:
    rows = table[(table["part"] == "finetune") & ~table["swept"].astype(bool)].sort_values("val_loss")
    before = rows["val_loss_before"].iloc[0] if "val_loss_before" in rows else float("nan")
    epochs = float(rows["epochs"].mean())
    ranking = ", ".join(f"{r.method} {r.val_loss:.3f} ({r.state_mb:.0f} MB)" for r in rows.itertuples())
    preamble = (
        f"**Fine-tuning** ({rows['seed'].nunique()} seed(s), {epochs:.3g} epochs; held-out loss before: {before:.3f}). "
        f"Final held-out loss, best first, with optimizer state: {ranking}."
    )
    found = []
    if {"GaLore", "Natural GaLore"} <= set(rows["method"]):
        found.append(
            verdicts.superiority(
                "Natural GaLore beats GaLore in fine-tuning (paper: GLUE 86.05 vs 85.89)",
                *_paired(rows, "Natural GaLore", "GaLore"), scale="nats", epochs=epochs,
            )
        )  # fmt: skip
    if {"GaLore", "Natural GaLore", "LoRA"} <= set(rows["method"]):
        galore, lora = _paired(rows, "GaLore", "LoRA")
        natural, _ = _paired(rows, "Natural GaLore", "LoRA")
        found.append(
            verdicts.superiority(
                "The GaLore family beats LoRA at a similar state budget (paper: GLUE 85.89 / 86.05 vs 85.61)",
                [min(g, n) for g, n in zip(galore, natural)], lora, scale="nats", epochs=epochs,
            )
        )  # fmt: skip
    return verdicts.conclusion(found, profile=profile, preamble=preamble)
