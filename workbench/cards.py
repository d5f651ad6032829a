"""Model cards: every model any notebook makes, measured on the same axes, so ideas can be set side by side.

Each paper compares its method with its own baselines only; a card puts any model (a teacher, an
EchoAtt student, a recursive arm, a quantised copy, a GQA model, an MDM, a GaLore-trained model) on
axes every other model shares:

- size: total and non-embedding parameters (unique tensors: shared layers counted once, as the
  recursive paper counts them), weight bytes at the precision it runs in;
- memory per generated token: KV-cache bytes per token, *measured* from the cache a prefill leaves
  (so an EchoAtt follower that keeps values only, or a GQA layout, counts as it is); None for a model
  without a KV cache (a masked diffusion model recomputes every position at every step);
- quality on the **common evaluation**: perplexity on python-code's held-out packages
  (`data.code_heldout`) and on English held-out text (`data.english_heldout`), the first
  `eval_windows` disjoint windows of `eval_context` tokens of each, the same for every model. A masked
  diffusion model gives exp of its ELBO bound on the NLL: an upper bound on its perplexity, marked
  `quality_is_bound`. Zero-shot accuracy (`workbench.zeroshot`, built from the English held-out text;
  on a GPU, and on a CPU only when `cpu_zeroshot`: there it takes minutes per model);
- speed: `workbench.measure.model_speeds`, the one speed measure (prefill tok/s, decode tok/s at
  batch 1 and 32), on the device the card was written on;
- cost: training tokens and training FLOPs, 3 × the forward FLOPs (`forward_flops`): per token
  2·N_c (N_c: the weights of every linear layer, times the number of times a forward applies it, so a
  looped layer counts once per loop and a tied output layer counts as the matmul it is) plus
  4·T·d_attn per attention application (QKᵀ and AV over the whole window, Chinchilla's count, not
  halved for the causal mask). This is "6ND plus attention" with N what a token actually multiplies by;
- device and date, and whether its weights are kept (safetensors in the run's folder when they are
  under `keep_weights_mb`), so a frontier point can be reloaded (`load_model`), chatted with and
  evaluated again.

A card is written by ONE call at the end of an arm (`write_card`), stored as the run's `card.json`
artifact, and read back for all runs by `load_cards`. A card never holds NaN: a number that was not
measured is None, and a measured one that is not finite (a diverged model) is refused.

Over 400 lines because every axis of a card is measured here, once for all five ideas (sizes, KV bytes,
FLOPs, the common evaluation, speed, kept weights): splitting it would spread one definition of "the same
axes" over several modules that each idea would then have to call in the right order.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import importlib
import io
import json
import math
import platform
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from torch import nn

from . import data, zeroshot
from .errors import WorkbenchError
from .evaluate import perplexity
from .generate import output_cache
from .measure import SpeedShapes, has_kv_cache, model_speeds
from .profiles import Profile
from .runs import Run, RunStore

CARD = "card.json"  # the artifact name of a run's card
WEIGHTS = "weights.safetensors"
CONFIG = "config.json"
Nll = Callable[[nn.Module, torch.Tensor], float]  # (model, windows [W, T]) → mean NLL per token, nats


@dataclass(frozen=True)
class CardProfile(Profile):
    """The common evaluation and speed shapes of every card (the same for every model of a profile)."""

    eval_context: int = 512  # tokens per window of both held-out sets
    eval_windows: int = 32  # windows of each held-out set (16,384 tokens at 512)
    eval_batch: int = 8
    zeroshot_items: int = 200  # cloze and choice items each, from the English held-out text
    cpu_zeroshot: bool = False  # on a CPU, ~2,000 scored sequences take minutes per model: None there
    zeroshot_context: int = 128
    prefill_batch: int = 32
    prefill_len: int = 1024
    decode_batches: tuple[int, ...] = (1, 32)
    new_tokens: int = 32
    rounds: int = 5
    cpu_prefill: tuple[int, ...] = (1, 256)  # batch, length: a CPU takes seconds per call at 32 × 1024
    cpu_decode_batches: tuple[int, ...] = (1, 8)
    keep_weights_mb: float = 300.0  # keep a model's weights when they take fewer MB (SmolLM2-135M bf16: 270)

    def shapes(self, device: torch.device) -> SpeedShapes:
        """The speed shapes on `device`: every GPU card shares one, every CPU card another (never compared)."""
        batch, length, decode = self.prefill_batch, self.prefill_len, self.decode_batches
        if device.type == "cpu":
            (batch, length), decode = self.cpu_prefill, self.cpu_decode_batches
        return SpeedShapes(batch, length, decode, new_tokens=self.new_tokens, rounds=self.rounds)

    @property
    def eval_spec(self) -> str:
        """Cards compare only within one evaluation: this names it."""
        return f"{self.eval_windows}x{self.eval_context}"


CardProfile.presets = {
    "smoke": dict(eval_context=64, eval_windows=4, eval_batch=4, zeroshot_items=8, zeroshot_context=32,
                  prefill_batch=2, prefill_len=64, decode_batches=(1, 4), new_tokens=4, rounds=2, keep_weights_mb=20.0,
                  cpu_prefill=(2, 64), cpu_decode_batches=(1, 4), cpu_zeroshot=True),
    "full": {},
}  # fmt: skip


@dataclass(frozen=True)
class Card:
    """One model on the common axes (see the module docstring for what each number is)."""

    idea: str
    arm: str
    run_id: int | None
    params: int
    non_embedding_params: int
    precision: str
    weight_bytes: int
    kv_bytes_per_token: float | None
    code_ppl: float
    english_ppl: float
    quality_is_bound: bool
    eval_spec: str
    device: str
    device_kind: str  # "gpu" or "cpu": speed axes never mix the two
    date: str
    speed: dict[str, float | None] = field(default_factory=dict)  # model_speeds' row (None: not measured)
    speed_shapes: str = ""
    cloze_acc: float | None = None
    choice_acc: float | None = None
    training_tokens: int | None = None
    training_flops: float | None = None
    corpus: str | None = None
    profile: str = "full"
    weights_kept: bool = False
    extra: dict = field(default_factory=dict)  # what an idea needs to rebuild the model, what it was composed of

    def __post_init__(self) -> None:
        for key, value in [*dataclasses.asdict(self).items(), *self.speed.items()]:
            if isinstance(value, float) and not math.isfinite(value):
                raise WorkbenchError(f"card of {self.idea} {self.arm!r}: {key} is {value}, not a measured number "
                                     "(a diverged model gets no card; an unmeasured number is None)")  # fmt: skip

    def as_row(self) -> dict:
        """Flat: the speed keys become columns; `decode_latency_ms` is ms per token at batch 1."""
        row = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("speed", "extra")}
        row |= self.speed
        rate = self.speed.get("decode_b1_tok_s")
        row["decode_latency_ms"] = 1000 / rate if rate else None
        row["composed"] = bool(self.extra.get("composed_of"))
        return row


# -- the numbers ---------------------------------------------------------------------------------
def unwrap(model: nn.Module) -> nn.Module:
    """The module under a `torch.compile` wrapper."""
    return getattr(model, "_orig_mod", model)


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(total, non-embedding) unique parameters: tied and shared tensors once; non-embedding leaves out the
    input embedding and an untied output embedding (Kaplan et al.'s N)."""
    model = unwrap(model)
    unique = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in unique.values())
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else getattr(model, "lm_head", None)
    if isinstance(getattr(head, "weight", None), nn.Parameter):
        embeddings.add(id(head.weight))
    return total, total - sum(unique[i].numel() for i in embeddings if i in unique)


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the state dict's unique tensors (tied ones once; quantised weights as stored; no rotary
    tables, which are not saved): what storing the model takes, and what a decode step reads."""
    state = unwrap(model).state_dict()
    if not storable(model):  # packed objects (torch.ao dynamic quantisation): their serialized size
        buffer = io.BytesIO()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.save({k: v for k, v in state.items() if not isinstance(v, torch.dtype)}, buffer)
        return buffer.tell()
    tensors = {t.data_ptr(): t for t in state.values() if t.numel()}
    return sum(t.numel() * t.element_size() for t in tensors.values())


@torch.no_grad()
def kv_bytes_per_token(model: nn.Module, tokens: int = 16) -> float | None:
    """KV-cache bytes per token, measured after a prefill of `tokens` tokens (None: the model keeps no cache)."""
    model = unwrap(model)
    if not has_kv_cache(model):
        return None
    device = next(model.parameters()).device
    cache = output_cache(model(input_ids=torch.zeros(1, tokens, dtype=torch.long, device=device), use_cache=True))
    held = [t for layer in cache.layers for t in (layer.keys, layer.values) if t is not None]
    return sum(t.numel() * t.element_size() for t in held) / tokens


@torch.no_grad()
def forward_flops(model: nn.Module, tokens: int, context: int) -> float:
    """FLOPs of forward passes over `tokens` tokens in windows of `context`: per token 2·N_c (every linear
    layer's weights times the times one forward applies it) + 4·context·d_attn per attention application.
    Counted by forward hooks: modules named *Linear, modules named *Attention (the innermost), and any module
    with `weights_applied(*args)` (weights it multiplies per token, e.g. a per-depth LoRA)."""
    model = unwrap(model)
    config = model.config
    d_attn = config.num_attention_heads * getattr(config, "head_dim", config.hidden_size // config.num_attention_heads)
    counts = {"linear": 0, "attention": 0}

    def on_linear(module: nn.Module, args, output) -> None:
        counts["linear"] += module.in_features * module.out_features

    def on_attention(module: nn.Module, args, output) -> None:
        counts["attention"] += 1

    def on_weights(module: nn.Module, args, output) -> None:  # a module that says what it multiplies (a LoRA)
        counts["linear"] += module.weights_applied(*args)

    hooks = []
    for module in model.modules():
        if hasattr(module, "weights_applied"):
            hooks.append(module.register_forward_hook(on_weights))
        elif hasattr(module, "in_features") and type(module).__name__.endswith("Linear"):
            hooks.append(module.register_forward_hook(on_linear))
        elif "Attention" in type(module).__name__ and not any(
            "Attention" in type(child).__name__ for child in module.modules() if child is not module
        ):
            hooks.append(module.register_forward_hook(on_attention))
    try:
        device = next(model.parameters()).device
        model(input_ids=torch.zeros(1, 2, dtype=torch.long, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return float(tokens) * (2 * counts["linear"] + 4 * context * d_attn * counts["attention"])


def train_flops(model: nn.Module, tokens: int, context: int) -> float:
    """3 × the forward FLOPs (the backward pass costs twice the forward): "6ND plus attention"."""
    return 3 * forward_flops(model, tokens, context)


def device_name(device: torch.device, threads: int | None = None) -> str:
    """The device a card was measured on; a CPU with its thread count (torch's, unless another engine's given)."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    return f"cpu: {platform.processor() or platform.machine()}, {threads or torch.get_num_threads()} threads"


_HELDOUT: dict[tuple[str, str], torch.Tensor] = {}
_TASKS: dict[tuple[str, int, int], zeroshot.ZeroShotTasks] = {}


def _heldout(which: str, tokenizer) -> torch.Tensor:
    """The held-out tokens, built once per process and vocabulary (seconds each): keyed by the vocabulary, not
    the tokenizer object, since experiments load a fresh tokenizer per arm."""
    key = (which, data.tokenizer_key(tokenizer))
    if key not in _HELDOUT:
        _HELDOUT[key] = (data.code_heldout if which == "code" else data.english_heldout)(tokenizer)
    return _HELDOUT[key]


def _tasks(tokenizer, items: int, context: int) -> zeroshot.ZeroShotTasks:
    key = (data.tokenizer_key(tokenizer), items, context)
    if key not in _TASKS:
        _TASKS[key] = zeroshot.build_tasks(_heldout("english", tokenizer), tokenizer, n_items=items, context=context)
    return _TASKS[key]


def heldout_windows(tokenizer, settings: CardProfile) -> dict[str, torch.Tensor]:
    """{"code": [W, T], "english": [W, T]}: the disjoint windows every card is scored on (`common_quality` scores
    these through `perplexity`), for a model outside torch (llama.cpp) that scores them itself."""
    return {which: data.blocks(_heldout(which, tokenizer), settings.eval_context)[: settings.eval_windows]
            for which in ("code", "english")}  # fmt: skip


def zeroshot_tasks(tokenizer, settings: CardProfile) -> zeroshot.ZeroShotTasks:
    """The zero-shot items every card is scored on (for a model outside torch, with its own log-likelihood)."""
    return _tasks(tokenizer, settings.zeroshot_items, settings.zeroshot_context)


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def common_quality(
    model: nn.Module, tokenizer, settings: CardProfile, nll: Nll | None = None, token_ids: torch.Tensor | None = None
) -> dict[str, float]:
    """Perplexity (or, with `nll`, exp of the bound it returns) on code and English held-out windows
    (`token_ids`: the tokenizer's id → the model's, for a model trained on renumbered tokens)."""
    model = unwrap(model)
    device = next(model.parameters()).device
    out = {}
    for which in ("code", "english"):
        tokens = _heldout(which, tokenizer)
        tokens = tokens if token_ids is None else token_ids[tokens]
        with _autocast(device):
            if nll is None:
                ppl = perplexity(model, tokens, context_len=settings.eval_context, batch_size=settings.eval_batch,
                                 max_windows=settings.eval_windows, progress=False)["ppl"]  # fmt: skip
            else:
                windows = data.blocks(tokens, settings.eval_context)[: settings.eval_windows].to(device)
                ppl = math.exp(nll(model, windows))
        out[f"{which}_ppl"] = float(ppl)
    return out


def zero_shot(
    model: nn.Module,
    tokenizer,
    settings: CardProfile,
    loglik: zeroshot.LogLik | None = None,
    ids: torch.Tensor | None = None,
) -> dict:
    """Cloze and 4-way choice accuracy on the English held-out items (`loglik`: an MDM's own)."""
    tasks = _tasks(tokenizer, settings.zeroshot_items, settings.zeroshot_context)
    tasks = tasks if ids is None else tasks.mapped(ids)
    device = next(unwrap(model).parameters()).device
    with _autocast(device):
        return zeroshot.accuracy(tasks, loglik or zeroshot.causal_loglik(unwrap(model), device))


# -- writing and reading -------------------------------------------------------------------------
def write_card(
    run: Run,
    model: nn.Module,
    *,
    idea: str,
    arm: str,
    tokenizer,
    profile: str | CardProfile = "full",
    precision: str | None = None,
    training_tokens: int | None = None,
    training_context: int | None = None,
    training_flops: float | None = None,
    corpus: str | None = None,
    mdm_nll: Nll | None = None,
    mdm_loglik: zeroshot.LogLik | None = None,
    params_of: nn.Module | None = None,
    extra: dict | None = None,
    speed: dict | None = None,
    token_ids: torch.Tensor | None = None,
) -> Card:
    """Measure `model` as deployed (`deployed`: bf16 on a GPU; a CPU model in the precision given) on the
    common axes, keep its weights when small enough, and store the card with `run`; returns it.

    `mdm_nll`/`mdm_loglik`: a masked diffusion model's ELBO bound (its quality is then marked a bound)
    and log-likelihood for zero-shot. `params_of`: the float model a quantised copy was made from (its
    parameter counts; the copy's own weight bytes). `training_flops`: when the arm spent more than its
    own training steps (a teacher's forward in distillation); else `train_flops`: 3 × forward FLOPs of
    `training_tokens` in windows of `training_context`. `speed`: a `model_speeds` row measured already
    (in the same rounds as the arm's rivals); else measured here. `token_ids`: tokenizer id → model id for
    a model trained on a reduced vocabulary (its perplexities then compare only with its own kind: the
    evaluation is named apart).
    """
    settings = profile if isinstance(profile, CardProfile) else CardProfile.resolve(profile)
    model = deployed(model)
    first = next(model.parameters())
    device = first.device
    total, non_embedding = parameter_counts(params_of or model)
    if training_flops is None and training_tokens is not None:
        training_flops = train_flops(params_of or model, training_tokens, training_context or settings.eval_context)
    quality = common_quality(model, tokenizer, settings, mdm_nll, token_ids)
    if not all(math.isfinite(v) for v in quality.values()):
        raise WorkbenchError(f"card of {idea} {arm!r}: held-out perplexity {quality} is not finite (a diverged model "
                             "gets no card)")  # fmt: skip
    shot = (
        {}
        if device.type == "cpu" and not settings.cpu_zeroshot
        else zero_shot(model, tokenizer, settings, mdm_loglik, token_ids)
    )
    shapes = settings.shapes(device)
    shapes = shapes if mdm_nll is None else dataclasses.replace(shapes, decode_batches=())
    row = speed if speed is not None else model_speeds({arm: model}, shapes, device)[arm]  # an MDM: no KV decode
    size = weight_bytes(model)
    spec = settings.eval_spec + ("" if token_ids is None else f", vocab {int(token_ids.max()) + 1}")
    card = Card(
        idea=idea, arm=arm, run_id=run.id, params=total, non_embedding_params=non_embedding,
        precision=precision or str(first.dtype).removeprefix("torch."), weight_bytes=size,
        kv_bytes_per_token=None if mdm_nll else kv_bytes_per_token(model), **quality,
        quality_is_bound=mdm_nll is not None, eval_spec=spec, device=device_name(device),
        device_kind="gpu" if device.type == "cuda" else "cpu", date=datetime.date.today().isoformat(),
        speed={k: None if v is None or math.isnan(v) else float(v) for k, v in row.items()},
        speed_shapes=f"prefill {shapes.prefill_batch}x{shapes.prefill_len}, decode {shapes.new_tokens} tokens",
        cloze_acc=shot.get("cloze_acc"), choice_acc=shot.get("choice_acc"), training_tokens=training_tokens,
        training_flops=training_flops, corpus=corpus, profile=settings.name,
        weights_kept=size <= settings.keep_weights_mb * 2**20 and storable(model), extra=extra or {},
    )  # fmt: skip
    if card.weights_kept:
        keep_weights(run, model)
    return save_card(run, card)


def save_card(run: Run, card: Card) -> Card:
    """Store `card` as `run`'s card artifact (what `load_cards` reads back)."""
    run.log_artifact(CARD, dataclasses.asdict(card))
    return card


def deployed(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` as it is deployed: a float32 model on a GPU runs in bf16; anything else
    (a CPU model, a quantised or bf16 copy) as given. A copy, so the caller's model keeps its mode and dtype."""
    model = copy.deepcopy(unwrap(model)).eval().requires_grad_(False)
    first = next(model.parameters())
    return model.to(torch.bfloat16) if first.device.type == "cuda" and first.dtype == torch.float32 else model


def storable(model: nn.Module) -> bool:
    """Whether the state dict is plain tensors (torch.ao's dynamic quantisation also holds dtypes and packed
    objects, which safetensors cannot hold)."""
    return all(isinstance(value, torch.Tensor) for value in model.state_dict().values())


def keep_weights(run: Run, model: nn.Module) -> None:
    """The state dict as safetensors (tied tensors once) and the config, in the run's folder."""
    from safetensors.torch import save_model

    run.folder.mkdir(parents=True, exist_ok=True)
    save_model(model, str(run.folder / WEIGHTS))
    run.log_artifact(WEIGHTS, run.folder / WEIGHTS)
    config = getattr(model, "config", None)
    run.log_artifact(CONFIG, config.to_dict() if config is not None else {})


def load_cards(store: RunStore) -> pd.DataFrame:
    """Every stored card as one row (columns: `Card.as_row`), with the run's name, sweep and status."""
    runs = store.runs().set_index("id")
    rows = []
    for run_id, path in store.artifact_paths(CARD).items():
        if run_id in runs.index and Path(path).is_file():
            row = Card(**json.loads(Path(path).read_text())).as_row()
            rows.append(row | {"run": runs.at[run_id, "name"], "sweep": runs.at[run_id, "sweep"],
                               "status": runs.at[run_id, "status"]})  # fmt: skip
    return pd.DataFrame(rows)


def load_model(store: RunStore, run_id: int, build: Callable[[dict], nn.Module] | None = None) -> nn.Module:
    """A card's model from its kept weights: `build(config)` makes the skeleton (default: the transformers
    class its config names; an idea's own model, e.g. an EchoAtt student, brings its builder, or names one
    as "module:function" in the card's `extra["builder"]`), then the weights load strictly."""
    from safetensors.torch import load_model as load_into

    files = store.artifacts(run_id)
    if WEIGHTS not in files:
        raise WorkbenchError(f"run {run_id} kept no weights (its card says weights_kept=False or it has no card)")
    config = json.loads(files[CONFIG].read_text())
    card = json.loads(files[CARD].read_text())
    if build is None and "builder" in card.get("extra", {}):
        module, name = card["extra"]["builder"].split(":")
        build = getattr(importlib.import_module(module), name)
    if build is None:
        from transformers import AutoConfig, AutoModelForCausalLM

        build = lambda cfg: AutoModelForCausalLM.from_config(AutoConfig.for_model(**cfg))  # noqa: E731
    model = build(config)
    load_into(model, str(files[WEIGHTS]))
    return model.eval()
