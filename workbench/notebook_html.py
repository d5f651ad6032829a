"""Executed notebooks kept small, and HTML copies that work on a machine without internet.

What made an executed notebook 20 MB: plotly.js (4.9 MB) embedded in a text/html output, and again
in the saved state of every plotly `FigureWidget` (anywidget keeps its whole ES module there),
plus every number of every figure as a 17-digit decimal. Here:

- `setup_kernel()` (via `workbench.notebook.setup`) renders figures as plotly's JSON mimetype
  only, and after each cell copies every live FigureWidget's current traces into its synced state,
  so the saved widget state holds the figure as it ended, not as it started;
- `compact_notebook(path)` (after execution) replaces each FigureWidget, and each widget box that
  holds one, by static plotly outputs of that final state plus one line naming the controls' final
  values, drops plotly.js from the saved widget state and a live Panel view with its 17 MB of
  inline scripts (a note says where it runs), and stores figure arrays as float32
  base64 typed arrays (`{"dtype": "f4", "bdata": ...}`, which plotly.js reads natively), line
  traces thinned to at most `MAX_POINTS` points;
- `to_html(path)` writes the HTML copy: plotly.js inlined once per document, each figure a div,
  math rendered to MathML at export (browsers draw MathML natively: no MathJax, no CDN), the
  remaining widgets (progress bars) as their final text, and no script fetched from elsewhere.
"""

from __future__ import annotations

import base64
import html
import json
import re
from copy import deepcopy
from pathlib import Path

import numpy as np

PLOTLY = "application/vnd.plotly.v1+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
PANEL_LOAD = "application/vnd.holoviews_load.v0+json"
PANEL_VIEW = "application/vnd.holoviews_exec.v0+json"
PANEL_NOTE = "(a live Panel view: it runs with its kernel; `python -m workbench dashboard` serves the same)"
MAX_POINTS = 2000  # per line trace: more than a screen's width of pixels
TYPED = {"f": "f4", "i": "i4", "u": "u4", "b": "u1"}  # numpy kind -> plotly typed-array dtype
MIN_TYPED = 8  # shorter lists stay readable JSON


# -- in the kernel ----------------------------------------------------------------------------------


def setup_kernel() -> None:
    """Figures as JSON only (JupyterLab draws them; the HTML copy embeds plotly.js once), and final
    FigureWidget states saved with the notebook."""
    import plotly.io as pio
    from IPython import get_ipython

    pio.renderers.default = "plotly_mimetype"
    shell = get_ipython()
    if shell is not None and _snapshot_figure_widgets not in shell.events.callbacks["post_execute"]:
        shell.events.register("post_execute", _snapshot_figure_widgets)


_snapshots: dict[int, str] = {}


def _snapshot_figure_widgets() -> None:
    """Copy each live FigureWidget's traces and layout into its synced traits, where they changed:
    the notebook's saved widget state then holds each figure as the cell left it."""
    from ipywidgets.widgets.widget import _instances
    from plotly.basewidget import BaseFigureWidget

    for widget in list(_instances.values()):
        if isinstance(widget, BaseFigureWidget):
            text = widget.to_json()
            if _snapshots.get(id(widget)) != text:
                _snapshots[id(widget)] = text
                widget._widget_layout = deepcopy(widget._layout_obj._props)
                widget._widget_data = deepcopy(widget._data)


# -- figure data ------------------------------------------------------------------------------------


def _numbers(value) -> bool:
    """A list of numbers, None standing for a missing one (a masked cell of a heatmap)."""
    return (
        isinstance(value, list)
        and any(v is not None for v in value)
        and all(v is None or (isinstance(v, (int, float)) and not isinstance(v, bool)) for v in value)
    )


