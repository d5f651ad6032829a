"""The GaLore report on constructed results: the conclusion's verdicts follow the numbers."""

import pandas as pd
import pytest

from workbench.galore import report
from workbench.galore.experiment import GaloreResults


def _table(ng_gain: float = 0.05, galore_step_ms: float = 12.0) -> pd.DataFrame:
    rows = []
    for seed in range(3):
        noise = 0.002 * (seed - 1)
        for method, loss, state, step in (
            ("AdamW", 3.50, 360.0, 10.0),
            ("GaLore", 3.60, 200.0, galore_step_ms),
            ("Natural GaLore", 3.60 - ng_gain, 900.0, 14.0),
        ):
            early = loss + 0.5 + (ng_gain if method == "Natural GaLore" else 0.0) * -1.0
            rows.append(
                dict(
                    part="pretrain",
                    method=method,
                    label=f"{method} lr=0.01",
                    lr=0.01,
                    seed=seed,
                    swept=False,
                    val_loss=loss + noise,
                    val_loss_25=early + noise,
                    step_25=150,
                    best_val_loss=loss + noise,
                    best_step=600,
                    state_mb=state,
                    moments_mb=state,
                    projectors_mb=0.0,
                    history_mb=0.0,
                    adapters_mb=0.0,
                    step_ms=step,
                    epochs=10.4,
                )
            )
    rows.append(dict(rows[0], lr=0.003, swept=True, val_loss=3.9))
    for method, loss in (("AdamW", 2.40), ("GaLore", 2.45), ("Natural GaLore", 2.44), ("LoRA", 2.50)):
        rows.append(
            dict(
                part="finetune",
                method=method,
                label=method,
                lr=5e-5,
                seed=0,
                swept=False,
                val_loss=loss,
                val_loss_25=loss + 0.1,
                step_25=25,
                best_val_loss=loss,
                best_step=100,
                state_mb=100.0,
                moments_mb=100.0,
                projectors_mb=0.0,
                history_mb=0.0,
                adapters_mb=0.0,
                step_ms=80.0,
                epochs=1.7,
                val_loss_before=2.75,
            )
        )
    return pd.DataFrame(rows)


def _line(text: str, claim: str) -> str:
    (line,) = [line for line in text.splitlines() if claim in line]
    return line


def test_natural_galore_claim_flips_with_the_measured_gain():
    held = report.conclusion(_table(ng_gain=0.05))
    failed = report.conclusion(_table(ng_gain=-0.02))
    noise = report.conclusion(_table(ng_gain=0.001))
    assert "**held**" in _line(held, "Natural GaLore ends below GaLore")
    assert "**did not hold**" in _line(failed, "Natural GaLore ends below GaLore")
    assert "within seed noise" in _line(noise, "Natural GaLore ends below GaLore")
    assert "**did not hold**" in _line(held, "closes most of that gap")  # 0.05 of a 0.10 gap: half, not most
    assert "**held**" in _line(report.conclusion(_table(ng_gain=0.08)), "closes most of that gap")


def test_galore_gap_claim_flips_with_the_measured_gap():
    close, far = _table(), _table()
    close.loc[close["method"] == "GaLore", "val_loss"] -= 0.07  # GaLore − AdamW = +0.03
    far.loc[far["method"] == "GaLore", "val_loss"] += 0.10  # +0.20, seed spread 0.002
    assert "**held**" in _line(report.conclusion(close), "within a few hundredths")
    assert "**did not hold**" in _line(report.conclusion(far), "within a few hundredths")


def test_speed_claim_flips_with_the_step_time():
    assert "**held**" in _line(report.conclusion(_table(galore_step_ms=12.0)), "*Speed*")
    assert "**did not hold**" in _line(report.conclusion(_table(galore_step_ms=15.0)), "*Speed*")


def test_conclusion_reports_memory_and_fine_tuning():
    text = report.conclusion(_table())
    assert "44.4% less than AdamW" in text  # 1 − 200/360
    assert "Fine-tuning" in text and "AdamW 2.400" in text
    assert "**did not hold**" in _line(text, "Natural GaLore beats GaLore in fine-tuning") or "**held**" in text


def test_swept_learning_rates_stay_out_of_the_comparison():
    text = report.conclusion(_table())
    assert "AdamW 3.500" in text  # the swept lr's 3.9 is not averaged in


@pytest.fixture()
def results():
    table = _table()
    curves = pd.DataFrame(
        [
            dict(
                part=r.part,
                label=r.label,
                method=r.method,
                seed=r.seed,
                step=step,
                val_loss=r.val_loss + 1 / step,
                time_s=step * 0.01,
            )
            for r in table.itertuples()
            for step in (50, 100, 150)
        ]
    )
    timing = pd.DataFrame(
        [
            dict(part=p, method=m, step_ms=1.0, spread=0.1, amortised_ms=1.5, refresh_ms=100.0)
            for p, ms in (
                ("pretrain", ("AdamW", "GaLore", "Natural GaLore")),
                ("finetune", ("AdamW", "GaLore", "Natural GaLore", "LoRA")),
            )
            for m in ms
        ]
    )
    return GaloreResults(table, curves, timing, None, "not installed", "galore-test")


def test_figures_and_summary_build(results):
    assert len(report.loss_curves(results).data) == 2 * 7  # band + mean per method and part
    assert len(report.loss_curves(results, x="time_s").data) == 14
    assert len(report.loss_vs_memory(results).data) == 7
    assert len(report.cost_bars(results).data) == 5
    summary = report.summary(results)
    assert list(summary["method"]) == ["AdamW", "GaLore", "Natural GaLore", "AdamW", "GaLore", "Natural GaLore", "LoRA"]
    assert summary.loc[0, "val loss @ 100%"] == "3.500 ± 0.002"


def test_live_curves_update_in_place():
    live = report.LiveCurves(("pretrain",))
    for step in (10, 20):
        live(
            dict(part="pretrain", label="GaLore lr=0.01", method="GaLore", seed=0, step=step, val_loss=5.0 - step / 10)
        )
    live(dict(part="pretrain", label="GaLore lr=0.01", method="GaLore", seed=1, step=10, val_loss=4.5))
    assert len(live.figure.data) == 2
    assert tuple(live.figure.data[0].y) == (4.0, 3.0)
