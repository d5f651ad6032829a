"""Corpora, token streams and batches.

The embedded default corpus, "python-docs", is text that ships with Python itself: the
documentation topics of `pydoc_data` plus every docstring of the standard library's source
(read with `ast`, so no module is imported and nothing runs). Everything therefore works offline
on any machine. "python-code" (`workbench.pycode`) is the ~100M-token corpus of the full
profiles: the machine's Python source, its training split a memmap that is never loaded whole.
A local text file or folder, or a Hugging Face `datasets` name (`hf:NAME`), work where the user
has them. Experiments take their tokens from `token_splits`, and check with `check_epochs`,
before training, that a full profile never repeats its data.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import WorkbenchError
from .paths import cache_dir

DEFAULT_CORPUS = "python-docs"
CODE_CORPUS = "python-code"  # workbench.pycode: the stdlib's and site-packages' source, ~100M tokens
HF_MAX_CHARS = 400_000_000  # of an hf: dataset, streamed: ~100M tokens of English, as python-code
TEXT_SUFFIXES = (".txt", ".md", ".rst", ".text")
_SKIPPED_STDLIB_DIRS = {"test", "tests", "idlelib", "site-packages", "lib2to3", "turtledemo", "__pycache__"}


@dataclass(frozen=True)
class Corpus:
    """Documents in a fixed order; `fingerprint` keys every cache derived from them."""

    name: str
    documents: tuple[str, ...]

    @property
    def n_chars(self) -> int:
        return sum(len(d) for d in self.documents)

    @property
    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for document in self.documents:
            digest.update(document.encode("utf-8", "replace"))
            digest.update(b"\0")
        return digest.hexdigest()[:16]


@functools.cache  # parsing the whole stdlib takes seconds, and every experiment, card and corpus plan asks again
def python_docs_sources() -> tuple[tuple[str, str], ...]:
    """python-docs' documents with their source: "" for a documentation topic, else the stdlib's
    top-level module or package whose docstrings they are (python-code keeps those of the held-out
    split out of its training text)."""
    from pydoc_data.topics import topics

    documents = [("", topics[key]) for key in sorted(topics)]
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for folder, subfolders, files in os.walk(stdlib):
        subfolders[:] = sorted(d for d in subfolders if d not in _SKIPPED_STDLIB_DIRS and not d.startswith("."))
        for file in sorted(f for f in files if f.endswith(".py")):
            try:
                tree = ast.parse(Path(folder, file).read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            docstrings = [
                ast.get_docstring(node)
                for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            ]
            text = "\n\n".join(d for d in docstrings if d)
            if text:
                documents.append((Path(folder, file).relative_to(stdlib).parts[0].removesuffix(".py"), text))
    return tuple(documents)


def _local_text(path: Path) -> tuple[str, ...]:
    files = (
        [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.suffix in TEXT_SUFFIXES and p.is_file())
    )
    if not files:
        raise WorkbenchError(
            f"no text files ({', '.join(TEXT_SUFFIXES)}) under {path}: point to a text file or a folder of them"
        )
    documents = tuple(_read_text(f) for f in files)
    if not any(d.strip() for d in documents):
        raise WorkbenchError(f"the corpus {path} is empty (no text in {len(files)} file(s)): point to a file with text")
    return documents


def _read_text(file: Path) -> str:
    """A file's text, refusing what is not UTF-8 text (a binary file would tokenise to noise, silently)."""
    data = file.read_bytes()
    nul = data.find(b"\0", 0, 65536)
    try:
        if nul >= 0:
            raise UnicodeDecodeError("utf-8", data, nul, nul + 1, "a NUL byte, so binary")
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise WorkbenchError(f"{file} is not UTF-8 text ({error.reason} at byte {error.start}): "
                             "give a plain-text corpus (.txt, .md, ...), or convert it with iconv") from None


def _hf_dataset(
    name: str, config: str | None, split: str, text_field: str, max_chars: int = HF_MAX_CHARS
) -> tuple[str, ...]:
    """The first `max_chars` characters of a `datasets` dataset (a Hub name or a local folder), streamed:
    a large Hub dataset (fineweb-edu) is read only as far as the budgets need, never downloaded whole."""
    try:
        import datasets
    except ImportError:
        raise WorkbenchError(f"corpus 'hf:{name}' needs the `datasets` package: pip install datasets") from None
    documents, size = [], 0
    try:
        for row in datasets.load_dataset(name, config, split=split, streaming=True):
            if text_field not in row:
                raise WorkbenchError(f"dataset {name!r} has no column {text_field!r} (columns: {', '.join(row)})")
            text = row[text_field]
            if text and text.strip():
                documents.append(text)
                size += len(text)
                if size >= max_chars:
                    break
    except WorkbenchError:
        raise
    except Exception as error:  # datasets raises many types; all mean "not reachable or not found"
        raise WorkbenchError(
            f"cannot load dataset {name!r} ({type(error).__name__}): offline? "
            f"Use {DEFAULT_CORPUS!r}, {CODE_CORPUS!r} or a local text file"
        ) from None
    if not documents:
        raise WorkbenchError(f"dataset {name!r} has no text in its {split!r} split")
    return tuple(documents)


