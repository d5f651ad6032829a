"""The paper's claims judged on a measured table, through `workbench.verdicts`.

Relaxed Recursive Transformers (Bae et al., arXiv:2410.20672). Each claim is an ordering of held-out
perplexities; it is judged on differences of log-perplexity paired by seed (arms of one seed share
their data order), so noise is measured on the scale where arms at ppl 50 and at ppl 600 compare,
and never borrowed from another arm's seed range. A claim whose arms have one seed is "not
testable here (one seed)". Arms trained with cross-entropy alone (`loss == "ce"`, the former
baseline protocol) are shown in the table, never judged.

Depth-wise batching is judged on its *deployable* exits (confidence thresholds), the oracle shown
beside as the ceiling, under both cost models of `batching` (measured loop costs, launch-bound at
this size, and work-proportional costs), the KV debt of exited tokens counted, across request draws.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from .. import verdicts
from ..verdicts import Verdict
from .batching import launch_bound

AGREEMENT = 0.99  # a confidence rule is deployable when its token equals the last loop's this often
SPEEDUP_SCALE = "× tokens/s vs CSB, simulated"


def _by_seed(table: pd.DataFrame, **where) -> dict[int, float]:
    """Held-out perplexity by seed of the judged rows matching `where` (CE-only arms excluded)."""
    rows = table
    if "loss" in rows.columns:
        rows = rows[rows["loss"] != "ce"]
    for key, value in where.items():
        rows = rows[rows[key] == value]
    return {int(seed): float(ppl) for seed, ppl in zip(rows["seed"], rows["ppl"])}


def _trained_with_ce_only(table: pd.DataFrame, **where) -> bool:
    rows = table
    for key, value in where.items():
        rows = rows[rows[key] == value]
    return "loss" in rows.columns and not rows.empty and (rows["loss"] == "ce").all()


def _judge(claim: str, better: tuple[str, dict], worse: tuple[str, dict], epochs: float | None) -> Verdict:
    """Superiority of `better` (the arm the paper says is lower) over `worse`, paired by seed, with the
    measured means in words: which arm was lower, by how much."""
    (name_a, a), (name_b, b) = better, worse
    seeds = sorted(set(a) & set(b))
    method, baseline = [a[s] for s in seeds], [b[s] for s in seeds]
    verdict = verdicts.superiority(claim, method, baseline, goal="min", scale="log", epochs=epochs)
    mean_a, mean_b = float(np.mean(method)), float(np.mean(baseline))
    side = "lower" if mean_a < mean_b else "higher"
    change = abs(mean_a / mean_b - 1)
    words = f"measured: {name_a} {mean_a:.2f} vs {name_b} {mean_b:.2f} ppl ({name_a} {side} by {change:.1%})"
    return dataclasses.replace(verdict, detail="; ".join(filter(None, [verdict.detail, words])))


def _mean(values: dict[int, float]) -> float:
    return float(np.mean(list(values.values())))


def initialisation_claims(table: pd.DataFrame, epochs: float | None) -> list[Verdict]:
    out = []
    for loops in sorted(table.loc[table["kind"] == "recursive", "loops"].unique()):
        plain = {
            init: _by_seed(table, kind="recursive", loops=loops, lora="", init=init)
            for init in ("stepwise", "average", "lower")
        }
        others = {k: v for k, v in plain.items() if k != "stepwise" and v}
        if plain["stepwise"] and others:
            rival = min(others, key=lambda k: _mean(others[k]))  # beating the best of the others beats them all
            missing = [init.capitalize() for init, seeds in plain.items() if not seeds]
            claim = (  # "best" only when every initialisation ran; otherwise the claim names what it beat
                f"Stepwise beats {' and '.join(k.capitalize() for k in others)} without LoRA "
                f"(B={loops}; {' and '.join(missing)} not run)"
                if missing
                else f"Stepwise is the best initialisation without LoRA (B={loops})"
            )
            out.append(
                _judge(
                    claim,
                    ("Stepwise", plain["stepwise"]),
                    (rival.capitalize(), others[rival]),
                    epochs,
                )
            )
        scratch = _by_seed(table, kind="scratch", loops=loops)
        claim = f"Recursive Stepwise beats the reduced-depth model trained from scratch (B={loops})"
        if plain["stepwise"] and not scratch and _trained_with_ce_only(table, kind="scratch", loops=loops):
            why = "the scratch model was trained with CE alone, the recursive arms with CE + KL: different losses"
            out.append(verdicts.not_testable(claim, why, seeds=len(plain["stepwise"]), epochs=epochs))
        if plain["stepwise"] and scratch:
            out.append(
                _judge(
                    claim,
                    ("Stepwise", plain["stepwise"]),
                    ("scratch", scratch),
                    epochs,
                )
            )
    return out


def relaxation_claims(table: pd.DataFrame, epochs: float | None) -> list[Verdict]:
    """Average (and Lower) + SVD-LoRA improve with each rank step; Stepwise + SVD-LoRA is U-shaped
    (the paper: mid ranks approximate distant-layer residuals poorly); SVD beats zero init."""
    out = []
    svd = table[table["lora"] == "svd"]
    for init in sorted(svd["init"].unique(), key=lambda i: (i == "stepwise", i)):
        rows = svd[svd["init"] == init]
        loops = int(rows["loops"].iloc[0])
        curve = {0: _by_seed(table, kind="recursive", loops=loops, lora="", init=init)}
        curve |= {
            int(r): _by_seed(table, lora="svd", init=init, loops=loops, rank=r) for r in sorted(rows["rank"].unique())
        }
        curve = {r: v for r, v in curve.items() if v}
        ranks = sorted(curve)
        name = f"{init.capitalize()} + SVD LoRA"
        if init != "stepwise":
            for low, high in zip(ranks, ranks[1:]):
                out.append(
                    _judge(
                        f"{name} improves with rank: r={high} beats r={low} (B={loops})",
                        (f"r={high}", curve[high]),
                        (f"r={low}", curve[low]),
                        epochs,
                    )
                )
            continue
        if len(ranks) < 3 or ranks[0] != 0:
            out.append(
                verdicts.not_testable(
                    f"{name} is U-shaped over rank (B={loops})", "needs r=0, a middle rank and a larger one"
                )
            )
            continue
        middle = max(ranks[1:-1], key=lambda r: _mean(curve[r]))  # the bottom of the U, if there is one
        out.append(
            _judge(
                f"{name} is U-shaped over rank: r={middle} is worse than r=0 (B={loops})",
                ("r=0", curve[0]),
                (f"r={middle}", curve[middle]),
                epochs,
            )
        )
        out.append(
            _judge(
                f"{name} is U-shaped over rank: r={ranks[-1]} recovers from r={middle} (B={loops})",
                (f"r={ranks[-1]}", curve[ranks[-1]]),
                (f"r={middle}", curve[middle]),
                epochs,
            )
        )
    for _, row in table[table["lora"] == "zero"].drop_duplicates(["init", "loops", "rank"]).iterrows():
        same = dict(lora="svd", init=row["init"], loops=row["loops"], rank=row["rank"])
        if _by_seed(table, **same):
            out.append(
                _judge(
                    f"SVD initialisation beats zero initialisation ({row['init'].capitalize()}, r={row['rank']})",
                    ("SVD", _by_seed(table, **same)),
                    ("zero", _by_seed(table, lora="zero", init=row["init"], loops=row["loops"], rank=row["rank"])),
                    epochs,
                )
            )
    return out


def _speedups(throughput: pd.DataFrame, rule: str, costs: str) -> list[float]:
    rows = throughput[(throughput["scheme"] == "cdb") & (throughput["exit_rule"] == rule)]
    if "costs" in rows.columns:
        rows = rows[rows["costs"] == costs]
    return [float(v) for v in rows["speedup_vs_csb"]]


def deployable_rule(throughput: pd.DataFrame, thresholds: pd.DataFrame | None) -> str | None:
    """The confidence rule judged: of those whose token agrees with the last loop's ≥ AGREEMENT of the
    time (all, when agreements are unknown), the one with the highest simulated speedup."""
    rules = [r for r in throughput["exit_rule"].unique() if r.startswith("confidence")]
    if thresholds is not None and not thresholds.empty and "agreement" in thresholds.columns:
        agreeing = set(thresholds.loc[thresholds["agreement"] >= AGREEMENT, "rule"])
        rules = [r for r in rules if r in agreeing]
    if not rules:
        return None
    return max(rules, key=lambda r: float(np.median(_speedups(throughput, r, "measured"))))


def batching_claims(
    throughput: pd.DataFrame, thresholds: pd.DataFrame | None, costs: dict[int, float] | None
) -> list[Verdict]:
    claim = "Continuous depth-wise batching with early exit raises decode throughput over continuous sequence-wise"
    rule = deployable_rule(throughput, thresholds)
    if rule is None:
        return [
            verdicts.not_testable(claim, f"no confidence exit agrees with the last loop {AGREEMENT:.0%} of the time")
        ]
    debt = "KV debt of exited tokens counted" if "kv_fills" in throughput.columns else "KV debt NOT counted (older run)"
    out = []
    models = ("measured", "work") if "costs" in throughput.columns else ("measured",)
    for model in models:
        gains = _speedups(throughput, rule, model)
        oracle = _speedups(throughput, "oracle", model)
        if model == "measured":
            label = "measured loop costs"
            if costs and launch_bound(costs):
                sizes = sorted(costs)
                label += (
                    f", flat from batch {sizes[0]} to {sizes[-1]} (×{costs[sizes[-1]] / costs[sizes[0]]:.2f}): "
                    "launch-bound, so this is a ratio of loop steps"
                )
        else:
            label = "work-proportional costs: no batching economy, only the work exits save"
        detail = f"{rule}; oracle exits ×{np.median(oracle):.2f} (the ceiling); {debt}; {label}"
        name = f"{claim} ({'measured' if model == 'measured' else 'work-proportional'} costs, simulated)"
        if len(gains) < 2:
            one = f"one request draw: not judged; {detail}"
            out.append(
                Verdict(name, verdicts.NOT_TESTABLE, gains[0], None, None, 1, None, SPEEDUP_SCALE, one, "request draw")
            )
            continue
        out.append(
            verdicts.against_bar(
                name,
                float(np.median(gains)),
                min(gains),
                max(gains),
                bar=1.0,
                goal="max",
                seeds=len(gains),
                scale=SPEEDUP_SCALE,
                detail=detail,
                unit="request draw",
            )
        )
    return out


def claims(
    table: pd.DataFrame,
    throughput: pd.DataFrame | None = None,
    thresholds: pd.DataFrame | None = None,
    costs: dict[int, float] | None = None,
) -> list[Verdict]:
    """Every claim the table can speak to, judged (missing arms: skipped)."""
    trained = table[table["kind"] != "teacher"]
    epochs = float(trained["epochs"].max()) if not trained.empty else None
    out = initialisation_claims(table, epochs) + relaxation_claims(table, epochs)
    if throughput is not None and not throughput.empty:
        out += batching_claims(throughput, thresholds, costs)
    return out


def facts(table: pd.DataFrame, thresholds: pd.DataFrame | None = None) -> list[str]:
    """Measured lines that are no verdict: the best recursive arm against the full model, zero-shot, exits."""
    lines = []
    judged = table[table["loss"] != "ce"] if "loss" in table.columns else table
    continued, students = judged[judged["kind"] == "continued"], judged[judged["kind"] == "recursive"]
    if not continued.empty and not students.empty:
        groups = students.groupby(["loops", "init", "lora", "rank"], sort=False)
        means = groups["ppl"].mean()
        best = groups.first().loc[means.idxmin()]  # named by its first seed's arm
        n = int(groups["seed"].nunique()[means.idxmin()])
        lines.append(
            f"- Best recursive arm: {best['arm']} at {means.min():.2f} ppl (mean of {n} seed{'s' if n != 1 else ''}) "
            f"with {best['non_emb_params'] / 1e6:.1f}M "
            f"non-embedding parameters, against {continued['ppl'].mean():.2f} for the full model continued on the "
            f"same tokens with the same loss ({float(continued['non_emb_params'].iloc[0]) / 1e6:.1f}M)."
        )
    if {"cloze_acc", "choice_acc"} <= set(table.columns):
        teacher = table[table["kind"] == "teacher"]
        ref = f" (full model as loaded {teacher['cloze_acc'].iloc[0]:.2f} / {teacher['choice_acc'].iloc[0]:.2f})"
        lines.append(
            "- Zero-shot accuracy on held-out text (last-word cloze among 5, chance 0.20 / 4-way continuation, "
            f"chance 0.25) is in the table{ref if not teacher.empty else ''}."
        )
    if thresholds is not None and not thresholds.empty:
        oracle = thresholds.iloc[0]
        rate = 1 - float(oracle[[c for c in thresholds.columns if c.startswith("exit_rate_loop")][-1]])
        lines.append(
            f"- Oracle early exit: {100 * rate:.0f}% of held-out tokens could leave before the last loop "
            f"(mean {oracle['mean_loops']:.2f} loops; the paper expects 30-60% at its scale); the deployable "
            "confidence exits are in the exit table."
        )
    return lines


def conclusion(
    table: pd.DataFrame,
    throughput: pd.DataFrame | None = None,
    thresholds: pd.DataFrame | None = None,
    *,
    costs: dict[int, float] | None = None,
    profile: object = "full",
) -> str:
    """Markdown: the paper's claims judged on this run (a smoke profile: the notice that it judges nothing)."""
    trained = table[table["kind"] != "teacher"]
    epochs = float(trained["epochs"].max()) if not trained.empty else 0.0
    per_arm = (
        trained.groupby(["kind", "loops", "init", "lora", "rank"])["seed"].nunique() if not trained.empty else None
    )
    low, high = (int(per_arm.min()), int(per_arm.max())) if per_arm is not None else (0, 0)
    seeds = f"{low} seed{'s' if low != 1 else ''} per arm" if low == high else f"{low}-{high} seeds per arm"
    ce = "loss" in trained.columns and (trained["loss"] == "ce").any()
    loss = "CE + KL from the full model for every judged arm" + ("; CE-only arms are shown, not judged" if ce else "")
    preamble = (
        f"**The paper's claims, judged at this scale** (every arm {int(table['tokens'].max()):,} tokens, "
        f"{epochs:.2f} epochs, {seeds}; {loss}; effects are paired differences of log-perplexity, "
        "95% t intervals):"
    )
    found = claims(table, throughput, thresholds, costs)
    not_trained = table.attrs.get("not_trained", [])
    if not_trained and getattr(profile, "seeds", 1) > 1:  # seeds planned, cut by the time limit
        found = verdicts.time_limited(found)
    text = verdicts.conclusion(found, profile=profile, preamble=preamble, not_trained=not_trained)
    if getattr(profile, "name", profile) == "smoke":
        return text
    return "\n".join(
        [
            text,
            *facts(table, thresholds),
            "",
            "The paper's absolute numbers (Gemma 2B, 15B tokens) are not reachable here; "
            "the orderings are what is compared.",
        ]
    )
