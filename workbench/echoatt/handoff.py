"""The hand-off from the attention lab (notebook 01) to EchoAtt (notebook 02): one stored lab run's
similarity, metric, sink handling and groups, so the distillation chooses its layers from what the
lab measured instead of measuring again.

    lab = lab_result(runs.store(), "latest")     # or a run id
    lab.similarity                               # [L, L] under lab.metric, sink lab.sink

A lab run (kind "attention_similarity") stores every matrix as an artifact and its chosen metric,
sink and groups in its summary (`attention.analysis.SimilarityResult.save`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..attention.analysis import KIND, SimilarityResult
from ..errors import WorkbenchError


@dataclass
class LabResult:
    run_id: int
    metric: str  # e.g. "cosine" (mean over heads) or "cosine_map" (head-averaged map)
    sink: str  # "dropped" or "kept"
    similarity: np.ndarray  # [L, L], higher = more alike
    groups: list[list[int]]  # the lab's groups at its threshold (for reference: EchoAtt arms pick by budget)
    threshold: float | None
    model_name: str
    n_layers: int
    n_heads: int


def find_lab_run(store, run: int | str) -> int:
    """A finished lab run's id: `run` itself (an id, as int or text) or "latest"."""
    finished = store.runs(KIND)
    finished = finished[finished["status"] == "finished"]
    if str(run) == "latest":
        if finished.empty:
            raise WorkbenchError(f"no finished {KIND!r} run in the run store: run notebook 01 first")
        return int(finished.iloc[0]["id"])  # newest first
    try:
        run_id = int(run)
    except ValueError:
        raise WorkbenchError(f"attention_run must be a run id or 'latest', got {run!r}") from None
    if run_id not in set(finished["id"]):
        raise WorkbenchError(f"run {run_id} is not a finished {KIND!r} run: pick one from notebook 01 or 'latest'")
    return run_id


def lab_result(store, run: int | str, n_layers: int | None = None, n_heads: int | None = None) -> LabResult:
    """The lab run's similarity under its own metric and sink; checked against the teacher's shape."""
    run_id = find_lab_run(store, run)
    summary = store.run(run_id)["summary"]
    result = SimilarityResult.load(store, run_id)
    metric, sink = summary.get("metric", result.metrics[0]), summary.get("sink", result.sinks[-1])
    if (n_layers, n_heads) != (None, None) and (result.n_layers, result.n_heads) != (n_layers, n_heads):
        raise WorkbenchError(
            f"attention run {run_id} measured {result.model_name} ({result.n_layers} layers × {result.n_heads} heads); "
            f"the teacher has {n_layers} × {n_heads}: analyse the teacher in notebook 01, or leave attention_run empty"
        )
    return LabResult(
        run_id, metric, sink, result.similarity(metric, sink), summary.get("groups", []), summary.get("threshold"),
        result.model_name, result.n_layers, result.n_heads,
    )  # fmt: skip
