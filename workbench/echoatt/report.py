"""EchoAtt's report: the table with named columns, figures, the live curves, and the conclusion.

`claims(table, seeds)` judges each of the paper's claims through `workbench.verdicts` (ratios by their
spread, "no loss in quality" as an equivalence over seeds at the paper's cut against the continued
teacher); `conclusion(table, seeds, profile=...)` writes them, budget by budget, as markdown (a smoke
profile judges nothing). Nothing here measures: it reads the experiment's tables.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import plots, verdicts
from .profile import EchoAttProfile

# The short table a notebook shows: few, named columns (the full table stays in the run store).
TABLE_COLUMNS = {
    "arm": "arm", "followers": "shared layers", "params_change_pct": "Δparams %", "zero_shot_ppl": "ppl zero-shot",
    "ppl": "ppl trained", "prefill_vs_teacher": "prefill ×", "train_vs_teacher": "KD step ×",
    "decode_vs_teacher": "decode ×",
}  # fmt: skip
ROUNDING = {"Δparams %": 2, "ppl zero-shot": 2, "ppl trained": 2, "prefill ×": 3, "KD step ×": 3, "decode ×": 3}
# The full table (results.md in the run store and docs/results.md): speeds with their spread.
FULL_COLUMNS = {
    "arm": "arm", "trained_as": "trained as", "followers": "shared layers", "params": "params",
    "params_change_pct": "Δparams %", "zero_shot_ppl": "ppl zero-shot", "ppl": "ppl trained",
    "prefill_tok_s": "prefill tok/s", "prefill_vs_teacher": "prefill ×", "train_tok_s": "KD step tok/s",
    "train_vs_teacher": "KD step ×", "decode_tok_s": "decode tok/s", "decode_vs_teacher": "decode ×",
    "kv_cache_mb": "KV cache MB", "kernel": "attention kernel",
}  # fmt: skip
# The paper's claims (TinyLlama-1.1B teacher), as thresholds on the measured ratios.
PARAMS_CLAIM_PCT = -3.5  # "about 4% fewer parameters"
PAPER_CUT_PCT = -4.0  # the cut where the paper reports its quality: the budget nearest it is judged
INFERENCE_CLAIM = 1.15  # "+15% inference speed"
TRAINING_CLAIM = 1.25  # "+25% training speed"
QUALITY_DELTA = 0.02  # nats (about 2% perplexity): "no loss in quality" means a difference within it


def display_table(table: pd.DataFrame) -> pd.DataFrame:
    """The short table: one row per arm, readable column names, rounded numbers."""
    shown = table[[c for c in TABLE_COLUMNS if c in table]].rename(columns=TABLE_COLUMNS)
    return shown.round(ROUNDING).set_index("arm")


def _cell(row: pd.Series, column: str) -> str:
    value = row.get(column)
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    if isinstance(value, int | np.integer):
        return f"{value:,}"
    phase = column.removesuffix("_tok_s")
    if column.endswith("_tok_s") and f"{phase}_spread" in row:
        return f"{value:,.0f} ±{100 * row[f'{phase}_spread']:.0f}%"
    if isinstance(value, float):
        return f"{value:.3f}" if column.endswith("_vs_teacher") else f"{value:,.2f}"
    return str(value)


def markdown_table(table: pd.DataFrame) -> str:
    """The full table as markdown: tokens/s as median ± spread (IQR / median), empty cells for missing values."""
    columns = [c for c in FULL_COLUMNS if c in table]
    header = "| " + " | ".join(FULL_COLUMNS[c] for c in columns) + " |\n|" + "---|" * len(columns)
    lines = ["| " + " | ".join(_cell(row, c) for c in columns) + " |" for _, row in table.iterrows()]
    return "\n".join([header, *lines])


def results_markdown(
    table: pd.DataFrame, profile: EchoAttProfile, device: str, seeds: pd.DataFrame | None = None
) -> str:
    """A results section: setup line, the table, and the generated conclusion."""
    p = profile
    setup = (
        f"Device: {device}. Teacher: {p.teacher}; every trained arm: {p.steps} steps × {p.batch_size}×{p.block_len} "
        f"= {p.train_tokens_per_arm:,} tokens ({p.corpus} train split); perplexity on the held-out split in "
        f"{p.eval_context}-token windows; blocks of ≤{p.max_block} layers; layers chosen by {p.metric} similarity"
        f"{' without the sink column' if p.drop_sink else ''}. Speeds, every model in the same {p.speed_rounds} "
        f"interleaved rounds after {p.speed_warmup} warm-up (± = IQR / median): prefill {p.prefill_batch}×"
        f"{p.prefill_len} tokens (KV cache size after it); KD training step (forward+backward+AdamW, CE + KL from the "
        f"teacher) on {p.train_speed_batch}×{p.train_speed_len} tokens, the teacher taking the same step; decode "
        f"{p.decode_batch}×{p.decode_tokens} tokens with KV cache (launch-bound at this model size); "
        f"{'bf16' if device != 'cpu' else 'fp32'}. × columns: ratio to the teacher with the same kernel for its "
        "unshared layers (>1 = faster)."
    )
    section = [
        f"## EchoAtt, {p.name} profile", "", setup, "", markdown_table(table), "", conclusion(table, seeds, profile=p)
    ]  # fmt: skip
    return "\n".join(section) + "\n"


def _first(rows: pd.DataFrame) -> pd.Series | None:
    return rows.iloc[0] if not rows.empty else None


def _parts(table: pd.DataFrame) -> tuple[pd.Series, pd.Series | None, pd.DataFrame, pd.Series | None, pd.DataFrame]:
    """teacher (sdpa), continued-trained teacher, student rows (sdpa), the similarity arm of the largest
    trained budget, and its all-eager row (maybe empty); None for an arm a time limit left out."""
    teacher = table[table["arm"] == "teacher (sdpa)"].iloc[0]
    continued = _first(table[table["kind"] == "continued"])
    students = table[table["kind"].isin(["similarity", "random", "last"]) & ~table["arm"].str.endswith("(eager)")]
    similar = students[students["kind"] == "similarity"]
    top = _first(similar[similar["n_shared"] == similar["n_shared"].max()])
    eager = table[table["arm"] == f"{top['arm']} (eager)"] if top is not None else table.iloc[0:0]
    return teacher, continued, students, top, eager


def paper_cut(table: pd.DataFrame) -> int:
    """The budget (shared layers) whose similarity student is nearest the paper's −4% parameters."""
    students = table[table["kind"] == "similarity"]
    return int(students.loc[(students["params_change_pct"] - PAPER_CUT_PCT).abs().idxmin(), "n_shared"])


