"""CPU generation: streaming callbacks see exactly the generated tokens, streamed text equals the
decoded answer, sampling is reproducible, and the prefill/decode arithmetic."""

import pytest
import torch

from workbench.cpu.decode import PhaseSpeed, TextStream, measure_phases, stream_chat
from workbench.generate import SampleConfig, sample
from workbench.measure import Timing
from workbench.models import tiny_llama


@pytest.mark.slow  # 0.9 s quiet: too long for test-fast's minute
def test_on_token_sees_every_generated_token_of_every_row():
    model, _ = tiny_llama(seed=0)
    prompt = torch.randint(0, 1000, (2, 6), generator=torch.Generator().manual_seed(0))  # batch 2
    seen = []
    out = sample(model, prompt, SampleConfig(max_new_tokens=7), on_token=lambda token: seen.append(token.clone()))
    assert len(seen) == 7 and all(t.shape == (2,) for t in seen)
    assert torch.equal(torch.stack(seen, dim=1), out[:, 6:])


@pytest.mark.slow  # 2.6 s quiet: too long for test-fast's minute
def test_sampled_decoding_is_reproducible_with_a_generator():
    model, _ = tiny_llama(seed=0)
    prompt = torch.randint(0, 1000, (3, 4), generator=torch.Generator().manual_seed(1))
    config = SampleConfig(max_new_tokens=10, temperature=1.0, top_k=50)
    first = sample(model, prompt, config, generator=torch.Generator().manual_seed(7))
    again = sample(model, prompt, config, generator=torch.Generator().manual_seed(7))
    other = sample(model, prompt, config, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first, again) and not torch.equal(first, other)


def test_text_stream_pieces_add_up_to_the_decoded_text_across_multibyte_characters():
    _, tokenizer = tiny_llama()
    text = "naïve café — 東京 🙂 done"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    pieces = []
    stream = TextStream(tokenizer, pieces.append)
    for i in ids:
        stream(torch.tensor([i]))
    assert "".join(pieces) == tokenizer.decode(ids) == stream.text
    assert all("\ufffd" not in piece for piece in pieces)  # no half characters were printed
    assert len(pieces) > 3  # it streamed, not one piece at the end


@pytest.mark.slow  # 1.6 s quiet: too long for test-fast's minute
def test_stream_chat_streams_the_greedy_answer():
    model, tokenizer = tiny_llama(seed=2)
    pieces = []
    text = stream_chat(model, tokenizer, "Hello?", SampleConfig(max_new_tokens=12), on_text=pieces.append)
    assert "".join(pieces) == text
    from workbench.cpu.decode import chat_prompt

    prompt = chat_prompt(tokenizer, "Hello?")
    out = sample(model, prompt, SampleConfig(max_new_tokens=12), tokenizer.eos_token_id, tokenizer.pad_token_id or 0)
    assert text == tokenizer.decode(out[0, prompt.shape[1] :], skip_special_tokens=True)


def test_phase_arithmetic():
    prefill, generate = Timing(0.2, 0.19, 0.21, 5), Timing(1.46, 1.40, 1.50, 5)
    speed = PhaseSpeed(prefill, generate, batch=2, prompt_len=128, new_tokens=64)
    assert speed.prefill_tok_s == 2 * 128 / 0.2
    assert abs(speed.decode_tok_s - 2 * 63 / 1.26) < 1e-9  # 63 decode forwards after the prefill
    assert abs(speed.decode_spread - (0.10 + 0.02) / 1.26) < 1e-9


def test_measure_phases_times_every_model_and_thread_count():
    model, _ = tiny_llama(seed=0)
    prompt = torch.randint(0, 1000, (1, 8))
    speeds = measure_phases({"a": model, "b": model}, prompt, new_tokens=3, threads=(1,), rounds=1, warmup=0)
    assert set(speeds) == {("a", 1), ("b", 1)}
    assert all(s.prefill_tok_s > 0 and s.generate.rounds == 1 for s in speeds.values())
