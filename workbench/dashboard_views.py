"""What the dashboard shows, as plain functions from run-store frames to pandas tables and plotly figures.

No Panel here: `workbench.dashboard` arranges these into the live view, and notebooks call them for
static figures (07_compare). The conventions are the ones W&B and MLflow users know:

- a run's **parameters** (its config: what it was told) and its **metrics** (what it measured:
  logged curves and the numbers of its summary) are kept apart, in columns named `params.X` and
  `metrics.X`; a number a run records about how it ran (its world size, its learning rate of the
  moment) counts as a setting, not an outcome;
- a comparison is against a **baseline** run the user picks; by default the run its experiment
  marked as reference (`Run.mark_reference()`: the teacher, the AdamW arm);
- a **sweep** groups the runs tagged with one sweep id; its default metric is the headline its
  runs' kind declared (`RunKind.headline`);
- the **bookkeeping** runs of a sweep (kinds "sweep" and "sweep_point") are hidden unless asked for.

(Over 400 lines: one pure function per view of the dashboard, each short and unit-tested; splitting
them by tab would scatter the shared column conventions above.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import plots
from .runs import RunKind, RunStore, sweep_group

BOOKKEEPING_KINDS = ("sweep", "sweep_point")
# Numbers runs record about how they ran rather than how well: settings, never compared as outcomes.
SETTING_KEYS = frozenset({"lr", "world_size", "stage", "global_batch", "notebook_s"})
MAX_CURVES = 24  # runs drawn when none is selected (the newest of the filter); a selection is drawn whole
MAX_PARAM_COLUMNS = 6
MAX_METRIC_COLUMNS = 8
COLORS = plots.COLORS
STATUS_COLORS = {"running": "#1f77b4", "finished": "#2ca02c", "failed": "#d62728", "interrupted": "#ff7f0e"}


def label(row) -> str:
    return f"#{row['id']} {row['name']}"


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, (bool, np.bool_))


def flatten(values: dict, prefix: str = "") -> dict:
    """Nested settings one level per dot: {"profile": {"steps": 4}} -> {"profile.steps": 4}."""
    flat = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def setting_keys(params: dict, summary: dict) -> set[str]:
    """The keys that name a setting of this run: its parameters (also nested ones, by their last
    name), the settings a summary carries as a nested dict (`train_config`), and `SETTING_KEYS`."""
    keys = set(SETTING_KEYS) | set(params)
    for values in (params, summary):
        keys |= {key.rsplit(".", 1)[-1] for key in flatten({k: v for k, v in values.items() if isinstance(v, dict)})}
    return keys


# -- final numbers ----------------------------------------------------------------------------------


def final_metrics(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run id, one column per metric: each logged metric's last value, overridden by the
    summary's number of the same name. Settings (see `setting_keys`) are left out."""
    last: dict[int, dict] = {}
    if not metrics.empty:
        for (run_id, key), value in metrics.sort_values("id").groupby(["run_id", "key"])["value"].last().items():
            last.setdefault(run_id, {})[key] = value
    rows = []
    for row in runs.itertuples():
        settings = setting_keys(row.params, row.summary)
        numbers = {**last.get(row.id, {}), **{k: v for k, v in row.summary.items() if _is_number(v)}}
        rows.append({k: float(v) for k, v in numbers.items() if k not in settings})
    return pd.DataFrame(rows, index=runs["id"].to_numpy(), dtype=float)


def headlines(runs: pd.DataFrame, kinds: dict[str, RunKind]) -> list[str]:
    """The headline metrics the kinds of these runs declare, most common kind first."""
    order = runs["kind"].value_counts().index if not runs.empty else []
    return list(dict.fromkeys(kinds[k].headline for k in order if k in kinds))


def metric_order(finals: pd.DataFrame, first: list[str]) -> list[str]:
    """Metric columns: the declared headlines first, then by how many runs report them."""
    counts = finals.notna().sum().sort_values(ascending=False, kind="stable")
    present = [c for c in counts.index if counts[c] > 0]
    return [m for m in first if m in present] + [m for m in present if m not in first]


# -- tables -----------------------------------------------------------------------------------------


def visible(runs: pd.DataFrame, bookkeeping: bool = False) -> pd.DataFrame:
    """The runs a user compares; a sweep's own records (the grid, one row per point) only on request."""
    return runs if bookkeeping or runs.empty else runs[~runs["kind"].isin(BOOKKEEPING_KINDS)]