def _decode(value) -> np.ndarray | None:
    """A numeric array held by a figure: a list of numbers, a list of equal rows of numbers (a
    heatmap's z), plotly's typed array, or a widget buffer."""
    if _numbers(value) and len(value) >= MIN_TYPED:
        return np.array([np.nan if v is None else v for v in value], dtype=float)
    if isinstance(value, list) and len(value) > 1 and not _numbers(value):
        rows = [
            np.array([np.nan if v is None else v for v in r], dtype=float) if _numbers(r) else _decode(r) for r in value
        ]
        if all(r is not None and r.ndim == 1 for r in rows) and len({len(r) for r in rows}) == 1:
            return np.stack(rows)
    if isinstance(value, dict) and "dtype" in value and isinstance(value.get("bdata"), str):
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        shape = value.get("shape")
        return array.reshape([int(s) for s in str(shape).split(",")]) if shape else array
    if isinstance(value, dict) and "dtype" in value and isinstance(value.get("value"), (bytes, bytearray)):
        return np.frombuffer(value["value"], dtype=np.dtype(value["dtype"])).reshape(value.get("shape") or -1)
    return None


def _encode(array: np.ndarray) -> dict:
    kind = TYPED.get(array.dtype.kind, "f4")
    data = array.astype(np.float32 if kind == "f4" else np.dtype(kind)).tobytes()
    encoded = {"dtype": kind, "bdata": base64.b64encode(data).decode()}
    if array.ndim > 1:
        encoded["shape"] = ",".join(str(s) for s in array.shape)
    return encoded


def _compact(value):
    array = _decode(value)
    if array is not None:
        return _encode(array) if array.dtype.kind in TYPED and array.size >= MIN_TYPED else array.tolist()
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def compact_figure(figure: dict) -> dict:
    """A plotly figure's JSON with float32 typed arrays, line traces thinned to `MAX_POINTS` points."""
    traces = []
    for trace in figure.get("data", []):
        trace = dict(trace)
        x, y = _decode(trace.get("x")), _decode(trace.get("y"))
        if (
            trace.get("type", "scatter") in ("scatter", "scattergl")
            and y is not None
            and y.ndim == 1
            and len(y) > MAX_POINTS
        ):
            keep = np.unique(np.r_[np.linspace(0, len(y) - 1, MAX_POINTS).astype(int), len(y) - 1])
            trace["y"] = y[keep]
            if x is not None and len(x) == len(y):
                trace["x"] = x[keep]
        traces.append({k: _encode(v) if isinstance(v, np.ndarray) else _compact(v) for k, v in trace.items()})
    return {**{k: v for k, v in figure.items() if k != "data"}, "data": traces}


# -- widgets ----------------------------------------------------------------------------------------


def _widget_states(notebook: dict) -> dict[str, dict]:
    """Saved widget models by id, each {"name", "state"} with binary buffers put back into the state."""
    saved = notebook.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    models = {}
    for model_id, model in saved.items():
        state = deepcopy(model.get("state", {}))
        for buffer in model.get("buffers", []):
            target = state
            for key in buffer["path"][:-1]:
                target = target[key]
            target[buffer["path"][-1]] = base64.b64decode(buffer["data"])
        models[model_id] = {"name": model.get("model_name", ""), "state": state}
    return models


def _is_figure(model: dict) -> bool:
    return "_widget_data" in model["state"] and "_widget_layout" in model["state"]


def _children(model: dict) -> list[str]:
    return [c.removeprefix("IPY_MODEL_") for c in model["state"].get("children", []) if isinstance(c, str)]


def _leaves(models: dict, model_id: str) -> list[dict]:
    model = models.get(model_id)
    if model is None:
        return []
    if _children(model):
        return [leaf for child in _children(model) for leaf in _leaves(models, child)]
    return [model]


def _view_id(output: dict) -> str:
    """The widget model an output shows ("" for any other output)."""
    return output.get("data", {}).get(WIDGET_VIEW, {}).get("model_id", "")


