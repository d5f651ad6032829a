"""The EchoAtt experiment: how arms choose their layers, and the smoke profile end to end."""

from dataclasses import replace

import numpy as np
import pytest

from workbench.attention.echoatt import check_groups, followers
from workbench.attention.experiment import (
    EchoAttExperiment,
    LiveCurves,
    conclusion,
    eligible_layers,
    get_profile,
    groups_from_followers,
    last_groups,
    random_groups,
    results_markdown,
    similarity_groups,
)
from workbench.errors import WorkbenchError


def test_groups_from_followers_reuse_the_layer_before_each_run():
    layers = eligible_layers(30, None)
    assert layers == list(range(2, 29))
    assert groups_from_followers([4, 7, 8], layers, max_block=3) == [[3, 4], [6, 7, 8]]
    assert groups_from_followers([7, 8], layers, max_block=2) is None  # a chain of 3 in blocks of 2
    assert groups_from_followers([2], layers, max_block=2) is None  # its head, layer 1, is not eligible


@pytest.mark.parametrize("n_shared, max_block", [(6, 2), (12, 2), (12, 3)])
def test_random_and_last_arms_have_the_budget_and_the_structure(n_shared, max_block):
    draws = [random_groups(30, n_shared, max_block, None, seed=s) for s in range(3)]
    for groups in [*draws, last_groups(30, n_shared, max_block, None)]:
        check_groups(groups, 30, max_block)  # consecutive, disjoint, inside the model
        assert len(followers(groups)) == n_shared
        assert all(len(g) <= max_block and 2 <= g[0] and g[-1] <= 28 for g in groups)
    assert len({str(d) for d in draws}) == 3  # the draws differ
    assert random_groups(30, n_shared, max_block, None, seed=1) == draws[1]  # and are reproducible
    assert followers(last_groups(30, n_shared, max_block, None))[-1] == 28
    with pytest.raises(WorkbenchError, match="lower the budget"):
        random_groups(30, 14, 2, None, seed=0)


def test_similarity_arm_follows_the_similarity_matrix():
    similarity = np.full((12, 12), 0.1)
    for head, follower in [(3, 4), (7, 8)]:
        similarity[head, follower] = similarity[follower, head] = 0.9
    assert similarity_groups(similarity, 2, max_block=2, eligible=None) == [[3, 4], [7, 8]]


def test_profiles_refuse_unknown_settings():
    assert get_profile("full").budgets == (6, 12) and get_profile("full", steps=None).steps == 200
    with pytest.raises(WorkbenchError, match="unknown profile"):
        get_profile("huge")
    with pytest.raises(WorkbenchError, match="unknown EchoAtt setting"):
        get_profile("smoke", stepz=3)


def test_smoke_experiment_end_to_end():
    """Every arm runs, parameter counts are exact, everything lands in the run store."""
    from workbench import runs

    experiment = EchoAttExperiment("smoke", progress=False)
    similarity = experiment.attend()
    assert similarity.shape == (8, 8)
    arms = experiment.choose_arms()
    assert [a.kind for a in arms] == ["teacher", "continued", "similarity", "random", "last"]
    smoke = experiment.profile
    experiment.profile = replace(smoke, train_budget_s=1e-3)
    with pytest.warns(UserWarning, match="exceed train_budget_s"):
        assert experiment.fit_steps_to_budget(arms).steps == smoke.eval_every < smoke.steps
    experiment.profile = smoke
    live = LiveCurves()
    result = experiment.adjust(callback=live)
    table = result.table

    teacher = table[table["arm"] == "teacher (sdpa)"].iloc[0]
    per_layer = 2 * 64 * 64 * 3 // 4  # |W_Q| + |W_K| of a d=64, 4-head / 2-KV-head layer: 4096 + 2048
    for arm in arms[2:]:
        row = table[table["arm"] == arm.name].iloc[0]
        assert row["params"] == teacher["params"] - per_layer * arm.n_shared
        assert np.isfinite(row["zero_shot_ppl"]) and np.isfinite(row["ppl"]) and row["prefill_tok_s"] > 0 and row["decode_tok_s"] > 0
    assert set(table["arm"]) >= {"teacher (sdpa)", "teacher (eager)", "teacher + CE (continued)", "n=2 similarity (eager)"}
    assert table.loc[table["arm"] == "teacher (eager)", "kernel"].item() == "eager"
    assert "explicit probabilities" in table.loc[table["arm"] == "n=2 similarity", "kernel"].item()
    assert {trace.name for trace in live.figure.data} == {a.name for a in arms[1:]}

    home_store = runs.store()
    recorded = home_store.runs("echoatt", sweep=result.sweep)
    assert len(recorded) == len(arms) + 1 and set(recorded["status"]) == {"finished"}
    history = home_store.history(result.run_ids["n=2 similarity"])
    assert {"train_loss", "val_ppl", "kd_kl", "kd_hidden", "stage"} <= set(history.columns)
    assert home_store.load_artifact(result.run_ids["table"], "similarity.npy").shape == (8, 8)

    text = conclusion(table)
    for claim in ("4% fewer parameters", "+15% inference speed", "+25% training speed", "no loss in quality"):
        assert claim in text
    assert "| n=2 last |" in results_markdown(table, result.profile, result.device)