def load_corpus(
    source: str = DEFAULT_CORPUS, config: str | None = None, split: str = "train", text_field: str = "text"
) -> Corpus:
    """A corpus by name: "python-docs" (embedded), a text file or folder, or "hf:NAME" (datasets)."""
    if source == DEFAULT_CORPUS:
        return Corpus(source, tuple(text for _, text in python_docs_sources()))
    if source == CODE_CORPUS:
        raise WorkbenchError(f"{CODE_CORPUS!r} is too large to hold as documents: use data.token_splits")
    if source.startswith("hf:"):
        return Corpus(source, _hf_dataset(source[3:], config, split, text_field))
    path = Path(source).expanduser()
    if not path.exists():
        raise WorkbenchError(
            f"corpus {source!r} not found: give {DEFAULT_CORPUS!r}, a text file or folder that exists, or 'hf:DATASET'"
        )
    return Corpus(path.name, _local_text(path))


def tokenizer_key(tokenizer) -> str:
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(repr((vocab[:: max(1, len(vocab) // 512)], len(vocab))).encode()).hexdigest()[:12]


def encode(tokenizer, texts: list[str]) -> list[np.ndarray]:
    """Token ids of each text with EOS appended (uint16 where the vocabulary fits), through the
    tokenizers library's parallel batch encoding (the same ids as one `tokenizer(text)` call each)."""
    dtype = np.uint16 if len(tokenizer) <= 2**16 else np.int32
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        ids = [e.ids for e in backend.encode_batch_fast(texts, add_special_tokens=False)]
    else:
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [np.array([*i, tokenizer.eos_token_id], dtype=dtype) for i in ids]


def tokenize(corpus: Corpus, tokenizer) -> torch.Tensor:
    """The corpus as one token stream (documents separated by EOS), cached per (corpus, tokenizer)."""
    path = cache_dir("tokens") / f"{corpus.fingerprint}-{tokenizer_key(tokenizer)}.npy"
    if path.is_file():
        return torch.from_numpy(np.load(path).astype(np.int64))
    chunks, step = [], 256  # documents per batch: the progress bar's step
    for start in tqdm(range(0, len(corpus.documents), step), desc=f"tokenizing {corpus.name}", leave=False):
        chunks += encode(tokenizer, list(corpus.documents[start : start + step]))
    array = np.concatenate(chunks)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npy")
    np.save(tmp, array)
    os.replace(tmp, path)  # atomic: a reader never sees half a file
    return torch.from_numpy(array.astype(np.int64))


def train_val_split(tokens: torch.Tensor, val_fraction: float = 0.05) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic split: the last `val_fraction` of the stream is held out, never trained on."""
    if not 0 < val_fraction < 1:
        raise WorkbenchError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    cut = int(len(tokens) * (1 - val_fraction))
    return tokens[:cut], tokens[cut:]


@dataclass(frozen=True)
class TokenSplits:
    """A corpus' training and held-out tokens. `train` is a torch tensor, or for python-code a
    read-only uint16 memmap (`blocks` and `batches` read from it without loading it)."""

    name: str
    fingerprint: str
    train: torch.Tensor | np.ndarray
    val: torch.Tensor

    @property
    def n_train(self) -> int:
        return len(self.train)

    @property
    def n_val(self) -> int:
        return len(self.val)


def token_splits(corpus: str, tokenizer) -> TokenSplits:
    """Training and held-out tokens of any corpus ("python-docs", "python-code", a path, "hf:NAME")."""
    if corpus == CODE_CORPUS:
        from . import pycode

        plan = pycode.plan(tokenizer)
        train, val, _ = pycode.load(tokenizer, plan_=plan)
        return TokenSplits(corpus, plan.fingerprint, train, torch.from_numpy(val.astype(np.int64)))
    text = load_corpus(corpus)
    train, val = train_val_split(tokenize(text, tokenizer))
    return TokenSplits(text.name, text.fingerprint, train, val)


def english_heldout(tokenizer) -> torch.Tensor:
    """English text never trained on by python-docs or python-code: python-docs' held-out split."""
    return train_val_split(tokenize(load_corpus(DEFAULT_CORPUS), tokenizer))[1]


def code_heldout(tokenizer) -> torch.Tensor:
    """python-code's held-out packages, built without tokenising its training part (seconds)."""
    from . import pycode

    return torch.from_numpy(pycode.build_heldout(pycode.plan(tokenizer), tokenizer).astype(np.int64))


def epochs(tokens_per_arm: int, n_train: int) -> float:
    """How many times an arm's training tokens go through the unique training text."""
    return tokens_per_arm / n_train


def check_epochs(profile, tokens_per_arm: int, n_train: int, corpus: str | None = None) -> float:
    """The epochs of an arm; a full profile may not exceed one unless `profile.allow_repeats`.

    Called before any training: repeated data turns a miniature reproduction's verdicts into
    statements about overfitting (the issue this guard came from: 3.5 to 267 epochs)."""
    value = epochs(tokens_per_arm, n_train)
    if profile.name == "full" and value > 1 and not getattr(profile, "allow_repeats", False):
        corpus = corpus or getattr(profile, "corpus", "the corpus")
        larger = "" if corpus == CODE_CORPUS else f"use -p corpus {CODE_CORPUS}, "
        raise WorkbenchError(
            f"{type(profile).__name__} 'full' trains {tokens_per_arm:,} tokens per arm, {value:.2f} epochs of "
            f"{corpus}'s {n_train:,} training tokens: {larger}train fewer tokens, or set -p allow_repeats true"
        )
    return value


def blocks(tokens: torch.Tensor | np.ndarray, block_len: int, max_blocks: int | None = None) -> torch.Tensor:
    """Packed, non-overlapping blocks [n_blocks, block_len]; the ragged tail is dropped.

    A tensor gives a view; a memmap gives an int64 copy of the first `max_blocks` blocks only."""
    n_blocks = len(tokens) // block_len
    if n_blocks == 0:
        raise WorkbenchError(
            f"the text has {len(tokens)} tokens, fewer than one block of {block_len}: use a shorter block or more text"
        )
    n = n_blocks if max_blocks is None else min(n_blocks, max_blocks)
    if isinstance(tokens, np.ndarray):
        return torch.from_numpy(np.asarray(tokens[: n * block_len], dtype=np.int64).reshape(n, block_len))
    return tokens[: n_blocks * block_len].view(n_blocks, block_len)[:n]


def batches(
    tokens: torch.Tensor,
    batch_size: int,
    block_len: int,
    device: str | torch.device = "cpu",
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> Iterator[torch.Tensor]:
    """Endless batches [batch_size, block_len] of randomly chosen packed blocks.

    A tensor (a small corpus): all blocks move to the device once, and indices are drawn there, so
    a training step never waits on a host-to-device copy. A memmap (python-code): indices are drawn
    on the CPU and only the chosen blocks are read and copied to the device, batch by batch. With
    several ranks (DDP), every rank draws the same global batch of `batch_size * world_size` blocks
    and keeps its own slice: the ranks' shards are disjoint and together are exactly what one
    process with the global batch would see.
    """
    if not 0 <= rank < world_size:
        raise WorkbenchError(f"rank must be in 0..world_size-1 ({world_size - 1}), got {rank}")
    if isinstance(tokens, np.ndarray):
        yield from _memmap_batches(tokens, batch_size, block_len, torch.device(device), seed, rank, world_size)
        return
    data = blocks(tokens, block_len).to(device)
    generator = torch.Generator(device=data.device).manual_seed(seed)
    while True:
        index = torch.randint(len(data), (batch_size * world_size,), device=data.device, generator=generator)
        yield data[index[rank * batch_size : (rank + 1) * batch_size]]


def _memmap_batches(
    tokens: np.ndarray, batch_size: int, block_len: int, device: torch.device, seed: int, rank: int, world_size: int
) -> Iterator[torch.Tensor]:
    n_blocks = len(tokens) // block_len
    if n_blocks == 0:
        blocks(tokens, block_len)  # the one-line error
    table = tokens[: n_blocks * block_len].reshape(n_blocks, block_len)  # a view: nothing is read
    generator = torch.Generator().manual_seed(seed)
    pin = device.type == "cuda"
    while True:
        index = torch.randint(n_blocks, (batch_size * world_size,), generator=generator)
        rows = np.sort(index[rank * batch_size : (rank + 1) * batch_size].numpy())  # sorted: sequential reads
        batch = torch.from_numpy(table[rows].astype(np.int64))
        yield batch.pin_memory().to(device, non_blocking=True) if pin else batch.to(device)
