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
at the given batch size. What the simulation leaves out: the prefill and memory limits.

KV debt. A token that exits after loop b has no keys and values at the deeper loops, yet every later
token of its sequence attends to them there. The paper copies the exited state to the deeper
depths; its keys and values then cost the K/V projections of the skipped loops, a fraction
`kv_fill` of a token's work in a loop (`kv_fill_fraction`: 6% for SmolLM2). They are owed lazily:
a sequence's fills at loop b ride with its next forward at loop b (the first that needs them), as
`kv_fill` of a row each; fills still owed when a request ends are never needed. `kv_fill=0` is
the old, debt-free accounting.

Two cost models. With the *measured* costs, throughput depends on how the cost of a loop grows
with the batch. At 135M parameters on a GPU it does not (launch-bound: `launch_bound`), and a
ratio of simulated throughputs is then a ratio of loop steps: batching more rows is free. The
*work* model (`work_cost`) charges every row the same (cost ∝ rows): no batching economy at all,
only the work that exits save, net of their KV debt. The paper's serving regime lies between.

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
import pandas as pd
import torch

from ..measure import interleaved
from .model import ATTENTION, MLP, RecursiveLlamaForCausalLM, linear_shapes

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


def launch_bound(costs: dict[int, float], flat: float = 1.2) -> bool:
    """True when the largest measured batch costs less than `flat` × the smallest: the loop's time is
    kernel launches and latency, not work, so simulated throughputs are ratios of loop steps."""
    sizes = sorted(costs)
    return len(sizes) > 1 and costs[sizes[-1]] < flat * costs[sizes[0]]


def work_cost(costs: dict[int, float]) -> CostFn:
    """c(n) ∝ n: every row of a loop costs the same (the measured largest batch's cost per row)."""
    largest = max(costs)
    per_row = costs[largest] / largest
    return lambda n: per_row * n


def kv_fill_fraction(config) -> float:
    """Work of a copied state's keys and values at one depth (k_proj + v_proj) over a token's work in
    one layer (its seven linears): what one owed KV entry costs, in rows."""
    shapes = linear_shapes(config)
    size = {name: out * inp for name, (out, inp) in shapes.items()}
    return (size["k_proj"] + size["v_proj"]) / sum(size[name] for name in ATTENTION + MLP)


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
    kv_fills: int = 0  # owed KV entries (token × loop) that were filled

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds


def simulate(
    scheme: str, requests: Sequence[np.ndarray], loops: int, slots: int, cost: CostFn, kv_fill: float = 0.0
) -> SimResult:
    """Serve every request (an array of 1-based exit loops, one per generated token) with `slots`
    slots under `scheme`; returns the simulated time. Without early exit every token takes B loops.
    With early exit each owed KV entry is filled in the next forward at its loop as `kv_fill` of a row."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}: use one of {', '.join(SCHEMES)}")
    tokens = int(sum(len(r) for r in requests))
    if scheme == "cdb":
        return _depth_wise(requests, slots, cost, tokens, loops, kv_fill)
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
    active: list[list] = []  # [exit loops, next token index, KV entries owed per loop (index b-1)]
    fills = 0
    while queue or active:
        while queue and len(active) < slots:
            active.append([queue.popleft(), 0, np.zeros(loops, dtype=np.int64)])
        depths = np.array([r[0][r[1]] if early else loops for r in active])  # loops this token step needs, per slot
        for b in range(1, int(depths.max()) + 1):
            owed = sum(int(r[2][b - 1]) for r, d in zip(active, depths) if d >= b)  # filled in this forward
            seconds += cost(int((depths >= b).sum()) + kv_fill * owed)
            steps, fills = steps + 1, fills + owed
            for r, d in zip(active, depths):
                if d >= b:
                    r[2][b - 1] = 0
        for r, d in zip(active, depths):
            r[2][d:] += 1  # this token skipped loops d+1..B: its KV there is owed
            r[1] += 1
        active = [r for r in active if r[1] < len(r[0])]
    return SimResult(scheme, tokens, seconds, steps, fills)


def _depth_wise(
    requests: Sequence[np.ndarray], slots: int, cost: CostFn, tokens: int, loops: int, kv_fill: float
) -> SimResult:
    """The CDB scheduler: each slot holds one sequence's current token at some loop depth; every
    step runs one loop for all occupied slots; a token reaching its exit loop is emitted and the
    slot continues at loop 1 with that sequence's next token, or with a new request. A slot's
    forward at loop b also fills the KV entries its sequence owes at b."""
    queue = deque(requests)
    slot: list[list | None] = [None] * slots  # [exit loops, token index, current depth, KV owed per loop]
    seconds, steps, fills = 0.0, 0, 0

    def refill(i: int) -> None:
        slot[i] = [queue.popleft(), 0, 1, np.zeros(loops, dtype=np.int64)] if queue else None

    for i in range(slots):
        refill(i)
    while any(s is not None for s in slot):
        occupied = [s for s in slot if s is not None]
        owed = sum(int(s[3][s[2] - 1]) for s in occupied)
        seconds += cost(len(occupied) + kv_fill * owed)
        steps, fills = steps + 1, fills + owed
        for i, s in enumerate(slot):
            if s is None:
                continue
            s[3][s[2] - 1] = 0
            if s[2] >= s[0][s[1]]:  # this loop was the token's exit loop: emit it
                s[3][s[2] :] += 1  # its KV at the loops it skipped is owed
                s[1], s[2] = s[1] + 1, 1
                if s[1] == len(s[0]):
                    refill(i)
            else:
                s[2] += 1
    return SimResult("cdb", tokens, seconds, steps, fills)


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


def throughput_table(
    rules: dict[str, np.ndarray],
    loops: int,
    costs: dict[int, float],
    *,
    slots: int,
    count: int,
    length: int,
    draws: int = 1,
    seed: int = 0,
    kv_fill: float = 0.0,
) -> pd.DataFrame:
    """Every scheme under both cost models ("measured": `cost_function(costs)`; "work": `work_cost`)
    for `draws` request queues (seeds seed, seed+1, ...), the exit schemes once per exit rule.
    Speedups are against static and continuous sequence-wise batching of the same draw and costs."""
    n = len(next(iter(rules.values())))
    rows = []
    for model, cost in (("measured", cost_function(costs)), ("work", work_cost(costs))):
        for draw in range(draws):
            for rule, exits in {"none": np.full(n, loops), **rules}.items():
                requests = requests_from_exits(exits, length, count, seed + draw)  # the same lengths for every rule
                for scheme in ("static", "csb") if rule == "none" else ("csb_exit", "cdb"):
                    sim = simulate(scheme, requests, loops, slots, cost, kv_fill)
                    rows.append(
                        {
                            "costs": model,
                            "draw": draw,
                            "scheme": scheme,
                            "exit_rule": rule,
                            "tokens": sim.tokens,
                            "loop_steps": sim.loop_steps,
                            "kv_fills": sim.kv_fills,
                            "sim_seconds": sim.seconds,
                            "tokens_per_s": sim.tokens_per_s,
                        }
                    )
    table = pd.DataFrame(rows)
    for base in ("static", "csb"):
        reference = table[table["scheme"] == base].set_index(["costs", "draw"])["tokens_per_s"]
        table[f"speedup_vs_{base}"] = (
            table["tokens_per_s"].to_numpy() / reference.loc[list(zip(table["costs"], table["draw"]))].to_numpy()
        )
    return table
