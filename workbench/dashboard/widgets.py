"""Small Panel pieces every tab uses: a read-only table that fits its columns, its CSV download, and
how a run's artifact is shown (a figure, a table, an image, text)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go


def table_widget(frame: pd.DataFrame | None = None, **options):
    """A read-only Tabulator as wide as its page (long cells wrap instead of widening the page)."""
    import panel as pn

    settings = {"show_index": False, "disabled": True, "sizing_mode": "stretch_width", "layout": "fit_data_stretch",
                **options}
    return pn.widgets.Tabulator(pd.DataFrame() if frame is None else frame, **settings)


def csv_button(table, filename: str):
    """A button that downloads what `table` (a Tabulator) holds at the moment it is clicked, as CSV."""
    import panel as pn

    return pn.widgets.FileDownload(callback=lambda: io.StringIO(table.value.to_csv(index=False)), filename=filename,
                                   label=f"CSV: {filename}", color="light", width=240, embed=False)


def titled_table(frame: pd.DataFrame, title: str, filename: str | None = None, page_size: int = 20):
    """A table under a bold title, with its CSV button when `filename` is given."""
    import panel as pn

    table = table_widget(frame, page_size=page_size, pagination="local")
    parts = [pn.pane.Markdown(f"**{title}**"), table]
    if filename:
        parts.append(csv_button(table, filename))
    return pn.Column(*parts, sizing_mode="stretch_width")


def artifact_pane(name: str, value: object):
    """One artifact, by what it holds: a figure, a table, an image, text, else its JSON."""
    import panel as pn

    title = pn.pane.Markdown(f"**{name}**")
    if isinstance(value, go.Figure):
        return pn.Column(title, pn.pane.Plotly(value, sizing_mode="stretch_width", height=420),
                         sizing_mode="stretch_width")
    if isinstance(value, pd.DataFrame):
        return titled_table(value, name, page_size=10)
    if isinstance(value, Path):
        return pn.Column(title, pn.pane.Image(str(value), max_width=900, sizing_mode="scale_width"))
    if isinstance(value, str):
        body = value if name.endswith(".md") else f"```\n{value}\n```"
        return pn.Column(title, pn.pane.Markdown(body, sizing_mode="stretch_width"), sizing_mode="stretch_width")
    return pn.Column(title, pn.pane.JSON(value, depth=2, sizing_mode="stretch_width"), sizing_mode="stretch_width")