def _ratio_range(row: pd.Series, teacher: pd.Series, phase: str) -> tuple[float, float, float]:
    """A speed ratio to the teacher and the range its two interquartile ranges allow (IQR / median each)."""
    ratio = row[f"{phase}_vs_teacher"]
    mine, theirs = (np.nan_to_num(r.get(f"{phase}_spread", np.nan)) / 2 for r in (row, teacher))
    return ratio, ratio * (1 - mine) / (1 + theirs), ratio * (1 + mine) / (1 - theirs)


def _rounds(profile) -> int:
    shapes = getattr(profile, "speed_shapes", None)
    return shapes.rounds if shapes is not None else 0


def _seed_values(table: pd.DataFrame, seeds: pd.DataFrame | None, n: int) -> tuple[list, list, list]:
    """ppl of the student at the cut and of the continued teacher per seed (paired), and their seeds."""
    if seeds is None or seeds.empty:  # one seed: the main arms
        seeds = table[(table["kind"] == "continued") | ((table["kind"] == "similarity") & (table["n_shared"] == n))]
        seeds = seeds[~seeds["arm"].str.endswith("(eager)")].assign(seed=0).drop_duplicates(["kind", "n_shared"])
    student = seeds[(seeds["kind"] == "similarity") & (seeds["n_shared"] == n)].set_index("seed")["ppl"]
    continued = seeds[seeds["kind"] == "continued"].set_index("seed")["ppl"]
    common = sorted(set(student.index) & set(continued.index))
    return [float(student[s]) for s in common], [float(continued[s]) for s in common], common


