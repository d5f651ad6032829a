"""EchoAtt's report: the table with named columns, figures, the live curves, and the conclusion.

`claims(table)` decides each of the paper's claims from the measured numbers; `conclusion(table)`
writes them, budget by budget, as markdown. Nothing here measures: it reads the experiment's table.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .. import plots
from .profile import EchoAttProfile

TABLE_COLUMNS = {
    "arm": "arm", "followers": "shared layers", "params": "params", "params_change_pct": "Δparams %",
    "zero_shot_ppl": "ppl zero-shot", "ppl": "ppl after training", "prefill_tok_s": "prefill tok/s",
    "decode_tok_s": "decode tok/s", "train_step_s": "train s/step", "kv_cache_mb": "KV cache MB",
    "prefill_vs_teacher": "prefill ×", "decode_vs_teacher": "decode ×", "train_vs_teacher": "train ×",
    "kernel": "attention kernel",
}  # fmt: skip
ROUNDING = {
    "Δparams %": 2, "ppl zero-shot": 2, "ppl after training": 2, "prefill tok/s": 0, "decode tok/s": 0,
    "train s/step": 4, "KV cache MB": 1, "prefill ×": 3, "decode ×": 3, "train ×": 3,
}  # fmt: skip
# The paper's claims (TinyLlama-1.1B teacher), as thresholds on the measured ratios.
PARAMS_CLAIM_PCT = -3.5  # "about 4% fewer parameters"
INFERENCE_CLAIM = 1.15  # "+15% inference speed"
TRAINING_CLAIM = 1.25  # "+25% training speed"


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The table with readable column names and rounded numbers."""
    shown = table[[c for c in TABLE_COLUMNS if c in table]].rename(columns=TABLE_COLUMNS)
    return shown.round(ROUNDING)


def markdown_table(table: pd.DataFrame) -> str:
    """`display_table` as a markdown table (empty cells for missing values)."""
    shown = display_table(table).astype(object)
    shown = shown.where(shown.notna(), "")
    header = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns)
    return "\n".join(
        [header, *("| " + " | ".join(str(v) for v in row) + " |" for row in shown.itertuples(index=False))]
    )


def results_markdown(table: pd.DataFrame, profile: EchoAttProfile, device: str) -> str:
    """A results section: setup line, the table, and the generated conclusion."""
    p = profile
    setup = (
        f"Device: {device}. Teacher: {p.teacher}; {p.steps} steps × {p.batch_size}×{p.block_len} tokens per trained "
        f"arm ({p.corpus} train split); perplexity on the held-out split in {p.eval_context}-token windows; blocks of "
        f"≤{p.max_block} layers; layers chosen by {p.metric} similarity"
        f"{' without the sink column' if p.drop_sink else ''} (per head, averaged). Speeds: prefill "
        f"{p.prefill_batch}×{p.prefill_len} tokens (KV cache size after it), decode {p.decode_batch}×{p.decode_tokens} "
        f"tokens with KV cache, in {'bf16' if device != 'cpu' else 'fp32'}; training step = forward+backward+AdamW on "
        f"{p.batch_size}×{p.block_len} tokens. × columns: ratio to the teacher with the same kernel for its unshared "
        "layers (>1 = faster)."
    )
    section = [f"## EchoAtt, {p.name} profile", "", setup, "", markdown_table(table), "", conclusion(table)]
    return "\n".join(section) + "\n"


def _parts(table: pd.DataFrame) -> tuple[pd.Series, pd.Series, pd.DataFrame, pd.Series, pd.DataFrame]:
    """teacher (sdpa), continued-trained teacher, student rows (sdpa), the similarity arm of the largest
    budget, and its all-eager row (maybe empty)."""
    teacher = table[table["arm"] == "teacher (sdpa)"].iloc[0]
    continued = table[table["kind"] == "continued"].iloc[0]
    students = table[table["kind"].isin(["similarity", "random", "last"]) & ~table["arm"].str.endswith("(eager)")]
    sharpest = students[students["n_shared"] == students["n_shared"].max()]
    top = sharpest[sharpest["kind"] == "similarity"].iloc[0]
    eager = table[table["arm"] == f"{top['arm']} (eager)"]
    return teacher, continued, students, top, eager


