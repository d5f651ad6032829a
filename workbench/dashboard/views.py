"""The dashboard's shared conventions, as plain functions from run-store frames to pandas tables.

No Panel here: the tabs (`curves`, `compare`, `sweeps`, `runpage`, `frontier`) arrange these into
the live view, and notebooks call them for static tables (07_compare). The conventions are the ones
W&B and MLflow users know:

- a run's **parameters** (its config: what it was told) and its **metrics** (what it measured:
  logged curves and the numbers of its summary) are kept apart, in columns named `params.X` and
  `metrics.X`; a number a run records about how it ran (its world size, its learning rate of the
  moment) counts as a setting, not an outcome;
- a comparison is against a **baseline** run the user picks; by default the run its experiment
  marked as reference (`Run.mark_reference()`: the teacher, the AdamW arm);
- a **sweep** groups the runs tagged with one sweep id; its default metric is the headline its
  runs' kind declared (`RunKind.headline`);
- the **bookkeeping** runs of a sweep (kinds "sweep" and "sweep_point") are hidden unless asked for.
- a metric's **goal** (lower or higher is better) is its kind's declared one for a headline, else
  read from its name (`metric_goal`); a metric without a known goal is shown but never coloured;
- numbers are shown to 4 significant digits (`round_sig`): what a reader compares, not float noise.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .. import plots
from ..runs import RunKind, sweep_group

BOOKKEEPING_KINDS = ("sweep", "sweep_point")
# Numbers runs record about how they ran rather than how well: settings, never compared as outcomes.
SETTING_KEYS = frozenset({"lr", "world_size", "stage", "global_batch", "notebook_s"})
MAX_CURVES = 24  # runs drawn when none is selected (the newest of the filter); a selection is drawn whole
MAX_PARAM_COLUMNS = 6
MAX_METRIC_COLUMNS = 8
COLORS = plots.COLORS
STATUS_COLORS = {"running": "#1f77b4", "finished": "#2ca02c", "failed": "#d62728", "interrupted": "#ff7f0e"}
# What a number's name says about its goal, for metrics no kind declares; checked in this order.
HIGHER_BETTER = ("tokens_per_s", "tok_s", "_per_s", "throughput", "speedup", "acc", "accuracy", "score", "f1", "bleu")
LOWER_BETTER = ("loss", "ppl", "perplexity", "nll", "error", "_kl", "kl", "_ce", "bpb", "bits", "latency", "_bytes",
                "_mb", "memory", "_s", "seconds")
# Numbers that name a thing rather than measure it: never compared.
ID_KEYS = ("run_id", "id", "step", "seed", "pid")
BETTER, WORSE = "background-color: #d9f2d9", "background-color: #f8d7d7"


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
        rows.append({k: float(v) for k, v in numbers.items() if k not in settings and k not in ID_KEYS})
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


def params_frame(runs: pd.DataFrame, short: bool = True) -> pd.DataFrame:
    """One row per run, one column per (flattened) parameter, long values shortened for a table cell
    (`short`). Values keep their Python type (a seed stays 0, not 0.0, where another run has none)."""
    return pd.DataFrame(
        [{k: _short(v) if short else v for k, v in flatten(p).items()} for p in runs["params"]],
        index=runs["id"].to_numpy(),
        dtype=object,
    )


def varying(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if frame[c].astype(str).nunique(dropna=False) > 1]


def table_columns(runs: pd.DataFrame, finals: pd.DataFrame, kinds: dict[str, RunKind] | None = None
                  ) -> tuple[list[str], list[str]]:
    """(the default, every offered) `params.*` and `metrics.*` columns of a runs table of `runs`: the
    parameters that vary, the metrics headline first; the default keeps the first few of each."""
    params = [f"params.{c}" for c in varying(params_frame(runs))] if not runs.empty else []
    finals = finals.reindex(runs["id"].to_numpy())
    metrics = [f"metrics.{c}" for c in metric_order(finals, headlines(runs, kinds or {}))]
    return params[:MAX_PARAM_COLUMNS] + metrics[:MAX_METRIC_COLUMNS], params + metrics


def runs_table(runs: pd.DataFrame, finals: pd.DataFrame, kinds: dict[str, RunKind] | None = None,
               columns: list[str] | None = None) -> pd.DataFrame:
    """The runs as a sortable table: who, when, how long, tags, then `params.*` and `metrics.*`
    (rounded) columns, indexed by run id. `columns`: exactly these (blank where a run has none);
    default: `table_columns` of these runs. No runs: no rows, but the same columns of the same kinds
    (numbers stay numbers), so that a filter matching nothing changes the dashboard's table's rows and
    not its columns, which would make the browser tear the table down and build it again."""
    base = ["id", "kind", "name", "sweep", "status", "tags", "started", "duration_s"]
    if runs.empty:
        numeric = {"id": "int64", "duration_s": "float64"}
        return pd.DataFrame(
            {c: pd.Series(dtype=numeric.get(c, "float64" if c.startswith("metrics.") else "str"))
             for c in base + list(columns or [])},
            index=pd.Index([], dtype="int64"),
        )
    table = pd.DataFrame(
        {
            "id": runs["id"].to_numpy(),
            "kind": runs["kind"].to_numpy(),
            "name": runs["name"].to_numpy(),
            "sweep": runs["sweep"].fillna("").to_numpy(),
            "status": runs["status"].to_numpy(),
            "tags": [", ".join(t) for t in runs["tags"]] if "tags" in runs else "",
            "started": pd.to_datetime(runs["started_at"], unit="s").dt.strftime("%Y-%m-%d %H:%M:%S").to_numpy(),
            "duration_s": runs["duration_s"].round(0).to_numpy(),
        },
        index=runs["id"].to_numpy(),
    )
    columns = table_columns(runs, finals, kinds)[0] if columns is None else columns
    params = params_frame(runs)
    finals = finals.reindex(runs["id"].to_numpy())
    for column in columns:
        kind, name = column.split(".", 1)
        if kind == "params":
            values = params[name] if name in params else pd.Series(None, index=params.index, dtype=object)
            table[column] = values.astype(str).where(values.notna(), "").to_numpy()
        else:
            table[column] = finals[name].map(round_sig).to_numpy() if name in finals else np.nan
    return table


def round_sig(value: float, digits: int = 4) -> float:
    """`value` to `digits` significant digits (1160.19523 -> 1160.0, 0.000123456 -> 0.0001235); NaN stays."""
    if value is None or not math.isfinite(value) or value == 0:
        return value
    return round(float(value), digits - 1 - int(math.floor(math.log10(abs(value)))))


def metric_goal(metric: str, kinds: dict[str, RunKind] | None = None) -> str | None:
    """"min" or "max" for a metric: its kind's declaration for a headline, else what its name says
    (`HIGHER_BETTER`, `LOWER_BETTER`); None where neither says."""
    name = metric.rsplit(".", 1)[-1].lower()
    for kind in (kinds or {}).values():
        if kind.headline.lower() == name:
            return kind.goal
    if any(word in name for word in HIGHER_BETTER):
        return "max"
    if any(name == word.strip("_") or word in name for word in LOWER_BETTER):
        return "min"
    return None


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


def seed_groups(runs: pd.DataFrame, run_ids: list[int], by: str | None = None) -> dict[str, list[int]]:
    """The runs grouped for a mean over seeds: by every parameter but the seed (`by=None`), or by the
    one parameter `by`; each group named by what its runs share ("arm=student, lr=0.001")."""
    rows = runs.set_index("id").loc[[i for i in run_ids if i in set(runs["id"])]].reset_index()
    if rows.empty:
        return {}
    params = params_frame(rows)
    params.index = rows["id"].to_numpy()
    columns = [by] if by else [c for c in varying(params) if c.rsplit(".", 1)[-1] not in ("seed", "seeds")]
    groups: dict[str, list[int]] = {}
    for run_id, values in params.reindex(columns=columns).iterrows():
        name = ", ".join(f"{c}={'' if pd.isna(v) else v}" for c, v in values.items()) or "all runs"
        groups.setdefault(name, []).append(int(run_id))
    return groups


def compare_table(
    runs: pd.DataFrame,
    finals: pd.DataFrame,
    run_ids: list[int],
    baseline: int,
    kinds: dict[str, RunKind] | None = None,
    metrics: list[str] | None = None,
    mean_over_seeds: bool = False,
    delta: bool = False,
) -> pd.DataFrame:
    """One row per run (the baseline first), one column per metric, rounded to 4 significant digits.

    `metrics`: the columns (default: `compare_metrics`, those that differ, headline first).
    `mean_over_seeds`: one row per group of runs that differ only in their seed (`seed_groups`),
    the mean of its runs, with `runs` counting them. `delta`: each value as Δ% to the baseline's row,
    100 (x - x_base) / |x_base|, blank where the baseline is 0 or missing.
    """
    ids = [baseline, *[i for i in run_ids if i != baseline]]
    names = {int(row["id"]): label(row) for _, row in runs[runs["id"].isin(ids)].iterrows()}
    columns = compare_metrics(finals, ids, runs, kinds) if metrics is None else list(metrics)
    values = finals.reindex(index=ids, columns=columns)
    if mean_over_seeds:
        groups = seed_groups(runs, ids)
        first = next((g for g, members in groups.items() if baseline in members), None)
        order = [first, *[g for g in groups if g != first]] if first else list(groups)
        values = pd.DataFrame([values.loc[groups[g]].mean() for g in order], columns=columns)
        table = pd.DataFrame({"run": [f"{g} ({len(groups[g])} runs)" for g in order]})
    else:
        table = pd.DataFrame({"run": [names.get(i, f"#{i}") for i in ids]})
        values = values.reset_index(drop=True)
    if len(table):
        table.loc[0, "run"] += " (baseline)"
    if delta and len(values):
        base = values.iloc[0]
        with np.errstate(divide="ignore", invalid="ignore"):
            change = (100 * (values - base) / base.abs().where(base != 0)).round(2)
        return pd.concat([table, change.add_prefix("Δ% ")], axis=1)
    return pd.concat([table, values.apply(lambda c: c.map(round_sig))], axis=1)


def compare_metrics(finals: pd.DataFrame, run_ids: list[int], runs: pd.DataFrame,
                    kinds: dict[str, RunKind] | None = None, constant: bool = False) -> list[str]:
    """The metrics worth a column for these runs: reported by one of them, headline first; those
    equal in every run left out (`constant=True` keeps them) where more than one run is compared."""
    values = finals.reindex(run_ids)
    order = metric_order(values, headlines(runs[runs["id"].isin(run_ids)], kinds or {}))
    if constant or len(run_ids) < 2:
        return order
    return [m for m in order if values[m].round(12).nunique(dropna=False) > 1]


def compare_styles(table: pd.DataFrame, kinds: dict[str, RunKind] | None = None) -> pd.DataFrame:
    """CSS per cell of a `compare_table`: green where a run is better than the baseline's row by the
    metric's goal (`metric_goal`), red where worse; no colour for the baseline, ties or unknown goals."""
    styles = pd.DataFrame("", index=table.index, columns=table.columns)
    if table.empty:
        return styles
    for column in table.columns:
        metric = column.removeprefix("Δ% ")
        goal = metric_goal(metric, kinds) if column not in ("run", "runs") else None
        if goal is None:
            continue
        values = pd.to_numeric(table[column], errors="coerce")
        change = values if column.startswith("Δ% ") else values - values.iloc[0]
        better = change < 0 if goal == "min" else change > 0
        worse = change > 0 if goal == "min" else change < 0
        styles.loc[better, column] = BETTER
        styles.loc[worse, column] = WORSE
        styles.loc[styles.index[0], column] = ""
    return styles


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
def empty_figure(text: str) -> go.Figure:
    figure = go.Figure()
    figure.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper")
    figure.update_layout(xaxis_visible=False, yaxis_visible=False, height=300, **plots.LAYOUT)
    return figure

