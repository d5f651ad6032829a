"""The Run tab: one run's page, fitting a laptop screen, and what a user may say or do about the run.

Its error, links to its executed notebook and HTML copy, its parameters (once), its summary and
where it ran (rounded numbers), its logged curves, and its artifacts under readable names, each
drawn by what it holds (a matrix as a heatmap, a stack of matrices as a grid of them, records as a
table, text as text). The user can rename the run, give it tags and a note, archive it (hidden from
the table unless "show archived" is ticked; nothing deleted) or delete it with its folder (asked
twice). `?run=ID` in the address opens a run's page.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .. import plots
from ..errors import WorkbenchError
from ..runs import RunStore
from .views import COLORS, _is_number, _short, empty_figure, flatten, round_sig, setting_keys
from .widgets import FrameView, artifact_pane, csv_button

FILE_ROUTES = ("notebooks", "artifacts")  # folders of the workbench home the server serves, for the links
MAX_MAPS = 9  # matrices of a stack drawn side by side


def run_overview(row: dict) -> pd.DataFrame:
    """Who, when, where and with what code a run ran: status, sweep, host, git commit, device, versions."""
    started = pd.to_datetime(row["started_at"], unit="s").strftime("%Y-%m-%d %H:%M:%S UTC")
    facts = {
        "kind": row["kind"],
        "name": row["name"],
        "status": row["status"],
        "sweep": row["sweep"] if isinstance(row["sweep"], str) else "",
        "started": started,
        "duration": f"{float(row['duration_s']):.0f} s",
        "host": row["host"],
        "pid": row["pid"],
        "git commit": row["git_commit"] or "(not in a git checkout)",
        "device": row["device"],
        **{f"version of {k}": v for k, v in (row["versions"] or {}).items()},
    }
    return pd.DataFrame({"about": list(facts), "value": [str(v) for v in facts.values()]})


def run_summary(row: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's parameters and its summary as two (key, value) tables: settings apart from outcomes.
    A setting the summary records again with the value of a parameter is listed once; numbers are
    rounded to 4 significant digits."""
    params = flatten(row["params"])
    settings = setting_keys(row["params"], row["summary"])
    summary = flatten(row["summary"])
    metrics = {k: v for k, v in summary.items() if k not in settings and not k.startswith("train_config.")}
    given = {(k.rsplit(".", 1)[-1], json.dumps(v, default=str)) for k, v in params.items()}
    config = {k: v for k, v in summary.items() if k not in metrics
              and (k.rsplit(".", 1)[-1], json.dumps(v, default=str)) not in given and k != "reference"}

    def table(values: dict, name: str) -> pd.DataFrame:
        return pd.DataFrame(
            {name: list(values), "value": [_short(v) if not _is_number(v) else f"{round_sig(float(v)):g}"
                                           for v in values.values()]}
        ).astype({"value": str})

    return table({**params, **{f"(recorded) {k}": v for k, v in config.items()}}, "parameter"), table(
        metrics, "summary"
    )


