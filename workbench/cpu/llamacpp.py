"""llama.cpp beside the torch precisions: what a user would pick instead for CPU inference.

llama-cpp-python (the optional extra `llamacpp`, built from source) runs the default model's own GGUF
file, Q4_1 weights in llama.cpp's kernels: the same file that `workbench.models` de-quantises into the
float32 model the other precisions start from. Everything here mirrors the torch side, so the rows
compare: `phases` is timed in the same interleaved rounds as the torch models (`decode.measure_phases`),
and `quality` scores the same held-out windows as `quantize.next_token_quality`.

`write_card` puts the file on the frontier's axes (`workbench.cards`), measured as the torch cards are:
perplexity on the cards' own windows from llama.cpp's logits at every position (the windows are the
cards' tokenizer ids, fed as ids: `check_tokenizer` refuses a file whose vocabulary numbers text
otherwise), zero-shot from its log-likelihood where the card profile scores zero-shot on a CPU, speed
from the one measure (`measure.model_speeds`, which times `LlamaCppEngine` in the same rounds as torch
models; one sequence, so batch > 1 shapes are not measured: None on the card). Weight bytes are the
file's size; parameters come from its tensors; KV bytes per token are derived, not measured:
llama.cpp's cache holds K and V of every layer in f16 unless told otherwise (we never tell it),
layers × 2 × KV heads × head dim × 2 bytes, all read from the file's header.
"""

from __future__ import annotations

import datetime
import importlib.util
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..cards import Card, CardProfile, device_name, heldout_windows, save_card, zeroshot_tasks
from ..errors import WorkbenchError
from ..measure import PhaseCalls, model_speeds
from ..runs import Run
from ..zeroshot import LogLik, accuracy
from .decode import Phases

NAME = "llama.cpp Q4_1"  # its row in the precision tables: llama.cpp on the default model's own Q4_1 file
KV_BYTES = 2  # llama.cpp's default KV cache type, f16 (`type_k`/`type_v` left unset)


def installed() -> bool:
    return importlib.util.find_spec("llama_cpp") is not None


def _load(gguf_file: Path, n_ctx: int, n_batch: int, threads: int | None = None, logits_all: bool = False):
    from llama_cpp import Llama

    # n_threads_batch too: llama-cpp-python runs prompts on every core otherwise, whatever n_threads says
    return Llama(str(gguf_file), n_ctx=n_ctx, n_batch=n_batch, n_threads=threads, n_threads_batch=threads,
                 logits_all=logits_all, verbose=False)  # fmt: skip


@dataclass(frozen=True)
class GgufFacts:
    """What a card needs from the file, read from its header and tensor table (no weight is decoded)."""

    params: int
    non_embedding_params: int  # all but the token embedding (and an output matrix, if the file has an untied one)
    tensor_bytes: int  # the tensors as stored (Q4_1 blocks, a Q8_0 embedding, f32 norms)
    file_bytes: int  # what the card's weight_bytes is: the file, tokenizer and metadata included
    vocab_size: int
    layers: int
    kv_heads: int
    head_dim: int

    @property
    def kv_bytes_per_token(self) -> int:
        """llama.cpp's f16 cache: K and V, layers × 2 × KV heads × head dim × 2 bytes (derived, not measured)."""
        return self.layers * 2 * self.kv_heads * self.head_dim * KV_BYTES


def gguf_facts(gguf_file: Path) -> GgufFacts:
    """The file's parameter counts, sizes and attention layout (gguf's reader: header and tensor table)."""
    from gguf import GGUFReader

    reader = GGUFReader(str(gguf_file))
    arch = reader.fields["general.architecture"].contents()

    def number(key: str) -> int:
        return int(reader.fields[f"{arch}.{key}"].contents())

    sizes = {t.name: int(t.n_elements) for t in reader.tensors}
    heads = number("attention.head_count")
    head_dim = number("attention.key_length") if f"{arch}.attention.key_length" in reader.fields else None
    embeddings = sizes.get("token_embd.weight", 0) + sizes.get("output.weight", 0)
    return GgufFacts(
        params=sum(sizes.values()), non_embedding_params=sum(sizes.values()) - embeddings,
        tensor_bytes=sum(int(t.n_bytes) for t in reader.tensors), file_bytes=Path(gguf_file).stat().st_size,
        vocab_size=int(reader.fields[f"{arch}.vocab_size"].contents()), layers=number("block_count"),
        kv_heads=number("attention.head_count_kv"), head_dim=head_dim or number("embedding_length") // heads,
    )  # fmt: skip