def claims(table: pd.DataFrame, seeds: pd.DataFrame | None = None, profile=None) -> dict[str, verdicts.Verdict]:
    """Each claim of the paper judged at this scale, from the measured tables.

    Speed claims are judged against the fused-attention (sdpa) teacher, the fastest model a user would
    otherwise deploy, each ratio by the range its spreads allow; decode is launch-bound at this model size
    (`speed`), so its ratio counts kernel launches per token rather than FLOPs. Quality is judged at the
    paper's cut against the fair baseline (the teacher trained on the same tokens), paired over seeds. A claim
    whose arms or seeds a time limit left out (`table.attrs["not_trained"]`) is not testable for that reason.
    """
    teacher, continued, students, top, _ = _parts(table)
    found = {key: verdicts.untrained(claim) for key, claim in CLAIMS.items()}
    if top is not None:
        found |= _size_and_speed(teacher, top, _rounds(profile))
    if top is None or continued is None:
        return found
    n = paper_cut(table)
    cut = students[(students["kind"] == "similarity") & (students["n_shared"] == n)].iloc[0]
    student, baseline, common = _seed_values(table, seeds, n)
    epochs = continued.get("epochs", np.nan)
    epochs = None if np.isnan(epochs) else float(epochs)
    at_cut = '"no loss in quality" at the paper\'s cut'
    against = {
        "no_quality_loss": (f'{at_cut} ({cut["arm"]}, {cut["params_change_pct"]:+.2f}% parameters) against the '
                            "continued teacher", baseline),
        "no_quality_loss_vs_teacher": (f'{at_cut} ({cut["arm"]}) against the teacher as is',
                                       [float(teacher["ppl"])] * len(student)),
    }  # fmt: skip
    cut_short = len(common) < 2 and any("seed=" in name for name in table.attrs.get("not_trained", []))
    for key, (claim, reference) in against.items():
        found[key] = (
            verdicts.untrained(claim, seeds=len(common), epochs=epochs)
            if cut_short
            else verdicts.equivalence(claim, student, reference, delta=QUALITY_DELTA, scale="log", epochs=epochs)
        )
    return found


CLAIMS = {  # the paper's claims, in the order the conclusion lists them
    "fewer_parameters": '"about 4% fewer parameters"', "prefill_speed": '"+15% inference speed", prefill',
    "decode_speed": '"+15% inference speed", decode', "training_speed": '"+25% training speed", KD step',
    "no_quality_loss": '"no loss in quality" at the paper\'s cut against the continued teacher',
    "no_quality_loss_vs_teacher": '"no loss in quality" at the paper\'s cut against the teacher as is',
}  # fmt: skip


def _size_and_speed(teacher: pd.Series, top: pd.Series, rounds: int) -> dict[str, verdicts.Verdict]:
    """The parameter count and the three speed ratios of the similarity student of the largest budget."""
    speed = dict(seeds=rounds, unit="round", scale="× the sdpa teacher", detail="range: both spreads (IQR) combined")
    pct = float(top["params_change_pct"])
    return {
        "fewer_parameters": verdicts.against_bar(
            f'{CLAIMS["fewer_parameters"]} ({top["arm"]})', pct, pct, pct, bar=PARAMS_CLAIM_PCT, goal="min",
            seeds=1, unit="model", scale="Δparams %", detail="counted; KV cache "
            f"{100 * (top['kv_cache_mb'] / teacher['kv_cache_mb'] - 1):+.1f}% (followers cache values only)",
        ),
        "prefill_speed": verdicts.against_bar(
            f'{CLAIMS["prefill_speed"]} ({top["arm"]})', *_ratio_range(top, teacher, "prefill"),
            bar=INFERENCE_CLAIM, **speed,
        ),
        "decode_speed": verdicts.against_bar(
            f'{CLAIMS["decode_speed"]} ({top["arm"]}; launch-bound)', *_ratio_range(top, teacher, "decode"),
            bar=INFERENCE_CLAIM, **speed | {"detail": speed["detail"] + "; decode of a model this small is "
            "launch-bound: the ratio counts kernel launches per token, not FLOPs"},
        ),
        "training_speed": verdicts.against_bar(
            f'{CLAIMS["training_speed"]} ({top["arm"]})', *_ratio_range(top, teacher, "train"),
            bar=TRAINING_CLAIM, **speed,
        ),
    }  # fmt: skip


