"""llama.cpp beside the torch precisions: its quality is scored like `next_token_quality` (checked
against a stand-in `llama_cpp` whose logits come from a torch model, so the alignment of scores and
targets is tested where llama-cpp-python is not installed) and its phases are timed in the same rounds;
on the real GGUF file, where llama-cpp-python is installed, its perplexity is within 1% of float32's."""

import sys
import types

import pandas as pd
import pytest
import torch

from workbench.cpu import llamacpp, report
from workbench.cpu.decode import measure_phases
from workbench.cpu.quantize import next_token_quality
from workbench.models import tiny_llama


class TorchLlama:
    """The part of `llama_cpp.Llama` that `llamacpp` uses, computed by a torch model."""

    model = None

    def __init__(self, path, n_ctx, n_batch, n_threads=None, n_threads_batch=None, logits_all=False, verbose=True):
        self.tokens: list[int] = []
        self.scores = None

    def reset(self):
        self.tokens = []

    def eval(self, tokens):
        self.tokens += list(tokens)
        with torch.no_grad():
            self.scores = self.model(input_ids=torch.tensor([self.tokens])).logits[0].double().numpy()

    def sample(self, top_k=40):
        return int(self.scores[len(self.tokens) - 1].argmax())


@pytest.fixture
def stand_in(monkeypatch, tmp_path):
    model, _ = tiny_llama(seed=0)
    TorchLlama.model = model.eval()
    monkeypatch.setitem(sys.modules, "llama_cpp", types.SimpleNamespace(Llama=TorchLlama))
    return model, tmp_path / "model.gguf"


def test_quality_scores_every_next_token_as_the_torch_path_does(stand_in):
    model, gguf = stand_in
    windows = torch.randint(0, model.config.vocab_size, (3, 17), generator=torch.Generator().manual_seed(0))
    reference = next_token_quality(model, windows)
    scored = llamacpp.quality(gguf, windows, reference["argmax"])
    assert scored["ppl"] == pytest.approx(reference["ppl"], rel=1e-5)
    assert scored["agreement"] == 1.0
    shuffled = llamacpp.quality(gguf, windows, reference["argmax"].roll(1, dims=1))
    assert shuffled["agreement"] < 1.0


def test_phases_are_timed_with_the_torch_models(stand_in):
    model, gguf = stand_in
    prompt = torch.randint(0, model.config.vocab_size, (1, 8))
    external = {llamacpp.NAME: llamacpp.phases(gguf, prompt[0].tolist(), new_tokens=4)}
    speeds = measure_phases({"float32": model}, prompt, 4, (1,), rounds=1, warmup=0, external=external)
    assert set(speeds) == {("float32", 1), (llamacpp.NAME, 1)}
    assert speeds[(llamacpp.NAME, 1)].as_row()["decode_tok_s"] > 0


def test_conclusion_compares_llama_cpp_with_our_int8():
    rows = [
        {"precision": name, "threads": 1, "decode_tok_s": tok_s, "decode_spread": 0.05, "decode_speedup": tok_s / 14,
         "prefill_tok_s": 300.0, "prefill_spread": 0.05, "weight_mb": mb, "ppl": 18.7 * (1 + pct / 100),
         "ppl_change_pct": pct, "next_token_agreement": agree}
        for name, tok_s, mb, pct, agree in [("float32", 14.0, 538, 0.0, 1.0), ("int8", 28.0, 248, 0.45, 0.95),
                                            (llamacpp.NAME, 70.0, 98, 0.34, 0.96)]
    ]  # fmt: skip
    text = report.conclusion(pd.DataFrame(rows), profile="full")
    line = next(line for line in text.splitlines() if "llama.cpp" in line)
    assert "70.0 tokens/s, 5.00x float32's decode rate, 2.5x our int8" in line and "+0.34%" in line


@pytest.mark.slow
def test_llama_cpp_on_the_gguf_file_keeps_float32_quality():
    pytest.importorskip("llama_cpp")
    from workbench.data import blocks, load_corpus, tokenize, train_val_split
    from workbench.models import GGUF_FILE, gguf_dir, load_model

    model, tokenizer = load_model(dtype="float32", device="cpu")
    _, val = train_val_split(tokenize(load_corpus("python-docs"), tokenizer))
    windows = blocks(val, 128)[:4]
    reference = next_token_quality(model, windows)
    scored = llamacpp.quality(gguf_dir() / GGUF_FILE, windows, reference["argmax"])
    assert abs(scored["ppl"] / reference["ppl"] - 1) < 0.01 and scored["agreement"] > 0.9