def claims(table: pd.DataFrame) -> dict[str, bool]:
    """Each claim of the paper, held (True) or not at this scale, from the measured table.

    Speed claims are judged against the fused-attention (sdpa) teacher, the fastest model a user
    would otherwise deploy; quality against the fair baseline (the teacher trained on the same tokens).
    """
    teacher, continued, students, top, _ = _parts(table)
    return {
        "fewer_parameters": bool(top["params_change_pct"] <= PARAMS_CLAIM_PCT),
        "inference_speed": bool(min(top["prefill_vs_teacher"], top["decode_vs_teacher"]) >= INFERENCE_CLAIM),
        "training_speed": bool(top["train_vs_teacher"] >= TRAINING_CLAIM),
        "no_quality_loss": bool(students["ppl"].min() <= continued["ppl"]),
        "no_quality_loss_vs_teacher": bool(students["ppl"].min() <= teacher["ppl"]),
    }


def _verdict(ok: bool) -> str:
    return "held" if ok else "did not hold"


def _budget_line(n: int, rows: pd.DataFrame, teacher: pd.Series, continued: pd.Series) -> str:
    chosen, last = rows[rows["kind"] == "similarity"].iloc[0], rows[rows["kind"] == "last"].iloc[0]
    rand = rows[rows["kind"] == "random"]
    best = rows.loc[rows["ppl"].idxmin()]
    if chosen["ppl"] < rand["ppl"].min():
        versus = "beat random draw"
    elif chosen["ppl"] < rand["ppl"].mean():
        versus = "did not beat every random draw (it beat the random mean)"
    else:
        versus = "did not beat every random draw nor the random mean"
    return (
        f"- {n} shared layers ({chosen['params_change_pct']:+.2f}% parameters): similarity-chosen "
        f"{chosen['zero_shot_ppl']:.2f} → {chosen['ppl']:.2f} after distillation; random "
        f"{rand['zero_shot_ppl'].mean():.2f} → {rand['ppl'].mean():.2f} (mean of {len(rand)}, range "
        f"{rand['ppl'].min():.2f}–{rand['ppl'].max():.2f}); last inner layers {last['zero_shot_ppl']:.2f} → "
        f"{last['ppl']:.2f}. Best: {best['arm']} ({best['ppl']:.2f}, "
        f"{100 * (best['ppl'] / continued['ppl'] - 1):+.1f}% vs the fair baseline, "
        f"{100 * (best['ppl'] / teacher['ppl'] - 1):+.1f}% vs the teacher as is). Similarity choice {versus}."
    )


def conclusion(table: pd.DataFrame) -> str:
    """What the measured numbers say, budget by budget, and about each of the paper's claims."""
    teacher, continued, students, top, eager = _parts(table)
    held = claims(table)
    lines = [
        f"- Teacher: held-out perplexity {teacher['ppl']:.2f}; continued-trained on the same tokens (the fair "
        f"baseline): {continued['ppl']:.2f}."
    ]
    lines += [_budget_line(n, rows, teacher, continued) for n, rows in students.groupby("n_shared")]
    lines.append(
        f'- Claim "about 4% fewer parameters": {top["params_change_pct"]:+.2f}% at {top["n_shared"]} shared layers '
        f"({_verdict(held['fewer_parameters'])} at this budget)."
    )
    speed = (
        f"prefill ×{top['prefill_vs_teacher']:.3f}, decode ×{top['decode_vs_teacher']:.3f} against the "
        "fused-attention (sdpa) teacher"
    )
    if not eager.empty:
        speed += (
            f"; ×{eager.iloc[0]['prefill_vs_teacher']:.3f} and ×{eager.iloc[0]['decode_vs_teacher']:.3f} eager "
            "against eager"
        )
    lines.append(
        f'- Claim "+15% inference speed" ({top["arm"]}): {speed} — {_verdict(held["inference_speed"])} against the '
        f"fused teacher. Its KV cache is {100 * (top['kv_cache_mb'] / teacher['kv_cache_mb'] - 1):+.1f}% "
        "(followers cache values only)."
    )
    train_eager = f", ×{eager.iloc[0]['train_vs_teacher']:.3f} eager against eager" if not eager.empty else ""
    lines.append(
        f'- Claim "+25% training speed": training step ×{top["train_vs_teacher"]:.3f} against the sdpa '
        f"teacher{train_eager} — {_verdict(held['training_speed'])}."
    )
    lines.append(
        f'- Claim "no loss in quality": the best student reaches {students["ppl"].min():.2f} against '
        f"{continued['ppl']:.2f} for the continued-trained teacher — {_verdict(held['no_quality_loss'])} against the "
        f"fair baseline ({_verdict(held['no_quality_loss_vs_teacher'])} against the teacher as is)."
    )
    return "\n".join(lines)


