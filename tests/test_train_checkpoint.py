"""The training loop's checkpoints: written at the end and on Ctrl-C, and a run resumes from them."""

import copy
from collections.abc import Iterator

import pytest
import torch
from transformers import LlamaForCausalLM

from workbench import data
from workbench.models import tiny_llama
from workbench.train import TrainConfig, train

pytestmark = pytest.mark.slow  # trains and saves real (tiny) transformers models

VOCAB = 128


def llama(seed: int = 0):
    return tiny_llama(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2, vocab_size=VOCAB, seed=seed)[0]


def stream(seed: int = 0) -> Iterator[torch.Tensor]:
    tokens = torch.arange(4000) % 61 * 2 % VOCAB  # a learnable periodic text
    return data.batches(tokens, 8, 33, seed=seed)


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_checkpoint_holds_the_trained_weights_and_training_resumes_from_it(store):
    model = llama()
    config = TrainConfig(steps=6, lr=1e-2, warmup_steps=1, log_every=3)
    with store.start_run("test", "first") as run:
        train(model, stream(), config, run=run, progress=False)
    path = store.run(run.id)["summary"]["checkpoint"]
    assert path == str(run.checkpoint_dir)
    resumed = LlamaForCausalLM.from_pretrained(path)
    assert same_weights(resumed, model)
    x = next(stream(seed=5))
    with torch.no_grad():
        assert torch.equal(resumed(x).logits, model(x).logits)

    before = copy.deepcopy(resumed)
    with store.start_run("test", "resumed") as second:
        metrics = train(resumed, stream(seed=1), config, run=second, progress=False)
    assert not same_weights(resumed, before) and torch.isfinite(torch.tensor(metrics["train_loss"]))
    assert store.run(second.id)["summary"]["checkpoint"] != path  # each run its own folder


def test_ctrl_c_saves_the_weights_so_far_and_marks_the_run_interrupted(store):
    model = llama()
    seen = {}

    def interrupted(batches: Iterator[torch.Tensor], after: int) -> Iterator[torch.Tensor]:
        for index, batch in enumerate(batches):
            if index == after:
                seen["weights"] = copy.deepcopy(model.state_dict())  # what the steps so far trained
                raise KeyboardInterrupt
            yield batch

    run = store.start_run("test", "stopped")
    config = TrainConfig(steps=20, lr=1e-2, warmup_steps=1, log_every=2)
    with pytest.raises(KeyboardInterrupt):
        train(model, interrupted(stream(), after=5), config, run=run, progress=False)
    row = store.run(run.id)
    assert row["status"] == "interrupted" and row["error"] == "KeyboardInterrupt"
    saved = LlamaForCausalLM.from_pretrained(row["summary"]["checkpoint"]).state_dict()
    assert all(torch.equal(saved[k], seen["weights"][k]) for k in seen["weights"])
    assert list(store.history(run.id)["step"]) == [2, 4]  # the metrics logged before Ctrl-C stay
