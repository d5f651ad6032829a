"""The training loop every experiment shares, and what makes it fast on a GPU.

One function, `train`, that any experiment drives with its own loss (distillation, masked
diffusion) and optimizer (GaLore). Per step: gradient accumulation over micro-batches, bf16
autocast on a GPU, gradient clipping, a cosine schedule with linear warm-up. A Ctrl-C saves a
checkpoint and marks the run interrupted, so nothing trained is lost.

(About 400 lines, kept in one file on purpose: the loop, its losses and what makes it fast are
read together, top to bottom, as nanoGPT's train.py is.)

Where the time goes, and what the loop does about it (benchmarks/train_speed.py measures it):
- No host-device synchronisation inside a step: the running loss stays on the device and is read
  every `log_every` steps; batches are drawn on the device (`workbench.data.batches`).
- `torch.compile` of the whole step's loss (`TrainConfig.compile`): forward and backward become one
  graph, RMSNorm, RoPE, SwiGLU, residual adds and the loss's softmax fuse into few kernels, and
  Python launch overhead goes. Attention stays `scaled_dot_product_attention` with a causal flag
  and no mask (`decoder_states`), so it runs the flash kernel. CUDA graphs replay the step with one
  launch where that is safe (`compile_mode`).
- `causal_lm_loss` never materialises the [B·T, 49k] logits, compiled or eager: `linear_cross_entropy`
  goes a chunk of tokens at a time and computes each chunk's gradients in the forward pass, so at
  most one chunk of logits exists and nothing of them is kept for the backward (with the logits
  materialised, 32×512 tokens keep 1.6 GB of bf16 logits alive from the forward to the backward).
- Fused AdamW (one kernel for all parameters) and `zero_grad(set_to_none=True)`.
- Several GPUs: run the same code under `torchrun`; `train` wraps the step in DDP (see
  `workbench.distributed`), syncs gradients only at the last micro-step and logs from rank 0.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from . import distributed
from .errors import WorkbenchError
from .runs import Run

LossFn = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]
EvalFn = Callable[[torch.nn.Module], dict[str, float]]
STRATEGIES = ("ddp",)
COMPILE_MODES = ("auto", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


@dataclass
class TrainConfig:
    """`compile`: None compiles on a GPU when the loss is `causal_lm_loss` or declares itself safe
    (`loss_fn.compile_safe = True`) and the model is a stock transformers model; True/False force
    it. A custom loss that registers forward hooks inside the body must leave it off: a compiled
    body does not see hooks added later.
    `compile_mode`: torch.compile's mode ("default", "reduce-overhead": CUDA graphs, "max-autotune");
    "auto" picks "reduce-overhead" where it is safe (see `compile_mode`), else "default".
    `strategy`: how several processes share the work under torchrun; only "ddp" exists."""

    steps: int = 100
    lr: float = 3e-4
    warmup_steps: int = 10
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    grad_accum: int = 1
    clip_norm: float | None = 1.0
    log_every: int = 10
    eval_every: int | None = None
    bf16: bool = True
    checkpoint: bool = True
    compile: bool | None = None
    compile_mode: str = "auto"
    strategy: str = "ddp"

    def __post_init__(self) -> None:
        if self.strategy == "fsdp":
            raise WorkbenchError(
                "FSDP is not supported by the workbench loop; use DDP (strategy='ddp'), which fits models of this size"
            )
        if self.strategy not in STRATEGIES:
            raise WorkbenchError(f"unknown strategy {self.strategy!r}: use 'ddp'")
        if self.compile_mode not in COMPILE_MODES:
            raise WorkbenchError(f"unknown compile_mode {self.compile_mode!r}: use one of {', '.join(COMPILE_MODES)}")
        if self.steps < 1 or self.grad_accum < 1 or self.log_every < 1:
            raise WorkbenchError(
                f"steps, grad_accum and log_every must be >= 1, got {self.steps}, {self.grad_accum}, {self.log_every}"
            )


# -- the loss ----------------------------------------------------------------------------------
def _softmax_cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, scale: torch.Tensor, ignore_index: int, with_grad: bool
):
    """One chunk: summed loss and, if asked, ∂(scale·loss)/∂logits = scale·(softmax(z) − onehot(y)).

    logits [n, V] in the matmul dtype; the arithmetic is float32, the returned gradient is in the
    logits' dtype, ready for the next matmul. Compiled on a GPU, this is two passes over the logits.
    """
    z = logits.float()  # [n, V]
    lse = torch.logsumexp(z, dim=-1)  # [n]
    valid = targets != ignore_index
    safe = torch.where(valid, targets, 0)[:, None]  # [n, 1]
    loss_sum = torch.where(valid, lse - z.gather(1, safe).squeeze(1), 0.0).sum()
    if not with_grad:
        return loss_sum, None
    if torch.compiler.is_compiling():  # one fused pass: the one-hot is an index comparison, never stored
        onehot = torch.arange(z.shape[1], device=z.device)[None, :] == safe  # [n, V]
        grad = torch.exp(z - lse[:, None]) - onehot.float()
        return loss_sum, (grad * (scale * valid)[:, None]).to(logits.dtype)
    grad = (z - lse[:, None]).exp_()  # eager (CPU): in place, the fewest passes over [n, V]
    grad.scatter_add_(1, safe, torch.full_like(lse[:, None], -1.0))
    return loss_sum, grad.mul_((scale * valid)[:, None]).to(logits.dtype)


_compiled_chunk: Callable | None = None


def _chunk_kernel(device: torch.device) -> Callable:
    global _compiled_chunk
    if device.type != "cuda":
        return _softmax_cross_entropy
    if _compiled_chunk is None:
        _compiled_chunk = torch.compile(
            _softmax_cross_entropy
        )  # a second chunk shape (evaluation) compiles a dynamic kernel, once
    return _compiled_chunk


class LinearCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of logits z = h Wᵀ, with z computed a chunk of tokens at a time.

    The forward pass computes the gradients too: for a chunk, ∂L/∂z = (softmax(z) − onehot(y))/N,
    ∂L/∂h = (∂L/∂z) W and ∂L/∂W += (∂L/∂z)ᵀ h. So no logits are kept for the backward pass, which
    only scales the stored gradients; peak memory is one chunk of logits, not [N, V] in float32.
    The matmuls run in the autocast dtype (bf16 on a GPU), as `nn.Linear` would under autocast.
    """

    @staticmethod
    def forward(
        ctx,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        targets: torch.Tensor,
        chunk_tokens: int,
        ignore_index: int,
        grad_enabled: bool,
    ):
        device = hidden.device.type
        dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        need_h, need_w = (
            grad_enabled and ctx.needs_input_grad[0],
            grad_enabled and ctx.needs_input_grad[1],
        )  # not under no_grad
        scale = 1.0 / (targets != ignore_index).sum().clamp(min=1).float()  # a device tensor: no sync
        w = weight.to(dtype)  # [V, d]
        grad_h = torch.empty_like(hidden) if need_h else None  # [N, d]
        grad_w = torch.zeros_like(weight, dtype=torch.float32) if need_w else None  # [V, d]
        # traced whole into a compiled step (dynamo inlines the chunk loop), or the chunk kernel compiled alone
        kernel = _softmax_cross_entropy if torch.compiler.is_compiling() else _chunk_kernel(hidden.device)
        total = torch.zeros((), device=hidden.device, dtype=torch.float32)
        for start in range(0, len(targets), chunk_tokens):
            h = hidden[start : start + chunk_tokens].to(dtype)  # [n, d]
            loss_sum, grad_z = kernel(
                h @ w.T, targets[start : start + chunk_tokens], scale, ignore_index, need_h or need_w
            )
            total += loss_sum
            if need_h:
                grad_h[start : start + chunk_tokens] = grad_z @ w
            if need_w:
                grad_w += (grad_z.T @ h).float()
        ctx.save_for_backward(grad_h, grad_w)
        ctx.weight_dtype = weight.dtype
        return total * scale

    @staticmethod
    def backward(ctx, grad_loss: torch.Tensor):
        grad_h, grad_w = ctx.saved_tensors
        grad_h = grad_h * grad_loss.to(grad_h.dtype) if grad_h is not None else None
        grad_w = (grad_w * grad_loss).to(ctx.weight_dtype) if grad_w is not None else None
        return grad_h, grad_w, None, None, None, None


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    chunk_tokens: int = 8192,
    ignore_index: int = -100,
) -> torch.Tensor:
    """mean_i CE(h_i Wᵀ, y_i) over targets ≠ ignore_index; hidden [N, d], weight [V, d], targets [N]."""
    return LinearCrossEntropy.apply(hidden, weight, targets, chunk_tokens, ignore_index, torch.is_grad_enabled())


