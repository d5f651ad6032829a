"""Verdicts on SMDM's claims from the masked-diffusion notebook's tables, through `workbench.verdicts`.

Every verdict pairs arms by training seed (one seed gives both arms the same initial-weight seed and
batches) and needs two seeds at least; a smoke profile judges nothing. What each claim needs, and why:

- *compute gap*: at each budget, the best ARM against the best MDM (the frontier over sizes), on
  held-out nats/token (the MDM's is its ELBO, an upper bound, as in SMDM's scaling plots); the gap
  factor read off the ARM's frontier line is reported beside. *Comparable rates*: an equivalence of
  the frontier slopes, judged only where the ARM's frontier falls with compute.
- *faster at matched quality*: quality as a judge's perplexity is flattered by repetitive text, so a
  sampler setting counts only when its samples are as diverse as the ARM's or the real text's
  (unigram entropy within `entropy_tolerance` nats), at the same temperature. Each sampler is judged
  on its own: low-confidence remasking beside the like-for-like ancestral sampler.
- *guidance*: SMDM judges it by zero-shot accuracy at a tuned w; here w is tuned on half of the
  4-way choice items and judged on the other half, against w = 0.
- *reversal curse*: the reverse direction says something only about facts a model knows, so it is
  judged only once both arms know the seen direction (`known`, 90%); before that, not testable. A
  gain under `REVERSAL_MARGIN` (10 points) does not count as breaking the curse.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd

from .. import verdicts
from ..verdicts import Verdict

REVERSAL_MARGIN = 0.1  # breaking the curse: the MDM answers at least 10 points more reverse questions than the ARM


def _seeded(table: pd.DataFrame) -> pd.DataFrame:
    """Tables stored before seeds were recorded are one seed (0)."""
    return table if "seed" in table else table.assign(seed=0)


def _with(verdict: Verdict, detail: str) -> Verdict:
    return dataclasses.replace(verdict, detail="; ".join(filter(None, [verdict.detail, detail])))


def _by_seed(rows: pd.DataFrame, column: str) -> pd.Series:
    return rows.groupby("seed")[column].mean()


def _paired(a: pd.Series, b: pd.Series) -> tuple[list[float], list[float]]:
    seeds = sorted(set(a.index) & set(b.index))
    return [float(a[s]) for s in seeds], [float(b[s]) for s in seeds]


def _geo(values: pd.Series) -> float:
    return float(np.exp(np.log(values.astype(float)).mean()))


# -- scaling ------------------------------------------------------------------------------------
def fit_lines(table: pd.DataFrame) -> dict[str, tuple[float, float]]:
    """Per arm, loss = a + b·log10(C) through the best size at each budget (the compute frontier; C in
    non-embedding FLOPs, the budget every size was trained to), seeds averaged."""
    lines = {}
    for arm, rows in table.groupby("arm"):
        frontier = rows.groupby(["budget", "size"])["val_nll"].mean().groupby("budget").min()
        x = np.log10(frontier.index.to_numpy(float))
        b, a = np.polyfit(x, frontier.to_numpy(), 1) if len(x) > 1 else (math.nan, float(frontier.iloc[0]))
        lines[arm] = (float(a), float(b))
    return lines


def compute_gap(table: pd.DataFrame) -> pd.DataFrame:
    """At each budget: the MDM's frontier loss, and the FLOPs the ARM's frontier line needs to reach
    it; gap = MDM FLOPs / ARM FLOPs for the same loss (SMDM: about 16× at scale). Seeds averaged."""
    (a, b) = fit_lines(table)["ARM"]
    rows = table[table["arm"] == "MDM"]
    frontier = rows.groupby(["budget", "size"])["val_nll"].mean().groupby("budget").min()
    arm_flops = 10 ** ((frontier.to_numpy() - a) / b) if b < 0 else np.full(len(frontier), math.nan)
    return pd.DataFrame(
        {
            "budget": frontier.index,
            "mdm_nll": frontier.to_numpy(),
            "arm_flops_same_nll": arm_flops,
            "gap": frontier.index.to_numpy(float) / arm_flops,
        }
    )


def scaling_verdicts(table: pd.DataFrame) -> list[Verdict]:
    table = _seeded(table)
    epochs = float(table["epochs"].max())
    out = []
    for budget, rows in table.groupby("budget"):
        best = {arm: rows[rows["arm"] == arm].groupby("seed")["val_nll"].min() for arm in ("ARM", "MDM")}
        arm, mdm = _paired(best["ARM"], best["MDM"])
        claim = f"At {budget:.1e} non-embedding FLOPs the ARM reaches a lower held-out loss than the MDM"
        verdict = verdicts.superiority(claim, arm, mdm, goal="min", scale="nats", epochs=epochs)
        out.append(_with(verdict, "best size per arm; MDM: ELBO, an upper bound on its NLL"))
    gaps = compute_gap(table)["gap"].dropna()
    slopes = {seed: fit_lines(rows) for seed, rows in table.groupby("seed")}
    arm_slopes = [s["ARM"][1] for s in slopes.values()]
    mdm_slopes = [s["MDM"][1] for s in slopes.values()]
    claim = "The MDM's loss falls with compute at a rate comparable to the ARM's"
    gap = f"compute gap ×{gaps.median():.1f} (SMDM: ~16×)" if len(gaps) else "no compute gap readable"
    mean_arm = float(np.mean(arm_slopes))
    if table["budget"].nunique() < 2:
        out.append(verdicts.not_testable(claim, "one budget: no slope", seeds=len(slopes), epochs=epochs))
    elif not mean_arm < 0:
        why = (
            f"the ARM's frontier does not fall with compute (slope {mean_arm:+.3f} nats per decade): no rate to compare"
        )
        out.append(verdicts.not_testable(claim, f"{why}; {gap}", seeds=len(slopes), epochs=epochs))
    else:
        verdict = verdicts.equivalence(
            claim, mdm_slopes, arm_slopes, delta=0.5 * abs(mean_arm), goal="min", scale="linear", epochs=epochs
        )
        out.append(_with(verdict, f"slopes per decade: ARM {mean_arm:+.3f}, MDM {np.mean(mdm_slopes):+.3f}; {gap}"))
    return out


# -- sampling -----------------------------------------------------------------------------------
def _steps_verdicts(mdm: pd.DataFrame) -> list[Verdict]:
    out = []
    for sampler, rows in mdm.groupby("sampler"):
        first, last = rows["steps"].min(), rows["steps"].max()
        low, high = _paired(
            _by_seed(rows[rows["steps"] == last], "judge_ppl"), _by_seed(rows[rows["steps"] == first], "judge_ppl")
        )
        claim = f"{sampler}: sample quality improves with steps ({first} → {last})"
        verdict = verdicts.superiority(claim, low, high, goal="min", scale="log", epochs=float(rows["epochs"].max()))
        out.append(_with(verdict, f"judge ppl {_geo(rows[rows['steps'] == first]['judge_ppl']):.1f} → "
                                  f"{_geo(rows[rows['steps'] == last]['judge_ppl']):.1f}"))  # fmt: skip
    return out


def _faster(
    quality: pd.DataFrame, speed: pd.DataFrame, sampler: str, arm_name: str, batch: int, tolerance: float
) -> Verdict:
    mdm = quality[quality["model"].str.startswith("MDM") & (quality["sampler"] == sampler)]
    arm = quality[quality["model"] == arm_name]
    text = quality[quality["model"] == "held-out text"]["entropy"]
    h_arm, h_text = float(arm["entropy"].mean()), float(text.mean()) if len(text) else math.nan
    epochs = float(max(mdm["epochs"].max(), arm["epochs"].max()))
    claim = f"MDM ({sampler}) is faster than {arm_name} at matched quality and diversity (batch {batch})"
    means = mdm.groupby("steps").agg(entropy=("entropy", "mean"), ppl=("judge_ppl", _geo))
    matched = means[((means["entropy"] - h_arm).abs() <= tolerance) | ((means["entropy"] - h_text).abs() <= tolerance)]
    seeds = int(mdm["seed"].nunique())
    if matched.empty:
        why = (
            f"no {sampler} setting is as diverse as the ARM or the text: unigram entropy "
            f"{means['entropy'].min():.2f}–{means['entropy'].max():.2f} nats against ARM {h_arm:.2f}, text "
            f"{h_text:.2f} (tolerance ±{tolerance:g}); a judge rewards repetition"
        )
        return verdicts.not_testable(claim, why, seeds=seeds, epochs=epochs)
    arm_ppl = _geo(arm["judge_ppl"])
    good = matched[matched["ppl"] <= arm_ppl]
    if good.empty:
        steps = int(matched["ppl"].idxmin())
        mdm_ppl, ref = _paired(_by_seed(mdm[mdm["steps"] == steps], "judge_ppl"), _by_seed(arm, "judge_ppl"))
        verdict = verdicts.superiority(claim, mdm_ppl, ref, goal="min", scale="log", epochs=epochs)
        return _with(
            verdict,
            f"effect on quality: no diversity-matched setting reaches the ARM's judge perplexity (best {steps} steps: "
            f"{matched.loc[steps, 'ppl']:.1f} vs {arm_ppl:.1f})",
        )
    timed = speed[speed["batch"] == batch]
    mdm_time = timed[timed["model"].str.startswith("MDM") & (timed["sampler"] == sampler)]
    times = mdm_time[mdm_time["steps"].isin(good.index)].groupby("steps")["s_per_sample"].mean()
    if times.empty:
        return verdicts.not_testable(claim, f"no timing of the matched settings at batch {batch}", seeds=seeds)
    steps = int(times.idxmin())
    fast, ref = _paired(
        _by_seed(mdm_time[mdm_time["steps"] == steps], "s_per_sample"),
        _by_seed(timed[timed["model"] == arm_name], "s_per_sample"),
    )
    verdict = verdicts.superiority(claim, fast, ref, goal="min", scale="relative", epochs=epochs)
    ratio = float(np.mean(ref) / np.mean(fast))
    return _with(
        verdict,
        f"{steps} steps: judge ppl {good.loc[steps, 'ppl']:.1f} vs {arm_ppl:.1f}, unigram entropy "
        f"{good.loc[steps, 'entropy']:.2f} vs ARM {h_arm:.2f} / text {h_text:.2f}; {ratio:.1f}× the ARM's speed",
    )


def sampling_verdicts(quality: pd.DataFrame, speed: pd.DataFrame, entropy_tolerance: float) -> list[Verdict]:
    quality, speed = _seeded(quality), _seeded(speed)
    mdm = quality[quality["model"].str.startswith("MDM")]
    arms = [m for m in dict.fromkeys(quality["model"]) if m.startswith("ARM")]
    batch = int(speed["batch"].min())
    out = _steps_verdicts(mdm)
    for sampler in dict.fromkeys(mdm["sampler"]):
        out += [_faster(quality, speed, sampler, arm, batch, entropy_tolerance) for arm in arms]
    return out


# -- guidance -----------------------------------------------------------------------------------
def guidance_verdict(table: pd.DataFrame) -> Verdict:
    table = _seeded(table)
    epochs = float(table["mdm_epochs"].max()) if "mdm_epochs" in table else None
    if "choice_acc_test" not in table:
        scored = table.dropna(subset=["chain_rule_nll"]).groupby("w")["chain_rule_nll"].mean()
        nll = ", ".join(f"w={w:g} {v:.3f}" for w, v in scored.items())
        why = (
            "SMDM judges guidance by multiple-choice accuracy at a tuned w; this run measured only the likelihood "
            f"of the true text (chain-rule NLL {nll} nats/token)"
        )
        return verdicts.not_testable(
            "Unsupervised guidance raises zero-shot accuracy", why, seeds=table["seed"].nunique(), epochs=epochs
        )
    scored = table.dropna(subset=["choice_acc_test"])
    tune = scored[scored["w"] > 0].groupby("w")["choice_acc_tune"].mean()
    if tune.empty:
        return verdicts.not_testable("Unsupervised guidance raises zero-shot accuracy", "no w > 0 was scored")
    w = float(tune.idxmax())
    claim = f"Unsupervised guidance (w = {w:g}, tuned on the other half of the items) raises 4-way choice accuracy"
    guided, plain = _paired(
        _by_seed(scored[scored["w"] == w], "choice_acc_test"), _by_seed(scored[scored["w"] == 0], "choice_acc_test")
    )
    verdict = verdicts.superiority(claim, guided, plain, goal="max", scale="linear", epochs=epochs)
    chance = table.attrs.get("chance", {}).get("choice", 0.25)
    arm = float(scored["arm_choice_acc_test"].mean()) if "arm_choice_acc_test" in scored else math.nan
    return _with(
        verdict,
        f"judged half: {np.mean(plain):.1%} at w = 0 → {np.mean(guided):.1%}; ARM {arm:.1%}; chance {chance:.0%}",
    )


# -- reversal -----------------------------------------------------------------------------------
def reversal_verdict(table: pd.DataFrame, known: float = 0.9, w: float | None = None) -> Verdict:
    """The MDM at guidance `w` (None: the largest w run, SMDM's 0.8 in the profile) against the ARM."""
    claim = "The MDM answers the reverse direction where the ARM fails (reversal curse broken)"
    arm = table[table["arm"] == "ARM"]
    mdm = table[table["arm"] == "MDM"]
    mdm = mdm[mdm["w"] == (mdm["w"].max() if w is None else w)]
    epochs = float(table["epochs"].max())
    seen = {"ARM": float(arm["seen_acc"].mean()), "MDM": float(mdm["seen_acc"].mean())}
    numbers = (
        f"seen: ARM {seen['ARM']:.0%}, MDM {seen['MDM']:.0%}; reverse: ARM {arm['reverse_acc'].mean():.0%}, "
        f"MDM {mdm['reverse_acc'].mean():.0%}"
    )
    if "both_acc" in table:
        numbers += f"; both-directions subset: ARM {arm['both_acc'].mean():.0%}, MDM {mdm['both_acc'].mean():.0%}"
    if min(seen.values()) < known:
        why = (
            f"the reverse direction is judged only once both arms know the seen one (≥ {known:.0%}); {numbers}: "
            "a miss cannot be told from a fact never learnt"
        )
        return verdicts.not_testable(claim, why, seeds=int(table["seed"].nunique()), epochs=epochs)
    mdm_rev, arm_rev = _paired(_by_seed(mdm, "reverse_acc"), _by_seed(arm, "reverse_acc"))
    verdict = verdicts.superiority(
        claim, mdm_rev, arm_rev, goal="max", scale="linear", delta=REVERSAL_MARGIN, epochs=epochs
    )
    return _with(verdict, numbers)


def conclusion(
    scaling: pd.DataFrame | None = None,
    quality: pd.DataFrame | None = None,
    speed: pd.DataFrame | None = None,
    guidance: pd.DataFrame | None = None,
    reversal: pd.DataFrame | None = None,
    *,
    profile,
    entropy_tolerance: float = 0.2,
    known: float = 0.9,
    reversal_w: float | None = None,
) -> str:
    """Markdown verdicts on SMDM's claims from the tables given (a missing table: not run); a smoke
    profile returns only the notice that it judges nothing."""
    found: list[Verdict] = []
    if scaling is not None and len(scaling):
        found += scaling_verdicts(scaling)
    if quality is not None and speed is not None and len(quality):
        found += sampling_verdicts(quality, speed, entropy_tolerance)
    if guidance is not None and len(guidance):
        found.append(guidance_verdict(guidance))
    if reversal is not None and len(reversal):
        found.append(reversal_verdict(reversal, known, reversal_w))
    if not found:
        return "No experiment ran."
    return verdicts.conclusion(found, profile=profile)
