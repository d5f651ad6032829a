"""The efficiency frontier: model cards of every idea on one budget axis against one quality axis.

For a budget axis (non-embedding parameters, decode latency, KV-cache bytes per token, training
FLOPs, weight bytes) a card is Pareto-optimal when no other card is at least as good on both axes and
better on one. `frontier_figure` draws the cards coloured by idea with the Pareto points marked and
joined; the notebook (08) and the dashboard's Frontier tab both draw with it. Speed axes are drawn in
one panel per device kind (GPU, CPU): a GPU's and a CPU's latencies never share an axis, nor a frontier.
`conclusion` says in words which idea holds the frontier over which budget, with the measured numbers;
`composition` says whether two ideas' gains multiply, add or cancel when applied together.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .cards import CardProfile, load_cards
from .plots import COLORS, LAYOUT, log_axis
from .runs import RunStore


@dataclass(frozen=True)
class Axis:
    title: str
    goal: str = "min"
    log: bool = True
    per_device: bool = False  # a speed: one panel per device kind


AXES = {
    "non_embedding_params": Axis("non-embedding parameters"),
    "decode_latency_ms": Axis("decode latency at batch 1 (ms/token)", per_device=True),
    "kv_bytes_per_token": Axis("KV-cache bytes per token"),
    "training_flops": Axis("training FLOPs"),
    "weight_bytes": Axis("weight bytes"),
    "decode_b32_tok_s": Axis("decode tokens/s at batch 32", goal="max", per_device=True),
    "prefill_tok_s": Axis("prefill tokens/s", goal="max", per_device=True),
    "code_ppl": Axis("code held-out perplexity"),
    "english_ppl": Axis("English held-out perplexity"),
    "cloze_acc": Axis("zero-shot cloze accuracy", goal="max", log=False),
    "choice_acc": Axis("zero-shot 4-way choice accuracy", goal="max", log=False),
}
DEVICE_KINDS = ("gpu", "cpu")
AXIS_PAD = 0.15  # log axes reach 15% beyond the extreme points: the ringed Pareto markers (16 px) are not clipped


def pareto(frame: pd.DataFrame, x: str, y: str, x_goal: str | None = None, y_goal: str | None = None) -> pd.Series:
    """True for rows no other row dominates (as good on both axes, better on one); rows missing x or y: False."""
    x_goal, y_goal = x_goal or AXES[x].goal, y_goal or AXES[y].goal
    known = frame[[x, y]].apply(pd.to_numeric, errors="coerce").dropna()
    xs = known[x].to_numpy(float) * (1 if x_goal == "min" else -1)
    ys = known[y].to_numpy(float) * (1 if y_goal == "min" else -1)
    optimal = [
        not np.any((xs <= xi) & (ys <= yi) & ((xs < xi) | (ys < yi))) for xi, yi in zip(xs, ys, strict=True)
    ]
    return pd.Series(optimal, index=known.index, dtype=bool).reindex(frame.index, fill_value=False)


def select(
    cards: pd.DataFrame,
    ideas: Sequence[str] | None = None,
    device_kind: str | None = None,
    corpus: str | None = None,
    eval_spec: str | None = None,
) -> pd.DataFrame:
    """The cards of some ideas, one device kind, one training corpus, one common evaluation (default: the
    evaluation most cards share: perplexities of different windows never share an axis)."""
    if cards.empty:
        return cards
    keep = pd.Series(True, index=cards.index)
    if ideas:
        keep &= cards["idea"].isin(list(ideas))
    if device_kind:
        keep &= cards["device_kind"] == device_kind
    if corpus:
        keep &= cards["corpus"] == corpus
    spec = eval_spec or cards.loc[keep, "eval_spec"].mode().get(0)
    return cards[keep & (cards["eval_spec"] == spec)]


def panels(cards: pd.DataFrame, x: str) -> list[tuple[str, pd.DataFrame]]:
    """(title, cards) per panel: one per device kind present for a speed axis, else one."""
    if not AXES[x].per_device:
        return [("", cards)]
    kinds = [kind for kind in DEVICE_KINDS if (cards["device_kind"] == kind).any()] if len(cards) else []
    return [(kind.upper(), cards[cards["device_kind"] == kind]) for kind in kinds] or [("", cards)]


def _hover(rows: pd.DataFrame, x: str, y: str) -> list[str]:
    bound = np.where(rows["quality_is_bound"].astype(bool), " (ELBO bound)", "")
    return [
        f"<b>{r.idea}</b> · {r.arm}<br>run {r.run_id} {r.run}<br>{r.precision} on {r.device}<br>"
        f"{AXES[x].title}: {getattr(r, x):,.4g}<br>{AXES[y].title}: {getattr(r, y):,.4g}{b}"
        for r, b in zip(rows.itertuples(), bound, strict=True)
    ]


def frontier_figure(cards: pd.DataFrame, x: str = "non_embedding_params", y: str = "code_ppl",
                    title: str | None = None) -> go.Figure:  # fmt: skip
    """Cards (`cards.load_cards`, filtered with `select`) as points of `y` against `x`, coloured by idea;
    Pareto-optimal points ringed and joined by a dashed line per panel; MDM bounds drawn open. The
    signature is shared with the dashboard's Frontier tab: keep it stable."""
    if cards.empty:  # nothing yet (a live figure before the first card lands)
        figure = go.Figure(layout={"title": title or f"{AXES[y].title} against {AXES[x].title}", **LAYOUT})
        return figure.update_layout(xaxis_title=AXES[x].title, yaxis_title=AXES[y].title)
    cards = cards.assign(run=cards.get("run", ""))
    parts = panels(cards, x)
    figure = make_subplots(rows=1, cols=len(parts), subplot_titles=[name for name, _ in parts], shared_yaxes=True)
    ideas = sorted(cards["idea"].unique()) if len(cards) else []
    for col, (_, rows) in enumerate(parts, start=1):
        rows = rows[rows[x].notna() & rows[y].notna()] if len(rows) else rows
        for index, idea in enumerate(ideas):
            mine = rows[rows["idea"] == idea]
            if mine.empty:
                continue
            bound = mine["quality_is_bound"].astype(bool)
            figure.add_trace(go.Scatter(
                x=mine[x], y=mine[y], mode="markers", name=idea, legendgroup=idea, showlegend=col == 1,
                marker={"color": COLORS[index % len(COLORS)], "size": 10,
                        "symbol": np.where(bound, "circle-open", np.where(mine["composed"], "star", "circle"))},
                hovertext=_hover(mine, x, y), hoverinfo="text",
            ), row=1, col=col)  # fmt: skip
        best = rows[pareto(rows, x, y)].sort_values(x) if len(rows) else rows
        if len(best):
            figure.add_trace(go.Scatter(
                x=best[x], y=best[y], mode="lines+markers", name="Pareto frontier", legendgroup="pareto",
                showlegend=col == 1, line={"color": "black", "dash": "dash", "width": 1, "shape": "hv"},
                marker={"size": 16, "symbol": "circle-open", "color": "black", "line": {"width": 2}},
                hovertext=_hover(best, x, y), hoverinfo="text",
            ), row=1, col=col)  # fmt: skip
        log = log_axis(rows[x], pad=AXIS_PAD) if AXES[x].log else {}
        figure.update_xaxes(title_text=AXES[x].title, row=1, col=col, **log)
    figure.update_yaxes(title_text=AXES[y].title, row=1, col=1)
    figure.update_yaxes(**(log_axis(cards[y], pad=AXIS_PAD) if AXES[y].log and len(cards) else {}))
    figure.update_layout(title=title or f"{AXES[y].title} against {AXES[x].title}", uirevision=f"{x}|{y}", **LAYOUT)
    return figure


