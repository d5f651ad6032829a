"""The usual parameter grouping for GaLore: attention and MLP weight matrices projected, the rest not.

As in GaLore's `torchrun_main.py`: every `nn.Linear` weight whose module name contains "attn" or
"mlp" is projected (in a LLaMA: q/k/v/o and gate/up/down projections); embeddings, the output head
and the norms stay full-rank, in a plain group of the same optimizer at the same learning rate.
"""

from __future__ import annotations

from torch import nn

from ..errors import WorkbenchError

TARGETS = ("attn", "mlp")


def projected_weights(model: nn.Module, targets: tuple[str, ...] = TARGETS) -> list[nn.Parameter]:
    """Trainable weights of the `nn.Linear` modules whose name contains one of `targets`."""
    return [
        module.weight
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and any(t in name for t in targets) and module.weight.requires_grad
    ]


def galore_param_groups(
    model: nn.Module,
    rank: int,
    update_proj_gap: int = 200,
    scale: float = 0.25,
    proj_type: str = "std",
    targets: tuple[str, ...] = TARGETS,
    train_others: bool = True,
) -> list[dict]:
    """[projected group, plain group] for `GaLoreAdamW`/`NaturalGaLoreAdamW`.

    `train_others=False` leaves the non-projected parameters out of the optimizer (for fine-tuning
    only the matrices); freeze them too (`requires_grad_(False)`) so no gradient is computed.
    """
    projected = projected_weights(model, targets)
    if not projected:
        raise WorkbenchError(
            f"no trainable nn.Linear weight has {' or '.join(map(repr, targets))} in its name: nothing to project"
        )
    ids = {id(p) for p in projected}
    others = [p for p in model.parameters() if p.requires_grad and id(p) not in ids]
    groups = [dict(params=projected, rank=rank, update_proj_gap=update_proj_gap, scale=scale, proj_type=proj_type)]
    return groups + ([dict(params=others)] if train_others and others else [])