LOSS_CHUNK_TOKENS = 8192  # tokens per chunk of logits in the training loss: 8192 × 49,152 bf16 = 0.8 GB
FUSED_HEAD_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")  # logits = lm_head(model(x)), nothing else


def plain_head(model: nn.Module) -> nn.Linear | None:
    """The output layer, when the model's logits are exactly `lm_head(body(x))` (no soft-capping or scale)."""
    config = getattr(model, "config", None)
    head = getattr(model, "lm_head", None)
    if getattr(config, "model_type", None) not in FUSED_HEAD_MODEL_TYPES or not isinstance(
        getattr(model, "model", None), nn.Module
    ):
        return None
    return head if type(head) is nn.Linear and head.bias is None else None


def _full_causal(config) -> bool:
    """Every layer attends to every earlier token (no sliding window), so a causal flag is the whole mask."""
    kinds = getattr(config, "layer_types", None) or ["full_attention"]
    return all(kind == "full_attention" for kind in kinds) and getattr(config, "sliding_window", None) is None


def decoder_states(model: nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Final hidden states [B, T, d] of a LLaMA-family body over unpadded token blocks [B, T].

    Runs the body's own modules (embedding, rotary tables, decoder layers, final norm) with no
    attention mask, so scaled-dot-product attention gets `is_causal=True` and its flash kernel,
    eager or compiled. Through `model.model(...)` transformers builds an explicit [T, T] mask
    whenever it sees itself compiled (torch < 2.14), and an explicit mask turns flash off.
    """
    body = model.model
    if not _full_causal(model.config):
        return body(input_ids=input_ids, use_cache=False).last_hidden_state
    hidden = body.embed_tokens(input_ids)  # [B, T, d]
    position_ids = torch.arange(input_ids.shape[1], device=input_ids.device)[None]  # [1, T]
    position_embeddings = body.rotary_emb(hidden, position_ids=position_ids)  # (cos, sin), each [1, T, head_dim]
    for layer in body.layers[: model.config.num_hidden_layers]:
        hidden = layer(hidden, attention_mask=None, position_ids=position_ids, position_embeddings=position_embeddings)
    return body.norm(hidden)


def causal_lm_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: the autoregressive pretraining objective. batch [B, T+1].

    For LLaMA-family models the [B·T, V] logits never exist: the body's hidden states go to
    `linear_cross_entropy`, one chunk of `LOSS_CHUNK_TOKENS` tokens at a time, eager or traced into
    the compiled step (one graph: no break, no host sync). Any other model goes through its logits.
    """
    inputs, targets = batch[:, :-1], batch[:, 1:].flatten()
    head = plain_head(model)
    if head is None:
        logits = model(input_ids=inputs).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), targets)
    hidden = decoder_states(model, inputs).flatten(0, 1)  # [B·T, d]
    return linear_cross_entropy(hidden, head.weight, targets, chunk_tokens=LOSS_CHUNK_TOKENS)


