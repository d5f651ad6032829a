"""GaLore and Natural GaLore: memory-lean optimizers as drop-in AdamW replacements (issue 16)."""

from .galore import GaLoreAdamW, optimizer_state_bytes
from .groups import galore_param_groups
from .natural import NaturalGaLoreAdamW, woodbury_inverse_fisher

__all__ = [
    "GaLoreAdamW",
    "NaturalGaLoreAdamW",
    "galore_param_groups",
    "optimizer_state_bytes",
    "woodbury_inverse_fisher",
]
