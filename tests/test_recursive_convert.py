"""Recursive conversion and relaxation against hand-written references on a tiny LLaMA."""

import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from workbench.errors import WorkbenchError
from workbench.recursive.convert import convert, source_layers, stepwise_indices
from workbench.recursive.model import MODULES
from workbench.recursive.relax import (
    expected_non_embedding_parameters,
    non_embedding_parameters,
    relax,
    residual_factors,
)
from workbench.train import causal_lm_loss

VOCAB = 96


def tiny(n_layers: int = 4, seed: int = 0) -> LlamaForCausalLM:
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=n_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rope_theta=1e4,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # distinct norm weights per layer, so tying them changes something
        for layer in model.model.layers:
            layer.input_layernorm.weight.uniform_(0.5, 1.5)
            layer.post_attention_layernorm.weight.uniform_(0.5, 1.5)
    return model


def ids(batch: int = 2, length: int = 12) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(1))


def test_stepwise_indices_keep_first_and_last():
    assert stepwise_indices(6, 3) == [0, 2, 5]  # the paper's Fig. 2 (layers 1, 3, 6 of 6)
    assert stepwise_indices(30, 15) == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 29]
    assert stepwise_indices(30, 10) == [0, 3, 6, 9, 12, 16, 19, 22, 25, 29]
    assert stepwise_indices(4, 1) == [0]


def test_source_layers_of_each_init_and_bad_input():
    assert source_layers("average", 6, 2) == [[0, 3], [1, 4], [2, 5]]
    assert source_layers("lower", 6, 3) == [[0], [1]]
    assert source_layers("stepwise", 6, 2) == [[0], [2], [5]]
    with pytest.raises(WorkbenchError, match="divide"):
        source_layers("average", 6, 4)
    with pytest.raises(WorkbenchError, match="unknown initialisation"):
        source_layers("random", 6, 2)


def test_average_init_is_the_mean_of_the_tied_layers():
    model = tiny(4)
    recursive = convert(model, 2, "average")
    layers = model.model.layers
    expected = (layers[1].mlp.up_proj.weight + layers[3].mlp.up_proj.weight) / 2
    torch.testing.assert_close(recursive.model.blocks[1].up_proj.weight, expected)
    torch.testing.assert_close(
        recursive.model.blocks[0].norms.attn, (layers[0].input_layernorm.weight + layers[2].input_layernorm.weight) / 2
    )
    assert recursive.model.layers[2].shared is recursive.model.blocks[0]  # CYCLE: effective layer 2 runs shared layer 0