def _overfitting_line(continued: pd.Series) -> str | None:
    """A warning when the fair baseline's curve perplexity rose more than 5% above its best: it overfits the
    repeated corpus, while distilled students are held near the teacher by its soft targets."""
    if "curve_last_ppl" not in continued or not continued["curve_last_ppl"] > 1.05 * continued["curve_best_ppl"]:
        return None
    return (
        f"- The fair baseline overfits the repeated text: on the curve windows its perplexity was best at step "
        f"{continued['curve_best_step']:.0f} ({continued['curve_best_ppl']:.2f}) and ended at "
        f"{continued['curve_last_ppl']:.2f}. Distilled students, pulled toward the teacher's soft targets, suffer "
        "less from repetition, so the quality verdict below favours them; fewer epochs (a larger corpus or fewer "
        "steps) give a fairer baseline."
    )


def _budget_line(n: int, rows: pd.DataFrame, teacher: pd.Series, continued: pd.Series | None) -> str:
    """One budget: zero-shot → distilled perplexity by how the layers were chosen (an arm a time limit left
    out is absent), the best arm, and whether the similarity choice beat the random draws."""
    chosen, last = _first(rows[rows["kind"] == "similarity"]), _first(rows[rows["kind"] == "last"])
    rand = rows[rows["kind"] == "random"]
    best = rows.loc[rows["ppl"].idxmin()]
    parts = []
    if chosen is not None:
        same = str(chosen.get("trained_as", "")).split(" = ")[1:]
        identical = f" (identical groups to {', '.join(same)}: trained once)" if same else ""
        parts.append(
            f"similarity-chosen{identical} {chosen['zero_shot_ppl']:.2f} → {chosen['ppl']:.2f} after distillation"
        )
    if not rand.empty:
        parts.append(
            f"random {rand['zero_shot_ppl'].mean():.2f} → {rand['ppl'].mean():.2f} (mean of {len(rand)}, range "
            f"{rand['ppl'].min():.2f}–{rand['ppl'].max():.2f})"
        )
    if last is not None:
        parts.append(f"last inner layers {last['zero_shot_ppl']:.2f} → {last['ppl']:.2f}")
    versus = ""
    if chosen is not None and not rand.empty:
        if chosen["ppl"] < rand["ppl"].min():
            versus = " Similarity choice beat random draw."
        elif chosen["ppl"] < rand["ppl"].mean():
            versus = " Similarity choice did not beat every random draw (it beat the random mean)."
        else:
            versus = " Similarity choice did not beat every random draw nor the random mean."
    fair = f"{100 * (best['ppl'] / continued['ppl'] - 1):+.1f}% vs the fair baseline, " if continued is not None else ""
    pct = (chosen if chosen is not None else rows.iloc[0])["params_change_pct"]
    return (
        f"- {n} shared layers ({pct:+.2f}% parameters): {'; '.join(parts)}. Best: {best['arm']} ({best['ppl']:.2f}, "
        f"{fair}{100 * (best['ppl'] / teacher['ppl'] - 1):+.1f}% vs the teacher as is).{versus}"
    )