@dataclass(frozen=True)
class LlamaCppEngine:
    """The GGUF file in llama.cpp as `measure.model_speeds` times it (a `measure.Engine`), at `threads` threads.

    llama-cpp-python's `Llama` runs one sequence: a batch > 1 is a shape it cannot run (None, so not timed)."""

    gguf_file: Path
    threads: int
    vocab_size: int

    def phase_calls(self, prompt: torch.Tensor, new_tokens: int) -> PhaseCalls | None:
        if prompt.shape[0] != 1:
            return None
        calls = phases(self.gguf_file, prompt[0].tolist(), new_tokens)(self.threads)
        return PhaseCalls(calls["prefill"], calls["generate"] if new_tokens else None, 1, prompt.shape[1], new_tokens)


def engine(gguf_file: Path, threads: int | None = None) -> LlamaCppEngine:
    """The engine of `gguf_file` at `threads` threads (default: torch's, the thread count of the CPU cards)."""
    return LlamaCppEngine(Path(gguf_file), threads or torch.get_num_threads(), gguf_facts(gguf_file).vocab_size)


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


def _log_probs(llm, start: int, stop: int) -> torch.Tensor:
    """Log-probabilities [stop − start, V] of the next token after positions start..stop−1 (llama.cpp's logits)."""
    return torch.from_numpy(np.asarray(llm.scores[start:stop], dtype=np.float32)).log_softmax(-1)


def scored(gguf_file: Path, windows: torch.Tensor, threads: int | None = None) -> tuple[float, torch.Tensor]:
    """Mean NLL (nats) of every token after the first of `windows` [W, T], as `evaluate.perplexity` scores
    disjoint windows, and llama.cpp's most likely next token at each position [W, T−1]."""
    llm = _load(gguf_file, n_ctx=windows.shape[1] + 8, n_batch=windows.shape[1], threads=threads, logits_all=True)
    total_nll, argmax = 0.0, []
    for window in windows:
        llm.reset()
        llm.eval(window.tolist())
        log_probs = _log_probs(llm, 0, len(window) - 1)
        total_nll -= float(log_probs.gather(1, window[1:, None]).double().sum())
        argmax.append(log_probs.argmax(dim=1))
    argmax = torch.stack(argmax)
    return total_nll / argmax.numel(), argmax


def quality(gguf_file: Path, windows: torch.Tensor, reference: torch.Tensor) -> dict:
    """Perplexity of `windows` [W, T] (every token after the first scored) and the share of positions whose
    most likely next token equals `reference` [W, T−1] (float32's argmax), as `next_token_quality` reports them."""
    nll, argmax = scored(gguf_file, windows)
    return {"ppl": math.exp(nll), "agreement": float((argmax == reference).float().mean())}


def loglik(gguf_file: Path, threads: int | None = None) -> LogLik:
    """The zero-shot log-likelihood from llama.cpp's logits, Σ_t log p(continuation_t | context, ...), per pair
    (as `zeroshot.causal_loglik`); a context shared with the pair before stays in the KV cache (its options
    follow each other), `n_tokens` set back to its end, as llama-cpp-python's own prefix reuse does."""

    def score(contexts: Sequence[torch.Tensor], continuations: Sequence[torch.Tensor]) -> torch.Tensor:
        if any(len(c) == 0 for c in contexts):
            raise WorkbenchError("loglik needs a non-empty context for every pair (it predicts the first token)")
        if not contexts:
            return torch.zeros(0, dtype=torch.float64)
        longest = max(len(c) + len(x) for c, x in zip(contexts, continuations, strict=True))
        llm = _load(gguf_file, n_ctx=longest + 8, n_batch=longest, threads=threads, logits_all=True)
        out, held = [], None
        for context, continuation in zip(contexts, continuations, strict=True):
            ids = context.tolist()
            if ids == held:
                llm.n_tokens = len(ids)  # the next eval drops the KV cache after the context
            else:
                llm.reset()
                llm.eval(ids)
                held = ids
            llm.eval(continuation.tolist())
            log_probs = _log_probs(llm, len(ids) - 1, len(ids) + len(continuation) - 1)
            out.append(log_probs.gather(1, continuation[:, None]).double().sum())
        return torch.stack(out)

    return score


