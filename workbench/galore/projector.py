"""GaLore's gradient projector: a rank-r basis from a truncated SVD of the gradient itself.

GaLore (Zhao et al., "GaLore: Memory-Efficient LLM Training by Gradient Low-Rank Projection",
arXiv:2403.03507) keeps Adam's moments for a weight W ∈ ℝ^{m×n} in a rank-r subspace of its
gradient G. Every T_gap steps the subspace is refreshed from the thin SVD G = U Σ Vᵀ (in float32):

    left  side:  P = U[:, :r] ∈ ℝ^{m×r},  R = Pᵀ G ∈ ℝ^{r×n},   back: ΔW = α · P N
    right side:  Q = Vᵀ[:r] ∈ ℝ^{r×n},    R = G Qᵀ ∈ ℝ^{m×r},   back: ΔW = α · N Q
    full:        both,                   R = Pᵀ G Qᵀ ∈ ℝ^{r×r}, back: ΔW = α · P N Q

where N is Adam's normalised step computed on R and α is `scale`. Which side is used is
`proj_type`, with the reference package's names (galore-torch 1.0): "std" projects the smaller
side (right when m ≥ n, so the state is m×r or r×n with the small dimension r), "reverse_std"
the larger, "left"/"right" a fixed side, "full" both. The side is fixed from the weight's shape
once, not re-derived from the low-rank tensor's shape on the way back: a square low-rank tensor
makes that guess ambiguous (the bug ms-swift fixed in galore-torch's `reverse_std`).

The functions are pure: the optimizer keeps P and Q as tensors in its state, so
`state_dict()` carries the projectors and a resumed run continues bit for bit.

The full SVD is the expensive part of GaLore (0.9 s per refresh for the 56 matrices of a 47M
LLaMA on an H200; cuSOLVER's SVD of one matrix runs mostly serially). `iteration_basis` gives the
same rank-r subspace for a fraction of that: subspace iteration (Halko, Martinsson & Tropp,
"Finding structure with randomness", arXiv:0909.4061, Algorithm 4.4) started from the previous
refresh's basis, which is already close when the gradient's subspace drifts slowly, followed by
a Rayleigh–Ritz step that rotates the basis onto the approximate singular vectors in GaLore's
order; all of it batched over matrices of one shape (matmuls, QR, an r×r eigendecomposition).
"""

from __future__ import annotations

import torch

from ..errors import WorkbenchError

PROJ_TYPES = ("std", "reverse_std", "left", "right", "full")


def projection_side(shape: torch.Size | tuple[int, ...], proj_type: str) -> str:
    """ "left", "right" or "full" for a gradient of `shape` (m, n) under `proj_type`."""
    if proj_type not in PROJ_TYPES:
        raise WorkbenchError(f"unknown proj_type {proj_type!r}: use one of {', '.join(PROJ_TYPES)}")
    if len(shape) != 2:
        raise WorkbenchError(
            f"GaLore projects matrices; got a parameter of shape {tuple(shape)}: put it in a plain AdamW group"
        )
    m, n = shape
    if proj_type == "std":
        return "right" if m >= n else "left"
    if proj_type == "reverse_std":
        return "left" if m >= n else "right"
    return proj_type


def svd_basis(grad: torch.Tensor, rank: int, side: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(P, Q): P = U[:, :r] (left/full, else None), Q = Vᵀ[:r] (right/full, else None) of the
    thin SVD of `grad` [m, n], computed in float32 and returned in the gradient's dtype."""
    u, _, vh = torch.linalg.svd(grad.float(), full_matrices=False)  # u [m, k], vh [k, n], k = min(m, n)
    p = u[:, :rank].to(grad.dtype) if side in ("left", "full") else None  # [m, r]
    q = vh[:rank, :].to(grad.dtype) if side in ("right", "full") else None  # [r, n]
    return p, q


def iteration_basis(
    grads: torch.Tensor, rank: int, side: str, previous: torch.Tensor | None, iters: int
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """(P, Q) as `svd_basis` gives them, for a batch of gradients [B, m, n], by subspace iteration.

    For the right side, with A = G (float32) and X₀ = the previous Qᵀ [B, n, r] (or, with
    `previous` None, a fixed Gaussian matrix and three more iterations): `iters` times
    Y = orth(A X), X = orth(Aᵀ Y); then Rayleigh–Ritz: the eigenvectors W of the r×r matrix
    (A X)ᵀ(A X), largest first, give Q = (X W)ᵀ, so row i approximates the i-th right singular
    vector. The left side runs the same on Gᵀ (P = X W). `previous`: [B, r, n] (Q) or [B, m, r] (P).
    Each iteration multiplies the error along the (r+1)-th direction by (σ_{r+1}/σ_r)². "full"
    projects both sides: call this once per side.
    """
    if side not in ("left", "right"):
        raise WorkbenchError(f"iteration_basis computes one side, 'left' or 'right', not {side!r}")
    a = grads.float() if side == "right" else grads.float().transpose(1, 2)  # [B, m', n']: right vectors wanted
    if previous is None:
        generator = torch.Generator(device=a.device).manual_seed(0)
        x = torch.randn(a.shape[0], a.shape[2], rank, generator=generator, device=a.device)  # [B, n', r]
        iters += 3
    else:
        x = previous.float().transpose(1, 2) if side == "right" else previous.float()  # [B, n', r]
    for _ in range(iters):
        y = torch.linalg.qr(torch.bmm(a, x)).Q  # [B, m', r]
        x = torch.linalg.qr(torch.bmm(a.transpose(1, 2), y)).Q  # [B, n', r]
    ax = torch.bmm(a, x)  # [B, m', r]
    _, vectors = torch.linalg.eigh(torch.bmm(ax.transpose(1, 2), ax).double())  # ascending eigenvalues
    basis = torch.bmm(x, vectors.flip(-1).to(x.dtype)).to(grads.dtype)  # [B, n', r], largest first
    return (None, basis.transpose(1, 2)) if side == "right" else (basis, None)


def project(grad: torch.Tensor, p: torch.Tensor | None, q: torch.Tensor | None) -> torch.Tensor:
    """R = Pᵀ G, G Qᵀ or Pᵀ G Qᵀ: the low-rank gradient (of one matrix, or of a batch [B, m, n])."""
    low = grad if p is None else torch.matmul(p.transpose(-2, -1), grad)  # [r, n]
    return low if q is None else torch.matmul(low, q.transpose(-2, -1))  # [m, r] or [r, r]


def project_back(low: torch.Tensor, p: torch.Tensor | None, q: torch.Tensor | None, scale: float) -> torch.Tensor:
    """α · (P N), α · (N Q) or α · (P N Q): a low-rank step back in the weight's [m, n] space (batched too)."""
    full = low if p is None else torch.matmul(p, low)  # [m, ·]
    full = full if q is None else torch.matmul(full, q)  # [m, n]
    return full * scale