def conclusion(table: pd.DataFrame, seeds: pd.DataFrame | None = None, *, profile) -> str:
    """What the measured numbers say, budget by budget, and each of the paper's claims judged by
    `workbench.verdicts`; a smoke profile gets only the notice that it judges nothing."""
    not_trained = table.attrs.get("not_trained", [])
    if getattr(profile, "name", profile) == "smoke":
        return verdicts.conclusion([], profile=profile, not_trained=not_trained)
    teacher, continued, students, _, eager = _parts(table)
    lines = [f"- Teacher: held-out perplexity {teacher['ppl']:.2f}; continued-trained on the same tokens: not trained "
             "within the time limit."]  # fmt: skip
    if continued is not None:
        seen = continued.get("epochs", np.nan)
        epochs = "" if np.isnan(seen) else f" ({continued['train_tokens']:,.0f} tokens, {seen:.2g} epochs)"
        lines = [
            f"- Teacher: held-out perplexity {teacher['ppl']:.2f}; continued-trained on the same tokens{epochs} (the "
            f"fair baseline): {continued['ppl']:.2f}."
        ]
        overfit = _overfitting_line(continued)
        lines += [overfit] if overfit else []
    lines += [_budget_line(n, rows, teacher, continued) for n, rows in students.groupby("n_shared")]
    if not eager.empty:
        row = eager.iloc[0]
        lines.append(
            f"- Eager against eager (the paper's setting), {row['arm']}: prefill ×{row['prefill_vs_teacher']:.3f}, "
            f"decode ×{row['decode_vs_teacher']:.3f}, KD step ×{row['train_vs_teacher']:.3f}."
        )
    found = list(claims(table, seeds, profile).values())
    return verdicts.conclusion(found, profile=profile, preamble="\n".join(lines), not_trained=not_trained)


# -- figures -----------------------------------------------------------------------------------
def perplexity_figure(table: pd.DataFrame) -> go.Figure:
    """Held-out perplexity of every arm after training beside its zero-shot value (right after copying):
    dots on a log axis spanning the data (bars would have to start at an arbitrary floor)."""
    trained = table[~table["arm"].str.endswith("(eager)")].drop_duplicates("arm")
    trained = trained[trained["arm"] != "teacher (eager)"]
    teacher_ppl = float(table.loc[table["arm"] == "teacher (sdpa)", "ppl"].iloc[0])
    figure = go.Figure()
    for column, name, symbol in [("zero_shot_ppl", "zero-shot (right after copying)", "circle-open"),
                                 ("ppl", "after training", "circle")]:  # fmt: skip
        figure.add_scatter(x=list(trained[column]), y=list(trained["arm"]), mode="markers", name=name,
                           marker={"symbol": symbol, "size": 11})  # fmt: skip
    figure.add_vline(x=np.log10(teacher_ppl), line_dash="dash", line_color="gray")  # log axis: log10 units
    values = np.concatenate([trained["ppl"].to_numpy(float), trained["zero_shot_ppl"].to_numpy(float), [teacher_ppl]])
    figure.update_layout(
        title="Held-out perplexity per arm (dashed: the teacher as is; log axis spanning the data)",
        xaxis_title="perplexity",
        xaxis=plots.log_axis(values), yaxis={"autorange": "reversed"},
        height=150 + 32 * len(trained), legend={"orientation": "h", "y": -0.15},
        **{**plots.LAYOUT, "margin": {**plots.LAYOUT["margin"], "t": 80}},
    )  # fmt: skip
    return figure


def kernel_label(kernel: str) -> str:
    """A short name of the attention path (the colour of the speed chart)."""
    base = "eager" if kernel.startswith("eager") else "sdpa"
    if "head's Q, K" in kernel:
        return f"{base} + fused sharing (sdpa on the head's Q, K)"
    if "explicit" in kernel:
        return f"{base} + explicit shared probabilities"
    return f"{base} (teacher)"


