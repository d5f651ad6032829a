"""GaLore experiment plumbing that the smoke notebook run does not pin down."""

import pytest

from workbench.errors import WorkbenchError
from workbench.galore.experiment import _eval_steps, lora_rank, run_experiment
from workbench.galore.groups import projected_weights
from workbench.galore.profile import GaloreProfile
from workbench.models import MODEL_SIZES, tiny_llama


def test_lora_rank_matches_galore_state_budget():
    model, _ = tiny_llama(**MODEL_SIZES["tiny"], vocab_size=64)
    shapes = [tuple(p.shape) for p in projected_weights(model)]
    rank = 16
    galore = sum((2 * max(s) + min(s)) * min(rank, min(s)) for s in shapes)  # moments + projector floats
    per_rank = sum(3 * (m + n) for m, n in shapes)  # adapters A, B and their two Adam moments
    r = lora_rank(model, rank)
    assert abs(r * per_rank - galore) <= per_rank / 2  # the nearest integer rank
    assert lora_rank(model, 1) >= 1


def test_evaluation_steps_end_at_the_budget():
    assert _eval_steps(600, 50)[:3] == [50, 100, 150] and _eval_steps(600, 50)[-1] == 600
    assert _eval_steps(10, 4) == [4, 8, 10]


def test_profile_presets_and_bad_settings():
    full, smoke = GaloreProfile.resolve("full"), GaloreProfile.resolve("smoke")
    assert 0.01 in full.galore_lrs and full.rank == 128 and full.update_proj_gap == 200
    assert len(full.adamw_lrs) == len(full.galore_lrs) == len(full.natural_lrs) == 3  # a sweep per method
    assert full.history == 20 and full.damping == 1e-3 and full.reset_history
    assert smoke.size == "tiny" and smoke.ft_model == "tiny"
    with pytest.raises(WorkbenchError, match="rank must be int"):
        GaloreProfile.resolve("smoke", rank="big")
    with pytest.raises(WorkbenchError, match="unknown part"):
        run_experiment(GaloreProfile.resolve("smoke", part="both"))
