# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # Compare runs: the live dashboard, sweeps, and a run on several GPUs
#
# Every notebook of the workbench records its runs in one store, the way W&B or MLflow do:
# **parameters** (what a run was told: its config), **metrics** (what it measured: curves over steps
# and the final numbers of its summary) and artifacts (an attention-similarity map, a generated
# sample). **Comparing** means putting runs measured the same way next to each other: their curves
# on one axis, their final numbers side by side with the difference to a **baseline** run (by
# default the run its experiment marked as reference: the teacher for an EchoAtt student, AdamW for
# GaLore), and for a **sweep** its metric against each swept parameter.
#
# Why it matters: every claim of the five papers is relative — perplexity *within x% of the
# teacher* at *y% less memory*, a diffusion model *as good as* an autoregressive one of the same
# size. A number alone says little; the difference to its baseline, measured on the same text with
# the same code, is the result.
#
# This notebook shows the store as static figures (they stay in the executed and HTML copies),
# starts a data-parallel training run on several processes and follows its curves live from the
# store, then embeds the **live dashboard**. The same dashboard runs as a server in a terminal:
#
# ```
# python -m workbench dashboard                                        # http://127.0.0.1:5006/dashboard_app
# python -m workbench sweep NOTEBOOK -p lr 1e-3 3e-4 -p rank 8 32 --parallel 2
# ```

# %% tags=["parameters"]
profile = "smoke"  # "smoke": the newest 50 runs, a 2-process CPU run; "full": the whole store, one process per GPU
kind = ""  # only runs of this kind ("echoatt", "tour", ...); "" for all
ddp_processes = None  # processes of the data-parallel run (None: 2 on a CPU, every GPU on a GPU machine; 0 skips it)
ddp_steps = None  # its optimizer steps (None: 20 in smoke, 150 in full)

# %%
import pandas as pd
import panel as pn
import plotly.graph_objects as go
import torch
from IPython.display import Markdown, display

from workbench import notebook, plots, runs
from workbench.dashboard import Dashboard, curves, sweeps, views
from workbench.launch import launch

notebook.setup()
pn.extension("plotly", "tabulator", inline=True)  # the dashboard's scripts inline in the notebook: nothing from a CDN

# %%
notebook.check_profile(profile)
store = runs.store()
everything = store.runs(kind or None)
frame = views.visible(everything.head(50) if profile == "smoke" else everything)  # a sweep's bookkeeping runs hidden
metrics = store.metrics(list(frame["id"])) if not frame.empty else store.metrics([])
finals = views.final_metrics(frame, metrics)
kinds = store.kinds()
if frame.empty:
    display(
        Markdown(
            f"**No runs yet** in `{store.path}`: execute a notebook (`python -m workbench run 00_tour`) or a sweep, then come back."
        )
    )
else:
    display(views.runs_table(frame, finals, kinds).head(20))

# %%
# How many runs of each kind, and how they ended
if frame.empty:
    overview = views.empty_figure("no runs yet")
else:
    counts = frame.groupby(["kind", "status"]).size().unstack(fill_value=0)
    overview = go.Figure([go.Bar(name=status, x=counts.index, y=counts[status]) for status in counts.columns])
    overview.update_layout(
        barmode="stack", title=f"{len(frame)} runs by kind and status", yaxis_title="runs", **plots.LAYOUT
    )
overview.show()

# %% [markdown]
# ## Curves and final numbers side by side
#
# The newest experiment (the runs of the newest run's sweep id), every run drawn: runs that logged
# the same numbers still differ by colour, dash and marker. The baseline is the run the experiment
# marked as reference; the metrics table has one row per run (the baseline first, the metrics that
# differ, rounded), the next one each run's Δ% to it (blank where the baseline is 0), and the
# parameters that differ between the runs are listed apart from the metrics.

# %%
shown = views.newest_experiment(frame)
baseline = views.reference_run(frame, shown)
key = None
if shown and not metrics[metrics["run_id"].isin(shown)].empty:
    logged = metrics[metrics["run_id"].isin(shown)]
    headline = [h for h in views.headlines(frame[frame["id"].isin(shown)], kinds) if h in set(logged["key"])]
    key = (headline or list(logged["key"].value_counts().index))[0]
    curves.curves_figure(frame, metrics, shown, key).show()
if baseline is not None:
    display(Markdown(f"**Metrics**, with differences to the baseline run #{baseline}:"))
    display(views.compare_table(frame, finals, shown, baseline, kinds))
    # a metric the baseline did not log has no Δ% for any run: its column would be blank from top to bottom
    display(views.compare_table(frame, finals, shown, baseline, kinds, delta=True).dropna(axis=1, how="all"))
    display(Markdown("**Parameters that differ between these runs:**"))
    display(views.params_table(frame, shown))
else:
    display(Markdown("No run yet: nothing to compare."))

# %% [markdown]
# ## Sweeps
#
# The newest sweep: its default metric is the headline its runs' kind declares; the parallel
# coordinates draw one line per point through its parameters to that metric (the best brightest).

