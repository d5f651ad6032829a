"""GaLore and Natural GaLore optimizers against hand-written references (CPU, tiny tensors)."""

import io
import math
import warnings

import pytest
import torch
from torch import nn

from workbench.errors import WorkbenchError
from workbench.galore import (
    GaLoreAdamW,
    NaturalGaLoreAdamW,
    galore_param_groups,
    optimizer_state_bytes,
    woodbury_inverse_fisher,
)
from workbench.galore.projector import projection_side


def _weights(*shapes, seed=0):
    torch.manual_seed(seed)
    return [nn.Parameter(torch.randn(*shape)) for shape in shapes]


def _set_grads(params, step, seed=100):
    generator = torch.Generator().manual_seed(seed + step)
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator).to(p.dtype)


def test_first_step_equals_hand_written_galore():
    (w,) = _weights((12, 8))
    w0 = w.detach().clone()
    _set_grads([w], 0)
    g = w.grad.clone()
    lr, rank, scale, eps, wd = 0.1, 3, 0.5, 1e-6, 0.01
    GaLoreAdamW([dict(params=[w], rank=rank, scale=scale)], lr=lr, weight_decay=wd).step()
    # m >= n: right side, Q = Vᵀ[:r]; R = G Qᵀ; after one step M = 0.1 R, V = 0.001 R², bias-corrected.
    q = torch.linalg.svd(g, full_matrices=False)[2][:rank]
    r = g @ q.T
    n = (0.1 * r) / ((0.001 * r * r).sqrt() + eps)
    step_size = lr * math.sqrt(1 - 0.999) / (1 - 0.9)
    expected = w0 - step_size * scale * (n @ q)
    expected = expected - lr * wd * expected
    torch.testing.assert_close(w.detach(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "shape, proj_type, moment_shape, projectors",
    [
        ((12, 8), "std", (12, 3), {"Q": (3, 8)}),
        ((8, 12), "std", (3, 12), {"P": (8, 3)}),
        ((12, 8), "reverse_std", (3, 8), {"P": (12, 3)}),
        ((12, 8), "full", (3, 3), {"P": (12, 3), "Q": (3, 8)}),
        ((12, 8), "left", (3, 8), {"P": (12, 3)}),
    ],
)
def test_state_shapes_are_low_rank(shape, proj_type, moment_shape, projectors):
    (w,) = _weights(shape)
    optimizer = GaLoreAdamW([dict(params=[w], rank=3, proj_type=proj_type)])
    _set_grads([w], 0)
    optimizer.step()
    state = optimizer.state[w]
    assert state["exp_avg"].shape == state["exp_avg_sq"].shape == moment_shape
    assert {k: tuple(state[k].shape) for k in ("P", "Q") if k in state} == projectors


def test_reverse_std_square_low_rank_projects_back_on_its_own_side():
    """A square low-rank gradient (r = n) must not make project-back guess the side from its shape."""
    (w,) = _weights((8, 6))
    w0 = w.detach().clone()
    _set_grads([w], 0)
    g = w.grad.clone()
    GaLoreAdamW([dict(params=[w], rank=6, proj_type="reverse_std", scale=1.0)], lr=0.01).step()
    assert projection_side((8, 6), "reverse_std") == "left"
    p = torch.linalg.svd(g, full_matrices=False)[0][:, :6]
    r = p.T @ g  # [6, 6]
    n = (0.1 * r) / ((0.001 * r * r).sqrt() + 1e-6)
    expected = w0 - 0.01 * math.sqrt(0.001) / 0.1 * (p @ n)
    torch.testing.assert_close(w.detach(), expected, rtol=1e-5, atol=1e-6)


def test_plain_group_is_adamw_with_decoupled_weight_decay():
    (w,) = _weights((5, 4))
    expected, m, v = w.detach().clone(), torch.zeros(5, 4), torch.zeros(5, 4)
    optimizer = GaLoreAdamW([w], lr=0.01, weight_decay=0.1)
    for step in range(1, 6):
        _set_grads([w], step)
        optimizer.step()
        m, v = 0.9 * m + 0.1 * w.grad, 0.999 * v + 0.001 * w.grad**2
        expected = expected - 0.01 * math.sqrt(1 - 0.999**step) / (1 - 0.9**step) * m / (v.sqrt() + 1e-6)
        expected = expected - 0.01 * 0.1 * expected  # decoupled, after the step
    torch.testing.assert_close(w.detach(), expected, rtol=1e-5, atol=1e-6)


def test_projector_refreshes_every_gap_only():
    (w,) = _weights((10, 6))
    optimizer = GaLoreAdamW([dict(params=[w], rank=2, update_proj_gap=3)])
    seen = []
    for step in range(7):
        _set_grads([w], step)
        optimizer.step()
        seen.append(optimizer.state[w]["Q"].clone())
    changed = [not torch.equal(a, b) for a, b in zip(seen, seen[1:])]
    assert changed == [False, False, True, False, False, True]  # new bases at t = 3 and 6


def test_woodbury_equals_dense_solve():
    torch.manual_seed(0)
    grads, histories, damping = torch.randn(3, 40), 0.3 * torch.randn(3, 5, 40), 1e-2
    natural = woodbury_inverse_fisher(grads, histories, damping)
    for g, h, got in zip(grads.double(), histories.double(), natural):
        fisher = damping * torch.eye(40, dtype=torch.float64) + h.T @ h  # λI + G Gᵀ, G = hᵀ ∈ ℝ^{K×s}
        torch.testing.assert_close(got.double(), torch.linalg.solve(fisher, g), rtol=1e-5, atol=1e-5)


def test_woodbury_with_one_gradient_is_normalised_gradient():
    torch.manual_seed(1)
    g = 0.05 * torch.randn(1, 30)
    got = woodbury_inverse_fisher(g, g[:, None, :], 1e-3)
    torch.testing.assert_close(got, g / (1e-3 + g.square().sum()), rtol=1e-5, atol=1e-6)


def test_zero_rows_of_a_partly_filled_history_change_nothing():
    torch.manual_seed(2)
    g, past = torch.randn(1, 20), torch.randn(1, 2, 20)
    padded = torch.cat([past, torch.zeros(1, 3, 20)], dim=1)
    torch.testing.assert_close(woodbury_inverse_fisher(g, past, 1e-2), woodbury_inverse_fisher(g, padded, 1e-2))


class _NormalisedGaLore(GaLoreAdamW):
    """Hand-written reference for s = 1: Adam on g / (λ + ‖g‖²)."""

    def _precondition(self, group, params, grads, refreshed):
        return [g / (1e-3 + g.square().sum()) for g in grads]


def test_natural_galore_with_history_one_is_adam_on_normalised_gradient():
    """In float64: in float32 the Woodbury subtraction cancels (relative error ~ 6e-8·‖g‖²/λ)."""
    w_ng, w_ref = (nn.Parameter(w.detach().double()) for w in _weights((9, 7), (9, 7)))
    with torch.no_grad():
        w_ref.copy_(w_ng)
    ng = NaturalGaLoreAdamW([dict(params=[w_ng], rank=3, update_proj_gap=2)], lr=0.01, history=1, damping=1e-3)
    ref = _NormalisedGaLore([dict(params=[w_ref], rank=3, update_proj_gap=2)], lr=0.01)
    for step in range(5):
        _set_grads([w_ng], step)
        w_ref.grad = w_ng.grad.clone()
        ng.step()
        ref.step()
    torch.testing.assert_close(w_ng.detach(), w_ref.detach(), rtol=1e-5, atol=1e-6)


def test_history_reset_on_refresh_is_an_option():
    (w,) = _weights((8, 6))
    for reset, written in ((True, 2), (False, 5)):
        optimizer = NaturalGaLoreAdamW([dict(params=[w], rank=2, update_proj_gap=3)], history=4, reset_history=reset)
        for step in range(5):
            _set_grads([w], step)
            optimizer.step()
        state = optimizer.state[w]
        assert state["history"].shape == (4, 2 * 8)  # [s, K], K = m·r (right side)
        assert state["history_written"] == written  # cleared at the refresh of t = 3, or not
        assert int((state["history"].abs().sum(dim=1) > 0).sum()) == min(written, 4)


def test_non_finite_gradient_at_refresh_keeps_projector_and_skips():
    (w,) = _weights((10, 6))
    optimizer = GaLoreAdamW([dict(params=[w], rank=2, update_proj_gap=2)], lr=0.01)
    for step in range(2):
        _set_grads([w], step)
        optimizer.step()
    q, before, moments = optimizer.state[w]["Q"].clone(), w.detach().clone(), optimizer.state[w]["exp_avg"].clone()
    w.grad = torch.full_like(w, float("nan"))  # t = 2: a refresh
    with pytest.warns(RuntimeWarning, match="non-finite gradient"):
        optimizer.step()
    state = optimizer.state[w]
    assert torch.equal(state["Q"], q) and torch.equal(w.detach(), before) and torch.equal(state["exp_avg"], moments)
    assert state["step"] == 2  # not advanced: the next step refreshes again
    _set_grads([w], 9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        optimizer.step()
    assert not torch.equal(optimizer.state[w]["Q"], q) and torch.isfinite(w).all()


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Embedding(32, 16), _Block(), nn.LayerNorm(16), nn.Linear(16, 32))


class _Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.Linear(16, 16, bias=False)
        self.mlp = nn.Sequential(nn.Linear(16, 40, bias=False), nn.GELU(), nn.Linear(40, 16, bias=False))

    def forward(self, x):
        return x + self.mlp(x + self.attn(x))


def _loss(model, step):
    generator = torch.Generator().manual_seed(step)
    start = torch.randint(0, 32, (8, 1), generator=generator)
    tokens = (start + torch.arange(9)) % 32  # learnable: next token = this + 1
    logits = model(tokens[:, :-1])
    return nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())