def _hidden(models: dict, model_id: str) -> bool:
    """Whether the widget's layout was hidden by the end of the run (tqdm hides a bar it closes with leave=False)."""
    layout = models.get(model_id, {}).get("state", {}).get("layout", "")
    layout_id = layout.removeprefix("IPY_MODEL_") if isinstance(layout, str) else ""
    return models.get(layout_id, {}).get("state", {}).get("visibility") == "hidden"


def _control_text(model: dict) -> str:
    """A widget's final state as text: a control's description and value, an HTML label's text."""
    state = model["state"]
    if model["name"] in ("HTMLModel", "LabelModel"):  # tqdm writes "&lt;" into its labels: text, not markup
        return html.unescape(re.sub(r"<[^>]+>", "", str(state.get("value", "")))).strip()
    if "Progress" in model["name"]:
        return f"{100 * float(state.get('value', 0)) / max(float(state.get('max', 1)), 1e-12):.0f}%"
    options, index = state.get("_options_labels"), state.get("index")
    if options and isinstance(index, int):
        value = options[index]
    elif "value" in state:
        value = state["value"]
    else:
        return ""
    return f"{state.get('description', '')} {value}".strip()


def _widget_text(leaves: list[dict]) -> str:
    """A widget box's final state as one line. A progress bar (tqdm: label, bar, counts) reads as tqdm's own text
    line, its percentage once: the label already says "100%", so the bar's own percentage is left out."""
    texts = [(leaf, _control_text(leaf)) for leaf in leaves]
    labelled = any("%" in text for leaf, text in texts if "Progress" not in leaf["name"])
    return " ".join(text for leaf, text in texts if text and not ("Progress" in leaf["name"] and labelled))


def _figure_output(model: dict) -> dict:
    figure = compact_figure({"data": model["state"]["_widget_data"], "layout": model["state"]["_widget_layout"]})
    return {
        "output_type": "display_data",
        "metadata": {},
        "data": {PLOTLY: figure, "text/plain": "<FigureWidget (static copy of its final state)>"},
    }


def compact_notebook(path: str | Path) -> None:
    """Rewrite an executed notebook small (see the module docstring); its outputs otherwise unchanged."""
    path = Path(path)
    notebook = json.loads(path.read_text(encoding="utf-8"))
    models = _widget_states(notebook)
    for cell in notebook["cells"]:
        outputs = []
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if PLOTLY in data:
                data[PLOTLY] = compact_figure(data[PLOTLY])
                data.pop("text/html", None)  # plotly's HTML rendering repeats the figure: the HTML copy makes its own
            if PANEL_LOAD in data:
                continue  # Panel's and Bokeh's scripts (17 MB inline): a view needs them only while its kernel runs
            if PANEL_VIEW in data:  # a view (it has a text form), or Panel's comm set-up script (which has none)
                if "text/plain" in data:
                    outputs.append({"output_type": "display_data", "metadata": {}, "data": {"text/plain": PANEL_NOTE}})
                continue
            model_id = _view_id(output)
            if _hidden(models, model_id):
                continue  # hidden by the end of the run (a bar closed with leave=False): the live view shows nothing
            leaves = _leaves(models, model_id) if model_id else []
            if any(_is_figure(leaf) for leaf in leaves):
                controls = [text for leaf in leaves if not _is_figure(leaf) and (text := _control_text(leaf))]
                if controls:
                    outputs.append(
                        {
                            "output_type": "display_data",
                            "metadata": {},
                            "data": {"text/plain": "controls at the end of the run: " + " · ".join(controls)},
                        }
                    )
                outputs += [_figure_output(leaf) for leaf in leaves if _is_figure(leaf)]
            else:
                outputs.append(output)
        if "outputs" in cell:
            cell["outputs"] = outputs
    _drop_unused_widgets(notebook)
    path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _drop_unused_widgets(notebook: dict) -> None:
    """Keep only the widget models the remaining outputs show (and their children and styles)."""
    saved = notebook.get("metadata", {}).get("widgets", {}).get(WIDGET_STATE)
    if not saved:
        return
    models, used = saved["state"], set()
    stack = [
        o["data"][WIDGET_VIEW]["model_id"]
        for c in notebook["cells"]
        for o in c.get("outputs", [])
        if WIDGET_VIEW in o.get("data", {})
    ]
    while stack:
        model_id = stack.pop()
        if model_id in used or model_id not in models:
            continue
        used.add(model_id)
        stack += re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps(models[model_id].get("state", {})))
    saved["state"] = {k: v for k, v in models.items() if k in used}
    if not saved["state"]:
        del notebook["metadata"]["widgets"]