# %%
sweep_ids = sweeps.sweep_groups(everything)
points = sweeps.sweep_points(everything, sweep_ids[0]) if sweep_ids else pd.DataFrame()
sweep_metric = sweeps.sweep_default_metric(points, everything, sweep_ids[0], kinds) if sweep_ids else None
if sweep_metric:
    goal = next((k.goal for k in kinds.values() if sweep_metric.rsplit(".", 1)[-1] == k.headline), "min")
    sweeps.parallel_figure(points, sweep_metric, goal, f"sweep {sweep_ids[0]}: {sweep_metric}").show()
    sweeps.sweep_figure(points, sweep_metric).show()
    display(points)
else:
    display(Markdown("No sweep yet: `python -m workbench sweep NOTEBOOK -p NAME VALUE VALUE --parallel 2` makes one."))

# %% [markdown]
# ## Beyond one GPU: a data-parallel run, followed live from the store
#
# `workbench.launch.launch(n, [...])` starts `torchrun` with `n` processes as a subprocess (a
# kernel that has touched CUDA cannot fork GPU workers itself). Each process trains a copy of the
# model on its slice of every global batch; DDP averages the gradients, so the copies stay equal.
# Rank 0 logs to the run store, and this cell reads the new rows as they arrive (`job.follow()`)
# into a figure updated in place. On a CPU the processes talk through gloo, on GPUs through NCCL.

# %%
gpus = torch.cuda.device_count()
processes = ddp_processes if ddp_processes is not None else (gpus or 2)
steps = ddp_steps or (20 if profile == "smoke" else 150)
shape = (
    ["--size", "tiny", "--batch-size", "4", "--block-len", "64", "--log-every", "2", "--eval-windows", "2"]
    if profile == "smoke"
    else ["--size", "112m", "--batch-size", "32", "--block-len", "512", "--log-every", "10"]
)
ddp_run = None
if processes:
    job = launch(
        processes,
        [
            "pretrain",
            *shape,
            "--steps",
            str(steps),
            "--no-checkpoint",
            "--name",
            f"ddp {processes} x {'gpu' if gpus else 'cpu'}",
        ],
    )
    live = go.FigureWidget(
        layout=dict(
            title=f"train_loss of a {processes}-process run, as logged",
            xaxis_title="step",
            yaxis_title="train_loss",
            **plots.LAYOUT,
        )
    )
    live.add_scatter(x=[], y=[], mode="lines+markers", name="train_loss")
    display(live)
    for rows in job.follow(poll_s=1.0):
        loss = rows[rows["key"] == "train_loss"]
        with live.batch_update():
            live.data[0].x = (*live.data[0].x, *loss["step"])
            live.data[0].y = (*live.data[0].y, *loss["value"])
    ddp_run = store.run(job.run_id())
    throughput = store.metrics([ddp_run["id"]], keys=["tokens_per_s"])["value"]
    display(
        Markdown(
            f"Run #{ddp_run['id']} **{ddp_run['status']}** on {ddp_run['params']['world_size']} processes "
            f"(global batch {ddp_run['params']['global_batch']} sequences of {ddp_run['params']['block_len']} tokens): "
            f"held-out perplexity {ddp_run['summary'].get('val_ppl', float('nan')):.4g}, "
            f"median {throughput.median():,.0f} tokens/s."
        )
    )

# %% [markdown]
# ## The live dashboard
#
# The same view as `python -m workbench dashboard`, inside the notebook: tick runs in the table to
# compare them, pick the baseline, open a run's page. It needs a running kernel; the executed copy
# and its HTML keep the static figures above instead.

# %%
Dashboard(store, kind=kind or None).view()

# %% [markdown]
# ## Conclusion

# %%
statuses = frame["status"].value_counts().to_dict() if not frame.empty else {}
lines = [
    (
        f"The store `{store.path}` holds {len(frame)} runs{f' of kind {kind}' if kind else ''} besides the sweeps' bookkeeping "
        f"({', '.join(f'{n} {s}' for s, n in statuses.items()) or 'none yet'})."
    )
]
if key and baseline is not None and key in finals and pd.notna(finals.loc[baseline, key]):
    values = finals.loc[shown, key].dropna()
    goal = next((k.goal for k in kinds.values() if k.headline == key), "min")
    best = values.idxmin() if goal == "min" else values.idxmax()
    change = (
        100 * (values[best] - finals.loc[baseline, key]) / abs(finals.loc[baseline, key])
        if finals.loc[baseline, key]
        else float("nan")
    )
    lines.append(
        f"In the newest experiment ({len(shown)} runs) the best `{key}` is {values[best]:.4g} "
        f"({views.label(frame.set_index('id').loc[best].to_dict() | {'id': best})}), "
        f"{change:+.1f}% against the baseline #{baseline} at {finals.loc[baseline, key]:.4g}."
    )
if sweep_metric:
    done = points.dropna(subset=[sweep_metric])
    lines.append(
        f"The newest sweep ran {len(points)} points ({(points['status'] == 'finished').sum()} finished, "
        f"{(points['status'] == 'failed').sum()} failed); `{sweep_metric}` spans "
        + (f"{done[sweep_metric].min():.4g} to {done[sweep_metric].max():.4g}." if not done.empty else "nothing yet.")
    )
if ddp_run is not None:
    lines.append(
        f"The data-parallel run #{ddp_run['id']} ended {ddp_run['status']} on {ddp_run['params']['world_size']} processes."
    )
display(Markdown(" ".join(lines)))
