"""GaLoreAdamW: Adam whose moments live in a low-rank subspace of each weight's gradient.

GaLore (Zhao et al., arXiv:2403.03507, Algorithm 1), as the reference package galore-torch 1.0
(`GaLoreAdamW`) implements it. For a projected weight W ∈ ℝ^{m×n} with gradient G_t, rank r,
gap T, scale α, learning rate η, moments β₁, β₂:

    if t mod T = 0:  P, Q ← SVD basis of G_t                 (projector.svd_basis, float32)
                     (or subspace iteration from the previous P, Q: `subspace="iteration"`)
    R_t = project(G_t)                                         (m×r or r×n: the optimizer state)
    M_t = β₁ M_{t−1} + (1−β₁) R_t,   V_t = β₂ V_{t−1} + (1−β₂) R_t²
    N_t = M_t / (√V_t + ε)
    W ← W − η √(1−β₂ᵗ)/(1−β₁ᵗ) · α · project_back(N_t)
    W ← W − η λ_wd W                                           (decoupled weight decay, after the step)

with t the step counter *before* its increment, so refreshes happen at t = 0, T, 2T, ... The moments
are not re-projected when the subspace changes (neither are they in the reference). Parameter groups
that carry `rank` are projected (with `update_proj_gap`, `scale`, `proj_type`; defaults 200, 0.25,
"std" as in the official scripts; `subspace` "svd" as in the paper, or "iteration" with
`subspace_iters` warm-started iterations, `projector.iteration_basis`); every other group is the
same Adam on the full gradient, so one optimizer covers the whole model (embeddings, head and
norms stay full-rank).

Robustness: a non-finite gradient at a refresh would make the SVD fail ("ill-conditioned", GaLore
issues #26 and #58, from NaN gradients under fp16 loss scaling). Such a matrix keeps its previous
projector, skips its update for that step (moments and step counter untouched, so the next step
tries the refresh again) and the step warns once. Between refreshes no host sync is made; a
non-finite gradient there propagates as it would in AdamW.

Speed: the elementwise Adam arithmetic runs as `torch._foreach_*` ops over all tensors of a group
(a few kernels per group on a GPU instead of several per tensor); projections and projections back
are one batched matmul per shape of matrix (`_buckets`: in a LLaMA, q/o, k/v, gate/up and down
share shapes), the step back added with one `_foreach_add_`; the refresh is batched the same way.
No host sync between refreshes; one per shape at a refresh (the finiteness check).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable

import torch

from ..errors import WorkbenchError
from .projector import iteration_basis, project, project_back, projection_side, svd_basis

GALORE_DEFAULTS = dict(update_proj_gap=200, scale=0.25, proj_type="std", subspace="svd", subspace_iters=2)
SUBSPACES = ("svd", "iteration")
STATE_KINDS = {
    "exp_avg": "moments",
    "exp_avg_sq": "moments",
    "P": "projectors",
    "Q": "projectors",
    "history": "history",
}


class GaLoreAdamW(torch.optim.Optimizer):
    """Adam with decoupled weight decay; groups with a `rank` key get GaLore's low-rank moments.

    Defaults are galore-torch's (β = (0.9, 0.999), ε = 1e-6, bias correction on), so a run matches
    the reference package step for step.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        correct_bias: bool = True,
    ):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise WorkbenchError(
                f"invalid GaLoreAdamW settings: lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}"
            )
        super().__init__(
            params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, correct_bias=correct_bias)
        )

    def add_param_group(self, param_group: dict) -> None:
        """Fill GaLore's keys for projected groups and check them (a one-line error, not a crash mid-step)."""
        if "rank" in param_group:
            for key, value in GALORE_DEFAULTS.items():
                param_group.setdefault(key, value)
            if int(param_group["rank"]) < 1 or int(param_group["update_proj_gap"]) < 1:
                raise WorkbenchError(
                    f"rank and update_proj_gap must be >= 1: {param_group['rank']}, {param_group['update_proj_gap']}"
                )
            if param_group["subspace"] not in SUBSPACES or int(param_group["subspace_iters"]) < 1:
                raise WorkbenchError(
                    f"subspace must be one of {', '.join(SUBSPACES)} with subspace_iters >= 1: "
                    f"{param_group['subspace']!r}, {param_group['subspace_iters']}"
                )
            params = param_group["params"]
            for p in [params] if isinstance(params, torch.Tensor) else list(params):
                projection_side(p.shape, param_group["proj_type"])  # raises for non-matrices and unknown types
        super().add_param_group(param_group)

    # -- one step -------------------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            if "rank" in group:
                params, grads, refreshed = self._project(group, params)
                grads = self._precondition(group, params, grads, refreshed)
            else:
                grads = [p.grad for p in params]
            if params:
                self._adam(group, params, grads)
        return loss

    def _project(
        self, group: dict, params: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[bool]]:
        """Refresh projectors where t mod T = 0 (skipping matrices whose gradient is not finite),
        and return the kept parameters, their low-rank gradients R and whether each was refreshed."""
        kept, lows, refreshed, skipped = [], [], [], 0
        for bucket in _buckets(params):
            gap = group["update_proj_gap"]
            fresh = [p for p in bucket if "side" not in self.state[p] or self.state[p]["step"] % gap == 0]
            if fresh:
                finite = torch.stack([torch.isfinite(p.grad).all() for p in fresh]).tolist()  # one sync per refresh
                skipped += finite.count(False)
                bad = {id(p) for p, ok in zip(fresh, finite, strict=True) if not ok}
                bucket = [p for p in bucket if id(p) not in bad]
                self._refresh(group, [p for p in fresh if id(p) not in bad])
            if not bucket:
                continue
            grads = torch.stack([p.grad for p in bucket])  # [B, m, n]
            low = project(grads, _stacked(self.state, bucket, "P"), _stacked(self.state, bucket, "Q"))  # [B, ·, ·]
            kept += bucket
            lows += list(low.unbind(0))
            fresh_ids = {id(p) for p in fresh}
            refreshed += [id(p) in fresh_ids for p in bucket]
        if skipped:
            warnings.warn(
                f"GaLore: non-finite gradient in {skipped} projected matrices at a subspace refresh; "
                f"kept their projectors and skipped their update this step",
                RuntimeWarning,
                stacklevel=3,
            )
        return kept, lows, refreshed

    def _refresh(self, group: dict, params: list[torch.Tensor]) -> None:
        """New P and/or Q for `params` (one shape): a full SVD each, or subspace iteration batched
        over them, warm-started from their previous bases where all of them have one."""
        if not params:
            return
        side = projection_side(params[0].shape, group["proj_type"])
        for p in params:
            self.state[p].setdefault("step", 0)
            self.state[p]["side"] = side
        if group["subspace"] == "svd":
            for p in params:
                for name, basis in zip(("P", "Q"), svd_basis(p.grad, group["rank"], side), strict=True):
                    if basis is not None:
                        self.state[p][name] = basis
            return
        grads = torch.stack([p.grad for p in params])  # [B, m, n]
        for name, one_side in (("P", "left"), ("Q", "right")):
            if side not in (one_side, "full"):
                continue
            previous = _stacked(self.state, params, name)
            basis = iteration_basis(grads, group["rank"], one_side, previous, group["subspace_iters"])
            for p, new in zip(params, basis[0] if name == "P" else basis[1], strict=True):
                self.state[p][name] = new

    def _precondition(
        self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor], refreshed: list[bool]
    ) -> list[torch.Tensor]:
        """What Adam sees of the low-rank gradient: R itself here; Natural GaLore overrides it."""
        return grads

    def _adam(self, group: dict, params: list[torch.Tensor], grads: list[torch.Tensor]) -> None:
        """Adam on `grads` (low-rank or full), the step projected back, then decoupled weight decay."""
        beta1, beta2 = group["betas"]
        states = [self.state[p] for p in params]
        for state, grad in zip(states, grads, strict=True):
            state.setdefault("step", 0)
            if "exp_avg" not in state:
                state["exp_avg"] = torch.zeros_like(grad)  # M: [m, r], [r, n] or [m, n]
                state["exp_avg_sq"] = torch.zeros_like(grad)  # V: same shape
            state["step"] += 1
        exp_avgs, exp_avg_sqs = [s["exp_avg"] for s in states], [s["exp_avg_sq"] for s in states]
        torch._foreach_mul_(exp_avgs, beta1)
        torch._foreach_add_(exp_avgs, grads, alpha=1.0 - beta1)
        torch._foreach_mul_(exp_avg_sqs, beta2)
        torch._foreach_addcmul_(exp_avg_sqs, grads, grads, value=1.0 - beta2)
        denoms = torch._foreach_sqrt(exp_avg_sqs)
        torch._foreach_add_(denoms, group["eps"])
        steps = torch._foreach_div(exp_avgs, denoms)  # N = M / (√V + ε)
        same: dict[tuple, list[int]] = {}  # (projected?, shape, t): one batched update each
        for i, (p, state) in enumerate(zip(params, states, strict=True)):
            same.setdefault(("side" in state, tuple(p.shape), state["step"]), []).append(i)
        for (projected, _, t), index in same.items():
            step_size = group["lr"]
            if group["correct_bias"]:
                step_size = step_size * math.sqrt(1.0 - beta2**t) / (1.0 - beta1**t)
            chosen = [params[i] for i in index]
            if projected:  # α · P N Q for every matrix of the shape at once
                full = project_back(
                    torch.stack([steps[i] for i in index]),
                    _stacked(self.state, chosen, "P"),
                    _stacked(self.state, chosen, "Q"),
                    group["scale"],
                )
                torch._foreach_add_(chosen, list(full.unbind(0)), alpha=-step_size)
            else:
                torch._foreach_add_(chosen, [steps[i] for i in index], alpha=-step_size)
        if group["weight_decay"] > 0.0:
            torch._foreach_add_(params, params, alpha=-group["lr"] * group["weight_decay"])


def _buckets(params: list[torch.Tensor]) -> list[list[torch.Tensor]]:
    """The projected matrices grouped by shape (and device, dtype): each group is one batched matmul."""
    groups: dict[tuple, list[torch.Tensor]] = {}
    for p in params:
        groups.setdefault((tuple(p.shape), p.dtype, p.device), []).append(p)
    return list(groups.values())


def _stacked(state: dict, params: list[torch.Tensor], name: str) -> torch.Tensor | None:
    """The stacked bases `name` ("P" or "Q") of `params` [B, ...], or None where any of them has none."""
    if not all(name in state[p] for p in params):
        return None
    return torch.stack([state[p][name] for p in params])


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Bytes of the optimizer's state tensors by kind: Adam moments, GaLore projectors, Natural
    GaLore's gradient history (scalars such as step counters are left out); "total" sums them."""
    sizes = {"moments": 0, "projectors": 0, "history": 0}
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and key in STATE_KINDS:
                sizes[STATE_KINDS[key]] += value.numel() * value.element_size()
    return sizes | {"total": sum(sizes.values())}