def test_recursive_forward_equals_a_hand_unrolled_one():
    """Lower init, B=2 of a 4-layer model: the looped forward is layers 0, 1, 0, 1 of the original."""
    model = tiny(4)
    recursive = convert(model, 2, "lower")
    x = ids()
    body = model.model
    hidden = body.embed_tokens(x)
    position_ids = torch.arange(x.shape[1])[None]
    rope = body.rotary_emb(hidden, position_ids=position_ids)
    for index in (0, 1, 0, 1):
        hidden = body.layers[index](hidden, attention_mask=None, position_ids=position_ids, position_embeddings=rope)
    unrolled = model.lm_head(body.norm(hidden))
    torch.testing.assert_close(recursive(x).logits, unrolled, atol=1e-5, rtol=1e-5)
    # and the looped model's exits: loop 1 is layers 0, 1 then the final norm and head
    loop_one = model.lm_head(
        body.norm(
            body.layers[1](body.layers[0](body.embed_tokens(x), position_embeddings=rope), position_embeddings=rope)
        )
    )
    torch.testing.assert_close(recursive.loop_logits(x)[0], loop_one, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("init", ["stepwise", "average", "lower"])
def test_full_rank_svd_with_per_depth_norms_reproduces_the_original(init):
    model = tiny(6)
    recursive = relax(convert(model, 3, init, tie_norms=False), model, ranks=10**6, init="svd")
    x = ids()
    torch.testing.assert_close(recursive(x).logits, model(input_ids=x).logits, atol=1e-4, rtol=1e-4)


def test_without_lora_or_with_tied_norms_the_model_differs():
    model, x = tiny(4), ids()
    reference = model(input_ids=x).logits
    assert (convert(model, 2, "average", tie_norms=False)(x).logits - reference).abs().max() > 1e-2
    tied = relax(convert(model, 2, "average", tie_norms=True), model, ranks=10**6)
    assert (tied(x).logits - reference).abs().max() > 1e-3  # tying the norms alone changes the function


def test_svd_init_is_the_truncated_svd_of_the_residual():
    model = tiny(4)
    recursive = relax(convert(model, 2, "average"), model, ranks={"down_proj": 3})
    layer = recursive.model.layers[2]
    residual = model.model.layers[2].mlp.down_proj.weight - layer.shared.down_proj.weight
    U, S, Vh = torch.linalg.svd(residual, full_matrices=False)
    torch.testing.assert_close(
        layer.lora.B["down_proj"] @ layer.lora.A["down_proj"], (U[:, :3] * S[:3]) @ Vh[:3], atol=1e-5, rtol=1e-4
    )
    assert set(layer.lora.A) == {"down_proj"}


def test_zero_init_and_zero_residual_start_as_the_plain_recursive_model():
    model, x = tiny(4), ids()
    plain = convert(model, 2, "stepwise")(x).logits
    zero = relax(convert(model, 2, "average"), model, ranks=4, init="zero")
    torch.testing.assert_close(zero(x).logits, convert(model, 2, "average")(x).logits)
    assert all(
        float(lora.A[name].detach().abs().sum()) > 0
        for lora in (layer.lora for layer in zero.model.layers)
        for name in MODULES
    )
    # Stepwise on 4 layers, B=2: shared layers come from layers 0 and 3; depth 0's residual is zero there
    stepwise = relax(convert(model, 2, "stepwise"), model, ranks=4, init="svd")
    assert float(stepwise.model.layers[0].lora.B["q_proj"].detach().abs().sum()) == 0
    assert float(stepwise.model.layers[1].lora.B["q_proj"].detach().abs().sum()) > 0
    assert plain.shape == zero(x).logits.shape


@pytest.mark.parametrize("tie_norms", [True, False])
@pytest.mark.parametrize("ranks", [0, 5, {"q_proj": 2, "down_proj": 7}, 10**6])
def test_parameter_accounting_matches_the_formula(tie_norms, ranks):
    model = tiny(6)
    recursive = convert(model, 3, "average", tie_norms=tie_norms)
    if ranks:
        relax(recursive, model, ranks)
    assert non_embedding_parameters(recursive) == expected_non_embedding_parameters(model.config, 3, tie_norms, ranks)


def test_smollm2_lora_cost_per_effective_layer():
    """r·10,176 parameters per effective layer for SmolLM2's shapes (d=576, 9/3 heads of 64, FFN 1536)."""
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
    )
    base = expected_non_embedding_parameters(config, 2, True, 0)
    assert expected_non_embedding_parameters(config, 2, True, 8) - base == 30 * 8 * 10_176
    assert base == 15 * 3_538_944 + 15 * 2 * 576 + 576  # 3,538,944: the seven linears of one layer


def test_core_losses_drive_the_recursive_model_and_gradients_reach_shared_and_lora():
    model = tiny(4)
    recursive = relax(convert(model, 2, "average"), model, ranks=2)
    recursive.requires_grad_(True)
    batch = torch.randint(0, VOCAB, (2, 9))
    loss = causal_lm_loss(recursive, batch)
    reference = F.cross_entropy(recursive(batch[:, :-1]).logits.flatten(0, 1), batch[:, 1:].flatten())
    torch.testing.assert_close(loss, reference, atol=1e-5, rtol=1e-5)
    loss.backward()
    assert recursive.model.blocks[0].q_proj.weight.grad.abs().sum() > 0
    assert recursive.model.layers[3].lora.A["up_proj"].grad.abs().sum() > 0


def test_shared_residual_factors_give_the_same_relaxation():
    model, x = tiny(4), ids()
    factors = residual_factors(convert(model, 2, "average"), model)
    direct = relax(convert(model, 2, "average"), model, ranks=3)
    shared = relax(convert(model, 2, "average"), model, ranks=3, factors=factors)
    torch.testing.assert_close(shared(x).logits, direct(x).logits)
