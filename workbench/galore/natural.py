"""Natural GaLore: GaLore whose low-rank gradient is preconditioned by an empirical Fisher.

Natural GaLore (Das, "Natural GaLore: Accelerating GaLore for memory-efficient LLM Training and
Fine-tuning", arXiv:2410.16029, §3). For one projected matrix, with the low-rank gradient
g = vec(R_t) ∈ ℝ^K and the last s of them stacked as G = [g_t, g_{t−1}, …, g_{t−s+1}] ∈ ℝ^{K×s}
(the current one included, as the official code appends it before solving), the damped empirical
Fisher F̂ = λ I + G Gᵀ is inverted through Woodbury's identity with an s×s solve only:

    S = I_s + (1/λ) GᵀG,   y = Gᵀ g,   S z = y  (Cholesky),   g̃ = F̂⁻¹ g = (1/λ) g − (1/λ²) G z

and g̃ replaces g as Adam's input; everything else is GaLore. With s = 1 this is g / (λ + ‖g‖²).
Costs per matrix and step: K·s² for GᵀG plus an s×s Cholesky (batched over the group's matrices
here: one call per step, no host sync), and K·s floats of history in the optimizer state.

The history is a zero-initialised [s, K] buffer written round-robin: zero rows add nothing to
G Gᵀ, so a partly filled history is exactly the shorter G. On a subspace refresh the history is
cleared by default, since rows from the old basis are coordinates in a different space; the
official code keeps it (`reset_history=False` reproduces that).

Memory: with GaLore's one-sided projection K = r·max(m, n), so s = 20 rows of history cost
10·r/min(m, n) times AdamW's two moments of that matrix: more than AdamW at r = d/4. The official
code projects both sides (Tucker), where K = r² and the history stays small.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from ..errors import WorkbenchError
from .galore import GaLoreAdamW


def woodbury_inverse_fisher(grads: torch.Tensor, histories: torch.Tensor, damping: float) -> torch.Tensor:
    """(λI + GᵢGᵢᵀ)⁻¹ gᵢ for a batch: grads [B, K], histories [B, s, K] (rows = past gradients).

    Arithmetic in the inputs' dtype except the s×s Cholesky solve, done in float64 (S's condition
    number is 1 + σ²_max/λ). The subtraction cancels along span(G): in float32 the result carries a
    relative error of about 6e-8·(λ + σ²)/λ there, harmless once Adam normalises it elementwise.
    """
    gram = torch.bmm(histories, histories.transpose(1, 2))  # GᵀG: [B, s, s]
    y = torch.bmm(histories, grads.unsqueeze(-1))  # Gᵀg: [B, s, 1]
    eye = torch.eye(gram.shape[-1], dtype=torch.float64, device=gram.device)
    factor, _ = torch.linalg.cholesky_ex(eye + gram.double() / damping)  # S = L Lᵀ; S is SPD, no error check (no sync)
    z = torch.cholesky_solve(y.double(), factor).to(grads.dtype)  # [B, s, 1]
    return grads / damping - torch.bmm(histories.transpose(1, 2), z).squeeze(-1) / damping**2  # [B, K]


class NaturalGaLoreAdamW(GaLoreAdamW):
    """GaLoreAdamW with Natural GaLore's Fisher preconditioning on projected groups.

    Group keys (defaults from the paper and official code): `history` s = 20, `damping` λ = 1e-3,
    `reset_history` True (clear on subspace refresh; the official code does not).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        correct_bias: bool = True,
        history: int = 20,
        damping: float = 1e-3,
        reset_history: bool = True,
    ):
        if history < 1 or damping <= 0:
            raise WorkbenchError(f"Natural GaLore needs history >= 1 and damping > 0, got {history} and {damping}")
        self._natural_defaults = dict(history=history, damping=damping, reset_history=reset_history)
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, correct_bias=correct_bias)

    def add_param_group(self, param_group: dict) -> None:
        if "rank" in param_group:
            for key, value in self._natural_defaults.items():
                param_group.setdefault(key, value)
        super().add_param_group(param_group)

    def _precondition(
        self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor], refreshed: list[bool]
    ) -> list[torch.Tensor]:
        """g̃ = F̂⁻¹ g per matrix, the s×s solves batched over matrices of the same K."""
        flats = []
        for p, grad, fresh in zip(params, grads, refreshed, strict=True):
            state = self.state[p]
            flat = grad.reshape(-1).to(torch.promote_types(grad.dtype, torch.float32))  # g ∈ ℝ^K, at least float32
            if "history" not in state or (fresh and group["reset_history"]):
                state["history"] = torch.zeros(
                    group["history"], flat.numel(), dtype=flat.dtype, device=flat.device
                )  # [s, K]
                state["history_written"] = 0
            state["history"][state["history_written"] % group["history"]].copy_(flat)  # append before solving
            state["history_written"] += 1
            flats.append(flat)
        out: list[torch.Tensor | None] = [None] * len(grads)
        by_size: dict[int, list[int]] = {}
        for i, flat in enumerate(flats):
            by_size.setdefault(flat.numel(), []).append(i)
        for index in by_size.values():
            natural = woodbury_inverse_fisher(
                torch.stack([flats[i] for i in index]),
                torch.stack([self.state[params[i]]["history"] for i in index]),
                group["damping"],
            )
            for row, i in enumerate(index):
                out[i] = natural[row].view_as(grads[i]).to(grads[i].dtype)
        return out
