"""One call from a model and texts to the layer-by-layer similarity of attention, and back from the run store.

    result = analyze(model, tokenizer, texts, metrics=("cosine", "jsd", "cka"), drop_sink="both")
    result.similarity("cosine", sink="dropped")        # [L, L], higher = more alike
    groups = choose_groups(result.similarity("cosine"), threshold=0.8)
    result.save(run, groups=groups)                    # kind "attention_similarity"
    again = SimilarityResult.load(store, run_id)

The model runs once per batch; every sink variant and metric is reduced from the same hooks
(`similarity.SimilarityAccumulator`), so asking for both sink variants does not re-run it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import WorkbenchError
from .capture import capture_attention, run_backbone
from .similarity import METRICS, SimilarityAccumulator, check_metrics, sink_mass

KIND = "attention_similarity"
SINKS = ("kept", "dropped")


@dataclass
class SimilarityResult:
    """Similarity of attention between layers, over texts, for every metric and sink variant.

    Keys of the dicts are "metric/sink", e.g. "cosine/dropped". `jsd` entries are divergences
    (lower = more alike); `similarity()` turns them into 1 − JSD.
    """

    model_name: str
    n_layers: int
    n_heads: int
    n_texts: int
    seq_len: int
    metrics: tuple[str, ...]
    sinks: tuple[str, ...]
    mean: dict[str, np.ndarray]  # [L, L] head-averaged, mean over texts
    std: dict[str, np.ndarray]  # [L, L] spread over texts of the head-averaged value
    per_head: dict[str, np.ndarray]  # [L, L, H] mean over texts
    per_head_std: dict[str, np.ndarray]  # [L, L, H]
    cross_head: dict[str, np.ndarray]  # [L·H, L·H] (cosine, CKA): head h of ℓ vs head h' of m
    per_text: dict[str, np.ndarray]  # [N, L, L] head-averaged, per text
    sink_mass: np.ndarray  # [L] mean probability on the first token (queries ≥ 1)
    maps: dict[int, np.ndarray] = field(default_factory=dict)  # layer → [H, T, T] maps of the first text
    tokens: list[str] = field(default_factory=list)  # the first text's tokens (as many as the maps show)
    seconds: float = 0.0

    @staticmethod
    def key(metric: str, sink: str) -> str:
        return f"{metric}/{sink}"

    def _pick(self, table: dict, metric: str, sink: str | None) -> np.ndarray:
        sink = sink or self.sinks[-1]
        key = self.key(metric, sink)
        if key not in table:
            raise WorkbenchError(
                f"no {key!r} in this result: it has metrics {self.metrics} and sink variants {self.sinks}"
            )
        return table[key]

    def similarity(self, metric: str = "cosine", sink: str | None = None, per_head: bool = False) -> np.ndarray:
        """Mean over texts, oriented higher = more alike: [L, L] (or [L, L, H] per head)."""
        values = self._pick(self.per_head if per_head else self.mean, metric, sink)
        return 1.0 - values if metric == "jsd" else values

    def spread(self, metric: str = "cosine", sink: str | None = None) -> np.ndarray:
        """Standard deviation over texts of the head-averaged value [L, L]."""
        return self._pick(self.std, metric, sink)

    def head_pair(self, metric: str, first: int, second: int, sink: str | None = None) -> np.ndarray:
        """[H, H] similarity of layer `first`'s heads (rows) to layer `second`'s (columns).

        Full cross-head matrix for cosine and CKA; JSD is measured between matching heads only,
        so its off-diagonal entries are NaN.
        """
        H = self.n_heads
        if metric == "jsd":
            out = np.full((H, H), np.nan)
            out[range(H), range(H)] = self.similarity(metric, sink, per_head=True)[first, second]
            return out
        cross = self._pick(self.cross_head, metric, sink)
        return cross[first * H : (first + 1) * H, second * H : (second + 1) * H]

    def adjacent(self, metric: str = "cosine", sink: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Similarity of each layer ℓ to ℓ+1 [L−1]: mean and spread over texts."""
        values = self.per_text[self.key(metric, sink or self.sinks[-1])]
        values = 1.0 - values if metric == "jsd" else values
        pairs = values[:, range(self.n_layers - 1), range(1, self.n_layers)]  # [N, L−1]
        return pairs.mean(0), pairs.std(0)

    # -- the run store -------------------------------------------------------------------------
    def save(self, run, groups: dict | list | None = None) -> None:
        """Artifacts (.npy per matrix, meta.json, maps) and a summary with the chosen groups."""
        for name, table in (
            ("mean", self.mean),
            ("std", self.std),
            ("per_head", self.per_head),
            ("per_head_std", self.per_head_std),
            ("cross_head", self.cross_head),
            ("per_text", self.per_text),
        ):
            for key, value in table.items():
                run.log_artifact(f"{name}__{key.replace('/', '__')}.npy", np.asarray(value))
        run.log_artifact("sink_mass.npy", self.sink_mass)
        for layer, value in self.maps.items():
            run.log_artifact(f"map__{layer}.npy", value.astype(np.float32))
        meta = dict(
            model_name=self.model_name,
            n_layers=self.n_layers,
            n_heads=self.n_heads,
            n_texts=self.n_texts,
            seq_len=self.seq_len,
            metrics=list(self.metrics),
            sinks=list(self.sinks),
            tokens=self.tokens,
            seconds=self.seconds,
            maps=sorted(self.maps),
        )
        run.log_artifact("meta.json", meta)
        summary = dict(n_texts=self.n_texts, seq_len=self.seq_len, seconds=round(self.seconds, 2))
        if groups is not None:
            summary["groups"] = groups
        run.update_summary(**summary)

    @classmethod
    def load(cls, store, run_id: int) -> SimilarityResult:
        """The result a run saved (see `save`); `store.run(run_id)["summary"]["groups"]` has its groups."""
        names = store.artifacts(run_id)
        if "meta.json" not in names:
            raise WorkbenchError(f"run {run_id} holds no attention-similarity result: pick a run of kind {KIND!r}")
        meta = store.load_artifact(run_id, "meta.json")
        tables = {name: {} for name in ("mean", "std", "per_head", "per_head_std", "cross_head", "per_text")}
        for name in names:
            parts = name.removesuffix(".npy").split("__")
            if len(parts) == 3 and parts[0] in tables:
                tables[parts[0]][f"{parts[1]}/{parts[2]}"] = store.load_artifact(run_id, name)
        maps = {layer: store.load_artifact(run_id, f"map__{layer}.npy") for layer in meta["maps"]}
        return cls(
            meta["model_name"],
            meta["n_layers"],
            meta["n_heads"],
            meta["n_texts"],
            meta["seq_len"],
            tuple(meta["metrics"]),
            tuple(meta["sinks"]),
            sink_mass=store.load_artifact(run_id, "sink_mass.npy"),
            maps=maps,
            tokens=meta["tokens"],
            seconds=meta["seconds"],
            **tables,
        )