# -- figures -----------------------------------------------------------------------------------
def perplexity_figure(table: pd.DataFrame) -> go.Figure:
    """Held-out perplexity of every arm after training beside its zero-shot value (right after copying)."""
    trained = table[~table["arm"].str.endswith("(eager)")].drop_duplicates("arm")
    teacher_ppl = float(table.loc[table["arm"] == "teacher (sdpa)", "ppl"].iloc[0])
    figure = plots.bars(
        list(trained["arm"]),
        list(trained["ppl"]),
        "Held-out perplexity after training (dashed: teacher as is)",
        value_name="perplexity",
        baseline=teacher_ppl,
    )
    figure.data[0].name = "after training"
    figure.add_bar(x=list(trained["arm"]), y=list(trained["zero_shot_ppl"]), name="zero-shot (right after copying)",
                   opacity=0.5)  # fmt: skip
    figure.update_layout(barmode="group", yaxis_type="log")
    return figure


def speed_figure(table: pd.DataFrame) -> go.Figure:
    """Prefill, decode and training-step speed of every measured arm relative to the teacher with the same kernel."""
    speeds = table.dropna(subset=["prefill_vs_teacher"]).melt(
        id_vars="arm",
        value_vars=["prefill_vs_teacher", "decode_vs_teacher", "train_vs_teacher"],
        var_name="measure",
        value_name="ratio",
    )
    labels = [f"{a} · {m.removesuffix('_vs_teacher')}" for a, m in zip(speeds["arm"], speeds["measure"], strict=True)]
    return plots.bars(
        labels,
        list(speeds["ratio"]),
        "Speed relative to the teacher with the same kernel (dashed: the paper's +15%)",
        value_name="× teacher",
        baseline=INFERENCE_CLAIM,
    )


class LiveCurves:
    """Held-out perplexity of every arm against the training step, drawn while the arms train.

    Pass as `callback` to `EchoAttExperiment.adjust` and display `figure` (a plotly FigureWidget)
    before: each point updates the displayed widget in place (no re-display, no Output capture,
    which stalls a headless papermill run). Outside a notebook it only collects the points.
    """

    def __init__(self, title: str = "Held-out perplexity during training"):
        self.figure = go.FigureWidget()
        self.figure.update_layout(
            title=title,
            xaxis_title="optimizer step",
            yaxis_title="perplexity (curve windows)",
            yaxis_type="log",
            **plots.LAYOUT,
        )

    def __call__(self, arm: str, step: int, metrics: dict[str, float]) -> None:
        traces = {trace.name: trace for trace in self.figure.data}
        if arm in traces:
            with self.figure.batch_update():
                traces[arm].x, traces[arm].y = (*traces[arm].x, step), (*traces[arm].y, metrics["val_ppl"])
        else:
            self.figure.add_scatter(x=[step], y=[metrics["val_ppl"]], name=arm, mode="lines+markers")