def check_tokenizer(gguf_file: Path, tokenizer, windows: dict[str, torch.Tensor]) -> None:
    """The cards' windows are the tokenizer's ids, fed to llama.cpp as ids: refuse a file whose own tokenizer
    numbers their text otherwise (its perplexity would then be of other windows)."""
    from llama_cpp import Llama

    llm = Llama(str(gguf_file), vocab_only=True, verbose=False)
    if llm.n_vocab() != len(tokenizer):
        raise WorkbenchError(f"{Path(gguf_file).name} has {llm.n_vocab()} tokens, the cards' tokenizer "
                             f"{len(tokenizer)}: use the GGUF of the model the tokenizer belongs to")  # fmt: skip
    for which, window in windows.items():
        text = tokenizer.decode(window[0].tolist())
        ours = tokenizer(text, add_special_tokens=False)["input_ids"]
        theirs = llm.tokenize(text.encode(), add_bos=False, special=True)
        if ours != theirs:
            at = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), min(len(ours), len(theirs)))
            raise WorkbenchError(f"{Path(gguf_file).name}'s tokenizer numbers the {which} held-out text otherwise "
                                 f"than the cards' tokenizer (from token {at}): use the GGUF of the tokenizer's "
                                 "model")  # fmt: skip


def _llama_cpp_version() -> str:
    import llama_cpp

    return llama_cpp.__version__


def write_card(
    run: Run,
    gguf_file: Path,
    tokenizer,
    settings: CardProfile,
    *,
    arm: str,
    threads: int | None = None,
    speed: dict | None = None,
) -> Card:
    """The card of `gguf_file` run by llama.cpp on the CPU at `threads` threads (default: torch's, as the CPU
    cards' speeds are), measured as `cards.write_card` measures a torch model; stored with `run`, returned.

    `speed`: a `model_speeds` row measured already (`engine` timed in the same rounds as the torch references);
    else measured here. What llama.cpp cannot run (a prefill or decode batch > 1) is None, never 0."""
    gguf_file = Path(gguf_file)
    threads = threads or torch.get_num_threads()
    facts = gguf_facts(gguf_file)
    windows = heldout_windows(tokenizer, settings)
    check_tokenizer(gguf_file, tokenizer, windows)
    quality = {f"{which}_ppl": math.exp(scored(gguf_file, w, threads)[0]) for which, w in windows.items()}
    shot = accuracy(zeroshot_tasks(tokenizer, settings), loglik(gguf_file, threads)) if settings.cpu_zeroshot else {}
    shapes = settings.shapes(torch.device("cpu"))
    if speed is None:
        speed = model_speeds({NAME: LlamaCppEngine(gguf_file, threads, facts.vocab_size)}, shapes, "cpu")[NAME]
    card = Card(
        idea="reference", arm=arm, run_id=run.id, params=facts.params, non_embedding_params=facts.non_embedding_params,
        precision="Q4_1", weight_bytes=facts.file_bytes, kv_bytes_per_token=float(facts.kv_bytes_per_token),
        **quality, quality_is_bound=False, eval_spec=settings.eval_spec,
        device=device_name(torch.device("cpu"), threads), device_kind="cpu", date=datetime.date.today().isoformat(),
        speed={k: None if v is None or math.isnan(v) else float(v) for k, v in speed.items()},
        speed_shapes=f"prefill {shapes.prefill_batch}x{shapes.prefill_len}, decode {shapes.new_tokens} tokens",
        cloze_acc=shot.get("cloze_acc"), choice_acc=shot.get("choice_acc"), profile=settings.name,
        extra={"engine": f"llama-cpp-python {_llama_cpp_version()}",
               "gguf": gguf_file.name, "tensor_bytes": facts.tensor_bytes,
               "kv_cache": "f16, derived: layers x 2 x KV heads x head dim x 2 bytes",
               "not_measured": "batch > 1 (one-sequence engine)"},
    )  # fmt: skip
    return save_card(run, card)
