"""The dashboard's one source of truth: the filter, the ticked runs, the baseline, and what follows from them.

Every view (the runs table, Curves, Compare, Sweeps, Run, Frontier) draws from one `Snapshot`,
derived in one place (`derive`) each time the store or a choice changes; no tab reads a widget of
another tab or keeps a selection of its own. That is what keeps them naming the same runs:

- `shown`: the runs the filter lets through, in the table's order (newest first);
- `chosen`: the runs every tab draws: the ticked runs the filter still shows, or, with none ticked,
  the newest experiment among `shown` (one sweep's arms, never two experiments mixed);
- `baseline`: the run Compare measures the others against: the user's pick while it is chosen,
  else the run the experiment marked as reference.

Ticks are kept as run ids, never as table positions: a position names another run as soon as a
new run arrives or the filter changes, which is how a table could highlight #59-61 while the
curves drew #20-22.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pandas as pd

from ..errors import WorkbenchError
from ..runs import RunStore
from . import query, views


class StoreFeed:
    """What the dashboard knows of a store, advanced by `poll` reading only what is new."""

    def __init__(self, store: RunStore):
        self.store = store
        self.runs = store.runs().iloc[0:0]
        self.metrics = pd.DataFrame(columns=["id", "run_id", "step", "key", "value", "time"])
        self.kinds = {}
        self.last_id = 0
        self._finals: pd.DataFrame | None = None

    def poll(self) -> tuple[bool, set[int]]:
        """Read the runs and the new metric rows; returns (did the runs change, runs with new rows)."""
        runs = self.store.runs()
        changed = not runs.equals(self.runs)  # a running run changes with each heartbeat: its duration grows
        self.runs = runs
        if changed:
            self.kinds = self.store.kinds()
        new = self.store.metrics(after_id=self.last_id)
        if not new.empty:
            self.last_id = int(new["id"].iloc[-1])
            self.metrics = new if self.metrics.empty else pd.concat([self.metrics, new], ignore_index=True)
        if changed or not new.empty:
            self._finals = None
        return changed, set(new["run_id"].tolist())

    def finals(self) -> pd.DataFrame:
        """Each run's final numbers (computed once per change of the store, shared by every view)."""
        if self._finals is None:
            self._finals = views.final_metrics(self.runs, self.metrics)
        return self._finals


@dataclass(frozen=True)
class Filter:
    """What the runs table shows: kinds, statuses, a text the name or sweep contains, a filter
    expression (see `query`), and whether a sweep's bookkeeping runs and archived runs are shown."""

    kinds: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()
    text: str = ""
    expression: str = ""
    bookkeeping: bool = False
    archived: bool = False


@dataclass(frozen=True)
class Snapshot:
    """What every view draws, derived at once from the store and the user's choices."""

    shown: pd.DataFrame
    chosen: tuple[int, ...]
    ticked: bool
    baseline: int | None
    ticks: tuple[int, ...] = ()
    problem: str = ""  # why the filter expression was not applied, in one line
    version: int = 0


def field_table(runs: pd.DataFrame, finals: pd.DataFrame) -> pd.DataFrame:
    """One row per run, one column per field a filter expression can name."""
    table = pd.DataFrame({name: runs[name].to_numpy() if name in runs else None for name in query.PLAIN_FIELDS},
                         index=runs.index)
    params = views.params_frame(runs, short=False).add_prefix("params.")
    params.index = runs.index
    numbers = finals.reindex(runs["id"].to_numpy()).add_prefix("metrics.")
    numbers.index = runs.index
    return pd.concat([table, params, numbers], axis=1)


def filter_runs(runs: pd.DataFrame, finals: pd.DataFrame, chosen: Filter) -> tuple[pd.DataFrame, str]:
    """The runs `chosen` lets through (newest first), and the one-line problem of an expression that is not one."""
    runs = views.visible(runs, chosen.bookkeeping)
    if runs.empty:
        return runs, ""
    keep = pd.Series(True, index=runs.index)
    if not chosen.archived and "archived" in runs:
        keep &= ~runs["archived"].astype(bool)
    if chosen.kinds:
        keep &= runs["kind"].isin(chosen.kinds)
    if chosen.statuses:
        keep &= runs["status"].isin(chosen.statuses)
    if chosen.text:
        text = chosen.text.lower()
        keep &= runs["name"].str.lower().str.contains(text, regex=False) | runs["sweep"].fillna(
            ""
        ).str.lower().str.contains(text, regex=False)
    problem = ""
    try:
        parsed = query.parse(chosen.expression)
        if parsed is not None:
            keep &= parsed.mask(field_table(runs, finals))
    except WorkbenchError as error:
        problem = str(error)
    return runs[keep], problem


def derive(feed: StoreFeed, chosen: Filter, ticks: list[int], baseline: int | None, version: int = 0) -> Snapshot:
    """The snapshot of the store under these choices (see the module's docstring for the rules)."""
    shown, problem = filter_runs(feed.runs, feed.finals(), chosen)
    visible_ids = set(shown["id"].tolist())
    kept = tuple(int(i) for i in ticks if i in visible_ids)
    runs = tuple(kept) if kept else tuple(views.newest_experiment(shown))
    if baseline not in runs:
        baseline = views.reference_run(feed.runs, list(runs))
    return Snapshot(shown=shown, chosen=runs, ticked=bool(kept), baseline=baseline, ticks=tuple(ticks),
                    problem=problem, version=version)


@dataclass
class State:
    """The user's choices; `update` changes some and returns the new snapshot every view draws from."""

    feed: StoreFeed
    filter: Filter = field(default_factory=Filter)
    ticks: list[int] = field(default_factory=list)
    baseline: int | None = None  # the user's pick; None: the reference run
    version: int = 0
    snapshot: Snapshot | None = None

    def update(self, **changes) -> Snapshot:
        """Apply `filter=`, `ticks=`, `baseline=` (or filter fields by name: `kinds=("echoatt",)`)."""
        fields = {k: changes.pop(k) for k in list(changes) if k in Filter.__dataclass_fields__}
        if fields:
            self.filter = replace(self.filter, **fields)
        self.filter = changes.pop("filter", self.filter)
        if "ticks" in changes:
            self.ticks = [int(i) for i in dict.fromkeys(changes.pop("ticks"))]
        if "baseline" in changes:
            self.baseline = changes.pop("baseline")
        if changes:
            raise TypeError(f"unknown choices {sorted(changes)}")
        self.version += 1
        self.snapshot = derive(self.feed, self.filter, self.ticks, self.baseline, self.version)
        return self.snapshot

    def forget(self, run_ids: set[int]) -> None:
        """Runs deleted from the store leave the ticks and the baseline."""
        self.ticks = [i for i in self.ticks if i not in run_ids]
        self.baseline = None if self.baseline in run_ids else self.baseline