def run_curves_figure(metrics: pd.DataFrame, run_id: int, limit: int = 9) -> go.Figure:
    """Every metric one run logged, one small panel each (up to `limit`)."""
    rows = metrics[metrics["run_id"] == run_id]
    keys = list(dict.fromkeys(rows["key"]))[:limit]
    if not keys:
        return empty_figure("this run logged no metric")
    columns = min(3, len(keys))
    figure = make_subplots(rows=-(-len(keys) // columns), cols=columns, subplot_titles=keys)
    for index, key in enumerate(keys):
        points = rows[rows["key"] == key]
        figure.add_trace(
            go.Scatter(
                x=points["step"],
                y=points["value"],
                mode="lines+markers",
                name=key,
                showlegend=False,
                marker={"size": 4},
                line={"color": COLORS[index % len(COLORS)]},
            ),
            row=index // columns + 1,
            col=index % columns + 1,
        )
    figure.update_layout(height=260 * (-(-len(keys) // columns)), title="logged metrics by step", **plots.LAYOUT)
    return figure


def run_files(store: RunStore, run_id: int) -> dict[str, Path]:
    """The run's executed notebook and its HTML copy, where the run came from one (by artifact name)."""
    return {name: path for name, path in store.artifacts(run_id).items() if path.suffix in (".ipynb", ".html")}


# -- artifacts --------------------------------------------------------------------------------------


def readable(name: str) -> str:
    """An artifact's file name as words: "attention_similarity.npy" -> "attention similarity"."""
    return re.sub(r"[_\-]+", " ", Path(name).stem).strip() or name


def artifact_views(store: RunStore, run_id: int, limit: int = 8) -> list[tuple[str, object]]:
    """A run's artifacts as (readable name, thing to show), by what they hold: a matrix (an attention-
    similarity map) as a heatmap, a stack of matrices as a grid of heatmaps, a vector as a line, text (a
    generated sample) as text, records as a table."""
    views = []
    files = run_files(store, run_id)
    for name, path in sorted(store.artifacts(run_id).items())[:limit]:
        if name in files:
            continue  # linked from the run page, not drawn
        if not path.is_file():
            views.append((readable(name), f"(missing: {path})"))
            continue
        suffix = path.suffix.lower()
        if suffix == ".npy":
            views.append((readable(name), _array_view(np.load(path), readable(name))))
        elif suffix == ".json":
            value = json.loads(path.read_text())
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                views.append((readable(name), pd.DataFrame(value).map(_cell)))
            elif isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                views.append((readable(name), value if isinstance(value, str) else "\n\n---\n\n".join(value)))
            else:
                views.append((readable(name), value))
        elif suffix in (".txt", ".md", ".log", ".csv"):
            views.append((readable(name) + (".md" if suffix == ".md" else ""), path.read_text(errors="replace")[:5000]))
        elif suffix in (".png", ".jpg", ".jpeg", ".svg"):
            views.append((readable(name), path))
        else:
            views.append((readable(name), f"{name}: {path.stat().st_size / 1e3:.1f} kB"))
    return views


def _array_view(array: np.ndarray, name: str) -> object:
    if array.ndim == 2:
        step = max(1, max(array.shape) // 256)  # keep the browser fast on large maps
        matrix = array[::step, ::step]
        axis = "layer" if "similarity" in name else ""
        return plots.heatmap(matrix, name, x_title=axis, y_title=axis, value_name=name.removesuffix(".npy"))
    if array.ndim == 1:
        return plots.curves(
            pd.DataFrame({"index": np.arange(len(array)), "value": array}), "index", "value", title=name
        )
    if array.ndim == 3:
        return _stack_view(array, name)
    return f"{' × '.join(map(str, array.shape))} numbers ({array.dtype}), mean {float(np.mean(array)):.4g}"


def _stack_view(array: np.ndarray, name: str) -> go.Figure:
    """A stack of matrices (one per layer or head) as a grid of small heatmaps on one colour scale."""
    count = min(len(array), MAX_MAPS)
    columns = min(3, count)
    rows = -(-count // columns)
    figure = make_subplots(rows=rows, cols=columns, subplot_titles=[f"{i}" for i in range(count)],
                           horizontal_spacing=0.04, vertical_spacing=0.08)
    low, high = float(np.nanmin(array[:count])), float(np.nanmax(array[:count]))
    for index in range(count):
        step = max(1, max(array.shape[1:]) // 128)
        figure.add_trace(go.Heatmap(z=array[index, ::step, ::step], zmin=low, zmax=high, coloraxis="coloraxis"),
                         row=index // columns + 1, col=index % columns + 1)
    figure.update_yaxes(autorange="reversed")
    shown = f"the first {count} of {len(array)}" if count < len(array) else f"all {count}"
    figure.update_layout(title=f"{name}: {shown} maps of {array.shape[1]} × {array.shape[2]}",
                         coloraxis={"colorscale": "Viridis"}, height=260 * rows + 60, **plots.LAYOUT)
    return figure


def _cell(value: object) -> object:
    return round_sig(float(value)) if _is_number(value) else value




class RunTab:
    """The page of one run, its widgets kept (only their contents change while the run goes on)."""

    def __init__(self, store: RunStore, file_urls: bool, on_labels, on_delete):
        import panel as pn

        self.store, self.file_urls = store, file_urls
        self._on_labels, self._on_delete = on_labels, on_delete
        self.select = pn.widgets.Select(label="run", width=460)
        self.title = pn.pane.Markdown("no run to show", name="run title", sizing_mode="stretch_width")
        self.error = pn.pane.Alert("", alert_type="danger", visible=False, sizing_mode="stretch_width")
        self.links = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.name = pn.widgets.TextInput(label="name", width=280)
        self.tags = pn.widgets.TextInput(label="tags (comma separated)", width=280)
        self.note = pn.widgets.TextAreaInput(label="note", width=420, height=70)
        self.save = pn.widgets.Button(label="save name, tags and note", color="primary", width=220)
        self.archive = pn.widgets.Button(label="archive", width=120)
        self.delete = pn.widgets.Button(label="delete…", color="danger", width=120)
        self.confirm = pn.widgets.Button(label="", color="danger", visible=False, width=360)
        self.cancel = pn.widgets.Button(label="keep it", visible=False, width=100)
        self.message = pn.pane.Markdown("", sizing_mode="stretch_width")
        self.params, self.summary, self.overview = (FrameView(max_height=600) for _ in range(3))
        self.curves = pn.pane.Plotly(go.Figure(), sizing_mode="stretch_width")
        self.artifacts = pn.Column(sizing_mode="stretch_width")
        self.save.on_click(lambda _: self._save())
        self.archive.on_click(lambda _: self._archive())
        self.delete.on_click(lambda _: self._ask())
        self.cancel.on_click(lambda _: self._asked(False))
        self.confirm.on_click(lambda _: self._delete())
        column = {"sizing_mode": "stretch_width"}
        self.panel = pn.Column(
            self.select, self.title, self.error, self.links,
            pn.Row(self.name, self.tags, self.note, sizing_mode="stretch_width"),
            pn.Row(self.save, self.archive, self.delete, self.confirm, self.cancel), self.message,
            pn.Row(*(pn.Column(pn.pane.Markdown(f"**{title}**"), table, csv_button(table, f"run_{file}.csv"), **column)
                     for title, file, table in (("parameters", "parameters", self.params),
                                                ("summary", "summary", self.summary),
                                                ("where and how", "where", self.overview))),
                   sizing_mode="stretch_width"),
            self.curves, self.artifacts, sizing_mode="stretch_width", name="run page",
        )
        self._shown = None
        self._row: dict | None = None
        self._labels: tuple | None = None
        self._artifacts: tuple | None = None

    # -- what the user does ------------------------------------------------------------------------
    def _save(self) -> None:
        if self._row is not None:
            self._apply(name=self.name.value, tags=self.tags.value.split(","), note=self.note.value)

    def _archive(self) -> None:
        if self._row is not None:
            self._apply(archived=not self._row.get("archived", False))

    def _apply(self, **labels) -> None:
        try:
            self.store.label_run(int(self._row["id"]), **labels)
        except WorkbenchError as error:
            self.message.object = f"**not saved**: {error}"
            return
        self.message.object = "saved" if "archived" not in labels else (
            "archived: hidden from the table unless *show archived* is ticked" if labels["archived"] else "unarchived")
        self._on_labels()

    def _ask(self) -> None:
        if self._row is not None:
            self.confirm.label = f"delete run #{self._row['id']} and its folder for good"
            self._asked(True)

    def _asked(self, asking: bool) -> None:
        self.confirm.visible = self.cancel.visible = asking
        self.delete.visible = not asking

    def _delete(self) -> None:
        run_id = int(self._row["id"])
        self._asked(False)
        try:
            self.store.delete_run(run_id)
        except WorkbenchError as error:
            self.message.object = f"**not deleted**: {error}"
            return
        self.message.object = f"run #{run_id} deleted, with its folder"
        self._on_delete(run_id)

    # -- drawing -----------------------------------------------------------------------------------
    def options(self, feed, pool: set[int]) -> None:
        runs = feed.runs[feed.runs["id"].isin(pool | {self.select.value})]
        options = {f"#{r['id']} {r['name']} ({r['kind']}, {r['status']})": int(r["id"]) for _, r in runs.iterrows()}
        if options != self.select.options:
            keep = self.select.value if self.select.value in options.values() else next(iter(options.values()), None)
            self.select.options, self.select.value = options, keep

    def render(self, snapshot, feed, force: bool = False) -> None:
        self.options(feed, set(snapshot.shown["id"]) | set(snapshot.ticks))
        run_id = self.select.value
        rows = feed.runs[feed.runs["id"] == run_id]
        if run_id is None or rows.empty:
            self._row = None
            self.title.object = "no run to show"
            return
        row = rows.iloc[0].to_dict()
        metrics = feed.metrics[feed.metrics["run_id"] == run_id]
        artifacts = tuple(sorted(self.store.artifacts(run_id).items()))
        labels = (row["name"], tuple(row.get("tags", [])), row.get("note", ""), row.get("archived", False))
        state = (run_id, row["status"], json.dumps(row["summary"], sort_keys=True, default=str), len(metrics),
                 artifacts, labels)
        if state == self._shown and not force:
            return
        new_run = self._shown is None or self._shown[0] != run_id
        self._shown, self._row = state, row
        archived = " · archived" if row.get("archived") else ""
        tags = f" · tags: {', '.join(row['tags'])}" if row.get("tags") else ""
        self.title.object = f"### #{run_id} {row['name']} · {row['kind']} · **{row['status']}**{archived}{tags}"
        self.error.object = f"**error**\n\n```\n{row['error']}\n```" if row["error"] else ""
        self.error.visible = bool(row["error"])
        self.links.object = self._links(run_id)
        if new_run or labels != self._labels:
            self.name.value, self.tags.value, self.note.value = row["name"], ", ".join(row.get("tags", [])), labels[2]
            self._labels = labels
        self.archive.label = "unarchive" if row.get("archived") else "archive"
        if new_run:
            self.message.object = ""
            self._asked(False)
        params, summary = run_summary(row)
        self.params.value, self.summary.value, self.overview.value = params, summary, run_overview(row)
        self.curves.object = run_curves_figure(feed.metrics, run_id)
        if new_run or artifacts != self._artifacts:
            self._artifacts = artifacts
            self.artifacts.objects = [artifact_pane(name, value) for name, value in artifact_views(self.store, run_id)]

    def _links(self, run_id: int) -> str:
        files = run_files(self.store, run_id)
        if not files:
            return "no executed notebook recorded for this run"
        home = self.store.path.parent
        links = []
        for name, path in sorted(files.items()):
            what = "HTML copy" if path.suffix == ".html" else "executed notebook"
            route = next((r for r in FILE_ROUTES if path.is_relative_to(home / r)), None)
            if not path.is_file():
                links.append(f"{what}: `{path.name}` (not written)")
            elif self.file_urls and route:
                links.append(f"[{what}: {name}](/{route}/{path.relative_to(home / route).as_posix()})")
            else:
                links.append(f"{what}: `{path}`")
        return " · ".join(links)
