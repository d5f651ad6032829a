"""Knowledge distillation: a loss for `workbench.train.train` that every idea can use (EchoAtt's
"adjust" step, relaxed recursive uptraining).

For a student S and its teacher T on a batch, with p^(τ) the softmax at temperature τ and h_ℓ the
hidden state after layer ℓ (docs/ideas.md, EchoAtt):

    L = α · CE(y, p_S)  +  β · τ² · KL(p_T^(τ) ‖ p_S^(τ))  +  γ · (1/L) Σ_ℓ ‖h_ℓ^S − h_ℓ^T‖² / ‖h_ℓ^T‖²

The τ² keeps the KL gradient's scale independent of τ (Hinton et al. 2015). The hidden-state
term is normalised by the teacher's energy at each layer, because LLaMA hidden states grow with
depth (and carry "massive activations" on sink tokens): a plain MSE would only match the last
layers. The two-stage schedule (EchoAtt's two KD stages, exact form unpublished) first aligns
the inner representations (β·KL + γ·hidden) and then the outputs (α·CE + β·KL).

Memory: a 49k vocabulary makes the logits the largest tensor of a step (16×512 tokens × 49,152
× 4 bytes = 1.6 GB per model). The loss therefore runs over chunks of tokens, each under
activation checkpointing: only final hidden states are kept, and each chunk's logits (student
and teacher) are recomputed in the backward pass instead of being stored.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .errors import WorkbenchError
from .runs import Run


@dataclass
class DistillConfig:
    temperature: float = 1.0  # τ
    alpha: float = 0.5  # weight of the cross-entropy on the data
    beta: float = 0.5  # weight of the forward KL to the teacher
    gamma: float = 0.0  # weight of hidden-state matching (0: off)
    stage1_steps: int = 0  # >0: two stages; steps [0, stage1_steps) use β·KL + γ·hidden, later ones α·CE + β·KL
    chunk_tokens: int = 4096  # tokens per logits chunk
    grad_accum: int = 1  # micro-batches per optimizer step (to count steps for the schedule)

    def __post_init__(self) -> None:
        if self.temperature <= 0 or min(self.alpha, self.beta, self.gamma) < 0 or self.chunk_tokens < 1:
            raise WorkbenchError(
                "distillation needs temperature > 0, non-negative weights alpha/beta/gamma and chunk_tokens ≥ 1"
            )

    def weights(self, step: int) -> tuple[float, float, float]:
        """(α, β, γ) in effect at optimizer step `step`."""
        if self.stage1_steps <= 0:
            return self.alpha, self.beta, self.gamma
        return (0.0, self.beta, self.gamma) if step < self.stage1_steps else (self.alpha, self.beta, 0.0)


def _chunk_terms(
    student_hidden: torch.Tensor,  # [N, d]
    teacher_hidden: torch.Tensor | None,  # [N, d]
    targets: torch.Tensor,  # [N]
    student_head: nn.Module,
    teacher_head: nn.Module | None,
    temperature: float,
) -> torch.Tensor:
    """Summed (KL, CE) over one chunk of tokens: [2]."""
    logits = student_head(student_hidden).float()  # [N, V]
    cross_entropy = F.cross_entropy(logits, targets, reduction="sum")
    if teacher_head is None:
        return torch.stack([cross_entropy.new_zeros(()), cross_entropy])
    with torch.no_grad():
        teacher_log_p = F.log_softmax(teacher_head(teacher_hidden).float() / temperature, dim=-1)
    student_log_p = F.log_softmax(logits / temperature, dim=-1)
    kl = F.kl_div(student_log_p, teacher_log_p, log_target=True, reduction="sum")  # KL(p_T ‖ p_S)
    return torch.stack([kl, cross_entropy])


class _LayerOutputs:
    """Forward hooks that collect every decoder layer's output hidden state [B, T, d]."""

    def __init__(self, model: nn.Module):
        self.outputs: list[torch.Tensor] = []
        self.handles = [layer.register_forward_hook(self._keep) for layer in model.model.layers]

    def _keep(self, module, inputs, output) -> None:
        self.outputs.append(output[0] if isinstance(output, tuple) else output)

    def __enter__(self) -> _LayerOutputs:
        return self

    def __exit__(self, *exc) -> None:
        for handle in self.handles:
            handle.remove()


