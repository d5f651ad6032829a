"""GaLore's subspace by warm-started subspace iteration: the full SVD's subspace, checked by principal angles
and captured energy on constructed low-rank-plus-noise matrices, and the same training in the optimizer."""

import pytest
import torch

from workbench.errors import WorkbenchError
from workbench.galore import GaLoreAdamW, NaturalGaLoreAdamW, galore_param_groups
from workbench.galore.projector import iteration_basis, svd_basis
from workbench.models import tiny_llama
from workbench.train import causal_lm_loss


def low_rank_plus_noise(batch: int, m: int, n: int, spectrum: torch.Tensor, noise: float, seed: int) -> torch.Tensor:
    """[batch, m, n]: U diag(spectrum) Vᵀ with random orthonormal U, V, plus Gaussian noise of std `noise`."""
    generator = torch.Generator().manual_seed(seed)
    k = len(spectrum)
    u = torch.linalg.qr(torch.randn(batch, m, k, generator=generator)).Q
    v = torch.linalg.qr(torch.randn(batch, n, k, generator=generator)).Q
    return u @ torch.diag_embed(spectrum.expand(batch, k)) @ v.transpose(1, 2) + noise * torch.randn(
        batch, m, n, generator=generator
    )


def rows(basis: torch.Tensor, side: str) -> torch.Tensor:
    """The basis as orthonormal rows [r, dim] whatever the side (P is [m, r], Q is [r, n])."""
    return basis.T if side == "left" else basis


def max_principal_angle_deg(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest principal angle between the row spaces of orthonormal a, b [r, dim]."""
    cosines = torch.linalg.svdvals(a.double() @ b.double().T).clamp(max=1.0)
    return float(torch.rad2deg(torch.acos(cosines.min())))


def captured_energy(grad: torch.Tensor, basis: torch.Tensor, side: str) -> float:
    """‖R‖² / ‖G‖²: the share of the gradient's energy the projection keeps."""
    low = basis.T @ grad if side == "left" else grad @ basis.T
    return float(low.pow(2).sum() / grad.pow(2).sum())


def pick(bases: tuple, side: str) -> torch.Tensor:
    return bases[0] if side == "left" else bases[1]


@pytest.mark.parametrize("side, shape", [("right", (96, 40)), ("left", (40, 96))])
@pytest.mark.parametrize("warm", [True, False])
def test_subspace_with_a_gap_is_the_svd_subspace(side, shape, warm):
    rank, spectrum = 8, torch.cat([torch.linspace(10, 5, 8), torch.full((8,), 0.5)])  # σ_8 / σ_9 = 10
    grads = low_rank_plus_noise(3, *shape, spectrum, noise=0.01, seed=0)
    drifted = low_rank_plus_noise(3, *shape, spectrum, noise=0.01, seed=0) + 0.1 * low_rank_plus_noise(
        3, *shape, spectrum, noise=0.0, seed=1
    )
    previous = torch.stack([pick(svd_basis(g, rank, side), side) for g in grads]) if warm else None
    got = pick(iteration_basis(drifted, rank, side, previous, iters=2), side)
    for i in range(3):
        want = pick(svd_basis(drifted[i], rank, side), side)
        assert max_principal_angle_deg(rows(got[i], side), rows(want, side)) < 1.0
        assert torch.allclose(rows(got[i], side) @ rows(got[i], side).T, torch.eye(rank), atol=1e-5)  # orthonormal
        # Rayleigh–Ritz: the leading vector is the leading singular vector (up to sign), as GaLore's order has it
        assert abs(float(rows(got[i], side)[0] @ rows(want, side)[0])) > 0.999


@pytest.mark.parametrize("drift, kept", [(0.3, 0.99), (1.0, 0.97)])
def test_without_a_gap_the_energy_is_still_the_svds(drift, kept):
    """A slowly decaying spectrum (σ_{i+1}/σ_i = 0.9) and a gradient that drifted since the last refresh: the
    basis rotates inside the leading directions, but the projection keeps what the SVD's keeps, within 1-3%."""
    rank, spectrum = 16, 10 * 0.9 ** torch.arange(48.0)
    grads = low_rank_plus_noise(2, 200, 80, spectrum, noise=0.05, seed=2)
    drifted = grads + drift * low_rank_plus_noise(2, 200, 80, spectrum, noise=0.05, seed=3)
    previous = torch.stack([svd_basis(g, rank, "right")[1] for g in grads])
    _, got = iteration_basis(drifted, rank, "right", previous, iters=2)
    for i in range(2):
        best = captured_energy(drifted[i], svd_basis(drifted[i], rank, "right")[1], "right")
        assert captured_energy(drifted[i], got[i], "right") > kept * best
        if drift == 1.0:  # the refresh matters: the previous basis alone keeps much less
            assert captured_energy(drifted[i], previous[i], "right") < 0.8 * best


def test_one_side_only():
    with pytest.raises(WorkbenchError):
        iteration_basis(torch.randn(1, 8, 6), 2, "full", None, iters=1)


@pytest.mark.slow  # 60 training steps per optimizer: ~10 s quiet, ~30 s on a loaded machine
@pytest.mark.parametrize("optimizer", [GaLoreAdamW, NaturalGaLoreAdamW])
def test_training_with_iteration_follows_training_with_the_svd(optimizer):
    """Same tiny LLaMA, same batches, refresh every 5 steps: the loss curves agree."""
    generator = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (30, 8, 33), generator=generator)
    data[..., 1::2] = (data[..., 0::2][..., :16] * 7 + 3) % 256  # learnable structure
    curves = {}
    for subspace in ("svd", "iteration"):
        model = tiny_llama(vocab_size=256, max_len=32, seed=0)[0].train()
        groups = galore_param_groups(model, rank=8, update_proj_gap=5)
        groups[0]["subspace"] = subspace
        opt = optimizer(groups, lr=1e-2)
        losses = []
        for batch in data:
            loss = causal_lm_loss(model, batch)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            losses.append(loss.item())
        curves[subspace] = torch.tensor(losses)
        if subspace == "iteration":
            assert all(s["Q"].shape[0] == 8 for s in opt.state.values() if "Q" in s)
    assert curves["iteration"][-1] < 0.8 * curves["iteration"][0]  # it trains
    assert (curves["iteration"] - curves["svd"]).abs().max() < 0.05 * curves["svd"][0]


def test_bad_subspace_settings_are_one_line_errors():
    model = tiny_llama(seed=0)[0]
    for key, value in (("subspace", "qr"), ("subspace_iters", 0)):
        groups = galore_param_groups(model, rank=4)
        groups[0][key] = value
        with pytest.raises(WorkbenchError):
            GaLoreAdamW(groups)
