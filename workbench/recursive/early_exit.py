"""Early exit after each loop: its training loss, the oracle exit rate and confidence-threshold exits.

Relaxed Recursive Transformers (Bae et al., arXiv:2410.20672), §3.4 and Appendix. The exit after
loop b applies the final norm and the tied head to the hidden state after b loops. Post-training
keeps the final output's loss and adds, with an aggressive small coefficient c = 0.1, a
self-distillation of each intermediate exit from the *detached* final output:

    L = L_final + c · Σ_{b<B} KL( sg(p_B) ‖ p_b ).

The detachment and the small c are the paper's answer to intermediate exits pulling the final
loop down (a weighted CE over exits cost 1.2 points of final accuracy). The oracle exit of a token
is the first loop whose argmax equals the final loop's argmax: what a perfect exit classifier
could save, and the exit trajectories the depth-wise batching simulation is driven by. A
confidence-threshold exit (max probability ≥ τ) is the deployable rule; it is scored by how often
its token agrees with the final loop's and by the perplexity of the exited distributions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint
from tqdm.auto import tqdm

from ..runs import Run
from .model import RecursiveLlamaForCausalLM


def _exit_chunk(hiddens: torch.Tensor, targets: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """Summed (CE of the final exit, Σ_b KL(sg(p_B) ‖ p_b)) over a chunk; hiddens [B, n, d]: [2]."""
    final = F.linear(hiddens[-1], head).float()  # [n, V]
    cross_entropy = F.cross_entropy(final, targets, reduction="sum")
    target_log_p = F.log_softmax(final.detach(), dim=-1)  # sg(p_B)
    kl = final.new_zeros(())
    for hidden in hiddens[:-1]:
        log_p = F.log_softmax(F.linear(hidden, head).float(), dim=-1)
        kl = kl + F.kl_div(log_p, target_log_p, log_target=True, reduction="sum")
    return torch.stack([cross_entropy, kl])


@dataclass
class EarlyExitLoss:
    """`loss_fn(model, batch)` for `workbench.train.train`: L_final + c·Σ_b KL(sg(p_B) ‖ p_b).

    Chunks of tokens go through the head under activation checkpointing, so B+1 chunks of logits,
    never [B, N, V], are alive at once. Logs `exit_ce` and `exit_kl` every `log_every` steps to `run`."""

    weight: float = 0.1  # c
    chunk_tokens: int = 4096
    run: Run | None = None
    log_every: int = 10

    def __post_init__(self) -> None:
        self.calls = 0
        self._sums = None

    def __call__(self, model: RecursiveLlamaForCausalLM, batch: torch.Tensor) -> torch.Tensor:
        inputs, targets = batch[:, :-1], batch[:, 1:].flatten()
        hiddens = torch.stack(model.model(inputs, output_loops=True).hidden_states).flatten(1, 2)  # [B, N, d]
        terms = torch.zeros(2, device=batch.device)
        for start in range(0, targets.numel(), self.chunk_tokens):
            piece = slice(start, start + self.chunk_tokens)
            terms = terms + checkpoint(
                _exit_chunk, hiddens[:, piece], targets[piece], model.lm_head.weight, use_reentrant=False
            )
        cross_entropy, kl = terms / targets.numel()
        self.calls += 1
        self._sums = terms.detach() / targets.numel() + (self._sums if self._sums is not None else 0)
        if self.run is not None and self.calls % self.log_every == 0:
            ce_mean, kl_mean = (self._sums / self.log_every).tolist()
            self.run.log({"exit_ce": ce_mean, "exit_kl": kl_mean}, self.calls)
            self._sums = None
        return cross_entropy + self.weight * kl


@dataclass
class LoopPredictions:
    """Per held-out token and loop b: argmax, max probability, NLL of the true next token. [B, N] each."""

    argmax: np.ndarray
    confidence: np.ndarray
    nll: np.ndarray

    @property
    def loops(self) -> int:
        return self.argmax.shape[0]


@torch.no_grad()
def loop_predictions(
    model: RecursiveLlamaForCausalLM,
    tokens: torch.Tensor,
    context_len: int = 512,
    max_windows: int | None = None,
    batch_size: int = 4,
    progress: bool = True,
) -> LoopPredictions:
    """Every exit's prediction on disjoint held-out windows of `context_len` tokens."""
    device = next(model.parameters()).device
    n_windows = (len(tokens) - 1) // context_len
    windows = torch.stack([tokens[i * context_len : (i + 1) * context_len + 1] for i in range(n_windows)][:max_windows])
    argmax, confidence, nll = [], [], []
    for start in tqdm(range(0, len(windows), batch_size), desc="exits", leave=False, disable=not progress):
        batch = windows[start : start + batch_size].to(device)
        targets = batch[:, 1:].flatten()
        rows = []
        for logits in model.loop_logits(batch[:, :-1]):
            log_p = F.log_softmax(logits.flatten(0, 1).float(), dim=-1)  # [n, V]
            best, index = log_p.max(-1)
            rows.append((index, best.exp(), -log_p.gather(1, targets[:, None]).squeeze(1)))
        argmax.append(torch.stack([r[0] for r in rows]).cpu())
        confidence.append(torch.stack([r[1] for r in rows]).cpu())
        nll.append(torch.stack([r[2] for r in rows]).cpu())
    return LoopPredictions(torch.cat(argmax, 1).numpy(), torch.cat(confidence, 1).numpy(), torch.cat(nll, 1).numpy())


def oracle_exits(predictions: LoopPredictions) -> np.ndarray:
    """1-based loop at which each token exits: the first whose argmax equals the final loop's. [N]"""
    agrees = predictions.argmax == predictions.argmax[-1]  # [B, N]; the last row is all True
    return agrees.argmax(0) + 1


def threshold_exits(predictions: LoopPredictions, threshold: float) -> np.ndarray:
    """1-based exit loop under a confidence threshold τ: first loop with max probability ≥ τ, else the last."""
    confident = predictions.confidence >= threshold
    confident[-1] = True
    return confident.argmax(0) + 1


def exit_rates(exits: np.ndarray, loops: int) -> np.ndarray:
    """Fraction of tokens exiting at each loop 1..B."""
    return np.bincount(exits, minlength=loops + 1)[1:] / len(exits)


def exit_summary(predictions: LoopPredictions, exits: np.ndarray) -> dict[str, float]:
    """Mean loops used, agreement of the exited token with the final loop's, perplexity of the exited outputs."""
    columns = np.arange(len(exits))
    chosen = exits - 1
    return {
        "mean_loops": float(exits.mean()),
        "agreement": float((predictions.argmax[chosen, columns] == predictions.argmax[-1]).mean()),
        "ppl": float(np.exp(predictions.nll[chosen, columns].mean())),
    }
