"""Figures, the short table and the generated conclusion of the Relaxed Recursive Transformers notebook.

Every verdict in `conclusion` is computed from the measured table: an ordering "held" when the
measured difference points the paper's way by more than the seed spread (the range of held-out
perplexity over the Stepwise arm's data orders), "within seed noise" when it is smaller than that
spread, and "did not hold" when it points the other way by more than the spread.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .. import plots

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
    """The arms in few, named columns."""
    out = pd.DataFrame(
        {
            "arm": table["arm"],
            "non-embedding params (M)": table["non_emb_params"] / 1e6,
            "ppl at conversion": table["zero_shot_ppl"],
            "ppl after uptraining": table["ppl"],
            "epochs": table["epochs"],
        }
    )
    return out.round({"non-embedding params (M)": 2, "ppl at conversion": 2, "ppl after uptraining": 2, "epochs": 2})


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
    """Perplexity against LoRA rank per initialisation (rank 0: the plain Average model), with the
    continued full model and the plain Stepwise model of the same depth as dashed references."""
    relaxed = table[table["lora"] != ""]
    figure = go.Figure()
    if relaxed.empty:
        return figure.update_layout(title="No LoRA arms in this run", **plots.LAYOUT)
    loops = int(relaxed["loops"].iloc[0])
    plain = table[
        (table["kind"] == "recursive")
        & (table["loops"] == loops)
        & (table["lora"] == "")
        & (table["seed"] == table["seed"].min())
    ]
    start = plain[plain["init"] == "average"]
    for init in ("svd", "zero"):
        rows = pd.concat([start, relaxed[relaxed["lora"] == init]]).sort_values("rank")
        figure.add_scatter(
            x=rows["rank"],
            y=rows["ppl"],
            mode="lines+markers",
            name=f"Average + {init}-init LoRA",
            line=dict(color=FAMILY_COLOURS[init]),
        )
    levels = []
    for label, rows in (
        ("full model, continued", table[table["kind"] == "continued"]),
        (f"B={loops} stepwise, no LoRA", plain[plain["init"] == "stepwise"]),
    ):
        if not rows.empty:
            levels.append(float(rows["ppl"].iloc[0]))
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
    """Decode throughput of each batching scheme (SIMULATED from measured per-loop costs and exits)."""
    labels = throughput["scheme"] + " · " + throughput["exit_rule"]
    figure = plots.bars(
        labels,
        throughput["speedup_vs_csb"],
        "Throughput relative to continuous sequence-wise batching without early exit "
        "(simulated from measured step costs and exit trajectories)",
        "× tokens/s",
        baseline=1.0,
    )
    return figure


def seed_spread(table: pd.DataFrame) -> tuple[float, int]:
    """Range of held-out perplexity over the repeated arm's seeds, and how many seeds there were."""
    repeated = table[table["arm"].str.contains(r"\(seed ", regex=True)]
    if repeated.empty:
        return 0.0, 1
    base = table[
        (table["kind"] == "recursive")
        & (table["init"] == "stepwise")
        & (table["lora"] == "")
        & (table["loops"] == repeated["loops"].iloc[0])
        & (table["seed"] < repeated["seed"].min())
    ]
    values = pd.concat([base, repeated])["ppl"]
    return float(values.max() - values.min()), len(values)


def _verdict(better: float, worse: float, spread: float) -> str:
    """The paper says `better` < `worse` (perplexities)."""
    gap = worse - better
    if abs(gap) <= spread:
        return "within seed noise"
    return "held" if gap > 0 else "did not hold"


def _ppl(table: pd.DataFrame, **where) -> float | None:
    rows = table
    for key, value in where.items():
        rows = rows[rows[key] == value]
    rows = rows[rows["seed"] == rows["seed"].min()] if not rows.empty else rows
    return float(rows["ppl"].iloc[0]) if not rows.empty else None


