"""The experiment's plan, profile and vocabulary reduction; the smoke profile end to end (slow)."""

import pytest
import torch

from workbench import runs
from workbench.errors import WorkbenchError
from workbench.recursive.experiment import KIND, frequent_vocabulary, loss_config, plan_arms, run_experiment
from workbench.recursive.profile import RecursiveProfile


def names(**overrides) -> list[str]:
    return [arm.name for arm in plan_arms(RecursiveProfile.resolve("full", **overrides), 30)]


def test_full_plan_has_every_arm_of_the_issue_and_fair_baselines_for_every_seed():
    planned = names()
    assert planned[0] == "full model, continued"
    assert {f"B={b} {init}" for b in (2, 3) for init in ("stepwise", "average", "lower")} <= set(planned)
    assert {"reduced depth K=15, scratch", "reduced depth K=10, scratch"} <= set(planned)
    assert {f"B=2 average + SVD LoRA r={r}" for r in (8, 32, 128)} | {"B=2 average + zero LoRA r=128"} <= set(planned)
    # the Stepwise + SVD-LoRA rank sweep (the paper's U-shape)
    assert {f"B=2 stepwise + SVD LoRA r={r}" for r in (8, 32, 128)} <= set(planned)
    # every arm once per seed (seeds=2), not only the Stepwise arm: claims pair arms by seed
    per_seed = 1 + 6 + 2 + 3 + 3 + 1
    assert len(planned) == len(set(planned)) == 2 * per_seed
    arms = plan_arms(RecursiveProfile.resolve("full"), 30)
    assert {a.seed for a in arms} == {0, 1} and sum(a.seed == 1 for a in arms) == per_seed
    assert "B=2 average + SVD LoRA r=8 (seed 1)" in planned


def test_every_trained_arm_has_the_same_loss_and_ce_baselines_are_extra():
    profile = RecursiveProfile.resolve("full")
    arms = plan_arms(profile, 30)
    configs = {(c.alpha, c.beta) for c in (loss_config(a, profile) for a in arms)}
    assert configs == {(profile.kd_alpha, profile.kd_beta)} and profile.kd_beta > 0  # KD for the baselines too
    with_ce = plan_arms(RecursiveProfile.resolve("full", ce_baselines=True, seeds=1), 30)
    ce = [a for a in with_ce if a.loss == "ce"]
    assert {a.kind for a in ce} == {"continued", "scratch"} and len(ce) == 1 + 2
    assert all((loss_config(a, profile).alpha, loss_config(a, profile).beta) == (1.0, 0.0) for a in ce)


def test_subsets_split_the_arms_and_keep_the_references():
    no_lora, lora = set(names(arms="no_lora")), set(names(arms="lora"))
    assert not any("LoRA" in name for name in no_lora)
    assert {"full model, continued", "B=2 stepwise", "B=2 average", "B=2 stepwise (seed 1)"} <= lora
    assert not any("scratch" in name or name.startswith("B=3") for name in lora)
    assert no_lora | lora == set(names())


def test_bad_settings_are_one_line_errors():
    with pytest.raises(WorkbenchError, match="arms must be one of"):
        plan_arms(RecursiveProfile.resolve("full", arms="some"), 30)
    with pytest.raises(WorkbenchError, match="cannot be looped 4 times"):
        plan_arms(RecursiveProfile.resolve("full", loops=(2, 4)), 30)
    with pytest.raises(WorkbenchError, match="unknown setting"):
        RecursiveProfile.resolve("smoke", rank=3)
    with pytest.raises(WorkbenchError, match="must be int"):
        RecursiveProfile.resolve("smoke", steps="many")


def test_frequent_vocabulary_keeps_the_commonest_tokens():
    tokens = torch.tensor([7, 7, 7, 3, 3, 9, 1, 7])
    reduced = frequent_vocabulary(tokens, 3)
    assert reduced.tolist() == [0, 0, 0, 1, 1, 2, 2, 0]  # 7 most frequent, then 3; 9 and 1 share the last id


@pytest.mark.slow
def test_smoke_experiment_runs_every_part_and_records_runs():
    before = runs.store().runs()["id"].max() if not runs.store().runs().empty else 0
    result = run_experiment("smoke", progress=False, loops=(2,), ranks=(4,), seeds=2)
    assert set(result.table["kind"]) == {"teacher", "continued", "recursive", "scratch"}
    assert set(result.table["seed"]) == {0, 1} and result.table["cloze_acc"].between(0, 1).all()
    assert set(result.throughput["costs"]) == {"measured", "work"} and (result.throughput["kv_fills"] >= 0).all()
    assert (result.table["ppl"] > 1).all() and (result.table["epochs"] >= 0).all()
    assert set(result.throughput["scheme"]) == {"static", "csb", "csb_exit", "cdb"}
    assert result.thresholds["rule"].iloc[0] == "oracle" and set(result.exits["stage"]) == {"before", "after"}
    recorded = runs.store().runs(kind=KIND.name)
    new = recorded[recorded["id"] > before]
    assert len(new) == len(result.table) and set(new["status"]) == {"finished"}  # arms + early exit, no teacher run
    assert new["summary"].map(lambda s: "ppl" in s).all()
    from workbench.cards import load_cards

    cards = load_cards(runs.store())
    cards = cards[cards["run_id"].isin(new["id"])]
    assert len(cards) == len(new) - 1 and set(cards["idea"]) == {"recursive"}  # every trained arm, not the early exit
    kinds = cards["run_id"].map(new.set_index("id")["params"].map(lambda p: p.get("arm_kind")))
    looped, full = (cards[kinds == kind].iloc[0] for kind in ("recursive", "continued"))
    assert looped["non_embedding_params"] < full["non_embedding_params"]  # shared layers counted once
    assert looped["eval_spec"].endswith("vocab 2048")  # the reduced vocabulary's evaluation is named apart
