"""The generated conclusion follows the numbers: each verdict flips when its table says otherwise;
the profile resolves presets and rejects unknown settings; the figures build from real-shaped tables."""

import pandas as pd
import pytest

from workbench.cpu import report
from workbench.cpu.profile import CpuProfile
from workbench.errors import WorkbenchError


def precisions(fp32_tok_s=40.0, int8_speedup=2.0, int8_ppl_pct=0.4, spread=0.05) -> pd.DataFrame:
    rows = []
    for precision, speedup, ppl_pct, agreement in [
        ("float32", 1.0, 0.0, 1.0),
        ("int8", int8_speedup, int8_ppl_pct, 0.99),
        ("int8-dynamic", 2.5, 250.0, 0.6),
    ]:
        for threads in (1, 2):
            rows.append(
                {
                    "precision": precision,
                    "threads": threads,
                    "decode_tok_s": fp32_tok_s * speedup * threads,
                    "decode_spread": spread,
                    "decode_speedup": speedup,
                    "prefill_tok_s": 500.0 * threads,
                    "prefill_spread": spread,
                    "weight_mb": 500 / (speedup if precision != "float32" else 1),
                    "ppl": 18.7 * (1 + ppl_pct / 100),
                    "ppl_change_pct": ppl_pct,
                    "next_token_agreement": agreement,
                }
            )
    return pd.DataFrame(rows)


def gqa(formula_matches=True, mqa_gain=2.0) -> pd.DataFrame:
    rows = []
    for variant, g, gain in [("MHA 9/9", 9, 1.0), ("GQA 9/3", 3, (1 + mqa_gain) / 2), ("MQA 9/1", 1, mqa_gain)]:
        for context in (256, 4096):
            size = 2 * 30 * context * g * 64 * 4
            rows.append(
                {
                    "variant": variant,
                    "n_kv_heads": g,
                    "context": context,
                    "kv_bytes_formula": size,
                    "kv_bytes_measured": size if formula_matches else size + 1,
                    "decode_tok_s": 20.0 * (gain if context == 4096 else 1.0),
                    "decode_spread": 0.05,
                }
            )
    return pd.DataFrame(rows)


def trained(gqa_cost=0.0) -> pd.DataFrame:
    rows = []
    for variant, g, cost in [("MHA 8/8", 8, 0.0), ("GQA 8/2", 2, gqa_cost), ("GEB-shaped GQA 8/2, untied", 2, 0.0)]:
        for seed, noise in enumerate((0.0, 0.01, -0.01) if not variant.startswith("GEB") else (0.0,)):
            rows.append(
                {
                    "variant": variant,
                    "seed": seed,
                    "n_kv_heads": g,
                    "params": 47e6,
                    "tied": True,
                    "val_loss": 3.5 + cost + noise,
                    "val_ppl": 33.0,
                    "train_loss": 3.4,
                    "tokens": 1.6e6,
                    "epochs": 3.4,
                }
            )
    return pd.DataFrame(rows)


def test_quantisation_verdict_flips_with_speed_and_with_quality():
    assert "faster at equal quality: held" in report.conclusion(precisions())
    assert "faster at equal quality: did not hold" in report.conclusion(precisions(int8_speedup=1.2))
    assert "faster at equal quality: did not hold" in report.conclusion(precisions(int8_ppl_pct=3.5))


def test_usable_float32_verdict_flips_at_gebs_rate():
    assert "usable on a CPU: held" in report.conclusion(precisions(fp32_tok_s=30.0))
    assert "usable on a CPU: did not hold" in report.conclusion(precisions(fp32_tok_s=4.0))  # 8 tok/s at 2 threads < 12


def test_gqa_verdicts_follow_formula_and_speed():
    text = report.conclusion(precisions(), gqa())
    assert "shrinks by H/G: held" in text and "MQA 9/1: 2.00x MHA's decode rate" in text and "beyond the noise" in text
    worse = report.conclusion(precisions(), gqa(formula_matches=False, mqa_gain=1.02))
    assert "shrinks by H/G: did not hold" in worse and "not distinguishable from the noise" in worse


def test_training_verdict_compares_the_loss_gap_with_seed_spread():
    assert "GQA 8/2 costs no quality at equal parameters: held" in report.conclusion(precisions(), None, trained(0.005))
    assert "GQA 8/2 costs no quality at equal parameters: did not hold" in report.conclusion(
        precisions(), None, trained(0.2)
    )
    assert "GEB-shaped GQA 8/2, untied" in report.conclusion(precisions(), None, trained())


def test_summaries_and_figures_build():
    table = precisions()
    summary = report.precision_summary(table)
    assert list(summary.index) == ["float32", "int8", "int8-dynamic"] and summary.loc["int8", "× float32"] == 2.0
    assert len(report.speed_figure(table).data) == 6 and len(report.tradeoff_figure(table).data) == 3
    assert len(report.gqa_figure(gqa()).data) == 9
    assert report.training_summary(trained()).loc["GQA 8/2", "seeds"] == 3
    assert len(report.training_figure(trained()).data) == 2
    live = report.LiveCurves()
    live("MHA", 10, {"val_loss": 4.0})
    live("MHA", 20, {"val_loss": 3.5})
    assert list(live.figure.data[0].y) == [4.0, 3.5]


def test_profile_presets_and_errors():
    smoke = CpuProfile.resolve("smoke", threads=(1, 2))
    assert smoke.model == "tiny" and smoke.threads == (1, 2) and CpuProfile.resolve("full").model == "smollm2-135m"
    with pytest.raises(WorkbenchError, match="unknown setting"):
        CpuProfile.resolve("smoke", thread=2)
    with pytest.raises(WorkbenchError, match="steps"):
        CpuProfile.resolve("smoke", steps="ten")
