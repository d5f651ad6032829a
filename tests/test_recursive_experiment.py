"""The experiment's plan, profile and vocabulary reduction; the smoke profile end to end (slow)."""

import pytest
import torch

from workbench import runs
from workbench.errors import WorkbenchError
from workbench.recursive.experiment import KIND, frequent_vocabulary, plan_arms, run_experiment
from workbench.recursive.profile import RecursiveProfile


def names(**overrides) -> list[str]:
    return [arm.name for arm in plan_arms(RecursiveProfile.resolve("full", **overrides), 30)]


def test_full_plan_has_every_arm_of_the_issue_and_fair_baselines():
    planned = names()
    assert planned[0] == "full model, continued"
    assert {f"B={b} {init}" for b in (2, 3) for init in ("stepwise", "average", "lower")} <= set(planned)
    assert {"reduced depth K=15, scratch", "reduced depth K=10, scratch"} <= set(planned)
    assert {f"B=2 average + SVD LoRA r={r}" for r in (8, 32, 128)} | {"B=2 average + zero LoRA r=128"} <= set(planned)
    assert {"B=2 stepwise (seed 1)", "B=2 stepwise (seed 2)"} <= set(planned)
    assert len(planned) == len(set(planned)) == 1 + 6 + 2 + 4 + 2


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
    result = run_experiment("smoke", progress=False, loops=(2,), ranks=(4,), spread_seeds=2)
    assert set(result.table["kind"]) == {"teacher", "continued", "recursive", "scratch"}
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
