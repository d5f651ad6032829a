"""Which layers each EchoAtt arm shares ("Copy"), with the same budget and structure for every arm.

Arms, each with the same number n of shared layers (followers, which lose W_Q and W_K) and the
same block structure (groups of at most `max_block` consecutive layers, the first computing):
- "similarity": followers chosen from the teacher's attention-similarity matrix,
- "random": followers drawn at random under the same structure (several draws),
- "last": the last inner layers, packed into groups of `max_block`,
and two baselines: the teacher as is, and the teacher continued-trained with cross-entropy on the
same tokens for the same steps (the fair baseline: any student gain must beat what the extra
training alone buys). Arms of one budget that pick identical groups (a random draw or the last
layers may coincide with the similarity choice) are trained once and labelled as all of them.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..attention.sharing import choose_groups, followers
from ..errors import WorkbenchError
from .profile import EchoAttProfile


@dataclass
class Arm:
    name: str
    kind: str  # "teacher" | "continued" | "similarity" | "random" | "last"
    n_shared: int = 0
    groups: list[list[int]] = field(default_factory=list)
    draw: int | None = None
    aliases: list[tuple[str, str]] = field(default_factory=list)  # (name, kind) of arms with the same groups

    @property
    def labels(self) -> list[tuple[str, str]]:
        """(name, kind) of every arm this one stands for, itself first."""
        return [(self.name, self.kind), *self.aliases]

    @property
    def run_name(self) -> str:
        """The run's name: every label, e.g. "n=2 similarity = n=2 last"."""
        return " = ".join(name for name, _ in self.labels)


def eligible_layers(n_layers: int, eligible: tuple[int, int] | None) -> list[int]:
    """Layers allowed in a group: by default all but the first two and the last, whose attention
    is unlike any other layer's (docs/ideas.md, EchoAtt)."""
    first, last = eligible or (2, n_layers - 2)
    if not 0 <= first < last < n_layers:
        raise WorkbenchError(f"eligible layers ({first}, {last}) must satisfy 0 ≤ first < last < {n_layers}")
    return list(range(first, last + 1))


def groups_from_followers(chosen: Sequence[int], eligible: Sequence[int], max_block: int) -> list[list[int]] | None:
    """Groups [h, f1, ..] for a set of followers: each run of consecutive followers reuses the layer
    just before it. None if that layer is not eligible or a run is longer than max_block − 1."""
    chosen, allowed, groups = sorted(set(chosen)), set(eligible), []
    for layer in chosen:
        if groups and layer == groups[-1][-1] + 1:
            groups[-1].append(layer)
        else:
            groups.append([layer - 1, layer])
    if any(g[0] not in allowed or not set(g) <= allowed or len(g) > max_block for g in groups):
        return None
    return groups


def random_groups(
    n_layers: int, n_shared: int, max_block: int, eligible: tuple[int, int] | None, seed: int
) -> list[list[int]]:
    """Random followers under the same structure as the chosen ones.

    Random sequential insertion with restarts: candidates in random order, each kept if the
    follower set stays valid, until `n_shared` are placed.
    """
    layers, rng = eligible_layers(n_layers, eligible), random.Random(seed)
    for _ in range(10_000):
        chosen: list[int] = []
        for layer in rng.sample(layers[1:], len(layers) - 1):
            if len(chosen) == n_shared:
                break
            if groups_from_followers([*chosen, layer], layers, max_block) is not None:
                chosen.append(layer)
        if len(chosen) == n_shared:
            return groups_from_followers(chosen, layers, max_block)
    raise WorkbenchError(
        f"cannot place {n_shared} shared layers in layers {layers[0]}..{layers[-1]} with blocks of {max_block}: "
        "lower the budget"
    )


def last_groups(n_layers: int, n_shared: int, max_block: int, eligible: tuple[int, int] | None) -> list[list[int]]:
    """The last inner layers: groups of `max_block` packed downwards from the last eligible layer."""
    layers = eligible_layers(n_layers, eligible)
    groups, end, remaining = [], layers[-1], n_shared
    while remaining:
        size = min(max_block - 1, remaining)
        groups.insert(0, list(range(end - size, end + 1)))
        end, remaining = end - size - 1, remaining - size
    if groups[0][0] < layers[0]:
        raise WorkbenchError(
            f"{n_shared} shared layers in blocks of {max_block} do not fit in layers {layers[0]}..{layers[-1]}"
        )
    return groups


def similarity_groups(
    similarity: np.ndarray, n_shared: int, max_block: int, eligible: tuple[int, int] | None
) -> list[list[int]]:
    """Followers chosen from the similarity matrix by the analysis' rule (`sharing.choose_groups`)."""
    layers = eligible_layers(len(similarity), eligible)
    groups = choose_groups(similarity, n_shared=n_shared, max_block=max_block, eligible=layers)
    groups = [list(map(int, g)) for g in groups if len(g) > 1]
    if len(followers(groups)) != n_shared:
        raise WorkbenchError(
            f"the similarity rule placed {len(followers(groups))} of {n_shared} shared layers: "
            "lower the budget or raise max_block"
        )
    return groups


def plan_arms(profile: EchoAttProfile, n_layers: int, similarity: np.ndarray) -> list[Arm]:
    """The teacher, the continued-trained teacher, then per budget: similarity, random draws, last."""
    arms = [Arm("teacher", "teacher"), Arm("teacher + CE (continued)", "continued")]
    for n in profile.budgets:
        chosen = similarity_groups(similarity, n, profile.max_block, profile.eligible)
        arms.append(Arm(f"n={n} similarity", "similarity", n, chosen))
        for draw in range(profile.random_draws):
            seed = profile.seed + 1000 * n + draw
            groups = random_groups(n_layers, n, profile.max_block, profile.eligible, seed=seed)
            arms.append(Arm(f"n={n} random#{draw + 1}", "random", n, groups, draw))
        arms.append(Arm(f"n={n} last", "last", n, last_groups(n_layers, n, profile.max_block, profile.eligible)))
    return merge_identical(arms)


def merge_identical(arms: list[Arm]) -> list[Arm]:
    """One arm per distinct set of groups: a later arm with the same groups becomes an alias of the first."""
    kept: dict[str, Arm] = {}
    for arm in arms:
        key = f"{arm.kind}" if not arm.groups else str(sorted(arm.groups))
        if key in kept:
            kept[key].aliases.append((arm.name, arm.kind))
        else:
            kept[key] = arm
    return list(kept.values())
