"""GaLore experiment plumbing that the smoke notebook run does not pin down."""

import pytest
import torch

from workbench.deadline import ArmClock
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
    with pytest.raises(WorkbenchError, match="part must be one of"):
        run_experiment(GaloreProfile.resolve("smoke", part="both"))


@pytest.mark.slow  # 2.0 s quiet: too long for test-fast's minute
def test_every_method_sweeps_its_learning_rate_and_natural_galore_runs_with_the_official_history(
    monkeypatch, tmp_path
):
    """The plan of the pretraining arms, with training replaced by a loss that depends on (method, lr):
    each method's best learning rate on the first seed runs on every seed, and Natural GaLore also runs
    with its history kept across refreshes (the official code) on every seed, at its own best lr."""
    from workbench.galore import experiment

    best = {"adamw": 3e-3, "galore": 6e-3, "natural": 1e-2, "natural_official": 1e-2}
    trained = []

    class FakeRun:
        referenced = False

        def mark_reference(self):
            self.referenced = True

    def fake_train(model, part, method, lr, seed, optimizer, profile, *args, **kwargs):
        resets = {g["reset_history"] for g in optimizer.param_groups if "reset_history" in g}
        trained.append((method, lr, seed, resets))
        loss = 3.0 + abs(lr - best[method]) * 100
        return dict(part="pretrain", method=experiment.METHODS[method], lr=lr, seed=seed, val_loss=loss), [], FakeRun()

    monkeypatch.setattr(experiment, "_train_arm", fake_train)
    monkeypatch.setattr(experiment, "_time_steps", lambda *args, **kwargs: [])
    corpus = tmp_path / "text.txt"
    corpus.write_text("def f(x):\n    return x + 1\n" * 400)
    profile = GaloreProfile.resolve(
        "smoke", corpus=str(corpus), seeds=3, adamw_lrs=(1e-3, 3e-3), galore_lrs=(3e-3, 6e-3, 1e-2),
        natural_lrs=(3e-3, 1e-2),
    )  # fmt: skip
    rows, _, _, reference = experiment._pretrain(profile, torch.device("cpu"), "test", None, False, ArmClock())
    swept = {m: sorted(lr for mm, lr, seed, _ in trained if mm == m and seed == 0) for m in best}
    assert swept == {"adamw": [1e-3, 3e-3], "galore": [3e-3, 6e-3, 1e-2], "natural": [3e-3, 1e-2],
                     "natural_official": [1e-2]}  # fmt: skip
    for method, lr in best.items():
        assert sorted(seed for m, rate, seed, _ in trained if m == method and rate == lr) == [0, 1, 2], method
    assert all(resets == {False} for m, *_, resets in trained if m == "natural_official")
    assert all(resets == {True} for m, *_, resets in trained if m == "natural")
    compared = [r for r in rows if not r["swept"]]
    assert {(r["method"], r["lr"]) for r in compared} == {(experiment.METHODS[m], lr) for m, lr in best.items()}
    assert reference.referenced
