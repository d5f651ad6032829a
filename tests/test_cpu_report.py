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


def trained(gqa_cost=0.0, jitter=0.001) -> pd.DataFrame:
    """Seeds shift both arms by ±0.01 together (pairing removes it); `jitter`: GQA's own noise per seed."""
    rows = []
    for variant, g, cost in [("MHA 8/8", 8, 0.0), ("GQA 8/2", 2, gqa_cost), ("GEB-shaped GQA 8/2, untied", 2, 0.0)]:
        for seed, noise in enumerate((0.0, 0.01, -0.01) if not variant.startswith("GEB") else (0.0,)):
            noise += jitter * (0, 1, -1)[seed] if variant.startswith("GQA") else 0.0
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


def _conclusion(*tables) -> str:
    return report.conclusion(*tables, profile="full")


def _line(text: str, claim: str) -> str:
    (line,) = [line for line in text.splitlines() if claim in line]
    return line


def test_quantisation_verdicts_flip_with_speed_and_with_quality():
    speed, quality = "decodes at least 1.5x faster than float32", "within 2% of float32's"
    assert "**held**" in _line(_conclusion(precisions()), speed)
    assert "**did not hold**" in _line(_conclusion(precisions(int8_speedup=1.2)), speed)
    assert "**held**" in _line(_conclusion(precisions()), quality)
    assert "**did not hold**" in _line(_conclusion(precisions(int8_ppl_pct=3.5)), quality)


def test_a_speed_ratio_is_judged_with_its_spread():
    """×2.0 with ±52% spreads (today's logic: held) ranges from ×1.17 to ×3.4: it straddles the 1.5 bar."""
    line = _line(_conclusion(precisions(spread=0.52)), "decodes at least 1.5x faster")
    assert "**not testable here**" in line and "straddles" in line


def test_usable_float32_bar_is_scaled_to_gebs_weight_bytes():
    """30 tok/s per thread with 500 MB of weights (today's logic: held against 12 tok/s) projects to
    60 × 0.5 / 4.86 ≈ 6.2 tok/s for GEB-1.3B's weights: below the bar."""
    claim = "float32 decoding of a GEB-1.3B-sized model reaches GEB's 12 tokens/s"
    assert "**did not hold**" in _line(_conclusion(precisions(fp32_tok_s=30.0)), claim)
    held = _line(_conclusion(precisions(fp32_tok_s=100.0)), claim)  # 200 × 0.103 ≈ 20.6
    assert "**held**" in held and "projection" in held


def test_gqa_speed_verdicts_and_no_unit_test_claim():
    text = _conclusion(precisions(), gqa())
    assert "shrinks by H/G" not in text  # a property of the code, checked by the unit tests, not a claim
    assert "**held**" in _line(text, "MQA 9/1 decodes faster than MHA at 4096")
    worse = _conclusion(precisions(), gqa(mqa_gain=1.02))
    assert "**not testable here**" in _line(worse, "MQA 9/1 decodes faster than MHA at 4096")


def test_gqa_quality_is_an_equivalence_never_held():
    claim = "GQA 8/2 costs no quality against MHA 8/8"
    close = _line(_conclusion(precisions(), None, trained(0.005)), claim)
    assert "**no difference detected**" in close and "3 seeds" in close  # today's logic: "held"
    assert "**not testable here**" in _line(_conclusion(precisions(), None, trained(0.005, jitter=0.03)), claim)
    assert "**did not hold**" in _line(_conclusion(precisions(), None, trained(0.2)), claim)
    assert "GEB-shaped GQA 8/2, untied" in _conclusion(precisions(), None, trained())


def test_smoke_judges_nothing():
    text = report.conclusion(precisions(fp32_tok_s=100.0), gqa(), trained(), profile="smoke")
    assert "held" not in text and "Smoke run" in text


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


@pytest.mark.slow
def test_every_trained_seed_is_its_own_frontier_point(tmp_path, monkeypatch):
    """The H200 run of 2026-12-03 put two cards named "train MQA 8/1" (seeds 0 and 1, 4.29 and 4.65 ms) on
    one frontier: a trained arm's card names its seed."""
    from workbench import cards, runs
    from workbench.cpu.experiment import CpuExperiment

    monkeypatch.setenv("WORKBENCH_HOME", str(tmp_path))
    experiment = CpuExperiment("smoke", progress=False, train_kv_heads=(4,), seeds=(0, 1))
    experiment.train_table()
    arms = set(cards.load_cards(runs.store())["arm"])
    assert {"train MHA 4/4 seed 0", "train MHA 4/4 seed 1"} <= arms
