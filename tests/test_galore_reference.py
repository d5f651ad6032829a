"""Our GaLoreAdamW against galore-torch's GaLoreAdamW (the PyPI reference), where it is installed."""

import importlib.util

import pytest
import torch

from workbench.galore.reference import loss_curves

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("galore_torch") is None,
    reason="galore-torch is not installed (optional extra: pip install galore-torch)",
)


@pytest.mark.slow  # hundreds of optimizer steps of both implementations
def test_loss_curve_matches_galore_torch_over_hundreds_of_steps():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops: threads only add waiting on a busy machine
    try:
        table, note = loss_curves(steps=300, rank=16, update_proj_gap=50)
    finally:
        torch.set_num_threads(threads)
    print(f"{note}: max |loss difference| over 300 steps = {table['abs_diff'].max():.2e}")
    assert table["abs_diff"].max() < 1e-3
    assert table["ours"].iloc[-20:].mean() < table["ours"].iloc[:20].mean() - 0.5  # it did learn
