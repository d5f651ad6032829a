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
        budgets=(4e9,),
        steps=(4,),
        samplers=("ancestral",),
        timing_batches=(1,),
        n_prompts=2,
        guidance_ws=(0.0,),
        guidance_gen_ws=(0.0,),
    )
    experiment = DiffusionExperiment(settings, progress=False)
    quality, speed = experiment.sampling()
    assert set(quality["model"]) == {"held-out text", "ARM t1 C=4.0e+09", "MDM t1 C=4.0e+09"}
    assert (quality["judge_ppl"] > 1).all() and len(speed) == 2
    assert quality["epochs"].iloc[1:].gt(0).all()
    guidance = experiment.guidance()
    assert guidance["chain_rule_nll"].notna().all()
    table = runs.store().runs(kind=KIND.name, sweep=experiment.sweep)
    assert set(table["name"]) >= {"ARM t1 C=4.0e+09", "MDM t1 C=4.0e+09", "sampling", "guidance"}
    assert set(table["status"]) == {"finished"}


def test_bad_settings_are_one_line_errors():
    with pytest.raises(WorkbenchError, match="part"):
        DiffusionProfile.resolve("smoke", part="everything")
    with pytest.raises(WorkbenchError, match="size"):
        DiffusionProfile.resolve("smoke", sizes=("huge",))
    with pytest.raises(WorkbenchError, match="block_len"):
        DiffusionProfile.resolve("smoke", gen_len=64)
