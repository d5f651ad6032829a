"""The training loop every experiment shares.

Plain and readable on purpose: one function, `train`, that any experiment drives with its own
loss (distillation, masked diffusion) and optimizer (GaLore). What it does per step:
gradient accumulation over micro-batches, bf16 autocast on a GPU, gradient clipping, a cosine
schedule with linear warm-up, and no host-device synchronisation except every `log_every` steps,
when the running loss is read and written to the run store. Evaluation runs every `eval_every`
steps. A Ctrl-C saves a checkpoint and marks the run interrupted, so nothing trained is lost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .runs import Run

LossFn = Callable[[torch.nn.Module, torch.Tensor], torch.Tensor]
EvalFn = Callable[[torch.nn.Module], dict[str, float]]


@dataclass
class TrainConfig:
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


def causal_lm_loss(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy: the autoregressive pretraining objective."""
    logits = model(input_ids=batch[:, :-1]).logits
    return F.cross_entropy(logits.flatten(0, 1).float(), batch[:, 1:].flatten())


def cosine_schedule(config: TrainConfig) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up to 1, then cosine decay to `min_lr_ratio`."""

    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
        return config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def default_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    fused = all(p.is_cuda for p in params)
    return torch.optim.AdamW(params, lr=config.lr, betas=config.betas, weight_decay=config.weight_decay, fused=fused)


def save_checkpoint(model: torch.nn.Module, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(model, "save_pretrained"):
        model.save_pretrained(folder)
    else:
        torch.save(model.state_dict(), folder / "model.pt")
    return folder


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

    `batches` yields token tensors already on the model's device; `loss_fn(model, batch)` returns
    a scalar loss; `evaluate(model)` returns metrics to log (e.g. held-out perplexity).
    """
    device = next(model.parameters()).device
    optimizer = optimizer or default_optimizer(model, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_schedule(config))
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=config.bf16 and device.type == "cuda")
    if run is not None:
        run.update_summary(train_config=asdict(config))

    model.train()
    running_loss = torch.zeros((), device=device)
    window_steps, window_tokens, window_start = 0, 0, time.perf_counter()
    metrics: dict[str, float] = {}
    bar = tqdm(range(config.steps), desc="training", disable=not progress)
    try:
        for step in bar:
            for _ in range(config.grad_accum):
                batch = next(batches)
                with autocast:
                    loss = loss_fn(model, batch) / config.grad_accum
                loss.backward()
                running_loss += loss.detach()
                window_tokens += batch.numel()
            if config.clip_norm:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.step()
            window_steps += 1

            last = step + 1 == config.steps
            if (step + 1) % config.log_every == 0 or last:
                train_loss = running_loss.item() / window_steps  # the one host-device sync per window
                elapsed = time.perf_counter() - window_start
                metrics = {
                    "train_loss": train_loss,
                    "lr": schedule.get_last_lr()[0],
                    "tokens_per_s": window_tokens / max(elapsed, 1e-9),
                }
                running_loss.zero_()
                window_steps, window_tokens, window_start = 0, 0, time.perf_counter()
                bar.set_postfix(loss=f"{metrics['train_loss']:.3f}")
                if run is not None:
                    run.log(metrics, step + 1)
            if evaluate is not None and ((config.eval_every and (step + 1) % config.eval_every == 0) or last):
                model.eval()
                eval_metrics = evaluate(model)
                model.train()
                metrics.update(eval_metrics)
                if run is not None:
                    run.log(eval_metrics, step + 1)
                window_start = time.perf_counter()  # evaluation time is not training throughput
    except KeyboardInterrupt:
        if run is not None and config.checkpoint:
            run.update_summary(checkpoint=str(save_checkpoint(model, run.store.artifact_dir / str(run.id) / "checkpoint")))
        if run is not None:
            run.finish("interrupted", error="KeyboardInterrupt")
        raise
    finally:
        model.eval()
    if run is not None and config.checkpoint:
        run.update_summary(checkpoint=str(save_checkpoint(model, run.store.artifact_dir / str(run.id) / "checkpoint")))
    return metrics
