"""The masked diffusion model: objective, likelihoods, training, and the compiled step's eligibility."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from workbench.diffusion import mdm
from workbench.train import TrainConfig, causal_lm_loss, should_compile, train

VOCAB = 8


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny():
    model, _ = mdm.masked_diffusion_llama(
        vocab_size=VOCAB, n_layers=1, d_model=16, n_heads=2, n_kv_heads=2, d_ff=32, seed=0
    )
    with torch.no_grad():  # large weights: peaked predictions that depend on the context, so a visible Jensen gap
        for weight in model.model.layers.parameters():
            weight.mul_(8.0 if weight.dim() == 2 else 1.0)
        model.lm_head.weight.mul_(4.0)
    return model.eval()


def test_model_is_bidirectional_and_never_predicts_mask(tiny):
    x = torch.randint(0, VOCAB, (1, 6))
    out = mdm.logits(tiny, x)
    assert out.shape == (1, 6, VOCAB)  # V real tokens: no column for [M]
    changed = x.clone()
    changed[0, 5] = (changed[0, 5] + 1) % VOCAB
    assert not torch.allclose(mdm.logits(tiny, changed)[0, 0], out[0, 0])  # position 0 sees position 5


def test_loss_weights_only_masked_tokens_by_inverse_rate(tiny):
    batch = torch.randint(0, VOCAB, (4, 10))
    torch.manual_seed(3)
    loss = mdm.diffusion_loss(tiny, batch)
    torch.manual_seed(3)  # replay the same draws by hand
    u = torch.rand(())
    t = (u + torch.arange(4) / 4) % 1
    p = (1 - mdm.MASK_EPS) * t + mdm.MASK_EPS
    masked = torch.rand(4, 10) < p[:, None]
    noisy = torch.where(masked, VOCAB, batch)
    ce = F.cross_entropy(mdm.logits(tiny, noisy).flatten(0, 1), batch.flatten(), reduction="none").view(4, 10)
    reference = sum(ce[b, i] / p[b] for b in range(4) for i in range(10) if masked[b, i]) / 40
    assert 0 < masked.sum() < 40
    assert loss.item() == pytest.approx(reference.item(), rel=1e-5)


def test_dense_and_masked_rows_cross_entropy_agree():
    hidden, weight = torch.randn(12, 5), torch.randn(7, 5)
    targets = torch.randint(0, 7, (12,))
    scale = torch.tensor([0, 2.0, 0, 0, 1.5, 0, 0, 0, 3.0, 0, 0, 1.0])
    dense = mdm.weighted_cross_entropy(hidden, weight, targets, scale, dense=True)
    sparse = mdm.weighted_cross_entropy(hidden, weight, targets, scale, dense=False)
    by_hand = sum(scale[i] * F.cross_entropy((hidden[i] @ weight.T)[None], targets[i : i + 1]) for i in range(12))
    assert dense.item() == pytest.approx(sparse.item(), rel=1e-6) == pytest.approx(by_hand.item(), rel=1e-6)


def _order_nlls(model, x: torch.Tensor) -> torch.Tensor:
    """−log q_σ(x) for every order σ of revealing the positions of x [L] (exact, by enumeration)."""
    length, values = len(x), []
    for order in itertools.permutations(range(length)):
        state, nll = torch.full((1, length), VOCAB), 0.0
        for position in order:
            nll -= torch.log_softmax(mdm.logits(model, state)[0, position], -1)[x[position]]
            state[0, position] = x[position]
        values.append(nll)
    return torch.stack(values)


def test_elbo_bounds_the_exact_nll_and_equals_the_any_order_nll(tiny):
    x = torch.tensor([3, 1, 4, 1])
    orders = _order_nlls(tiny, x)  # [24]
    exact_nll = -torch.logsumexp(-orders, 0) + math.log(len(orders))  # −log E_σ q_σ(x): the model's NLL
    exact_elbo = orders.mean()  # (1) integrated over t = the mean any-order NLL
    estimate = mdm.elbo(mdm.denoiser(tiny), x[None], prompt_len=0, mask_id=VOCAB, samples=4096, seed=0)[0]
    assert exact_elbo > exact_nll + 0.02  # a real gap on this peaked model
    assert estimate.item() == pytest.approx(exact_elbo.item(), rel=0.03)
    assert estimate > exact_nll
    left_to_right = mdm.chain_rule_nll(mdm.denoiser(tiny), x[None], prompt_len=0, mask_id=VOCAB)[0]
    assert left_to_right.item() == pytest.approx(orders[0].item(), rel=1e-5)  # the identity permutation


def test_elbo_is_reproducible_and_stable_across_seeds(tiny):
    x = torch.randint(0, VOCAB, (3, 12))
    denoise = mdm.denoiser(tiny)
    first, again = (
        mdm.elbo(denoise, x, 2, VOCAB, samples=32, seed=1),
        mdm.elbo(denoise, x, 2, VOCAB, samples=32, seed=1),
    )
    assert torch.equal(first, again)
    spread = torch.stack([mdm.elbo(denoise, x, 2, VOCAB, samples=32, seed=s).sum() for s in range(5)])
    assert spread.std() / spread.mean() < 0.05


@pytest.mark.slow  # 0.7 s quiet: too long for test-fast's minute
def test_loss_falls_in_training():
    model, _ = mdm.masked_diffusion_llama(
        vocab_size=VOCAB, n_layers=1, d_model=32, n_heads=2, n_kv_heads=2, d_ff=64, seed=1
    )
    pattern = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7] * 2)

    def batches():
        generator = torch.Generator().manual_seed(0)
        while True:
            shifts = torch.randint(0, 8, (16,), generator=generator)
            yield torch.stack([pattern.roll(int(s)) for s in shifts])

    stream = batches()
    before = sum(mdm.diffusion_loss(model, next(stream)).item() for _ in range(8)) / 8
    train(
        model,
        stream,
        TrainConfig(steps=80, lr=3e-3, warmup_steps=5, compile=False, log_every=10),
        loss_fn=mdm.diffusion_loss,
        progress=False,
    )
    after = sum(mdm.diffusion_loss(model, next(stream)).item() for _ in range(8)) / 8
    assert after < before - 0.25


def test_diffusion_loss_is_compiled_on_a_gpu_like_the_causal_loss(tiny):
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert should_compile(tiny, TrainConfig(), mdm.diffusion_loss, cuda)
    assert should_compile(tiny, TrainConfig(), causal_lm_loss, cuda)
    assert not should_compile(tiny, TrainConfig(), lambda model, batch: mdm.diffusion_loss(model, batch), cuda)
    assert not should_compile(tiny, TrainConfig(), mdm.diffusion_loss, cpu)
    assert not should_compile(tiny, TrainConfig(compile=False), mdm.diffusion_loss, cuda)


@pytest.mark.slow
def test_diffusion_loss_traces_as_one_graph(tiny):
    compiled = torch.compile(mdm.diffusion_loss, backend="aot_eager", fullgraph=True, dynamic=False)
    batch = torch.randint(0, VOCAB, (4, 10))
    loss = compiled(tiny, batch)
    loss.backward()
    assert torch.isfinite(loss) and tiny.lm_head.weight.grad is not None
    tiny.zero_grad(set_to_none=True)


def test_stochastic_length_keeps_every_token():
    stream = iter([torch.arange(64).view(2, 32)] * 50)
    shapes = {tuple(b.shape) for b in mdm.stochastic_length(stream, ratio=0.5, seed=0)}
    assert (2, 32) in shapes and len(shapes) > 1 and all(r * c == 64 for r, c in shapes)
