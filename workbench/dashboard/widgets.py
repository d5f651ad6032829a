"""Small Panel pieces every tab uses: a read-only table, its CSV download, and how a run's artifact
is shown (a figure, a table, an image, text).

Read-only tables are HTML (`FrameView`), not Tabulator widgets: a Tabulator whose columns change
is destroyed and rebuilt in the browser, and its pending redraws then throw "Cannot read
properties of null (reading 'offsetWidth')"; the tables of Compare, Sweeps, Run and Frontier change
their columns with every choice. Only the runs table, which takes clicks, is a Tabulator, and its
columns stay put while the filter changes.
"""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

CSS = """
table.frame { border-collapse: collapse; font-size: 13px; font-family: sans-serif; }
table.frame th { position: sticky; top: 0; background: #f3f3f3; text-align: left; }
table.frame th, table.frame td { border: 1px solid #ddd; padding: 3px 8px; max-width: 420px;
  overflow-wrap: anywhere; vertical-align: top; }
table.frame td.number { text-align: right; font-variant-numeric: tabular-nums; }
"""


class FrameView:
    """A read-only table: set `.value` to a frame, and it is drawn as HTML (numbers as given, the
    cells styled by `styles(frame) -> frame of CSS` when given), scrolling inside `max_height`."""

    def __init__(self, frame: pd.DataFrame | None = None, styles=None, max_height: int = 460):
        import panel as pn

        self.styles = styles
        self.pane = pn.pane.HTML("", sizing_mode="stretch_width",
                                 styles={"overflow": "auto", "max-height": f"{max_height}px"})
        self.value = pd.DataFrame() if frame is None else frame

    @property
    def value(self) -> pd.DataFrame:
        return self._value

    @value.setter
    def value(self, frame: pd.DataFrame) -> None:
        self._value = frame
        self.pane.object = self.html()

    def html(self) -> str:
        frame = self._value.reset_index(drop=True)
        if frame.empty:
            return "<em>nothing to show</em>"
        frame.columns = [str(c) for c in frame.columns]
        styler = frame.style.hide(axis="index").format(_cell_text).set_table_attributes('class="frame"')
        numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c])]
        styler = styler.set_td_classes(pd.DataFrame({c: "number" if c in numeric else "" for c in frame.columns},
                                                    index=frame.index))
        if self.styles is not None:
            styler = styler.apply(self.styles, axis=None)
        return f"<style>{CSS}</style>{styler.to_html()}"

    def __panel__(self):
        return self.pane


def _cell_text(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def csv_button(table, filename: str):
    """A button that downloads what `table` (a Tabulator) holds at the moment it is clicked, as CSV."""
    import panel as pn

    return pn.widgets.FileDownload(callback=lambda: io.StringIO(table.value.to_csv(index=False)), filename=filename,
                                   label=f"CSV: {filename}", color="light", width=240, embed=False)


def titled_table(frame: pd.DataFrame, title: str, filename: str | None = None, page_size: int = 20):
    """A table under a bold title, with its CSV button when `filename` is given."""
    import panel as pn

    table = FrameView(frame, max_height=40 + 28 * page_size)
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