def speed_figure(table: pd.DataFrame) -> go.Figure:
    """Prefill, KD training step and decode of every measured arm relative to the teacher with the same
    kernel: one panel per measure, arms as rows, colour = attention path, whiskers = the two spreads."""
    measured = table.dropna(subset=["prefill_vs_teacher"]).copy()
    if "trained_as" in measured:  # arms trained once under several labels: one bar, every label
        fused = ~measured["arm"].str.endswith("(eager)") & measured["trained_as"].str.contains(" = ", regex=False)
        measured.loc[fused, "arm"] = measured.loc[fused, "trained_as"]
    measured = measured.drop_duplicates("arm")
    panels = [("prefill", "prefill"), ("train", "KD training step"), ("decode", "decode (launch-bound)")]
    figure = make_subplots(rows=1, cols=3, shared_yaxes=True, subplot_titles=[t for _, t in panels],
                           horizontal_spacing=0.03)  # fmt: skip
    kernels = measured["kernel"].map(kernel_label)
    for k, kernel in enumerate(dict.fromkeys(kernels)):
        rows = measured[kernels == kernel]
        for col, (phase, _) in enumerate(panels, start=1):
            ratio = rows[f"{phase}_vs_teacher"].to_numpy(float)
            figure.add_bar(
                x=ratio, y=list(rows["arm"]), orientation="h", name=kernel, legendgroup=kernel, showlegend=col == 1,
                marker_color=plots.COLORS[k % len(plots.COLORS)],
                error_x={"type": "data", "array": ratio * rows[f"{phase}_spread"].to_numpy(float) / 2},
                row=1, col=col,
            )  # fmt: skip
            figure.add_vline(x=1.0, line_color="gray", row=1, col=col)
    figure.add_vline(x=INFERENCE_CLAIM, line_dash="dash", line_color="gray", row=1, col=1,
                     annotation_text="paper +15%")  # fmt: skip
    figure.add_vline(x=TRAINING_CLAIM, line_dash="dash", line_color="gray", row=1, col=2,
                     annotation_text="paper +25%")  # fmt: skip
    figure.update_layout(
        title="Speed relative to the teacher with the same kernel (>1 = faster; whiskers: ± half the IQR)",
        barmode="group", yaxis={"autorange": "reversed"}, height=200 + 36 * len(measured),
        legend={"orientation": "h", "y": -0.22}, **plots.LAYOUT,
    )  # fmt: skip
    figure.update_xaxes(title_text="× teacher")
    return figure


class ArmStyle:
    """Lines coloured by how an arm chose its layers (similarity, random, last; the continued teacher in
    grey), dashed by its budget n (in the order budgets appear), random draws told apart by marker."""

    colors = {"similarity": plots.COLORS[3], "random": plots.COLORS[0], "last": plots.COLORS[2]}

    def __init__(self):
        self.budgets: list[str] = []

    def __call__(self, name: str, index: int) -> dict:
        first = name.split(" = ")[0]  # an arm trained once for several labels is styled by its first
        budget, _, choice = first.partition(" ")
        kind = next((kind for kind in self.colors if choice.startswith(kind)), None)
        if kind is None:
            return {"line": {"color": "dimgray", "width": 3}, "marker": {"symbol": "circle"}}
        if budget not in self.budgets:
            self.budgets.append(budget)
        draw = int(choice.partition("#")[2] or 1) - 1
        return {
            "line": {"color": self.colors[kind], "dash": plots.DASHES[self.budgets.index(budget) % len(plots.DASHES)]},
            "marker": {"symbol": plots.SYMBOLS[draw % len(plots.SYMBOLS)]},
        }


class LiveCurves(plots.LiveCurves):
    """Held-out perplexity of every arm against the training step (see `workbench.plots.LiveCurves`),
    coloured by `ArmStyle`; pass as `callback` to `EchoAttExperiment.adjust`."""

    metric, yaxis_title, log_y = "val_ppl", "perplexity (curve windows)", True
    title = "Held-out perplexity during training"

    def __init__(self, title: str | None = None):
        super().__init__(title, style=ArmStyle())
