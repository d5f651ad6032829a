"""Several processes, one model: data-parallel training (DDP) under `torchrun`.

torchrun starts one process per GPU and tells each its RANK, LOCAL_RANK and WORLD_SIZE. Each
process holds a full copy of the model, trains on its share of every global batch, and DDP
averages the gradients (all-reduce) so that every copy takes the same step: the result is the
single-process run with the same global batch, only faster. Without torchrun everything here
describes one process and does nothing.

- `setup()`: join the process group (NCCL on GPUs, gloo on CPUs), pick this rank's device, and on
  CPUs split the cores between the ranks.
- `wrap(model, loss_fn)`: DDP around the *loss*, so that any loss (one that calls `model.model`
  and `model.lm_head` directly, a distillation loss holding a frozen teacher) goes through DDP's
  forward, which arms its gradient hooks; the teacher's parameters are not synchronised.
- `world()`: rank and size; `mean_over_ranks(x)`: what rank 0 logs.

FSDP (sharded parameters) is not supported: the workbench's models fit on one GPU.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .errors import WorkbenchError


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs, evaluates and saves."""
        return self.rank == 0


def _default_device() -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")


def world() -> World:
    """This process's place: from the process group if one is joined, else rank 0 of 1."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)), _default_device())
    return World(0, 1, 0, _default_device())


def setup(backend: str | None = None) -> World:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK); alone without it."""
    size = int(os.environ.get("WORLD_SIZE", 1))
    if size == 1 or dist.is_initialized():
        return world()
    local_rank = int(os.environ["LOCAL_RANK"])
    if torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise WorkbenchError(
                f"rank {local_rank} has no GPU ({torch.cuda.device_count()} visible): use --nproc <= the number of GPUs"
            )
        torch.cuda.set_device(local_rank)
    else:
        local_size = int(os.environ.get("LOCAL_WORLD_SIZE", size))
        torch.set_num_threads(
            max(1, (os.cpu_count() or 1) // local_size)
        )  # ranks share the cores, not oversubscribe them
    dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return world()


def teardown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """The mean of a tensor over all ranks (itself alone in one process); a collective call."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / dist.get_world_size()


class LossModule(nn.Module):
    """forward(batch) = loss_fn(model, batch): the unit DDP wraps. Only `model` is a submodule."""

    def __init__(self, model: nn.Module, loss_fn):
        super().__init__()
        self.model = model
        object.__setattr__(self, "loss_fn", loss_fn)  # not registered: a teacher inside stays unsynchronised

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


_NO_BUFFER_SYNC = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
    else {"broadcast_buffers": False}  # the name before torch 2.13
)


def wrap(model: nn.Module, loss_fn) -> DistributedDataParallel:
    """DDP around `loss_fn(model, ·)`; parameters are broadcast from rank 0 on construction."""
    device = next(model.parameters()).device
    return DistributedDataParallel(
        LossModule(model, loss_fn),
        device_ids=[device.index] if device.type == "cuda" else None,
        **_NO_BUFFER_SYNC,  # LLaMA's buffers (rotary frequencies) are identical everywhere: no per-step broadcast
        gradient_as_bucket_view=True,
    )
