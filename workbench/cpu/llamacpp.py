"""llama.cpp beside the torch precisions: what a user would pick instead for CPU inference.

llama-cpp-python (the optional extra `llamacpp`, built from source) runs the default model's own GGUF
file, Q4_1 weights in llama.cpp's kernels: the same file that `workbench.models` de-quantises into the
float32 model the other precisions start from. Both functions here mirror the torch side, so the rows
compare: `phases` is timed in the same interleaved rounds as the torch models (`decode.measure_phases`),
and `quality` scores the same held-out windows as `quantize.next_token_quality`.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from .decode import Phases

NAME = "llama.cpp Q4_1"  # its row in the precision tables: llama.cpp on the default model's own Q4_1 file


def installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def _load(gguf_file: Path, n_ctx: int, n_batch: int, threads: int | None = None, logits_all: bool = False):
    from llama_cpp import Llama

    return Llama(str(gguf_file), n_ctx=n_ctx, n_batch=n_batch, n_threads=threads, logits_all=logits_all,
                 verbose=False)  # fmt: skip


def phases(gguf_file: Path, prompt: list[int], new_tokens: int) -> Phases:
    """Thread count → prefill, and prefill + greedy decoding of `new_tokens` (the torch side's two calls)."""

    def at(threads: int) -> dict[str, Callable[[], object]]:
        llm = _load(gguf_file, n_ctx=len(prompt) + new_tokens + 8, n_batch=len(prompt), threads=threads)

        def prefill() -> None:
            llm.reset()
            llm.eval(prompt)

        def generate() -> None:
            prefill()
            for _ in range(new_tokens - 1):
                llm.eval([llm.sample(top_k=1)])

        return {"prefill": prefill, "generate": generate}

    return at


def quality(gguf_file: Path, windows: torch.Tensor, reference: torch.Tensor) -> dict:
    """Perplexity of `windows` [W, T] (every token after the first scored) and the share of positions whose
    most likely next token equals `reference` [W, T−1] (float32's argmax), as `next_token_quality` reports them."""
    llm = _load(gguf_file, n_ctx=windows.shape[1] + 8, n_batch=windows.shape[1], logits_all=True)
    total_nll, argmax = 0.0, []
    for window in windows.tolist():
        llm.reset()
        llm.eval(window)
        scores = np.asarray(llm.scores[: len(window) - 1], dtype=np.float64)  # [T−1, V]: logits after each token
        log_probs = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
        total_nll -= float(log_probs[np.arange(len(window) - 1), window[1:]].sum())
        argmax.append(torch.from_numpy(scores.argmax(axis=1)))
    argmax = torch.stack(argmax)  # [W, T−1]
    return {"ppl": math.exp(total_nll / argmax.numel()), "agreement": float((argmax == reference).float().mean())}
