"""Early exit: the post-training loss against a hand computation, exit rules on constructed predictions."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from workbench.recursive.convert import convert
from workbench.recursive.early_exit import (
    EarlyExitLoss,
    LoopPredictions,
    exit_rates,
    exit_summary,
    loop_predictions,
    oracle_exits,
    threshold_exits,
)

VOCAB = 64


@pytest.fixture
def recursive():
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    return convert(LlamaForCausalLM(config), 2, "average", tie_norms=False).requires_grad_(True)


def test_loss_is_final_ce_plus_weighted_kl_from_the_detached_final(recursive):
    batch = torch.randint(0, VOCAB, (2, 11), generator=torch.Generator().manual_seed(3))
    first, final = (logits.flatten(0, 1) for logits in recursive.loop_logits(batch[:, :-1]))
    targets = batch[:, 1:].flatten()
    kl = F.kl_div(F.log_softmax(first, -1), F.log_softmax(final, -1), log_target=True, reduction="batchmean")
    expected = F.cross_entropy(final, targets) + 0.1 * kl
    torch.testing.assert_close(
        EarlyExitLoss(weight=0.1, chunk_tokens=7)(recursive, batch), expected, atol=1e-5, rtol=1e-5
    )

    # The KL term must not move what only the final exit depends on: the norms of the second loop's layers.
    def second_loop_norm_grad(weight: float) -> torch.Tensor:
        recursive.zero_grad()
        EarlyExitLoss(weight=weight)(recursive, batch).backward()
        return recursive.model.layers[3].norms.mlp.grad.clone()

    torch.testing.assert_close(second_loop_norm_grad(0.1), second_loop_norm_grad(0.0))
    recursive.zero_grad()
    EarlyExitLoss(weight=0.1)(recursive, batch).backward()
    with_kl = recursive.model.layers[0].norms.mlp.grad.clone()
    recursive.zero_grad()
    EarlyExitLoss(weight=0.0)(recursive, batch).backward()
    assert not torch.allclose(with_kl, recursive.model.layers[0].norms.mlp.grad)  # but it does move the first loop


def predictions() -> LoopPredictions:
    argmax = np.array([[1, 2, 3, 4], [1, 5, 3, 6], [1, 5, 7, 6]])  # [B=3 loops, N=4 tokens]; final row: 1, 5, 7, 6
    confidence = np.array([[0.9, 0.2, 0.6, 0.1], [0.95, 0.8, 0.7, 0.3], [0.99, 0.9, 0.8, 0.4]])
    nll = np.array([[0.5, 3.0, 2.0, 4.0], [0.4, 1.0, 1.5, 3.0], [0.3, 0.9, 1.0, 2.0]])
    return LoopPredictions(argmax, confidence, nll)


def test_oracle_exit_is_the_first_loop_agreeing_with_the_final():
    exits = oracle_exits(predictions())
    np.testing.assert_array_equal(exits, [1, 2, 3, 2])
    np.testing.assert_allclose(exit_rates(exits, 3), [0.25, 0.5, 0.25])
    summary = exit_summary(predictions(), exits)
    assert summary["agreement"] == 1.0 and summary["mean_loops"] == 2.0
    assert summary["ppl"] == pytest.approx(np.exp(np.mean([0.5, 1.0, 1.0, 3.0])))


def test_confidence_threshold_exits_and_their_agreement():
    exits = threshold_exits(predictions(), 0.7)
    np.testing.assert_array_equal(exits, [1, 2, 2, 3])  # token 3 never confident: the last loop
    summary = exit_summary(predictions(), exits)
    assert summary["agreement"] == 0.75  # token 2 exits at loop 2 with 3, the final says 7
    np.testing.assert_array_equal(threshold_exits(predictions(), 0.0), [1, 1, 1, 1])


def test_loop_predictions_match_the_model(recursive):
    tokens = torch.randint(0, VOCAB, (3 * 8 + 1,), generator=torch.Generator().manual_seed(5))
    found = loop_predictions(recursive.eval(), tokens, context_len=8, batch_size=2, progress=False)
    assert found.argmax.shape == (2, 24)
    with torch.no_grad():
        logits = recursive(tokens[:8][None]).logits[0]
    torch.testing.assert_close(
        torch.from_numpy(found.nll[-1, :8]), F.cross_entropy(logits, tokens[1:9], reduction="none")
    )
    np.testing.assert_array_equal(found.argmax[-1, :8], logits.argmax(-1).numpy())
