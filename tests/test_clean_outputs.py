"""Notebook outputs without library noise (issue 27, item 5): the warnings a reader cannot act on are
filtered by their exact message where a notebook starts, and nothing else is."""

import warnings

import pytest

from workbench import models, notebook


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


def test_the_filtered_warning_is_real():
    """Without the filter, transformers' deprecation is what peft triggers (so the filter above is not idle)."""
    peft = pytest.importorskip("peft")
    model, _ = models.tiny_llama()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        peft.get_peft_model(model, peft.LoraConfig(r=2, target_modules=["q_proj"]))
    assert any("is_gradient_checkpointing" in str(w.message) for w in caught)
