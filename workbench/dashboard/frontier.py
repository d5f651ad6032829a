"""The Frontier tab: every model card in the store on one quality-against-budget view, live.

The very view of notebook 08: both draw with `workbench.frontier.frontier_figure` on the cards
`workbench.cards.load_cards` reads from the store, filtered with `frontier.select` (ideas, device
kind, training corpus; the evaluation most cards share), listed with `frontier_table` (the Pareto
points) and summed up with `frontier.conclusion`. The cards are read again whenever the store's
runs change. This module only adds the controls and the tables' CSV.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from .. import frontier
from ..cards import load_cards
from .views import empty_figure
from .widgets import FrameView, csv_button

QUALITY = ("code_ppl", "english_ppl", "cloze_acc", "choice_acc")
BUDGETS = tuple(axis for axis in frontier.AXES if axis not in QUALITY)
ANY = "(any)"


class FrontierTab:
    def __init__(self, store):
        import panel as pn

        self.store = store
        axes = {frontier.AXES[a].title: a for a in BUDGETS}
        self.x = pn.widgets.Select(label="budget (x axis)", options=axes, value=BUDGETS[0], width=300)
        self.y = pn.widgets.Select(label="quality (y axis)", options={frontier.AXES[a].title: a for a in QUALITY},
                                   value=QUALITY[0], width=260)
        self.ideas = pn.widgets.MultiChoice(label="ideas", width=300)
        self.device = pn.widgets.Select(label="device", options=[ANY, *frontier.DEVICE_KINDS], value=ANY, width=120)
        self.corpus = pn.widgets.Select(label="training corpus", options=[ANY], value=ANY, width=200)
        self.note = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.figure = pn.pane.Plotly(go.Figure(), sizing_mode="stretch_width", height=520, name="frontier")
        self.conclusion = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.pareto = FrameView(max_height=360)
        self.table = FrameView(max_height=360)
        for widget in (self.x, self.y, self.ideas, self.device, self.corpus):
            widget.param.watch(lambda _: self._draw(), "value")
        self.panel = pn.Column(
            pn.Row(self.x, self.y, self.ideas, self.device, self.corpus), self.note, self.figure, self.conclusion,
            pn.pane.Markdown("**Pareto points**"), self.pareto, csv_button(self.pareto, "pareto_points.csv"),
            pn.pane.Markdown("**every card shown**"), self.table, csv_button(self.table, "model_cards.csv"),
            sizing_mode="stretch_width",
        )
        self.cards = pd.DataFrame()
        self._read_at = None
        self._syncing = False

    def render(self, snapshot, feed, force: bool = False) -> None:
        """Read the cards again when the store's runs changed since the last read."""
        key = (tuple(feed.runs["id"]), tuple(feed.runs["status"])) if not feed.runs.empty else ()
        if key == self._read_at and not force:
            return
        self._read_at = key
        self.cards = load_cards(self.store)
        self._syncing = True
        try:
            ideas = sorted(self.cards["idea"].unique()) if len(self.cards) else []
            if ideas != self.ideas.options:
                self.ideas.options, self.ideas.value = ideas, [i for i in self.ideas.value if i in ideas]
            corpora = [ANY, *sorted(self.cards["corpus"].dropna().unique())] if len(self.cards) else [ANY]
            if corpora != self.corpus.options:
                self.corpus.options = corpora
                self.corpus.value = self.corpus.value if self.corpus.value in corpora else ANY
        finally:
            self._syncing = False
        self._draw()

    def shown_cards(self) -> pd.DataFrame:
        if self.cards.empty:
            return self.cards
        return frontier.select(self.cards, ideas=self.ideas.value or None,
                               device_kind=None if self.device.value == ANY else self.device.value,
                               corpus=None if self.corpus.value == ANY else self.corpus.value)

    def _draw(self) -> None:
        if self._syncing:
            return
        cards = self.shown_cards()
        x, y = self.x.value, self.y.value
        if cards.empty:
            self.note.object = ("no model cards in the store yet: notebooks 02-06 write one per trained arm, "
                                "notebook 08 the reference points" if self.cards.empty else
                                f"none of the {len(self.cards)} cards passes these filters")
            self.figure.object = empty_figure("no cards to draw")
            self.conclusion.object = ""
            self.pareto.value = self.table.value = pd.DataFrame()
            return
        self.note.object = (f"{len(cards)} of {len(self.cards)} model cards (one common evaluation: "
                            f"`{cards['eval_spec'].iloc[0]}`); hover a point for its run and arm")
        self.figure.object = frontier.frontier_figure(cards, x=x, y=y)
        self.conclusion.object = frontier.conclusion(cards, x, y)
        self.pareto.value = frontier.frontier_table(cards, x, y)
        self.table.value = cards.reset_index(drop=True)

    def legend(self) -> list[str]:
        return [t.name for t in self.figure.object.data if t.showlegend is not False]