# -- schedule, optimizer, compile ----------------------------------------------------------------
def cosine_schedule(config: TrainConfig) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up to 1, then cosine decay to `min_lr_ratio`."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def default_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW; fused (one kernel for every parameter) when the parameters are on a GPU."""
    params = [p for p in model.parameters() if p.requires_grad]
    fused = all(p.is_cuda for p in params)
    return torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, fused=fused)


def _stock_model(model: nn.Module) -> bool:
    return all(type(m).__module__.startswith(("transformers.", "torch.nn.")) for m in model.modules())


def should_compile(model: nn.Module, config: TrainConfig, loss_fn: LossFn, device: torch.device) -> bool:
    if config.compile is not None:
        return config.compile
    safe = loss_fn is causal_lm_loss or getattr(loss_fn, "compile_safe", False)
    return device.type == "cuda" and safe and _stock_model(model)


def compile_mode(config: TrainConfig, world_size: int) -> str:
    """torch.compile's mode for the step. "auto": CUDA graphs (`reduce-overhead`) replay the whole
    forward and backward with one launch, which matters when the host cannot launch kernels as fast
    as the GPU runs them (small models). Their outputs, gradients included, live in a pool that the
    next replay overwrites, so they are safe only when every backward's gradients are consumed by
    the optimizer before the next forward: one micro-step per step, one process (no DDP hooks)."""
    if config.compile_mode != "auto":
        return config.compile_mode
    return "reduce-overhead" if config.grad_accum == 1 and world_size == 1 else "default"


def compiled_loss(loss_fn: LossFn, mode: str) -> LossFn:
    """`loss_fn` compiled whole: forward, loss and (through AOTAutograd) backward become one graph,
    so inductor fuses RMSNorm, RoPE, SwiGLU, residual adds and the softmax of the loss across layer
    boundaries and Python launches the kernels once per step. Only the training step is compiled;
    the model stays eager for evaluation and for the caller."""
    return torch.compile(loss_fn, mode=mode, dynamic=False)


