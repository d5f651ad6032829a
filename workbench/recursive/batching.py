"""Continuous depth-wise batching: a scheduler for looped decoding with early exits, and its baselines.

Relaxed Recursive Transformers (Bae et al., arXiv:2410.20672), §3.3. In a recursive model every loop
runs the same K blocks, so one forward of the blocks can serve tokens that are at *different*
loops. A batch of `slots` then never waits: after each loop step, a token that exits (at its exit
loop) frees its slot, which is refilled at once, at loop 1, by the same sequence's next token or by
a new request. Without depth-wise batching a batch moves in lock-step: with early exit it still
runs until its deepest token has finished all its loops.

Like the paper's, the throughput here is *simulated*: a queue of requests, each a trajectory of
per-token exit loops measured on held-out text, is driven through a scheduler whose step cost is
the *measured* time of one loop (K layers, one decode token per slot, KV cache of `context_len`)
at the given batch size. What the simulation leaves out: the KV entries exited tokens owe the
deeper loops (the paper fills them later or copies states), the prefill, and memory limits.

Schemes (all with the same slots, requests and step costs):
- "static":   sequence-wise, a batch of requests runs to its longest; no early exit; all B loops.
- "csb":      continuous sequence-wise batching: a finished request's slot is refilled; all B loops.
- "csb_exit": as csb, with early exit: each token step runs loops until the deepest token exits,
              loop b costing c(tokens still active at b).
- "cdb":      continuous depth-wise batching with early exit: each step is one loop for every slot.
"""

from __future__ import annotations

import copy
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..measure import interleaved
from .model import RecursiveLlamaForCausalLM

SCHEMES = ("static", "csb", "csb_exit", "cdb")
CostFn = Callable[[int], float]


@torch.no_grad()
def loop_step_costs(
    model: RecursiveLlamaForCausalLM,
    batch_sizes: Sequence[int],
    context_len: int = 512,
    rounds: int = 5,
    warmup: int = 2,
    loops: int = 1,
) -> dict[int, float]:
    """Measured seconds of `loops` loops (K shared blocks each) decoding one token for each of n
    sequences against a KV cache of `context_len` positions, for each n (median of interleaved
    rounds). On a GPU the model runs as a bf16 copy, as a server would hold it."""
    device = next(model.parameters()).device
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = copy.deepcopy(model).to(dtype) if dtype != next(model.parameters()).dtype else model
    layers = model.model.layers[: loops * model.n_unique]
    heads, head_dim = layers[0].n_kv_heads, layers[0].head_dim

    def step_for(n: int) -> Callable[[], object]:
        hidden = torch.randn(n, 1, model.config.hidden_size, device=device, dtype=dtype)  # [n, 1, d]
        cache = torch.randn(
            2, n, heads, context_len, head_dim, device=device, dtype=dtype
        )  # keys, values [n, H_kv, s, hd]
        rope = model.model.rotary_emb(hidden, position_ids=torch.full((1, 1), context_len, device=device))

        def step() -> None:
            h = hidden
            for layer in layers:
                h, _, _ = layer.decode(h, rope, cache[0], cache[1])

        return step

    timings = interleaved({str(n): step_for(n) for n in batch_sizes}, device, rounds=rounds, warmup=warmup)
    return {int(n): timing.median_s for n, timing in timings.items()}


def cost_function(costs: dict[int, float]) -> CostFn:
    """c(n): piecewise-linear interpolation of the measured per-loop costs (flat beyond the ends),
    made non-decreasing in n: a smaller batch can always run padded to a larger one, so a measured
    dip (timing noise, a better kernel at some size) bounds the cost of every size below it."""
    sizes = np.array(sorted(costs))
    seconds = np.minimum.accumulate(np.array([costs[n] for n in sizes])[::-1])[::-1]
    return lambda n: float(np.interp(n, sizes, seconds)) if n > 0 else 0.0


@dataclass(frozen=True)
class SimResult:
    scheme: str
    tokens: int
    seconds: float  # simulated
    loop_steps: int  # forward passes of the K blocks

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def simulate(scheme: str, requests: Sequence[np.ndarray], loops: int, slots: int, cost: CostFn) -> SimResult:
    """Serve every request (an array of 1-based exit loops, one per generated token) with `slots`
    slots under `scheme`; returns the simulated time. Without early exit every token takes B loops."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
    tokens = int(sum(len(r) for r in requests))
    if scheme == "cdb":
        return _depth_wise(requests, slots, cost, tokens)
    early = scheme == "csb_exit"
    queue = deque(requests)
    seconds, steps = 0.0, 0
    if scheme == "static":
        while queue:
            batch = [queue.popleft() for _ in range(min(slots, len(queue)))]
            longest = max(len(r) for r in batch)
            seconds += longest * loops * cost(len(batch))  # finished rows still occupy the batch (padding)
            steps += longest * loops
        return SimResult(scheme, tokens, seconds, steps)
    active: list[list] = []  # [exit loops, next token index]
    while queue or active:
        while queue and len(active) < slots:
            active.append([queue.popleft(), 0])
        depths = np.array([r[0][r[1]] if early else loops for r in active])  # loops this token step needs, per slot
        for b in range(1, int(depths.max()) + 1):
            seconds += cost(int((depths >= b).sum()))
            steps += 1
        for r in active:
            r[1] += 1
        active = [r for r in active if r[1] < len(r[0])]
    return SimResult(scheme, tokens, seconds, steps)


def _depth_wise(requests: Sequence[np.ndarray], slots: int, cost: CostFn, tokens: int) -> SimResult:
    """The CDB scheduler: each slot holds one sequence's current token at some loop depth; every
    step runs one loop for all occupied slots; a token reaching its exit loop is emitted and the
    slot continues at loop 1 with that sequence's next token, or with a new request."""
    queue = deque(requests)
    slot: list[list | None] = [None] * slots  # [exit loops, token index, current depth]
    seconds, steps = 0.0, 0

    def refill(i: int) -> None:
        slot[i] = [queue.popleft(), 0, 1] if queue else None

    for i in range(slots):
        refill(i)
    while any(s is not None for s in slot):
        seconds += cost(sum(s is not None for s in slot))
        steps += 1
        for i, s in enumerate(slot):
            if s is None:
                continue
            if s[2] >= s[0][s[1]]:  # this loop was the token's exit loop: emit it
                s[1], s[2] = s[1] + 1, 1
                if s[1] == len(s[0]):
                    refill(i)
            else:
                s[2] += 1
    return SimResult("cdb", tokens, seconds, steps)


def requests_from_exits(exits: np.ndarray, length: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """`count` requests of `length` generated tokens, each a contiguous stretch of measured per-token
    exit loops (held-out text read in order), starting at random offsets; lengths vary in [length/2, length]."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        n = int(rng.integers(max(1, length // 2), length + 1))
        start = int(rng.integers(0, max(1, len(exits) - n)))
        out.append(np.asarray(exits[start : start + n]))
    return out