def claims(table: pd.DataFrame, throughput: pd.DataFrame | None = None) -> list[dict]:
    """Each of the paper's orderings with the measured numbers and a verdict (missing arms: skipped)."""
    spread, n_seeds = seed_spread(table)
    out = []
    for loops in sorted(table.loc[table["kind"] == "recursive", "loops"].unique()):
        plain = {
            init: _ppl(table, kind="recursive", loops=loops, lora="", init=init)
            for init in ("stepwise", "average", "lower")
        }
        others = [v for k, v in plain.items() if k != "stepwise" and v is not None]
        if plain["stepwise"] is not None and others:
            out.append(
                {
                    "claim": f"Stepwise is the best initialisation without LoRA (B={loops})",
                    "better": plain["stepwise"],
                    "worse": min(others),
                    "verdict": _verdict(plain["stepwise"], min(others), spread),
                }
            )
        scratch = _ppl(table, kind="scratch", loops=loops)
        if plain["stepwise"] is not None and scratch is not None:
            out.append(
                {
                    "claim": f"Recursive Stepwise beats the reduced-depth model trained from scratch (B={loops})",
                    "better": plain["stepwise"],
                    "worse": scratch,
                    "verdict": _verdict(plain["stepwise"], scratch, spread),
                }
            )
    svd = table[(table["lora"] == "svd")].sort_values("rank")
    if len(svd) >= 1:
        loops = int(svd["loops"].iloc[0])
        start = _ppl(table, kind="recursive", loops=loops, lora="", init="average")
        curve = ([start] if start is not None else []) + list(svd["ppl"])
        steps = [_verdict(b, a, spread) for a, b in zip(curve, curve[1:])]
        verdict = (
            "held"
            if all(s == "held" for s in steps)
            else "did not hold"
            if "did not hold" in steps
            else "within seed noise"
        )
        out.append(
            {
                "claim": "Average + SVD LoRA improves with rank (r = 0, "
                + ", ".join(str(r) for r in svd["rank"])
                + ")",
                "better": curve[-1],
                "worse": curve[0],
                "verdict": verdict,
            }
        )
        zero = table[table["lora"] == "zero"]
        for _, row in zero.iterrows():
            same = svd[svd["rank"] == row["rank"]]
            if not same.empty:
                out.append(
                    {
                        "claim": f"SVD initialisation beats zero initialisation (r={row['rank']})",
                        "better": float(same["ppl"].iloc[0]),
                        "worse": float(row["ppl"]),
                        "verdict": _verdict(float(same["ppl"].iloc[0]), float(row["ppl"]), spread),
                    }
                )
    if throughput is not None and not throughput.empty:
        cdb = throughput.query("scheme == 'cdb' and exit_rule == 'oracle'")
        if not cdb.empty:
            gain = float(cdb["speedup_vs_csb"].iloc[0])
            out.append(
                {
                    "claim": "Depth-wise batching with (oracle) early exit raises decode throughput (simulated)",
                    "better": gain,
                    "worse": 1.0,
                    "verdict": "held" if gain > 1.0 else "did not hold",
                }
            )
    for claim in out:
        claim["spread"], claim["n_seeds"] = spread, n_seeds
    return out


def conclusion(
    table: pd.DataFrame, throughput: pd.DataFrame | None = None, thresholds: pd.DataFrame | None = None
) -> str:
    """Markdown: which of the paper's orderings held here, with effect sizes against the seed spread."""
    spread, n_seeds = seed_spread(table)
    trained = table[table["kind"] != "teacher"]
    epochs = float(trained["epochs"].max()) if not trained.empty else 0.0
    lines = [
        f"**At this scale** (every arm {int(table['tokens'].max()):,} tokens, "
        f"{epochs:.1f} epochs of the training text; "
        f"seed spread {spread:.2f} ppl over {n_seeds} data orders of the Stepwise arm):",
        "",
    ]
    for claim in claims(table, throughput):
        if "throughput" in claim["claim"]:
            lines.append(
                f"- {claim['claim']}: ×{claim['better']:.2f} against continuous sequence-wise batching "
                "without early exit — "
                f"**{claim['verdict']}**."
            )
        else:
            lines.append(
                f"- {claim['claim']}: {claim['better']:.2f} vs {claim['worse']:.2f} ppl "
                f"(gap {claim['worse'] - claim['better']:+.2f}, "
                f"seed spread {claim['spread']:.2f}) — **{claim['verdict']}**."
            )
    continued = table[table["kind"] == "continued"]
    students = table[table["kind"] == "recursive"]
    if not continued.empty and not students.empty:
        best = students.loc[students["ppl"].idxmin()]
        lines.append(
            f"- Best recursive arm: {best['arm']} at {best['ppl']:.2f} ppl with "
            f"{best['non_emb_params'] / 1e6:.1f}M non-embedding parameters, against "
            f"{float(continued['ppl'].iloc[0]):.2f} for the full model continued-trained on the same tokens "
            f"({float(continued['non_emb_params'].iloc[0]) / 1e6:.1f}M)."
        )
    if thresholds is not None and not thresholds.empty:
        oracle = thresholds.iloc[0]
        rate = 1 - float(oracle[[c for c in thresholds.columns if c.startswith("exit_rate_loop")][-1]])
        lines.append(
            f"- Oracle early exit: {100 * rate:.0f}% of held-out tokens could leave before the last loop "
            f"(mean {oracle['mean_loops']:.2f} loops); the paper expects 30-60% at its scale."
        )
    lines.append("")
    lines.append(
        "The paper's absolute numbers (Gemma 2B, 15B tokens) are not reachable here; "
        "the orderings are what is compared."
    )
    return "\n".join(lines)
