"""The generated conclusion flips with the numbers; the unmasking view follows a trace."""

import math

import pandas as pd
import torch

from workbench.diffusion import report
from workbench.diffusion.samplers import Trace
from workbench.diffusion.view import UnmaskingView
from workbench.models import load_tokenizer


def scaling_table(mdm_offset: float) -> pd.DataFrame:
    rows = []
    for size, n in (("s", 7e6), ("l", 21e6)):
        for budget in (1e14, 4e14):
            arm = 5.0 - 0.5 * math.log10(budget / 1e14) - (0.1 if size == "l" else 0)
            for name, loss in (("ARM", arm), ("MDM", arm + mdm_offset)):
                rows.append(
                    {
                        "arm": name,
                        "size": size,
                        "params": n,
                        "budget": budget,
                        "flops": budget,
                        "tokens": budget / (6 * n),
                        "epochs": 3.0,
                        "val_nll": loss,
                        "tokens_per_s": 1e6,
                    }
                )
    return pd.DataFrame(rows)


def test_compute_gap_reads_the_arm_frontier():
    gap = report.compute_gap(scaling_table(0.3))
    # ARM frontier: 4.9 − 0.5·log10(C/1e14); +0.3 nats costs the ARM 10^(0.3/0.5) ≈ 3.98× less compute
    assert all(abs(g - 10**0.6) < 1e-6 for g in gap["gap"])


def test_scaling_verdict_flips():
    assert "**held**, the MDM needs more compute" in report.conclusion(scaling=scaling_table(0.3))
    assert "**did not hold**" in report.conclusion(scaling=scaling_table(-0.3))


def sampling_tables(mdm_ppl: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    quality = pd.DataFrame(
        [
            {"model": "held-out text", "sampler": "data", "steps": 0, "judge_ppl": 20.0, "entropy": 4.0},
            {"model": "ARM C=1e15", "sampler": "left-to-right", "steps": 96, "judge_ppl": 50.0, "entropy": 4.1},
            {"model": "MDM C=1e15", "sampler": "low_confidence", "steps": 8, "judge_ppl": mdm_ppl + 40, "entropy": 3.9},
            {"model": "MDM C=1e15", "sampler": "low_confidence", "steps": 32, "judge_ppl": mdm_ppl, "entropy": 4.0},
        ]
    )
    speed = pd.DataFrame(
        [
            {
                "model": "ARM C=1e15",
                "sampler": "left-to-right",
                "steps": 96,
                "batch": 1,
                "s_per_sample": 0.4,
                "spread": 0.0,
            },
            {
                "model": "MDM C=1e15",
                "sampler": "low_confidence",
                "steps": 8,
                "batch": 1,
                "s_per_sample": 0.05,
                "spread": 0.0,
            },
            {
                "model": "MDM C=1e15",
                "sampler": "low_confidence",
                "steps": 32,
                "batch": 1,
                "s_per_sample": 0.2,
                "spread": 0.0,
            },
        ]
    )
    return quality, speed


def test_sampling_verdict_flips():
    held = report.conclusion(*(None, *sampling_tables(45.0)))
    assert "**Faster at matched quality: held**" in held and "2.0× faster" in held and "**improves** with steps" in held
    assert "**Faster at matched quality: did not hold**" in report.conclusion(*(None, *sampling_tables(80.0)))


def guidance_table(best: float) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "w": [0.0, 0.5, 2.0],
            "arm_nll": 3.0,
            "elbo": [3.6, 3.5, 3.9],
            "chain_rule_nll": [3.5, best, 3.9],
            "judge_ppl": [40.0, math.nan, 60.0],
            "entropy": [4.0, math.nan, 3.0],
        }
    )


def test_guidance_verdict_flips():
    assert "**helps**" in report.conclusion(guidance=guidance_table(3.4))
    assert "**does not help**" in report.conclusion(guidance=guidance_table(3.6))


def reversal_table(mdm_reverse: float) -> pd.DataFrame:
    rows = []
    for seed in range(3):
        rows.append(
            {
                "arm": "ARM",
                "seed": seed,
                "w": 0.0,
                "seen_acc": 0.95,
                "reverse_acc": 0.0,
                "reverse_infill_acc": float("nan"),
                "epochs": 100.0,
            }
        )
        rows.append(
            {
                "arm": "MDM",
                "seed": seed,
                "w": 0.8,
                "seen_acc": 0.9,
                "reverse_acc": mdm_reverse + 0.01 * seed,
                "reverse_infill_acc": 0.5,
                "epochs": 100.0,
            }
        )
    return pd.DataFrame(rows)


def test_reversal_verdict_flips():
    assert "**Held**" in report.conclusion(reversal=reversal_table(0.6))
    assert "**Did not hold**" in report.conclusion(reversal=reversal_table(0.01))


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
