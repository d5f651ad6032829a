"""The MDM's zero-shot likelihood is SMDM's chain rule (guided or not); N counts the body only."""

import pytest
import torch

from workbench import zeroshot
from workbench.diffusion import mdm
from workbench.diffusion.experiment import halves, non_embedding_parameters
from workbench.diffusion.guidance import guided, zero_shot_loglik
from workbench.models import count_parameters, tiny_llama

V = 50


def tiny_mdm():
    model, _ = mdm.masked_diffusion_llama(V, seed=0, n_layers=1, d_model=32, n_heads=2, n_kv_heads=2, d_ff=64)
    return model.eval()


def test_zero_shot_loglik_is_the_chain_rule_with_and_without_guidance():
    model = tiny_mdm()
    tokens = torch.randint(0, V, (3, 12), generator=torch.Generator().manual_seed(0))
    for w in (0.0, 0.7):
        denoise = guided(mdm.denoiser(model), 5, V, w)
        expected = -mdm.chain_rule_nll(denoise, tokens, 5, V)
        got = zero_shot_loglik(model, w=w, length=12, rows_per_pass=5)([t[:5] for t in tokens], [t[5:] for t in tokens])
        torch.testing.assert_close(got.float(), expected, rtol=1e-5, atol=1e-4)


def test_zero_shot_loglik_pads_with_masks_to_the_training_length():
    model = tiny_mdm()
    context, continuation = torch.tensor([3, 4, 5]), torch.tensor([6, 7])
    padded = torch.full((1, 10), V)
    padded[0, :5] = torch.cat([context, continuation])
    # the chain rule over a row padded with [M]: the padding stays masked, only the continuation is scored
    steps = [padded.clone() for _ in range(2)]
    steps[0][0, 3:] = V
    steps[1][0, 4:] = V
    logits = [torch.log_softmax(mdm.logits(model, x)[0], -1) for x in steps]
    expected = logits[0][3, 6] + logits[1][4, 7]
    got = zero_shot_loglik(model, length=10)([context], [continuation])
    torch.testing.assert_close(got.float(), expected[None], rtol=1e-5, atol=1e-4)
    assert not torch.allclose(zero_shot_loglik(model, length=5)([context], [continuation]).float(), expected[None])


@pytest.mark.slow  # 0.7 s quiet: too long for test-fast's minute
def test_non_embedding_parameters_leave_out_the_tied_embedding():
    model, _ = tiny_llama(vocab_size=1000, n_layers=2, d_model=32, n_heads=2, n_kv_heads=2, d_ff=64)
    body = sum(
        p.numel() for name, p in model.named_parameters() if "embed_tokens" not in name and "lm_head" not in name
    )
    assert non_embedding_parameters(model) == body == count_parameters(model) - 1000 * 32


def test_halves_split_the_items_without_overlap():
    item = zeroshot.ChoiceItem(torch.tensor([1]), tuple(torch.tensor([i]) for i in range(4)), 0)
    tasks = zeroshot.ZeroShotTasks(
        (), tuple(zeroshot.ChoiceItem(torch.tensor([k]), item.continuations, 0) for k in range(5))
    )
    tune, judged = halves(tasks)
    assert [int(i.context) for i in tune.choice] == [0, 2, 4] and [int(i.context) for i in judged.choice] == [1, 3]
