"""Generation on a CPU: prefill, KV-cache decoding, streaming text, and tokens/s per phase.

Any LLaMA-family model (the default SmolLM2-135M, a from-scratch config, or a quantised copy from
`quantize`) generates through `workbench.generate.sample`: the prompt runs once (prefill, a matrix
product over T tokens: compute-bound), then one token per step through the KV cache (decode, a
matrix-vector product per weight: memory-bound). The two phases scale differently with precision
and threads, so they are timed apart: prefill alone, and prefill + n tokens, each in interleaved
rounds (`workbench.measure.time_phases`, the timer of the one speed measure); decode time is the difference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from ..generate import SampleConfig, sample
from ..measure import PhaseCalls, PhaseSpeed, phase_calls, time_phases


def chat_prompt(tokenizer, question: str) -> torch.Tensor:
    """One user message through the model's chat template (plain text without one) → ids [1, T]."""
    if tokenizer.chat_template:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )["input_ids"]
    return tokenizer(question, return_tensors="pt")["input_ids"]


class TextStream:
    """Turns the tokens of row 0 into text pieces as they arrive: `on_text(piece)` per new piece.

    A character can span several tokens (bytes of one UTF-8 character), so the text decoded so far
    is re-decoded and only its new, complete suffix is passed on.
    """

    def __init__(self, tokenizer, on_text: Callable[[str], None], eos_token_id: int | None = None):
        self.tokenizer, self.on_text, self.eos = tokenizer, on_text, eos_token_id
        self.ids: list[int] = []
        self.text = ""
        self.done = False

    def __call__(self, token: torch.Tensor) -> None:  # token [B]
        if self.done:
            return
        token_id = int(token[0])
        if token_id == self.eos:
            self.done = True
            return
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        if text.endswith("\ufffd"):  # an incomplete multi-byte character: wait for its next token
            return
        piece, self.text = text[len(self.text) :], text
        if piece:
            self.on_text(piece)


@torch.no_grad()
def stream_chat(
    model: nn.Module,
    tokenizer,
    question: str,
    config: SampleConfig | None = None,
    on_text: Callable[[str], None] = lambda piece: print(piece, end="", flush=True),
    generator: torch.Generator | None = None,
) -> str:
    """Answer `question`, handing each piece of text to `on_text` as soon as its token is chosen."""
    prompt = chat_prompt(tokenizer, question).to(next(model.parameters()).device)
    stream = TextStream(tokenizer, on_text, tokenizer.eos_token_id)
    sample(
        model,
        prompt,
        config or SampleConfig(),
        tokenizer.eos_token_id,
        tokenizer.pad_token_id or 0,
        generator,
        on_token=stream,
    )
    return stream.text


def with_threads(fn: Callable[[], object], threads: int) -> Callable[[], object]:
    """`fn` run with `threads` torch threads (set on each call, so contenders at different counts interleave)."""

    def call() -> object:
        torch.set_num_threads(threads)
        return fn()

    return call


Phases = Callable[[int], dict[str, Callable[[], object]]]  # thread count → {"prefill": fn, "generate": fn}


def measure_phases(
    models: dict[str, nn.Module],
    prompt: torch.Tensor,
    new_tokens: int,
    threads: tuple[int, ...],
    rounds: int,
    warmup: int = 1,
    external: dict[str, Phases] | None = None,
) -> dict[tuple[str, int], PhaseSpeed]:
    """Prefill and decode speed of every model at every thread count, all timed in the same interleaved
    rounds, so that the machine's drift (other processes on a shared CPU) hits every contender alike.
    `external`: other engines (e.g. `llamacpp.phases`) timed in the same rounds, by name."""
    contenders: dict[tuple[str, int], PhaseCalls] = {}
    for name, model in models.items():
        for n in threads:
            calls = phase_calls(model, prompt, new_tokens)
            contenders[(name, n)] = replace(
                calls, prefill=with_threads(calls.prefill, n), generate=with_threads(calls.generate, n)
            )
    batch, prompt_len = prompt.shape
    for name, phases in (external or {}).items():
        for n in threads:
            calls = phases(n)
            contenders[(name, n)] = PhaseCalls(calls["prefill"], calls["generate"], batch, prompt_len, new_tokens)
    before = torch.get_num_threads()
    try:
        return time_phases(contenders, "cpu", rounds=rounds, warmup=warmup)
    finally:
        torch.set_num_threads(before)