def params_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run, one column per (flattened) parameter, long values shortened for a table cell.
    Values keep their Python type (a seed stays 0, not 0.0, where another run has none)."""
    return pd.DataFrame(
        [{k: _short(v) for k, v in flatten(p).items()} for p in runs["params"]],
        index=runs["id"].to_numpy(),
        dtype=object,
    )


def varying(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if frame[c].astype(str).nunique(dropna=False) > 1]


def runs_table(runs: pd.DataFrame, finals: pd.DataFrame, kinds: dict[str, RunKind] | None = None) -> pd.DataFrame:
    """The runs as a sortable table: who, when, how long, then `params.*` (those that vary) and `metrics.*`."""
    base = ["id", "kind", "name", "sweep", "status", "started", "duration_s"]
    if runs.empty:
        return pd.DataFrame(columns=base)
    table = pd.DataFrame(
        {
            "id": runs["id"].to_numpy(),
            "kind": runs["kind"].to_numpy(),
            "name": runs["name"].to_numpy(),
            "sweep": runs["sweep"].fillna("").to_numpy(),
            "status": runs["status"].to_numpy(),
            "started": pd.to_datetime(runs["started_at"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S").to_numpy(),
            "duration_s": runs["duration_s"].round(1).to_numpy(),
        }
    )
    params = params_frame(runs)
    for column in varying(params)[:MAX_PARAM_COLUMNS]:
        table[f"params.{column}"] = params[column].astype(str).where(params[column].notna(), "").to_numpy()
    finals = finals.reindex(runs["id"].to_numpy())
    for column in metric_order(finals, headlines(runs, kinds or {}))[:MAX_METRIC_COLUMNS]:
        table[f"metrics.{column}"] = finals[column].round(4).to_numpy()
    return table


def _short(value) -> object:
    if isinstance(value, (list, dict)):
        text = json.dumps(value)
        return text if len(text) <= 40 else text[:37] + "..."
    return value


def reference_run(runs: pd.DataFrame, run_ids: list[int]) -> int | None:
    """The default baseline among `run_ids`: the newest run marked as its experiment's reference,
    else the earliest of them (in an experiment, the arm that ran first)."""
    rows = runs[runs["id"].isin(run_ids)]
    if rows.empty:
        return None
    marked = rows[[s.get("reference") is True for s in rows["summary"]]]
    return int(marked["id"].max()) if not marked.empty else int(rows["id"].min())


def newest_experiment(runs: pd.DataFrame, limit: int = MAX_CURVES) -> list[int]:
    """What to compare when nothing is selected: the runs of the newest run's sweep (one experiment's
    arms), else the newest runs of its kind. Never two experiments mixed."""
    if runs.empty:
        return []
    newest = runs.loc[runs["id"].idxmax()]
    group = sweep_group(newest["sweep"])
    groups = runs["sweep"].map(sweep_group)
    same = runs[groups == group] if group else runs[(runs["kind"] == newest["kind"]) & groups.isna()]
    return [int(i) for i in same.sort_values("id")["id"].tail(limit)]


def compare_table(
    runs: pd.DataFrame, finals: pd.DataFrame, run_ids: list[int], baseline: int, kinds: dict[str, RunKind] | None = None
) -> pd.DataFrame:
    """Metrics side by side, one column per run, and each run's Δ and Δ% to the baseline run.

    Δ% = 100 (x - x_base) / |x_base|; blank (NaN) where the baseline is zero or missing.
    """
    ids = [baseline, *[i for i in run_ids if i != baseline]]
    names = {row["id"]: label(row) for _, row in runs[runs["id"].isin(ids)].iterrows()}
    values = finals.reindex(ids)
    values = values[metric_order(values, headlines(runs[runs["id"].isin(ids)], kinds or {}))].T
    goals = {k.headline: ("lower is better" if k.goal == "min" else "higher is better") for k in (kinds or {}).values()}
    table = pd.DataFrame({"metric": values.index, "goal": [goals.get(m, "") for m in values.index]})
    base = values[baseline].to_numpy(dtype=float) if len(values) else np.array([])
    table[f"{names.get(baseline, baseline)} (baseline)"] = base
    for run_id in ids[1:]:
        column = values[run_id].to_numpy(dtype=float)
        table[names.get(run_id, str(run_id))] = column
        table[f"Δ #{run_id}"] = column - base
        with np.errstate(divide="ignore", invalid="ignore"):
            change = np.where(base != 0, 100 * (column - base) / np.abs(base), np.nan)
        table[f"Δ% #{run_id}"] = np.round(change, 2)
    return table.round(5)


def params_table(runs: pd.DataFrame, run_ids: list[int]) -> pd.DataFrame:
    """The parameters that differ between these runs, one column per run (the settings beside the outcomes)."""
    rows = runs.set_index("id").loc[[i for i in run_ids if i in set(runs["id"])]].reset_index()
    if rows.empty:
        return pd.DataFrame(columns=["parameter"])
    params = params_frame(rows)
    differ = varying(params) if len(rows) > 1 else list(params.columns)
    table = params[differ].T.astype(str).replace({"nan": "", "None": ""})
    table.columns = [label(row) for _, row in rows.iterrows()]
    return table.rename_axis("parameter").reset_index()


# -- curves -----------------------------------------------------------------------------------------


def curve_frame(runs: pd.DataFrame, metrics: pd.DataFrame, run_ids: list[int], key: str) -> pd.DataFrame:
    """One metric of some runs: (run label, step, time since the run started, value), in logging order."""
    rows = metrics[(metrics["key"] == key) & metrics["run_id"].isin(run_ids)]
    info = runs.set_index("id").loc[[i for i in run_ids if i in set(runs["id"])]]
    frame = rows.assign(
        run=rows["run_id"].map({i: label({"id": i, "name": n}) for i, n in info["name"].items()}),
        time_s=rows["time"] - rows["run_id"].map(info["started_at"]),
    )
    order = {i: n for n, i in enumerate(run_ids)}
    return frame.sort_values(["run_id", "id"], key=lambda c: c.map(order) if c.name == "run_id" else c)


def curves_figure(
    runs: pd.DataFrame, metrics: pd.DataFrame, run_ids: list[int], key: str, x: str = "step", log_y: bool = False
) -> go.Figure:
    """Every given run's curve of one metric, by step or by wall time.

    Runs that logged identical numbers still show as distinct lines: each run has its own colour,
    dash and marker, the legend names every run, and the hover lists every run at that x. A metric
    each run logged once is a number, not a curve: it is drawn as bars, one per run.
    """
    frame = curve_frame(runs, metrics, run_ids, key)
    column = "time_s" if x != "step" else "step"
    figure = go.Figure()
    if len(frame) and frame.groupby("run_id").size().max() == 1:
        figure.add_trace(
            go.Bar(
                x=frame["run"],
                y=frame["value"],
                marker_color=[COLORS[i % len(COLORS)] for i in range(len(frame))],
                hovertemplate="%{x}<br>" + key + " %{y:.5g}<extra></extra>",
            )
        )
        figure.update_layout(title=f"{key}: one value per run ({len(frame)} runs)", yaxis_title=key, **plots.LAYOUT)
    else:
        for index, (name, rows) in enumerate(frame.groupby("run", sort=False)):
            figure.add_trace(
                go.Scatter(
                    x=rows[column],
                    y=rows["value"],
                    name=name,
                    mode="lines+markers",
                    **plots.line_style(name, index),
                    hovertemplate=f"{name}: %{{y:.5g}}<extra></extra>",  # one line per run under the x
                )
            )
        figure.update_layout(
            title=f"{key} of {frame['run'].nunique()} runs",
            xaxis_title=x,
            yaxis_title=key,
            hovermode="x unified",
            **plots.LAYOUT,
        )
        if log_y:
            figure.update_yaxes(**plots.LOG_AXIS)
    figure.update_layout(uirevision="keep", legend={"title": "run"}, height=440)  # zoom survives live updates
    return figure


# -- sweeps -----------------------------------------------------------------------------------------


def sweep_groups(runs: pd.DataFrame) -> list[str]:
    """The sweep ids in the store, newest first (a run without a tag belongs to none)."""
    if runs.empty:
        return []
    groups = runs.assign(group=runs["sweep"].map(sweep_group)).dropna(subset=["group"])
    return list(groups.groupby("group")["id"].max().sort_values(ascending=False).index)


def sweep_points(runs: pd.DataFrame, sweep: str) -> pd.DataFrame:
    """A sweep's points: point, run, kind, status, error, each parameter (`param X`) and each final number.

    A sweep of the CLI (`workbench sweep`) has one bookkeeping run per point, whose summary holds
    the numbers its notebook's runs measured; an experiment's sweep id groups its arms directly:
    then each arm is a point.
    """
    group = runs[runs["sweep"].map(sweep_group) == sweep]
    rows = group[group["kind"] == "sweep_point"]
    cli = not rows.empty
    rows = rows if cli else visible(group).sort_values("id")
    if rows.empty:
        return pd.DataFrame(columns=["point", "run", "kind", "status", "error"])
    frame = pd.DataFrame(
        {
            "point": rows["sweep"].str.rsplit("/", n=1).str[-1].astype(int).to_numpy() if cli else np.arange(len(rows)),
            "run": rows["id"].to_numpy(),
            "kind": rows["kind"].to_numpy(),
            "status": rows["status"].to_numpy(),
            "error": rows["error"].fillna("").to_numpy(),
        }
    )
    params = params_frame(rows).reset_index(drop=True).infer_objects()  # numeric parameters as numbers, for the axes
    params = params[varying(params) or list(params.columns)].add_prefix("param ")
    finals = final_metrics(rows, pd.DataFrame(columns=["id", "run_id", "step", "key", "value", "time"])).reset_index(
        drop=True
    )
    return pd.concat([frame, params, finals], axis=1).sort_values("point").reset_index(drop=True)


def sweep_metrics(points: pd.DataFrame) -> list[str]:
    return [
        c for c in points.columns if c not in ("point", "run", "kind", "status", "error") and not c.startswith("param ")
    ]


def _is_duration(metric: str) -> bool:
    """How long something took (`load_s`, `seconds`): a cost of running, rarely what a sweep is about."""
    name = metric.rsplit(".", 1)[-1]
    return name.endswith(("_s", "_seconds")) or name in ("seconds", "time", "duration")


def sweep_default_metric(points: pd.DataFrame, runs: pd.DataFrame, sweep: str, kinds: dict[str, RunKind]) -> str | None:
    """The headline the sweep's runs declare (their kind's `RunKind.headline`), else the first
    metric that moves between points and is not a duration, else the first that is not a duration."""
    metrics = sweep_metrics(points)
    inner = visible(runs[runs["sweep"].map(sweep_group) == sweep])
    for headline in headlines(inner, kinds):
        for candidate in (headline, *(m for m in metrics if m.endswith(f".{headline}"))):
            if candidate in metrics and points[candidate].notna().any():
                return candidate
    numbers = [m for m in metrics if not _is_duration(m) and points[m].notna().any()]
    moving = [m for m in numbers if points[m].nunique() > 1]
    return next(iter(moving + numbers + metrics), None)


def _axis_values(values: pd.Series) -> tuple[pd.Series, dict]:
    """A parameter as numbers for an axis: numeric as is, anything else as category codes with their names."""
    if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype(float), {}
    names = values.astype(str)
    categories = list(dict.fromkeys(names))
    return names.map({c: i for i, c in enumerate(categories)}).astype(float), {
        "tickvals": list(range(len(categories))),
        "ticktext": categories,
    }


def sweep_figure(points: pd.DataFrame, metric: str, title: str = "") -> go.Figure:
    """A final metric against each swept parameter (one panel per parameter that varies); hover: the whole point."""
    axes = [c for c in points.columns if c.startswith("param ")]
    figure = make_subplots(
        rows=1, cols=max(len(axes), 1), shared_yaxes=True, subplot_titles=[a.removeprefix("param ") for a in axes]
    )
    done = points.dropna(subset=[metric]) if metric in points else points.iloc[0:0]
    hover = (
        done[axes]
        .astype(str)
        .apply(lambda r: "<br>".join(f"{a.removeprefix('param ')}={v}" for a, v in r.items()), axis=1)
        if axes
        else None
    )
    for column, axis in enumerate(axes, start=1):
        values = done[axis]
        numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
        figure.add_trace(
            go.Scatter(
                x=values if numeric else values.astype(str),
                y=done[metric],
                mode="markers",
                name=axis.removeprefix("param "),
                marker={"size": 10, "color": [STATUS_COLORS.get(s, "gray") for s in done["status"]]},
                text=hover,
                hovertemplate=f"%{{text}}<br>{metric} %{{y:.4g}}<extra>point</extra>",
                showlegend=False,
            ),
            row=1,
            col=column,
        )
        positive = numeric and len(values) and (values > 0).all() and values.max() / values.min() >= 20
        figure.update_xaxes(type="log" if positive else None, row=1, col=column)
    figure.update_yaxes(title_text=metric, row=1, col=1)
    figure.update_layout(
        title=title or f"{metric}: {len(done)} of {len(points)} points", height=380, uirevision="keep", **plots.LAYOUT
    )
    return figure


def parallel_figure(points: pd.DataFrame, metric: str, goal: str = "min", title: str = "") -> go.Figure:
    """Parallel coordinates: one axis per swept parameter and one for the metric, one line per
    finished point, coloured by the metric (the best points brightest: `goal` says which end is best)."""
    axes = [c for c in points.columns if c.startswith("param ")]
    done = points.dropna(subset=[metric]) if metric in points else points.iloc[0:0]
    dimensions = []
    for axis in axes:
        values, ticks = _axis_values(done[axis])
        dimensions.append(dict(label=axis.removeprefix("param "), values=values, **ticks))
    dimensions.append({"label": metric, "values": done[metric].astype(float)})
    figure = go.Figure(
        go.Parcoords(
            line={
                "color": done[metric].astype(float),
                "colorscale": "Viridis",
                "reversescale": goal == "min",
                "showscale": True,
                "colorbar": {"title": metric},
            },
            dimensions=dimensions,
        )
    )
    figure.update_layout(
        title=title or f"{metric} against the swept parameters ({len(done)} points)",
        height=380,
        template="plotly_white",
        margin={"l": 80, "r": 80, "t": 80, "b": 40},
    )
    return figure


# -- one run ----------------------------------------------------------------------------------------


def run_overview(row: dict) -> pd.DataFrame:
    """Who, when, where and with what code a run ran: status, sweep, host, git commit, device, versions."""
    started = pd.to_datetime(row["started_at"], unit="s").strftime("%Y-%m-%d %H:%M:%S UTC")
    facts = {
        "kind": row["kind"],
        "name": row["name"],
        "status": row["status"],
        "sweep": row["sweep"] or "",
        "started": started,
        "duration_s": round(float(row["duration_s"]), 1),
        "host": row["host"],
        "pid": row["pid"],
        "git commit": row["git_commit"] or "(not in a git checkout)",
        "device": row["device"],
        **{f"version of {k}": v for k, v in (row["versions"] or {}).items()},
    }
    return pd.DataFrame({"about": list(facts), "value": [str(v) for v in facts.values()]})


def run_summary(row: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's parameters and its summary as two (key, value) tables: settings apart from outcomes."""
    params = flatten(row["params"])
    settings = setting_keys(row["params"], row["summary"])
    summary = flatten(row["summary"])
    metrics = {k: v for k, v in summary.items() if k not in settings and not k.startswith("train_config.")}
    config = {k: v for k, v in summary.items() if k not in metrics}

    def table(values: dict, name: str) -> pd.DataFrame:
        return pd.DataFrame(
            {name: list(values), "value": [_short(v) if not _is_number(v) else v for v in values.values()]}
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


def artifact_views(store: RunStore, run_id: int, limit: int = 8) -> list[tuple[str, object]]:
    """A run's artifacts as things to show, by what they hold: a matrix (an attention-similarity map)
    as a heatmap, a vector as a line, text (a generated sample) as text, records as a table."""
    views = []
    files = run_files(store, run_id)
    for name, path in sorted(store.artifacts(run_id).items())[:limit]:
        if name in files:
            continue  # linked from the run page, not drawn
        if not path.is_file():
            views.append((name, f"(missing: {path})"))
            continue
        suffix = path.suffix.lower()
        if suffix == ".npy":
            views.append((name, _array_view(np.load(path), name)))
        elif suffix == ".json":
            value = json.loads(path.read_text())
            if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
                views.append((name, pd.DataFrame(value)))
            elif isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                views.append((name, value if isinstance(value, str) else "\n\n---\n\n".join(value)))
            else:
                views.append((name, value))
        elif suffix in (".txt", ".md", ".log", ".csv"):
            views.append((name, path.read_text(errors="replace")[:5000]))
        elif suffix in (".png", ".jpg", ".jpeg", ".svg"):
            views.append((name, path))
        else:
            views.append((name, f"{path} ({path.stat().st_size / 1e3:.1f} kB)"))
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
    return f"array of shape {array.shape}, dtype {array.dtype}: mean {float(np.mean(array)):.4g}"


def empty_figure(text: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_layout(xaxis_visible=False, yaxis_visible=False, height=300, **plots.LAYOUT)
    return figure