class DistillationLoss:
    """`loss_fn(student, batch)` for `workbench.train.train`: KD from a frozen teacher.

    `teacher=None` gives plain next-token cross-entropy through the same chunked path (the
    continued-training baseline then costs the same memory and kernels). The teacher runs under
    no_grad in whatever dtype it was loaded in (bf16 on a GPU). With `run`, the loss terms are
    logged every `log_every` optimizer steps (kd_kl, kd_ce, kd_hidden, stage).
    """

    def __init__(
        self,
        teacher: nn.Module | None,
        config: DistillConfig | None = None,
        run: Run | None = None,
        log_every: int = 10,
    ):
        config = config or DistillConfig()
        if teacher is None and (config.beta or config.gamma) and config.alpha == 0:
            raise WorkbenchError("without a teacher only the cross-entropy term exists: set alpha > 0")
        self.teacher, self.config, self.run, self.log_every = teacher, config, run, log_every
        if teacher is not None:
            teacher.eval().requires_grad_(False)
        self.calls = 0
        self._sums = torch.zeros(3)
        self._count = 0

    @property
    def step(self) -> int:
        return self.calls // self.config.grad_accum

    def __call__(self, student: nn.Module, batch: torch.Tensor) -> torch.Tensor:
        alpha, beta, gamma = self.config.weights(self.step)
        if self.teacher is None:
            beta, gamma = 0.0, 0.0
        inputs, targets = batch[:, :-1], batch[:, 1:]

        with _LayerOutputs(student) if gamma else nullcontext() as student_layers:
            student_hidden = student.model(input_ids=inputs, use_cache=False).last_hidden_state  # [B, T, d]
        teacher_hidden, hidden_term = None, student_hidden.new_zeros((), dtype=torch.float32)
        if self.teacher is not None and (beta or gamma):
            with torch.no_grad(), _LayerOutputs(self.teacher) if gamma else nullcontext() as teacher_layers:
                teacher_hidden = self.teacher.model(input_ids=inputs, use_cache=False).last_hidden_state
            if gamma:
                hidden_term = torch.stack(
                    [
                        (s.float() - t.float()).pow(2).mean() / t.float().pow(2).mean()
                        for s, t in zip(student_layers.outputs, teacher_layers.outputs, strict=True)
                    ]
                ).mean()

        terms = torch.zeros(2, device=student_hidden.device)
        flat_student = student_hidden.flatten(0, 1)  # [N, d]
        flat_teacher = teacher_hidden.flatten(0, 1) if teacher_hidden is not None else None
        flat_targets = targets.flatten()
        teacher_head = self.teacher.lm_head if teacher_hidden is not None else None
        for start in range(0, flat_targets.numel(), self.config.chunk_tokens):
            piece = slice(start, start + self.config.chunk_tokens)
            terms = terms + checkpoint(
                _chunk_terms,
                flat_student[piece],
                flat_teacher[piece] if flat_teacher is not None else None,
                flat_targets[piece],
                student.lm_head,
                teacher_head,
                self.config.temperature,
                use_reentrant=False,
            )
        kl, cross_entropy = terms / flat_targets.numel()
        loss = alpha * cross_entropy + beta * self.config.temperature**2 * kl + gamma * hidden_term

        self.calls += 1
        self._accumulate(kl, cross_entropy, hidden_term)
        return loss

    def _accumulate(self, kl: torch.Tensor, cross_entropy: torch.Tensor, hidden: torch.Tensor) -> None:
        """Keep running sums on the device; read them (one sync) only every `log_every` steps."""
        values = torch.stack([kl.detach(), cross_entropy.detach(), hidden.detach().to(kl.dtype)])
        self._sums = values if self._count == 0 else self._sums.to(values.device) + values
        self._count += 1
        if self.run is not None and self.calls % (self.log_every * self.config.grad_accum) == 0:
            kl_mean, ce_mean, hidden_mean = (self._sums / self._count).tolist()
            stage = 1 if self.config.stage1_steps and self.step <= self.config.stage1_steps else 2
            self.run.log({"kd_kl": kl_mean, "kd_ce": ce_mean, "kd_hidden": hidden_mean, "stage": stage}, self.step)
            self._count = 0