def text_blocks(tokenizer, corpus: str = "python-docs", n_texts: int = 16, seq_len: int = 256) -> torch.Tensor:
    """`n_texts` blocks of `seq_len` tokens [N, T], evenly spaced over a corpus (name or text file).

    Evenly spaced rather than the first N, so the texts cover the corpus, not one article.
    """
    from .. import data

    tokens = data.tokenize(data.load_corpus(corpus), tokenizer)
    all_blocks = data.blocks(tokens, seq_len)
    if len(all_blocks) < n_texts:
        raise WorkbenchError(
            f"corpus {corpus!r} has only {len(all_blocks)} blocks of {seq_len} tokens: "
            "ask for fewer texts or shorter ones"
        )
    picks = np.linspace(0, len(all_blocks) - 1, n_texts).round().astype(int)
    return all_blocks[torch.from_numpy(picks)]


def _token_batches(tokenizer, texts_or_blocks, seq_len: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[N, T] token ids and the [N, T] mask (None when every text fills T)."""
    if isinstance(texts_or_blocks, torch.Tensor):  # the tokenizer may be None: only labels need it
        if texts_or_blocks.ndim != 2:
            raise WorkbenchError(f"token blocks must be [N, T], got shape {tuple(texts_or_blocks.shape)}")
        return texts_or_blocks.long(), None
    texts = [t for t in texts_or_blocks if t.strip()]
    if not texts:
        raise WorkbenchError("no texts to analyse: pass non-empty strings or a [N, T] tensor of token blocks")
    encoded = tokenizer(
        texts, return_tensors="pt", padding="longest", truncation=True, max_length=seq_len, padding_side="right"
    )
    mask = encoded["attention_mask"]
    return encoded["input_ids"], None if bool(mask.all()) else mask


def _variants(drop_sink: bool | str) -> tuple[str, ...]:
    if drop_sink == "both":
        return SINKS
    if isinstance(drop_sink, bool):
        return ("dropped",) if drop_sink else ("kept",)
    raise WorkbenchError(f"drop_sink must be True, False or 'both', got {drop_sink!r}")


@torch.no_grad()
def analyze(
    model,
    tokenizer,
    texts_or_blocks: Sequence[str] | torch.Tensor,
    metrics: Sequence[str] = METRICS,
    drop_sink: bool | str = True,
    keep_maps_for: Sequence[int] = (),
    map_tokens: int | None = None,
    seq_len: int = 256,
    batch_size: int = 4,
    spill: str = "auto",
    progress: bool = True,
) -> SimilarityResult:
    """Layer-by-layer attention similarity of `model` over texts (strings) or token blocks [N, T].

    `drop_sink`: True (remove the first key column, renormalise), False, or "both" (both variants
    from the same forward passes). `keep_maps_for`: layers whose full maps of the first text are
    kept for plotting, cropped to the first `map_tokens` tokens (default: all). Strings are
    truncated to `seq_len` tokens and right-padded; padding never counts. Peak memory: one layer's
    maps for `batch_size` texts (see `similarity`).
    """
    metrics = check_metrics(metrics)
    sinks = _variants(drop_sink)
    ids, mask = _token_batches(tokenizer, texts_or_blocks, seq_len)
    device = next(model.parameters()).device
    n_layers = model.config.num_hidden_layers
    n_heads = model.config.num_attention_heads
    bad = [layer for layer in keep_maps_for if not 0 <= layer < n_layers]
    if bad:
        raise WorkbenchError(f"keep_maps_for names layers {bad} outside 0..{n_layers - 1}")
    accumulators = {
        s: SimilarityAccumulator(n_layers, n_heads, metrics, drop_sink=s == "dropped", spill=spill) for s in sinks
    }
    sink_sum = np.zeros(n_layers)
    maps: dict[int, np.ndarray] = {}
    first_batch = True

    def on_layer(layer: int, probabilities: torch.Tensor) -> None:
        for accumulator in accumulators.values():
            accumulator.add_layer(layer, probabilities)
        sink_sum[layer] += float(sink_mass(probabilities).sum())
        if first_batch and layer in keep_maps_for:
            maps[layer] = probabilities[0, :, :map_tokens, :map_tokens].float().cpu().numpy()  # [H, t, t]

    start = time.perf_counter()
    with capture_attention(model, on_layer):
        for begin in tqdm(
            range(0, len(ids), batch_size), desc="attention similarity", disable=not progress, leave=False
        ):
            batch = ids[begin : begin + batch_size].to(device)
            batch_mask = None if mask is None else mask[begin : begin + batch_size].to(device)
            for accumulator in accumulators.values():
                accumulator.begin_batch(batch_mask, *batch.shape, device)
            run_backbone(model, batch, batch_mask)
            for accumulator in accumulators.values():
                accumulator.end_batch()
            first_batch = False
    seconds = time.perf_counter() - start

    tables = {name: {} for name in ("mean", "std", "per_head", "per_head_std", "cross_head", "per_text")}
    n_texts = len(ids)
    for sink, accumulator in accumulators.items():
        for metric in metrics:
            key = SimilarityResult.key(metric, sink)
            per_text = np.stack(accumulator.per_text[metric])  # [N, L, L]
            tables["per_text"][key] = per_text
            tables["mean"][key] = per_text.mean(0)
            tables["std"][key] = per_text.std(0)
            per_head = accumulator.per_head_sum[metric] / n_texts
            tables["per_head"][key] = per_head
            tables["per_head_std"][key] = np.sqrt(
                np.maximum(accumulator.per_head_sumsq[metric] / n_texts - per_head**2, 0)
            )
            if metric in accumulator.cross_sum:
                tables["cross_head"][key] = accumulator.cross_sum[metric] / n_texts
    first_ids = ids[0] if mask is None else ids[0][mask[0].bool()]
    tokens = [tokenizer.decode([i]) if tokenizer is not None else str(i) for i in first_ids[:map_tokens].tolist()]
    maps = {layer: value[:, : len(tokens), : len(tokens)] for layer, value in sorted(maps.items())}
    return SimilarityResult(
        model_name=str(getattr(model, "name_or_path", type(model).__name__)),
        n_layers=n_layers,
        n_heads=n_heads,
        n_texts=n_texts,
        seq_len=ids.shape[1],
        metrics=metrics,
        sinks=sinks,
        sink_mass=sink_sum / n_texts,
        maps=maps,
        tokens=tokens,
        seconds=seconds,
        **tables,
    )


def similar_block(similarity: np.ndarray, threshold: float, eligible: range | None = None) -> dict:
    """The longest run of consecutive layers whose adjacent similarity S[ℓ, ℓ+1] ≥ threshold.

    Returns its first and last layer and the mean off-diagonal similarity inside the block and
    outside it (all other layer pairs): the summary the notebook's conclusion reports.
    """
    n_layers = similarity.shape[0]
    layers = list(eligible or range(n_layers))
    best, current = (layers[0], layers[0]), layers[0]
    for layer in layers[1:]:
        if similarity[layer - 1, layer] < threshold:
            current = layer
        elif layer - current > best[1] - best[0]:
            best = (current, layer)
    first, last = best
    inside = np.zeros((n_layers, n_layers), dtype=bool)
    inside[first : last + 1, first : last + 1] = True
    off_diagonal = ~np.eye(n_layers, dtype=bool)
    inside_mean = float(similarity[inside & off_diagonal].mean()) if last > first else float("nan")
    return dict(
        first=first,
        last=last,
        length=last - first + 1,
        inside=inside_mean,
        outside=float(similarity[~inside & off_diagonal].mean()),
    )
