"""The Compare tab: the chosen runs' final numbers side by side, against a baseline run.

One row per run (the baseline first; or one per group of runs that differ only in their seed, their
mean), one column per metric the user keeps (a column chooser; by default the metrics that differ,
the headline first; ids and constant columns left out), rounded to 4 significant digits, each cell
green where it beats the baseline by the metric's goal and red where it is worse. Below it, the
parameters that differ between the runs.
"""

from __future__ import annotations

import pandas as pd

from . import views
from .state import Snapshot, StoreFeed
from .widgets import FrameView, csv_button


class CompareTab:
    def __init__(self, on_baseline):
        import panel as pn

        self._on_baseline = on_baseline
        self._syncing = False
        self.kinds: dict = {}
        self.baseline = pn.widgets.Select(label="baseline run", width=340)
        self.columns = pn.widgets.MultiChoice(label="columns", width=520)
        self.constant = pn.widgets.Checkbox(label="offer columns equal in every run")
        self.seeds = pn.widgets.Checkbox(label="mean over seeds")
        self.delta = pn.widgets.Checkbox(label="Δ% to the baseline")
        self.note = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.table = FrameView(styles=lambda frame: views.compare_styles(frame, self.kinds))
        self.params = FrameView()
        self.baseline.param.watch(self._baseline_picked, "value")
        for widget in (self.columns, self.constant, self.seeds, self.delta):
            widget.param.watch(lambda _: self._refresh(), "value")
        self.panel = pn.Column(
            pn.Row(self.baseline, self.columns), pn.Row(self.constant, self.seeds, self.delta), self.note,
            pn.pane.Markdown("**metrics** (green: better than the baseline by the metric's goal; red: worse)"),
            self.table, csv_button(self.table, "compare.csv"),
            pn.pane.Markdown("**parameters that differ**"), self.params, csv_button(self.params, "parameters.csv"),
            sizing_mode="stretch_width",
        )
        self._shown = None
        self._last: tuple[Snapshot, StoreFeed] | None = None

    def _baseline_picked(self, event) -> None:
        if not self._syncing and event.new is not None:
            self._on_baseline(int(event.new))

    def _refresh(self) -> None:
        if self._last is not None and not self._syncing:
            self.render(*self._last)

    def render(self, snapshot: Snapshot, feed: StoreFeed, force: bool = False) -> None:
        self._last = (snapshot, feed)
        self.kinds = feed.kinds
        ids = list(snapshot.chosen)
        runs = feed.runs[feed.runs["id"].isin(ids)].sort_values("id")
        marked = {int(r["id"]) for _, r in runs.iterrows() if r["summary"].get("reference") is True}
        options = {f"{views.label(row)}{' (reference)' if row['id'] in marked else ''}": int(row["id"])
                   for _, row in runs.iterrows()}
        finals = feed.finals()
        offered = views.compare_metrics(finals, ids, feed.runs, feed.kinds, constant=self.constant.value)
        self._syncing = True
        try:
            if options != self.baseline.options:
                self.baseline.options = options
            if self.baseline.value != snapshot.baseline:
                self.baseline.value = snapshot.baseline
            if offered != self.columns.options:
                keep = [c for c in self.columns.value if c in offered]
                self.columns.options = offered
                self.columns.value = keep or offered[: views.MAX_METRIC_COLUMNS]
        finally:
            self._syncing = False
        state = (tuple(ids), snapshot.baseline, tuple(self.columns.value), self.seeds.value, self.delta.value,
                 len(feed.metrics), tuple(runs["summary"].map(str)))
        if state == self._shown and not force:
            return
        self._shown = state
        if snapshot.baseline is None:
            self.note.object = "no runs to compare"
            self.table.value = pd.DataFrame({"run": []})
            self.params.value = pd.DataFrame({"parameter": []})
            return
        where = "the ticked runs" if snapshot.ticked else "the newest experiment the filter shows (tick runs to choose)"
        hidden = len(views.compare_metrics(finals, ids, feed.runs, feed.kinds, constant=True)) - len(offered)
        self.note.object = (f"Comparing {len(ids)} runs, {where}." +
                            (f" {hidden} metric(s) equal in every run are not offered." if hidden > 0 else ""))
        self.table.value = views.compare_table(feed.runs, finals, ids, snapshot.baseline, feed.kinds,
                                               metrics=list(self.columns.value), mean_over_seeds=self.seeds.value,
                                               delta=self.delta.value)
        others = [i for i in ids if i != snapshot.baseline]
        self.params.value = views.params_table(feed.runs, [snapshot.baseline, *others])

    def run_labels(self) -> list[str]:
        """The runs the table names (what the browser test compares with the table and the curves)."""
        return [name.removesuffix(" (baseline)") for name in self.table.value.get("run", [])]