def save_checkpoint(model: torch.nn.Module, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(folder)
    else:
        torch.save(model.state_dict(), folder / "model.pt")
    return folder


def _checkpoint(model: nn.Module, run: Run | None, config: TrainConfig) -> None:
    if run is not None and config.checkpoint:
        run.update_summary(checkpoint=str(save_checkpoint(model, run.checkpoint_dir)))


# -- the loop ----------------------------------------------------------------------------------
def train(
    model: torch.nn.Module,
    batches: Iterator[torch.Tensor],
    config: TrainConfig,
    loss_fn: LossFn = causal_lm_loss,
    optimizer: torch.optim.Optimizer | None = None,
    run: Run | None = None,
    evaluate: EvalFn | None = None,
    progress: bool = True,
) -> dict[str, float]:
    """Train `model` for `config.steps` optimizer steps; return the final metrics.

    `batches` yields token tensors already on the model's device (under torchrun: this rank's
    share of each global batch, e.g. `data.batches(..., rank=, world_size=)`); `loss_fn(model,
    batch)` returns a scalar loss; `evaluate(model)` returns metrics to log (held-out perplexity).
    Under torchrun only rank 0 logs, evaluates and checkpoints (give `run` there, None elsewhere);
    `train_loss` and `tokens_per_s` are over all ranks.
    """
    device = next(model.parameters()).device
    world = distributed.world()
    optimizer = optimizer or default_optimizer(model, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_schedule(config))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if config.bf16 and device.type == "cuda" else nullcontext()
    compile = should_compile(model, config, loss_fn, device)
    mode = compile_mode(config, world.size) if compile else None
    step_loss = compiled_loss(loss_fn, mode) if compile else loss_fn
    ddp = distributed.wrap(model, step_loss) if world.size > 1 else None
    run = run if world.is_main else None
    if run is not None:
        run.update_summary(train_config=asdict(config), world_size=world.size, compiled=compile, compile_mode=mode)

    def micro_step(batch: torch.Tensor, sync: bool) -> torch.Tensor:
        with ddp.no_sync() if ddp is not None and not sync else nullcontext():
            with autocast:
                loss = (ddp(batch) if ddp is not None else step_loss(model, batch)) / config.grad_accum
            loss.backward()
        return loss.detach()

    model.train()
    running_loss = torch.zeros((), device=device)
    window_steps, window_tokens, window_start = 0, 0, time.perf_counter()
    metrics: dict[str, float] = {}
    show = progress and world.is_main
    # The bar goes when the arm ends and one summary line stays: a notebook of a dozen arms keeps a dozen lines.
    desc = f"training run #{run.id}" if run else "training"
    bar = tqdm(range(config.steps), desc=desc, disable=not show, leave=False)
    started = time.perf_counter()
    try:
        for step in bar:
            for micro in range(config.grad_accum):
                batch = next(batches)
                running_loss += micro_step(batch, sync=micro == config.grad_accum - 1)
                window_tokens += batch.numel() * world.size
            if config.clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            window_steps += 1

            last = step + 1 == config.steps
            if (step + 1) % config.log_every == 0 or last:
                train_loss = distributed.mean_over_ranks(running_loss).item() / window_steps  # the one sync per window
                elapsed = time.perf_counter() - window_start
                metrics = {
                    "train_loss": train_loss,
                    "lr": schedule.get_last_lr()[0],
                    "tokens_per_s": window_tokens / max(elapsed, 1e-9),
                }
                running_loss.zero_()
                window_steps, window_tokens, window_start = 0, 0, time.perf_counter()
                bar.set_postfix(loss=f"{train_loss:.3f}")
                if run is not None:
                    run.log(metrics, step + 1)
            if (
                evaluate is not None
                and world.is_main
                and ((config.eval_every and (step + 1) % config.eval_every == 0) or last)
            ):
                if device.type == "cuda":
                    torch.cuda.synchronize(device)  # the window's training kernels finish on the training clock
                eval_start = time.perf_counter()
                model.eval()
                eval_metrics = evaluate(model)
                model.train()
                metrics.update(eval_metrics)
                if run is not None:
                    run.log(eval_metrics, step + 1)
                window_start += time.perf_counter() - eval_start  # evaluation time is not training throughput
    except KeyboardInterrupt:
        _checkpoint(model, run, config)
        if run is not None:
            run.finish("interrupted", error="KeyboardInterrupt")
        raise
    finally:
        model.eval()
    _checkpoint(model, run, config)
    if show:
        print(_summary_line(run, config.steps, time.perf_counter() - started, metrics))
    return metrics


def _summary_line(run: Run | None, steps: int, seconds: float, metrics: dict[str, float]) -> str:
    """One line per trained arm: what it reached, how long it took."""
    shown = ", ".join(f"{key} {value:.4g}" for key, value in metrics.items() if key not in ("lr", "tokens_per_s"))
    speed = f", {metrics['tokens_per_s']:,.0f} tokens/s" if "tokens_per_s" in metrics else ""
    return f"trained{f' run #{run.id}' if run else ''}: {steps} steps in {seconds:.1f} s{speed}; {shown}"
