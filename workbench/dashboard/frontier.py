"""The Frontier tab: every model card in the store on one quality-against-budget view, live.

The very figure notebook 08 draws: both call `frontier_figure` (workbench.frontier) on the cards
`workbench.cards.load_cards` reads from the store; this tab only adds the controls (which budget
on the x axis, which ideas, devices and corpora) and the table of the cards shown, with its CSV.
The cards are read again whenever the store's runs change.
"""

from __future__ import annotations

import importlib

import pandas as pd
import plotly.graph_objects as go

from .views import empty_figure
from .widgets import csv_button, table_widget

FILTERS = ("idea", "device", "corpus")  # card columns the user filters by, where the cards have them


def frontier_api():
    """(load_cards, frontier_figure, axes) from the cards module, or None where it is not installed yet."""
    try:
        cards = importlib.import_module("workbench.cards")
    except ImportError:
        return None
    try:
        figure_module = importlib.import_module("workbench.frontier")
    except ImportError:
        figure_module = cards
    figure = getattr(figure_module, "frontier_figure", None)
    if figure is None or not hasattr(cards, "load_cards"):
        return None
    axes = getattr(figure_module, "AXES", None) or getattr(cards, "AXES", None)
    return cards.load_cards, figure, list(axes) if axes else []


class FrontierTab:
    def __init__(self, store):
        import panel as pn

        self.store = store
        self.x = pn.widgets.Select(label="budget (x axis)", width=280)
        self.filters = {name: pn.widgets.MultiChoice(label=name, width=240) for name in FILTERS}
        self.note = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.figure = pn.pane.Plotly(go.Figure(), sizing_mode="stretch_width", height=520, name="frontier")
        self.table = table_widget(page_size=15, pagination="local")
        for widget in (self.x, *self.filters.values()):
            widget.param.watch(lambda _: self._draw(), "value")
        self.panel = pn.Column(pn.Row(self.x, *self.filters.values()), self.note, self.figure, self.table,
                               csv_button(self.table, "model_cards.csv"), sizing_mode="stretch_width")
        self.cards = pd.DataFrame()
        self._read_at = None
        self._syncing = False

    def render(self, snapshot, feed, force: bool = False) -> None:
        """Read the cards again when the store's runs changed since the last read."""
        key = (len(feed.runs), tuple(feed.runs["status"]) if not feed.runs.empty else (), feed.last_id)
        if key == self._read_at and not force:
            return
        self._read_at = key
        api = frontier_api()
        if api is None:
            self.cards = pd.DataFrame()
            self.note.object = ("No model cards module in this installation yet (`workbench.cards` with "
                                "`load_cards` and `frontier_figure`): the frontier appears once it is.")
            self.figure.object = empty_figure("no model cards module yet")
            return
        load_cards, _, axes = api
        self.cards = load_cards(self.store)
        self._syncing = True
        try:
            options = [a for a in axes if a in self.cards] or axes
            if options != self.x.options:
                self.x.options, self.x.value = options, self.x.value if self.x.value in options else options[0]
            for name, widget in self.filters.items():
                values = sorted(self.cards[name].dropna().astype(str).unique()) if name in self.cards else []
                if values != widget.options:
                    widget.options, widget.value = values, [v for v in widget.value if v in values]
                widget.visible = bool(values)
        finally:
            self._syncing = False
        self._draw()

    def shown_cards(self) -> pd.DataFrame:
        cards = self.cards
        for name, widget in self.filters.items():
            if widget.value and name in cards:
                cards = cards[cards[name].astype(str).isin(widget.value)]
        return cards

    def _draw(self) -> None:
        api = frontier_api()
        if self._syncing or api is None:
            return
        _, frontier_figure, _ = api
        cards = self.shown_cards()
        self.note.object = (f"{len(cards)} model cards of {len(self.cards)} in the store" if len(self.cards)
                            else "no model cards in the store yet: notebooks 02-06 and 08 write them")
        self.figure.object = frontier_figure(cards, x=self.x.value) if len(cards) else empty_figure("no cards to draw")
        self.table.value = cards.reset_index(drop=True)
