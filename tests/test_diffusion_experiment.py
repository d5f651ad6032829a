"""The experiment's parts run on their own (a GPU run may be split by `part`), on tiny models."""

import pytest
import torch

from workbench import runs
from workbench.diffusion.experiment import KIND, DiffusionExperiment
from workbench.diffusion.profile import DiffusionProfile
from workbench.errors import WorkbenchError


@pytest.mark.slow
def test_sampling_part_trains_its_own_models_and_records_runs():
    torch.set_num_threads(1)
    settings = DiffusionProfile.resolve(
        "smoke",
        part="sampling",
        sizes=("t1",),
        budgets=(3e8,),
        seeds=(0, 1),
        steps=(4,),
        samplers=("ancestral",),
        timing_batches=(1,),
        n_prompts=2,
        guidance_ws=(0.0,),
        guidance_gen_ws=(0.0,),
    )
    experiment = DiffusionExperiment(settings, progress=False)
    quality, speed = experiment.sampling()
    assert set(quality["model"]) == {"held-out text", "ARM t1 C=3.0e+08", "MDM t1 C=3.0e+08"}
    assert (quality["judge_ppl"] > 1).all() and len(speed) == 4 and set(speed["seed"]) == {0, 1}
    assert quality["epochs"].iloc[1:].gt(0).all()
    guidance = experiment.guidance()
    assert guidance["chain_rule_nll"].notna().all() and set(guidance["seed"]) == {0, 1}
    assert guidance[["choice_acc_tune", "choice_acc_test", "arm_choice_acc_test"]].notna().all().all()
    table = runs.store().runs(kind=KIND.name, sweep=experiment.sweep)
    assert set(table["name"]) >= {f"{arm} t1 C=3.0e+08 seed {s}" for arm in ("ARM", "MDM") for s in (0, 1)}
    assert set(table["name"]) >= {"sampling", "guidance"}
    assert set(table["status"]) == {"finished"}


def test_bad_settings_are_one_line_errors():
    with pytest.raises(WorkbenchError, match="part"):
        DiffusionProfile.resolve("smoke", part="everything")
    with pytest.raises(WorkbenchError, match="size"):
        DiffusionProfile.resolve("smoke", sizes=("huge",))
    with pytest.raises(WorkbenchError, match="block_len"):
        DiffusionProfile.resolve("smoke", gen_len=64)