def frontier_table(cards: pd.DataFrame, x: str, y: str = "code_ppl") -> pd.DataFrame:
    """The Pareto points of each panel, in order of budget: one row each, device stated."""
    columns = ["idea", "arm", "run_id", "precision", "device", x, y, "quality_is_bound"]
    parts = [rows[pareto(rows, x, y)].sort_values(x)[columns] for _, rows in panels(cards, x) if len(rows)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def _number(value: float) -> str:
    """Parameters and bytes with thousands separators; FLOPs (≥ 1e9) as 6.45e+13, not 19 digits."""
    if abs(value) >= 1e9:
        return f"{value:.3g}"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def conclusion(cards: pd.DataFrame, x: str, y: str = "code_ppl") -> str:
    """Per panel: which idea holds the frontier over which range of the budget, with the measured numbers."""
    lines = []
    for name, rows in panels(cards, x):
        best = rows[pareto(rows, x, y)].sort_values(x) if len(rows) else rows
        where = f" ({name})" if name else ""
        if best.empty:
            lines.append(f"- **{AXES[x].title}{where}**: no card has both numbers.")
            continue
        spans, start = [], 0
        ideas = best["idea"].tolist()
        for i in range(1, len(best) + 1):
            if i == len(best) or ideas[i] != ideas[start]:
                part = best.iloc[start:i]
                points = ", ".join(f"{r.arm} ({_number(getattr(r, x))}: {_number(getattr(r, y))}"
                                   f"{' bound' if r.quality_is_bound else ''})" for r in part.itertuples())  # fmt: skip
                low, high = _number(part[x].iloc[0]), _number(part[x].iloc[-1])
                spans.append(f"**{ideas[start]}** from {low} to {high}: {points}" if low != high
                             else f"**{ideas[start]}** at {low}: {points}")  # fmt: skip
                start = i
        lines.append(f"- **{AXES[x].title}{where}**, {AXES[y].title}: {len(best)} Pareto point(s) of {len(rows)}; "
                     + "; then ".join(spans) + ".")  # fmt: skip
    return "\n".join(lines)


@dataclass(frozen=True)
class Composition:
    """Gains of two changes A and B to a base model, alone and together, on one axis (ratios to the base)."""

    axis: str
    gain_a: float
    gain_b: float
    gain_both: float
    spread: float  # relative measurement noise of the composed gain

    @property
    def verdict(self) -> str:
        """"multiply" / "add" / "cancel" / "cannot be told apart (within spread)", whichever the composed gain is
        nearest on a log scale; "cancel" when a single change gains and the composed gain is below the better
        one by more than the noise (at least 1%: a ratio of two measurements is never exact)."""
        tolerance, best = max(self.spread, 0.01), max(self.gain_a, self.gain_b)
        if best > 1 + tolerance and self.gain_both < best * (1 - tolerance):
            return "cancel"
        multiply, add = self.gain_a * self.gain_b, 1 + (self.gain_a - 1) + (self.gain_b - 1)
        if add <= 0 or abs(math.log(multiply / add)) < tolerance:
            return "cannot be told apart (within spread)"
        return "multiply" if abs(math.log(self.gain_both / multiply)) < abs(math.log(self.gain_both / add)) else "add"

    def sentence(self) -> str:
        product = self.gain_a * self.gain_b
        return (f"{AXES[self.axis].title if self.axis in AXES else self.axis}: A alone ×{self.gain_a:.3g}, "
                f"B alone ×{self.gain_b:.3g}, together ×{self.gain_both:.3g} (multiplied: ×{product:.3g}, "
                f"added: ×{self.gain_a + self.gain_b - 1:.3g}; spread ±{self.spread:.0%}): the gains "
                f"**{self.verdict}**.")  # fmt: skip


SPREADS = {"decode_latency_ms": "decode_b1_spread", "prefill_tok_s": "prefill_spread"}  # timed axis -> its spread


def timing_spread(speeds: Iterable[dict], axis: str) -> float:
    """The noise of a composed gain on `axis` from the four models' `measure.model_speeds` rows: a ratio of
    ratios is as noisy as its noisiest timing, so the largest interquartile spread; 0 on an axis that is not
    timed (bytes and perplexity are exact on the same windows)."""
    key = SPREADS.get(axis)
    spreads = [row.get(key) for row in speeds] if key else []
    return max((s for s in spreads if s is not None and not math.isnan(s)), default=0.0)


def composition(base: dict, a: dict, b: dict, both: dict, axis: str, spread: float = 0.0) -> Composition:
    """The gains of rows `a`, `b` and `both` over `base` on `axis` (cards' rows): a gain > 1 is better
    (for a "min" axis, base / value; for "max", value / base)."""
    goal = AXES[axis].goal if axis in AXES else "min"

    def gain(row: dict) -> float:
        return base[axis] / row[axis] if goal == "min" else row[axis] / base[axis]

    return Composition(axis, gain(a), gain(b), gain(both), spread)


class LiveFrontier:
    """A frontier figure (a plotly FigureWidget) redrawn from the store when new cards land: display
    `figure`, then call `refresh()` (e.g. from a loop, or `watch` in a notebook) as runs finish."""

    def __init__(self, store: RunStore, x: str = "non_embedding_params", y: str = "code_ppl", **filters):
        self.store, self.x, self.y, self.filters = store, x, y, filters
        self.figure = go.FigureWidget()
        self.seen = -1
        self.refresh()

    @property
    def cards(self) -> pd.DataFrame:
        return select(load_cards(self.store), **self.filters)

    def refresh(self) -> bool:
        """Redraw if the store holds a different number of cards; True if it did."""
        cards = self.cards
        if len(cards) == self.seen:
            return False
        self.seen = len(cards)
        fresh = frontier_figure(cards, self.x, self.y)
        with self.figure.batch_update():
            self.figure.data = []
            self.figure.layout = fresh.layout
            self.figure.add_traces(list(fresh.data))
        return True

    def watch(self, seconds: float, every: float = 5.0) -> None:
        """Redraw as cards land, for `seconds` (the cell runs that long; interrupt the kernel to stop early)."""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            time.sleep(min(every, left))
            self.refresh()


@dataclass(frozen=True)
class FrontierProfile(CardProfile):
    """Notebook 08: the common evaluation (`CardProfile`), the reference model and its precisions, and the
    stored arms the compositions start from (the newest card whose arm contains the given text)."""

    reference: str = "smollm2-135m"  # "tiny": a random tiny LLaMA (smoke)
    precisions: tuple[str, ...] = ("float32", "bfloat16", "int8", "int4")
    echoatt_arm: str = "n=12 similarity"  # "": build a tiny student here (smoke)
    recursive_arm: str = "SVD LoRA"
    live_seconds: float = 0.0  # keep redrawing the figure from the store this long (0: draw once)
    llamacpp_card: bool = True  # llama.cpp's Q4_1 reference card where llama-cpp-python is installed (CPU minutes)


FrontierProfile.presets = {
    "smoke": CardProfile.presets["smoke"]
    | dict(reference="tiny", echoatt_arm="", recursive_arm="", llamacpp_card=False),
    "full": {},
}
