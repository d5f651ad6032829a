"""Notebook outputs without library noise (issue 27, item 5): the warnings a reader cannot act on are
filtered by their exact message where a notebook starts, and nothing else is."""

import warnings

import numpy as np
import pandas as pd
import pytest

from workbench import models, notebook, plots
from workbench.cpu import report as cpu_report


def _peft_warnings() -> list[str]:
    peft = pytest.importorskip("peft")
    model, _ = models.tiny_llama()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # what a kernel shows: once per place
        notebook.quiet_library_warnings()
        peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"]))
        warnings.warn("a FutureWarning of our own stays", FutureWarning, stacklevel=1)
    return [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]


def test_peft_lora_wrapping_prints_no_deprecation_box_but_other_future_warnings_stay():
    shown = _peft_warnings()
    assert not any("is_gradient_checkpointing" in text for text in shown)
    assert "a FutureWarning of our own stays" in shown


@pytest.mark.slow  # 0.8 s quiet: too long for test-fast's minute
def test_the_filtered_warning_is_real():
    """Without the filter, transformers' deprecation is what peft triggers (so the filter above is not idle)."""
    peft = pytest.importorskip("peft")
    model, _ = models.tiny_llama()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"]))
    assert any("is_gradient_checkpointing" in str(w.message) for w in caught)


def test_significant_digits_keep_small_values_and_drop_noise():
    values = pd.Series([47297.901, 18.7123, 0.001234, float("nan")])
    assert plots.significant(values, 3).tolist()[:3] == [47300.0, 18.7, 0.00123]
    assert np.isnan(plots.significant(values, 3).iloc[3])
    assert plots.significant(0.00049, 2) == 0.00049 and plots.significant(1234.5, 2) == 1200.0


def test_smoke_tables_show_epochs_not_zero():
    from test_cpu_report import trained

    summary = cpu_report.training_summary(trained().assign(epochs=0.0012))
    assert set(summary["epochs"]) == {0.0012}


def test_recursive_summary_hides_an_empty_seed_range_and_keeps_small_epochs():
    from test_recursive_report import table

    from workbench.recursive import report as recursive_report

    one_seed = recursive_report.summary_table(table(seeds=1).assign(epochs=0.004))
    assert "ppl range over seeds" not in one_seed and set(one_seed["epochs"]) == {0.004}
    assert "ppl range over seeds" in recursive_report.summary_table(table(seeds=3))


def test_readable_rounds_float_columns_only():
    frame = pd.DataFrame({"model": ["ARM"], "judge_ppl": [7336318.456], "epochs": [0.001234], "steps": [16]})
    shown = plots.readable(frame)
    assert shown.iloc[0].tolist() == ["ARM", 7336000.0, 0.001234, 16]


def test_one_seed_reversal_has_no_spread_rather_than_zero():
    from test_diffusion_report import reversal_table

    from workbench.diffusion import report as diffusion_report

    one = diffusion_report.reversal_summary(reversal_table(0.9, 0.3).query("seed == 0"))
    assert (
        one["seen_std"].isna().all()
        and not diffusion_report.reversal_summary(reversal_table(0.9, 0.3))["reverse_std"].isna().any()
    )