def _optimizer(kind, model):
    groups = galore_param_groups(model, rank=4, update_proj_gap=5, scale=0.25)
    if kind == "galore":
        return GaLoreAdamW(groups, lr=0.02, weight_decay=0.01)
    return NaturalGaLoreAdamW(groups, lr=0.02, weight_decay=0.01, history=3)


def test_param_groups_project_attention_and_mlp_matrices_only():
    model = _tiny_model()
    projected, plain = galore_param_groups(model, rank=4)
    names = {id(p): n for n, p in model.named_parameters()}
    assert sorted(names[id(p)] for p in projected["params"]) == ["1.attn.weight", "1.mlp.0.weight", "1.mlp.2.weight"]
    assert sorted(names[id(p)] for p in plain["params"]) == ["0.weight", "2.bias", "2.weight", "3.bias", "3.weight"]
    assert projected["rank"] == 4 and "rank" not in plain
    assert len(galore_param_groups(model, rank=4, train_others=False)) == 1


def test_bad_groups_are_one_line_errors():
    (bias,) = _weights((5,))
    with pytest.raises(WorkbenchError, match="projects matrices"):
        GaLoreAdamW([dict(params=[bias], rank=2)])
    (w,) = _weights((5, 4))
    with pytest.raises(WorkbenchError, match="unknown proj_type"):
        GaLoreAdamW([dict(params=[w], rank=2, proj_type="diagonal")])
    with pytest.raises(WorkbenchError, match="nothing to project"):
        galore_param_groups(nn.Sequential(nn.Linear(3, 3)), rank=2)


