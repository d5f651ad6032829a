"""Executed notebooks kept small and HTML copies self-contained: figure data as float32, FigureWidgets
as static copies of their final state, Panel's inline scripts dropped, plotly.js once per HTML
document, math as MathML, nothing loaded from a network."""

import base64
import json

import nbformat
import numpy as np
import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs

from workbench.notebook_html import (
    MAX_POINTS,
    PANEL_LOAD,
    PLOTLY,
    WIDGET_STATE,
    WIDGET_VIEW,
    _snapshot_figure_widgets,
    compact_figure,
    compact_notebook,
    render_math,
    to_html,
)


def figure_json(n: int) -> dict:
    return json.loads(go.Figure(go.Scatter(x=np.arange(n), y=np.linspace(0.0, 1.0, n))).to_json())


def widget_notebook(path):
    """A notebook as papermill leaves it: a figure, an explorer (a box of a dropdown and a
    FigureWidget whose trace arrived as a binary buffer), Panel's 8 MB loader, and math."""
    y = np.arange(10, dtype=np.float64)
    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_menu", "IPY_MODEL_fig"]}},
        "menu": {
            "model_name": "DropdownModel",
            "state": {"description": "layer", "_options_labels": ["3", "4"], "index": 1},
        },
        "fig": {
            "model_name": "AnyModel",
            "state": {
                "_esm": "x" * 100_000,
                "_widget_layout": {"title": {"text": "live"}},
                "_widget_data": [{"type": "scatter", "y": {"dtype": "float64", "shape": [10]}}],
            },
            "buffers": [
                {
                    "path": ["_widget_data", 0, "y", "value"],
                    "encoding": "base64",
                    "data": base64.b64encode(y.tobytes()).decode(),
                }
            ],
        },
    }
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["widgets"] = {WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}
    notebook.cells = [
        nbformat.v4.new_markdown_cell("Entropy $H = -\\sum_j A_{ij} \\log A_{ij}$, costs `$x$`."),
        nbformat.v4.new_code_cell(
            "fig",
            outputs=[
                nbformat.v4.new_output("display_data", data={PLOTLY: figure_json(5000), "text/plain": "Figure"}),
                nbformat.v4.new_output(
                    "display_data", data={PANEL_LOAD: {"x": "y" * 1000}, "application/javascript": "z"}
                ),
                nbformat.v4.new_output(
                    "display_data", data={WIDGET_VIEW: {"model_id": "box", "version_major": 2}, "text/plain": "VBox"}
                ),
            ],
        ),
    ]
    nbformat.write(notebook, path)
    return path


