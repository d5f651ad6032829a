"""The generated verdicts flip with the numbers, judge only what their numbers allow (two seeds,
matched diversity, a tuned w, a known seen direction), and a smoke run judges nothing."""

import math

import pandas as pd
import torch

from workbench.diffusion import report
from workbench.diffusion.samplers import Trace
from workbench.diffusion.view import UnmaskingView
from workbench.models import load_tokenizer

HELD, NOT_HELD, UNTESTABLE = "**held**", "**did not hold**", "**not testable here**"


def verdict_line(text: str, claim: str) -> str:
    return next(line for line in text.splitlines() if claim in line)


def scaling_table(mdm_offset: float, seeds=(0, 1)) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        for size, n in (("s", 1e6), ("l", 8e6)):
            for budget in (1e14, 4e14):
                arm = 5.0 - 0.5 * math.log10(budget / 1e14) - (0.1 if size == "l" else 0) + 0.01 * seed
                for name, loss in (("ARM", arm), ("MDM", arm + mdm_offset + 0.02 * seed)):
                    rows.append(
                        {
                            "arm": name,
                            "size": size,
                            "seed": seed,
                            "non_emb_params": n,
                            "total_params": n + 6e6,
                            "budget": budget,
                            "flops": budget,
                            "tokens": budget / (6 * n),
                            "epochs": 0.5,
                            "val_nll": loss,
                            "tokens_per_s": 1e6,
                        }
                    )
    return pd.DataFrame(rows)


def test_compute_gap_reads_the_arm_frontier():
    gap = report.compute_gap(scaling_table(0.3))
    # ARM frontier: 4.9 − 0.5·log10(C/1e14) (+0.005 mean over seeds); +0.3 + 0.01 nats costs the ARM 10^(0.31/0.5)
    assert all(abs(g - 10**0.62) < 1e-6 for g in gap["gap"])


def test_scaling_table_shows_non_embedding_n():
    shown = report.scaling_display(scaling_table(0.3))
    assert "N, non-embedding (M)" in shown and "total params (M)" in shown
    assert set(shown["N, non-embedding (M)"]) == {1.0, 8.0}
    # FLOPs read as 1e+14, not 100000000000000; tokens/s as whole numbers
    assert all("e+" in flops for flops in shown["training FLOPs (6·N·D)"])


def test_scaling_verdict_flips_with_two_seeds():
    claim = "ARM reaches a lower held-out loss"
    held = report.conclusion(scaling=scaling_table(0.3), profile="full")
    assert HELD in verdict_line(held, claim)
    assert "no difference detected" in verdict_line(held, "comparable to the ARM's")  # equal slopes: never "held"
    assert NOT_HELD in verdict_line(report.conclusion(scaling=scaling_table(-0.3), profile="full"), claim)


def test_one_seed_judges_nothing():
    # today's logic read "held, the MDM needs more compute" from one seed per point
    text = report.conclusion(scaling=scaling_table(0.3, seeds=(0,)), profile="full")
    assert HELD not in text and "one seed: not judged" in verdict_line(text, "ARM reaches a lower held-out loss")


def test_a_rising_arm_frontier_has_no_rate_to_compare():
    table = scaling_table(0.3)
    table.loc[(table["arm"] == "ARM") & (table["budget"] == 4e14), "val_nll"] += 2.0  # the ARMs overfit
    text = verdict_line(report.conclusion(scaling=table, profile="full"), "comparable to the ARM's")
    assert UNTESTABLE in text and "does not fall with compute" in text


