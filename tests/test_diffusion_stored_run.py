"""The H200 run of 2026-11-30 (docs/results.md, sweep diffusion-full-20261130-133717) re-judged by today's
verdict logic: its tables as stored there, one seed per scaling and sampling point, three in the reversal
test (whose per-seed values results.md gives only as mean ± sd: three seeds with that mean and sd here).

`python -m pytest -s tests/test_diffusion_stored_run.py` prints the re-rendered conclusion."""

import pandas as pd

from workbench.diffusion import report

SIZES = {"s": (1_049_728, 7.34e6), "m": (3_541_440, 12.98e6), "l": (8_392_960, 20.98e6)}
SCALING = [  # size, budget (total FLOPs, as the run counted them), steps, epochs, ARM NLL, MDM ELBO
    ("s", 2.5e14, 693, 12.0, 5.850, 6.078),
    ("s", 1.0e15, 2771, 48.1, 9.294, 5.260),
    ("m", 2.5e14, 392, 6.8, 5.390, 6.424),
    ("m", 1.0e15, 1568, 27.2, 8.080, 5.419),
    ("l", 2.5e14, 242, 4.2, 5.748, 6.641),
    ("l", 1.0e15, 970, 16.8, 6.414, 5.673),
]
QUALITY = [  # model, sampler, steps, judge ppl, unigram entropy, s/sample at batch 1, at batch 32
    ("ARM l C=2.5e+14", "left-to-right", 96, 1920.2, 4.09, 0.629, 0.0191),
    ("ARM l C=1.0e+15", "left-to-right", 96, 683.0, 4.06, 0.611, 0.0193),
    ("MDM l C=1.0e+15", "low_confidence", 8, 104.4, 2.99, 0.0556, 0.0032),
    ("MDM l C=1.0e+15", "low_confidence", 16, 56.3, 2.92, 0.113, 0.0061),
    ("MDM l C=1.0e+15", "low_confidence", 32, 34.2, 2.82, 0.224, 0.0118),
    ("MDM l C=1.0e+15", "low_confidence", 64, 21.4, 2.67, 0.419, 0.0226),
    ("MDM l C=1.0e+15", "low_confidence", 96, 18.6, 2.68, 0.629, 0.0357),
    ("MDM l C=1.0e+15", "ancestral", 8, 2321.3, 4.08, 0.0517, 0.0022),
    ("MDM l C=1.0e+15", "ancestral", 32, 1982.5, 4.07, 0.199, 0.0080),
    ("MDM l C=1.0e+15", "ancestral", 96, 1848.1, 4.08, 0.404, 0.0224),
]


def stored_tables() -> dict[str, pd.DataFrame]:
    scaling = pd.DataFrame(
        [
            {"arm": arm, "size": size, "seed": 0, "non_emb_params": SIZES[size][0], "total_params": SIZES[size][1],
             "budget": budget, "flops": 6 * SIZES[size][0] * steps * 8192, "tokens": steps * 8192, "epochs": epochs,
             "val_nll": nll, "tokens_per_s": float("nan")}
            for size, budget, steps, epochs, arm_nll, mdm_nll in SCALING
            for arm, nll in (("ARM", arm_nll), ("MDM", mdm_nll))
        ]
    )  # fmt: skip
    epochs = {"ARM l C=2.5e+14": 4.2, "ARM l C=1.0e+15": 16.8, "MDM l C=1.0e+15": 16.8}
    quality = pd.DataFrame(
        [{"model": "held-out text", "sampler": "data", "steps": 0, "judge_ppl": 24.04, "entropy": 3.84}]
        + [{"model": m, "sampler": a, "steps": k, "seed": 0, "judge_ppl": p, "entropy": h, "epochs": epochs[m]}
           for m, a, k, p, h, _, _ in QUALITY]
    )  # fmt: skip
    speed = pd.DataFrame(
        [{"model": m, "sampler": a, "steps": k, "batch": b, "seed": 0, "s_per_sample": t}
         for m, a, k, _, _, t1, t32 in QUALITY for b, t in ((1, t1), (32, t32))]
    )  # fmt: skip
    guidance = pd.DataFrame(
        {"w": [0.0, 0.5, 1.0, 2.0, 0.6, 1.5], "arm_nll": 6.484, "mdm_epochs": 16.8,
         "chain_rule_nll": [5.892, 5.937, 6.026, 6.319, None, None], "elbo": [5.916, 5.969, 6.069, 6.399, None, None],
         "judge_ppl": [34.2, None, None, None, 43.6, 61.6]}
    )  # fmt: skip
    reversal = pd.DataFrame(
        [{"arm": arm, "seed": seed, "w": w, "seen_acc": seen + d_seen, "reverse_acc": reverse + d_rev,
          "reverse_infill_acc": infill, "epochs": 267.0}
         for arm, w, seen, sd_seen, reverse, sd_rev, infill in (
             ("ARM", 0.0, 1.0, 0.0, 0.001, 0.001, float("nan")),
             ("MDM", 0.0, 0.526, 0.018, 0.001, 0.001, 0.749),
             ("MDM", 0.8, 0.562, 0.018, 0.002, 0.001, 0.749),
         )
         for seed, (d_seen, d_rev) in enumerate(((-sd_seen, -sd_rev), (0.0, 0.0), (sd_seen, sd_rev)))]
    )  # fmt: skip
    return {"scaling": scaling, "quality": quality, "speed": speed, "guidance": guidance, "reversal": reversal}


def rendered() -> str:
    return report.conclusion(**stored_tables(), profile="full", reversal_w=0.8)


def test_the_stored_run_re_judged():
    text = rendered()
    print("\n" + text)
    lines = text.splitlines()
    assert len(lines) == 11 and all("**not testable here**" in line for line in lines)  # no verdict survives
    assert sum("one seed: not judged" in line for line in lines) == 6
    assert "does not fall with compute" in lines[2]
    low_confidence = [line for line in lines if "MDM (low_confidence) is faster" in line]
    assert len(low_confidence) == 2 and all("2.67–2.99 nats" in line for line in low_confidence)
    assert "multiple-choice accuracy" in next(line for line in lines if "guidance" in line)
    assert "MDM 56%" in lines[-1] and "≥ 90%" in lines[-1]