# -- the HTML copy ----------------------------------------------------------------------------------

MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\$])\$(?!\s)([^$\n]+?)(?<!\s)\$(?!\d)", re.DOTALL)
CODE = re.compile(r"(```.*?```|`[^`\n]+`)", re.DOTALL)


def render_math(markdown: str) -> str:
    """`$...$` and `$$...$$` in markdown as MathML (outside code); what does not parse stays as written."""
    from latex2mathml.converter import convert

    def one(match: re.Match) -> str:
        display, latex = (True, match.group(1)) if match.group(1) is not None else (False, match.group(2))
        try:
            return convert(latex.strip(), display="block" if display else "inline")
        except Exception:  # noqa: BLE001 -- latex2mathml raises many types on LaTeX it does not know: keep the source text
            return match.group(0)

    parts = CODE.split(markdown)
    return "".join(part if index % 2 else MATH.sub(one, part) for index, part in enumerate(parts))


def _figure_html(figure: dict, index: int) -> str:
    text = json.dumps(figure, separators=(",", ":")).replace("</", "<\\/")
    height = figure.get("layout", {}).get("height") or 450
    return (
        f'<div id="wb-figure-{index}" style="width:100%;height:{int(height)}px"></div>'
        f'<script>Plotly.newPlot("wb-figure-{index}", ...(f => [f.data, f.layout])({text}), '
        '{"responsive": true, "displaylogo": false});</script>'
    )


def to_html(path: str | Path) -> Path:
    """The executed notebook's HTML copy beside it: self-contained, nothing loaded from a network."""
    import nbformat
    from nbconvert import HTMLExporter
    from plotly.offline import get_plotlyjs

    path = Path(path)
    notebook = nbformat.read(path, as_version=4)
    models = _widget_states(notebook)
    figures = 0
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            cell.source = render_math(cell.source)
        if "outputs" in cell:  # widgets hidden by the end of the run show nothing live: nothing here either
            cell.outputs = [o for o in cell.outputs if not _hidden(models, _view_id(o))]
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "text/markdown" in data:
                data["text/markdown"] = render_math(data["text/markdown"])
            if PLOTLY in data:
                data["text/html"] = _figure_html(data.pop(PLOTLY), figures)
                figures += 1
            elif WIDGET_VIEW in data:
                text = _widget_text(_leaves(models, data.pop(WIDGET_VIEW)["model_id"]))
                data["text/html"] = f"<pre>{html.escape(text)}</pre>" if text else data.get("text/plain", "")
    notebook.metadata.pop("widgets", None)
    body, _ = HTMLExporter(template_name="lab").from_notebook_node(notebook)
    # Scripts the template would fetch from a CDN: MathJax (math is MathML here), require.js and
    # mermaid (nothing here needs them).
    for pattern in (
        r"<!-- Load mathjax -->.*?<!-- End of mathjax configuration -->",
        r'<script[^>]*\bsrc="https?://[^"]*"[^>]*>\s*</script>',
        r"<script[^>]*>(?:(?!</script>).)*https://cdnjs(?:(?!</script>).)*</script>",
    ):
        body = re.sub(pattern, "", body, flags=re.DOTALL)
    if figures:
        body = body.replace("</head>", f"<script>{get_plotlyjs()}</script>\n</head>", 1)
    output = path.with_suffix(".html")
    output.write_text(body, encoding="utf-8")
    return output