def test_compact_figure_stores_float32_and_thins_long_lines():
    figure = compact_figure(figure_json(5000))
    y = figure["data"][0]["y"]
    assert y["dtype"] == "f4"
    values = np.frombuffer(base64.b64decode(y["bdata"]), dtype=np.float32)
    assert len(values) <= MAX_POINTS + 1 and values[0] == 0.0 and values[-1] == 1.0  # the ends kept
    grid = {"data": [{"type": "heatmap", "z": [[1.0, None, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]}]}
    heatmap = compact_figure(grid)["data"][0]["z"]
    assert heatmap["shape"] == "2,4"  # one 2-d typed array (plotly.js draws no list of typed rows); None is a gap
    assert np.isnan(np.frombuffer(base64.b64decode(heatmap["bdata"]), dtype=np.float32)[1])
    short = compact_figure({"data": [{"type": "bar", "y": [1.5, 2.5]}]})
    assert short["data"][0]["y"] == [1.5, 2.5]  # a few numbers stay readable


def test_compact_notebook_replaces_widgets_by_their_final_state_and_drops_panel_scripts(tmp_path):
    path = widget_notebook(tmp_path / "run.ipynb")
    before = path.stat().st_size
    compact_notebook(path)
    notebook = json.loads(path.read_text())
    outputs = notebook["cells"][1]["outputs"]
    assert [list(o["data"]) for o in outputs] == [[PLOTLY, "text/plain"], ["text/plain"], [PLOTLY, "text/plain"]]
    assert outputs[1]["data"]["text/plain"] == "controls at the end of the run: layer 4"
    live = outputs[2]["data"][PLOTLY]["data"][0]["y"]
    assert np.frombuffer(base64.b64decode(live["bdata"]), dtype=np.float32).tolist() == list(range(10))
    assert "widgets" not in notebook["metadata"]  # no model left to show: plotly.js (the _esm) is gone with them
    assert path.stat().st_size < before / 2


@pytest.mark.slow  # 0.7 s quiet: too long for test-fast's minute
def test_html_copy_is_self_contained(tmp_path):
    path = widget_notebook(tmp_path / "run.ipynb")
    compact_notebook(path)
    html = to_html(path).read_text()
    assert html.count(get_plotlyjs()[:300]) == 1  # plotly.js once, for both figures
    assert html.count("Plotly.newPlot(") == 2
    assert "<math" in html and "\\sum" not in html and "<code>$x$</code>" in html  # math as MathML, code as written
    assert 'src="http' not in html and "cdnjs" not in html  # no MathJax, no require.js from a CDN


def test_math_that_does_not_parse_stays_as_written():
    assert render_math("costs $5 and $6 today") == "costs $5 and $6 today"
    assert render_math("$$\\frac{a}{b}$$").startswith(
        '<math xmlns="http://www.w3.org/1998/Math/MathML" display="block">'
    )


def test_figure_widgets_state_follows_the_figure_after_each_cell():
    widget = go.FigureWidget()
    widget.add_scatter(y=[1.0, 2.0])
    widget.data[0].y = [3.0, 4.0, 5.0]  # updated in place, as live training curves are
    _snapshot_figure_widgets()
    assert list(widget._widget_data[0]["y"]) == [3.0, 4.0, 5.0]
    widget.close()


def test_a_progress_bar_reads_as_one_tqdm_line_in_the_html_copy(tmp_path):
    """tqdm's widget: a label with the percentage, the bar, and counts whose "<" it wrote as "&lt;"."""
    state = {
        "bar": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_a", "IPY_MODEL_b", "IPY_MODEL_c"]}},
        "a": {"model_name": "HTMLModel", "state": {"value": "training: 100%"}},
        "b": {"model_name": "FloatProgressModel", "state": {"value": 272, "max": 272}},
        "c": {"model_name": "HTMLModel", "state": {"value": " 272/272 [00:00&lt;00:00, 990.1it/s]"}},
    }
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["widgets"] = {WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}
    view = {WIDGET_VIEW: {"model_id": "bar", "version_major": 2}, "text/plain": "HBox"}
    notebook.cells = [nbformat.v4.new_code_cell("train()", outputs=[nbformat.v4.new_output("display_data", data=view)])]
    path = tmp_path / "run.ipynb"
    nbformat.write(notebook, path)
    html = to_html(path).read_text()
    assert "training: 100% 272/272 [00:00&lt;00:00, 990.1it/s]" in html  # "<" escaped once: the browser shows "<"
    assert "100% 100%" not in html and "&amp;lt;" not in html


def test_a_bar_closed_with_leave_false_leaves_nothing_in_the_copy(tmp_path):
    """tqdm hides a bar it closes with leave=False (its layout's visibility); the arm's summary line stays alone."""
    state = {
        "bar": {"model_name": "HBoxModel", "state": {"children": ["IPY_MODEL_a"], "layout": "IPY_MODEL_l"}},
        "a": {"model_name": "HTMLModel", "state": {"value": "training run #3: 100%"}},
        "l": {"model_name": "LayoutModel", "state": {"visibility": "hidden"}},
    }
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["widgets"] = {WIDGET_STATE: {"state": state, "version_major": 2, "version_minor": 0}}
    view = {WIDGET_VIEW: {"model_id": "bar", "version_major": 2}, "text/plain": "HBox"}
    summary = nbformat.v4.new_output("stream", name="stdout", text="trained run #3: 144 steps in 2.0 s\n")
    outputs = [nbformat.v4.new_output("display_data", data=view), summary]
    notebook.cells = [nbformat.v4.new_code_cell("train()", outputs=outputs)]
    path = tmp_path / "run.ipynb"
    nbformat.write(notebook, path)
    html = to_html(path).read_text()
    assert "trained run #3: 144 steps" in html and "training run #3: 100%" not in html