def sampling_tables(
    low_conf_entropy: float, ancestral_ppl: float, seeds=(0, 1, 2)
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The H200 run's pattern: low-confidence samples win on the judge while repeating themselves."""
    quality = [{"model": "held-out text", "sampler": "data", "steps": 0, "judge_ppl": 24.0, "entropy": 3.84}]
    speed = []
    for seed in seeds:
        noise = 1 + 0.02 * seed
        quality.append(
            {"model": "ARM l C=4.0e+14", "sampler": "left-to-right", "steps": 96, "seed": seed,
             "judge_ppl": 683.0 * noise, "entropy": 4.06, "epochs": 17.0}
        )  # fmt: skip
        speed.append({"model": "ARM l C=4.0e+14", "sampler": "left-to-right", "steps": 96, "batch": 1, "seed": seed,
                      "s_per_sample": 0.61 * noise})  # fmt: skip
        for sampler, steps, ppl, entropy, seconds in (
            ("low_confidence", 8, 104.4, low_conf_entropy, 0.056),
            ("low_confidence", 96, 18.6, low_conf_entropy - 0.3, 0.63),
            ("ancestral", 8, 2321.0, 4.08, 0.052),
            ("ancestral", 96, ancestral_ppl, 4.08, 0.40),
        ):
            quality.append(
                {"model": "MDM l C=4.0e+14", "sampler": sampler, "steps": steps, "seed": seed,
                 "judge_ppl": ppl * noise, "entropy": entropy, "epochs": 17.0}
            )  # fmt: skip
            speed.append({"model": "MDM l C=4.0e+14", "sampler": sampler, "steps": steps, "batch": 1, "seed": seed,
                          "s_per_sample": seconds * (1 + 0.05 * seed)})  # fmt: skip
    return pd.DataFrame(quality), pd.DataFrame(speed)


def faster_line(text: str, sampler: str) -> str:
    return verdict_line(text, f"MDM ({sampler}) is faster")


def test_matched_quality_requires_matched_diversity():
    # today's logic: "Faster at matched quality: held" from the repetitive low-confidence samples
    text = report.conclusion(None, *sampling_tables(2.99, 1848.0), profile="full")
    assert UNTESTABLE in faster_line(text, "low_confidence") and "as diverse" in faster_line(text, "low_confidence")
    assert NOT_HELD in faster_line(text, "ancestral")  # like for like: the MDM's samples are worse than the ARM's
    assert HELD in verdict_line(text, "low_confidence: sample quality improves with steps")


def test_faster_at_matched_quality_and_diversity_can_hold():
    text = report.conclusion(None, *sampling_tables(4.0, 600.0), profile="full")
    assert HELD in faster_line(text, "ancestral") and "96 steps" in faster_line(text, "ancestral")
    assert HELD in faster_line(text, "low_confidence") and "8 steps" in faster_line(text, "low_confidence")


def guidance_table(guided_gain: float, seeds=(0, 1, 2)) -> pd.DataFrame:
    rows = []
    for seed in seeds:
        for w, tune, gain in (
            (0.0, 0.40, 0.0),
            (0.5, 0.45, guided_gain / 2),
            (1.0, 0.48, guided_gain),
            (2.0, 0.30, -0.1),
        ):
            rows.append(
                {"seed": seed, "w": w, "arm_nll": 6.5, "mdm_epochs": 17.0, "choice_acc_tune": tune + 0.01 * seed,
                 "choice_acc_test": 0.40 + gain + 0.01 * seed * (1 + w), "cloze_acc_test": 0.3,
                 "arm_choice_acc_test": 0.45, "chain_rule_nll": 5.9 + 0.1 * w, "elbo": 6.0 + 0.1 * w}
            )  # fmt: skip
    return pd.DataFrame(rows)


def test_guidance_is_judged_on_accuracy_at_a_tuned_w():
    claim = "Unsupervised guidance"
    held = verdict_line(report.conclusion(guidance=guidance_table(0.05), profile="full"), claim)
    assert HELD in held and "w = 1" in held  # tuned on the other half: w = 1 has the best tuning accuracy
    assert NOT_HELD in verdict_line(report.conclusion(guidance=guidance_table(-0.05), profile="full"), claim)


def test_guidance_on_likelihood_alone_is_not_judged():
    # today's logic judged guidance on the NLL of the true text ("does not help")
    old = guidance_table(0.0).drop(columns=["choice_acc_tune", "choice_acc_test", "cloze_acc_test"])
    text = verdict_line(report.conclusion(guidance=old, profile="full"), "Unsupervised guidance")
    assert UNTESTABLE in text and "multiple-choice accuracy" in text


def reversal_table(mdm_seen: float, mdm_reverse: float) -> pd.DataFrame:
    rows = []
    for seed in range(3):
        rows.append({"arm": "ARM", "seed": seed, "w": 0.0, "seen_acc": 0.98, "reverse_acc": 0.01 * seed,
                     "both_acc": 0.9, "reverse_infill_acc": float("nan"), "epochs": 20.0})  # fmt: skip
        for w in (0.0, 0.8):
            rows.append({"arm": "MDM", "seed": seed, "w": w, "seen_acc": mdm_seen, "both_acc": 0.9,
                         "reverse_acc": mdm_reverse + 0.02 * seed, "reverse_infill_acc": 0.5,
                         "epochs": 20.0})  # fmt: skip
    return pd.DataFrame(rows)


def test_reversal_is_judged_only_once_the_seen_direction_is_known():
    claim = "reversal curse broken"
    assert HELD in verdict_line(report.conclusion(reversal=reversal_table(0.95, 0.6), profile="full"), claim)
    cursed = verdict_line(report.conclusion(reversal=reversal_table(0.95, 0.0), profile="full"), claim)
    assert "**no difference detected**" in cursed and "±0.1" in cursed  # as cursed as the ARM: not broken
    # today's logic: "Did not hold" with the MDM knowing 53% of the seen direction
    unknown = verdict_line(report.conclusion(reversal=reversal_table(0.53, 0.0), profile="full"), claim)
    assert UNTESTABLE in unknown and "MDM 53%" in unknown


def test_smoke_judges_nothing():
    text = report.conclusion(
        scaling_table(0.3), *sampling_tables(4.0, 600.0), guidance_table(0.05), reversal_table(0.95, 0.6),
        profile="smoke",
    )  # fmt: skip
    assert "Smoke run: no verdicts" in text and HELD not in text and NOT_HELD not in text


def test_unmasking_view_accumulates_reveals():
    tokenizer = load_tokenizer()
    tokens = torch.tensor([[10, 11, 12, 13, 14]])
    revealed = [torch.tensor([[False, False, False, True, False]]), torch.tensor([[False, False, True, False, True]])]
    confidence = [torch.where(r, 0.5, math.nan) for r in revealed]
    view = UnmaskingView({"MDM": Trace(tokens, revealed, confidence)}, tokenizer, prompt_len=2, columns=4)
    texts, conf, new = view.state("MDM", 1)
    assert texts[2] == "▢" and texts[3] != "▢" and texts[4] == "▢" and new.tolist() == [3]
    view.step.value = 2
    assert "2 token(s) revealed now" in view.status.value and "0 still masked" in view.status.value
    assert list(view.figure.data[1].x) == [2, 0] and list(view.figure.data[1].y) == [0, 1]


def test_unmasking_view_shows_the_prompt_at_step_zero_and_colours_by_probability():
    tokenizer = load_tokenizer()
    tokens = torch.tensor([[10, 11, 12, 13, 14]])
    revealed = [torch.tensor([[False, False, False, True, False]]), torch.tensor([[False, False, True, False, True]])]
    confidence = [torch.where(r, p, math.nan) for r, p in zip(revealed, (0.9, 0.001))]
    view = UnmaskingView({"MDM": Trace(tokens, revealed, confidence)}, tokenizer, prompt_len=2, columns=4)
    words = list(view.figure.data[2].text)
    assert words[2:] == ["▢"] * 3 and all(w != "▢" and w for w in words[:2])  # the prompt shows at step 0
    view.step.value = 2
    assert "(mean p 0.001)" in view.status.value  # not rounded to 0.00
    cells = [v for row in view.figure.data[0].z for v in row if v is not None]
    assert len(set(cells)) == 3  # prompt grey, p 0.9 and p 0.001 apart on the log scale
    static = view.snapshots(points=3)
    steps = [a.text for a in static.layout.annotations]
    assert steps == ["MDM, step 0/2", "MDM, step 1/2", "MDM, step 2/2"]  # first, middle and final step in the copy
