"""Side by side with the reference implementation: galore-torch's `GaLoreAdamW` (PyPI, optional extra).

galore-torch 1.0's `__init__` imports its 8-bit optimizer, which imports bitsandbytes at import
time. Only `GaLoreAdamW` is needed here, so where bitsandbytes cannot be imported the package's
pure-Python modules `adamw` and `galore_projector` are loaded without running its `__init__`
(nothing of bitsandbytes is stubbed or used), and the note says so.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import types

import pandas as pd
import torch

from ..errors import WorkbenchError
from ..models import tiny_llama
from ..train import causal_lm_loss
from .galore import GaLoreAdamW
from .groups import galore_param_groups

INSTALL_HINT = "pip install galore-torch (the workbench[galore] extra)"


def reference_optimizer() -> tuple[type, str]:
    """(galore-torch's GaLoreAdamW class, a note on how it was imported); WorkbenchError if absent."""
    spec = importlib.util.find_spec("galore_torch")
    if spec is None:
        raise WorkbenchError(f"galore-torch is not installed: {INSTALL_HINT}")
    version = importlib.metadata.version("galore-torch")
    try:
        from galore_torch import GaLoreAdamW as Reference

        return Reference, f"galore-torch {version}"
    except ImportError as error:  # bitsandbytes missing or broken
        reason = str(error).splitlines()[0]
    if "galore_torch" not in sys.modules:
        package = types.ModuleType("galore_torch")
        package.__path__ = list(spec.submodule_search_locations)
        sys.modules["galore_torch"] = package
    Reference = importlib.import_module("galore_torch.adamw").AdamW
    return Reference, f"galore-torch {version} (package __init__ skipped: {reason})"


def loss_curves(
    steps: int = 300,
    rank: int = 16,
    update_proj_gap: int = 50,
    lr: float = 0.01,
    scale: float = 0.25,
    weight_decay: float = 0.01,
    batch_size: int = 8,
    block_len: int = 64,
    vocab_size: int = 512,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> tuple[pd.DataFrame, str]:
    """Training loss per step of the same tiny LLaMA (2 layers, d=64) under our `GaLoreAdamW` and
    galore-torch's, from the same initial weights on the same batches, in float32.

    Returns (table with columns step, ours, reference, abs_diff; the reference's import note).
    """
    reference_class, note = reference_optimizer()
    generator = torch.Generator().manual_seed(seed)
    data = torch.randint(0, vocab_size, (steps, batch_size, block_len + 1), generator=generator)
    data[..., 1::2] = (data[..., 0::2][..., : data[..., 1::2].shape[-1]] * 7 + 3) % vocab_size  # learnable structure
    curves = {}
    for name in ("ours", "reference"):
        model, _ = tiny_llama(vocab_size=vocab_size, max_len=block_len, seed=seed)
        model = model.to(device).train()
        groups = galore_param_groups(model, rank=rank, update_proj_gap=update_proj_gap, scale=scale)
        if name == "ours":
            optimizer = GaLoreAdamW(groups, lr=lr, weight_decay=weight_decay)
        else:
            optimizer = reference_class(groups, lr=lr, weight_decay=weight_decay, no_deprecation_warning=True)
        losses = []
        for step in range(steps):
            loss = causal_lm_loss(model, data[step].to(device))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.detach())
        curves[name] = torch.stack(losses).cpu().numpy()
    table = pd.DataFrame({"step": range(1, steps + 1), "ours": curves["ours"], "reference": curves["reference"]})
    table["abs_diff"] = (table["ours"] - table["reference"]).abs()
    return table, note