@pytest.mark.parametrize("kind", ["galore", "natural"])
def test_loss_falls_on_a_tiny_model(kind):
    model = _tiny_model()
    optimizer = _optimizer(kind, model)
    losses = []
    for step in range(60):
        loss = _loss(model, step)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10


@pytest.mark.parametrize("kind", ["galore", "natural"])
def test_resume_mid_run_continues_bit_for_bit(kind):
    def run(steps, model, optimizer, start=0):
        for step in range(start, steps):
            _loss(model, step).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    model = _tiny_model()
    optimizer = _optimizer(kind, model)
    run(12, model, optimizer)  # refreshes at 0, 5, 10

    resumed = _tiny_model()
    first = _optimizer(kind, resumed)
    run(7, resumed, first)  # stop between refreshes
    buffer = io.BytesIO()
    torch.save({"model": resumed.state_dict(), "optimizer": first.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)  # projectors are plain tensors: loadable without pickle
    resumed = _tiny_model(seed=123)
    resumed.load_state_dict(saved["model"])
    second = _optimizer(kind, resumed)
    second.load_state_dict(saved["optimizer"])
    run(12, resumed, second, start=7)
    for a, b in zip(model.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


def test_state_memory_matches_the_formulas():
    """AdamW: 2·Σmn floats; GaLore (std): 2·Σ max(m,n)·r moments + Σ min(m,n)·r projector."""
    model = _tiny_model()
    projected = galore_param_groups(model, rank=4)[0]["params"]
    shapes = [tuple(p.shape) for p in projected]
    galore = GaLoreAdamW(galore_param_groups(model, rank=4, train_others=False))
    adamw = torch.optim.AdamW(projected)
    natural = NaturalGaLoreAdamW(galore_param_groups(model, rank=4, train_others=False), history=3)
    _loss(model, 0).backward()
    for optimizer in (galore, adamw, natural):
        optimizer.step()
    sizes = optimizer_state_bytes(galore)
    assert sizes["moments"] == 4 * 2 * sum(max(s) * 4 for s in shapes)
    assert sizes["projectors"] == 4 * sum(min(s) * 4 for s in shapes)
    assert optimizer_state_bytes(adamw)["moments"] == 4 * 2 * sum(m * n for m, n in shapes)
    assert optimizer_state_bytes(natural)["history"] == 4 * 3 * sum(max(s) * 4 for s in shapes)
    assert sizes["total"] < optimizer_state_bytes(adamw)["total"]
