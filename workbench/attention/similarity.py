"""How alike two layers' attention maps are: three metrics, computed incrementally during the forward pass.

Notation: A_{ℓ,h} ∈ ℝ^{T×T} is head h's map in layer ℓ for one text (row i = query i, a probability
distribution over keys j ≤ i). Only *valid* entries count: causal (j ≤ i) and unpadded (both i
and j are real tokens). Every metric compares head h of layer ℓ with head h of layer m; the
head-averaged value is the mean over h of the per-head values (docs/ideas.md, metric (ii)); the
cross-head version (head h of ℓ against head h' of m) is also kept for cosine and CKA.

- cosine:  cos(A, B) = ⟨vec A, vec B⟩ / (‖A‖_F ‖B‖_F), per head, then the mean over heads
           ("cosine (mean over heads)": the groups of notebook 01 come from it)
- cosine_map: the cosine of the head-averaged maps, cos(Ā_ℓ, Ā_m) with Ā = (1/H) Σ_h A_h
           ("cosine (head-averaged map)": the EchoAtt paper's choice, arXiv 2409.14595, one map per
           layer). It is not the mean of per-head cosines: averaging heads first blurs what each
           head attends to, so it is higher (on a tiny model 0.89–0.91 against 0.69–0.73 for adjacent
           layers). Computed from the same inner products as cosine, no extra pass:
           ⟨Ā_ℓ, Ā_m⟩ = (1/H²) Σ_{h,h′} ⟨A_{ℓ,h}, A_{m,h′}⟩. It has no per-head values: its per-head
           tables repeat the map-level value in every head, and it has no cross-head matrix.
- jsd:     mean over valid query rows i of JSD(A[i,:] ‖ B[i,:]), in bits (0 = same, 1 = disjoint),
           JSD(p‖q) = ½ Σ p log p + ½ Σ q log q − Σ m log m,  m = (p + q)/2
- cka:     linear CKA (Kornblith et al. 2019) with query rows as samples and key positions as
           features: X_c = X − 1μᵀ (μ = mean of the valid rows), K = X_c X_cᵀ,
           CKA(A, B) = ⟨K_A, K_B⟩_F / (‖K_A‖_F ‖K_B‖_F)   (= HSIC / √(HSIC·HSIC))
           It ignores what all rows share (e.g. a common sink) and compares how rows differ.

Sink removal (`drop_sink=True`): the first key column (the attention sink, which holds 20–60% of the
mass in most SmolLM2 layers, docs/ideas.md) is removed and rows renormalised,
Ã[i,j] = A[i,j] / Σ_{j′≥1} A[i,j′] for j ≥ 1; query row 0 has no key left and is skipped.

Memory: why and how the all-pairs comparison streams
----------------------------------------------------
Cosine and CKA need inner products ⟨A_ℓ, A_m⟩ (or ⟨K_ℓ, K_m⟩) of *every* layer pair; JSD needs
both maps of every pair element by element. `output_attentions=True` keeps all L layers' maps
(L·B·H·T² floats: 4.5 GB per 2,048-token text for SmolLM2) and then compares. Here each layer's
maps are reduced the moment its hook fires:
  1. per-layer data: the cleaned maps (and, for CKA, the centred Gram K) go to a *spill* store in
     float16 (on disk for a CPU run, so the process never holds them; in device memory on a GPU,
     which has room), together with tiny per-row terms (Σ p log p of each row for JSD);
  2. after the last layer, the pairwise sums are accumulated over *blocks of query rows*: a
     block of c rows of all L layers ([L, B, H, c, T], c rows ≈ one layer's maps)
     gives its share of every ⟨A_ℓ, A_m⟩ and Σ m log m, because all three metrics are sums over
     query rows once the per-layer parts are known (c = max(64, T/L) rows; keys past the
     block's last row are skipped, they are causally zero).
Peak memory is therefore one layer's maps (the eager kernel's own tensor and the cleaning of
it) plus one row block plus O((L·H)²) accumulators, whatever L and the number of texts. The
price: float16 rounding of the stored maps (relative error ~1e-3 on a single entry, ~1e-4 on a
similarity; tested against a float64 reference) and, on a CPU, writing each text's maps to a
temporary file once and reading them back once (cheap next to the forward pass).
CKA's Gram K costs H·T³ per layer: negligible at 256 tokens, the dominant cost at 2,048 on a CPU.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from contextlib import contextmanager

import numpy as np
import torch

from ..errors import WorkbenchError

METRICS = ("cosine", "jsd", "cka", "cosine_map")
NAMES = {  # what each metric is, in the words figures and tables use
    "cosine": "cosine (mean over heads)",
    "cosine_map": "cosine (head-averaged map)",
    "jsd": "1 − JSD (mean over heads)",
    "cka": "CKA (mean over heads)",
}
LN2 = math.log(2.0)


def check_metrics(metrics: Sequence[str]) -> tuple[str, ...]:
    metrics = tuple(metrics)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown or not metrics:
        raise WorkbenchError(f"unknown similarity metric(s) {unknown or metrics}: choose from {', '.join(METRICS)}")
    return metrics


# -- valid entries and sink removal ------------------------------------------------------------


def valid_entries(
    attention_mask: torch.Tensor | None, batch: int, length: int, drop_sink: bool, device
) -> torch.Tensor:
    """Boolean [B, 1, T, T]: causal, unpadded (right padding) and, with `drop_sink`, not key 0."""
    valid = (
        torch.ones(length, length, dtype=torch.bool, device=device).tril()[None, None].expand(batch, 1, length, length)
    )
    if attention_mask is not None:
        real = attention_mask.to(device=device, dtype=torch.bool)  # [B, T]
        valid = valid & real[:, None, :, None] & real[:, None, None, :]
    if drop_sink:
        valid = valid.clone()
        valid[..., 0] = False
    return valid


def clean_maps(probabilities: torch.Tensor, valid: torch.Tensor, drop_sink: bool) -> torch.Tensor:
    """Float32 maps [B, H, T, T] with invalid entries zeroed and, with `drop_sink`, rows renormalised."""
    maps = probabilities.float() * valid
    if drop_sink:
        maps = maps / maps.sum(-1, keepdim=True).clamp_min(torch.finfo(torch.float32).tiny)
    return maps


def centred_gram(maps: torch.Tensor, valid_rows: torch.Tensor) -> torch.Tensor:
    """K = X_c X_cᵀ [B, H, T, T] for CKA: rows are samples; μ is the mean over valid rows only."""
    rows = valid_rows[..., None].float()  # [B, 1, T, 1]
    mean = (maps * rows).sum(-2, keepdim=True) / rows.sum(-2, keepdim=True).clamp_min(1)  # [B, H, 1, T]
    centred = (maps - mean) * rows
    return centred @ centred.transpose(-1, -2)


def sink_mass(probabilities: torch.Tensor) -> torch.Tensor:
    """Mean probability on key 0 over heads and queries ≥ 1: [B] (how strong the sink is)."""
    return probabilities[..., 1:, 0].float().mean(dim=(1, 2))


# -- the spill store: one batch's per-layer maps, read back in blocks of query rows ---------------


class _MemorySpill:
    """[L, B, H, T, T] in float16 on a device: for GPUs, which have memory to spare."""

    def __init__(self, n_layers: int, shape: tuple[int, int, int, int], device):
        self.buffer = torch.empty((n_layers, *shape), dtype=torch.float16, device=device)

    def write(self, layer: int, maps: torch.Tensor) -> None:
        self.buffer[layer].copy_(maps)

    def read_rows(self, start: int, stop: int) -> torch.Tensor:
        return self.buffer[:, :, :, start:stop].float()  # [L, B, H, c, T]

    def close(self) -> None:
        self.buffer = None


class _DiskSpill:
    """The same layout in an anonymous temporary file: the process's RSS never holds it.

    Written with pwrite and read with preadv straight into numpy buffers, not memory-mapped:
    pages of a mapping would count towards (and inflate) the process's resident memory.
    """

    def __init__(self, n_layers: int, shape: tuple[int, int, int, int], device):
        self.shape, self.n_layers, self.device = shape, n_layers, device
        self.file = tempfile.TemporaryFile(prefix="workbench-attention-")
        self.fd = self.file.fileno()
        self.item = 2  # float16

    def _offset(self, layer: int, b: int, h: int, row: int) -> int:
        batch, heads, length, _ = self.shape
        return (((layer * batch + b) * heads + h) * length + row) * length * self.item

    def write(self, layer: int, maps: torch.Tensor) -> None:
        array = maps.to(torch.float16).cpu().contiguous().numpy()
        os.pwrite(self.fd, memoryview(array).cast("B"), self._offset(layer, 0, 0, 0))

    def read_rows(self, start: int, stop: int) -> torch.Tensor:
        batch, heads, length, _ = self.shape
        out = np.empty((self.n_layers, batch, heads, stop - start, length), dtype=np.float16)
        for layer in range(self.n_layers):
            for b in range(batch):
                for h in range(heads):
                    os.preadv(self.fd, [memoryview(out[layer, b, h]).cast("B")], self._offset(layer, b, h, start))
        return torch.from_numpy(out).to(self.device).float()

    def close(self) -> None:
        self.file.close()


def _make_spill(kind: str, n_layers: int, shape, device):
    if kind == "auto":
        kind = "memory" if torch.device(device).type == "cuda" else "disk"
    if kind not in ("memory", "disk"):
        raise WorkbenchError(f"unknown spill {kind!r}: use 'auto', 'disk' (CPU, low memory) or 'memory' (GPU)")
    return (_MemorySpill if kind == "memory" else _DiskSpill)(n_layers, shape, device)


# -- incremental accumulation -------------------------------------------------------------------


class SimilarityAccumulator:
    """Receives each layer's maps during forward passes; yields similarity means and spreads over texts.

    Use: `begin_batch(mask, B, T)`, then `add_layer(ℓ, A_ℓ)` for ℓ = 0..L−1 (from a capture hook),
    then `end_batch()`; repeat per batch; read `per_text`, `cross` and `per_head_sum`.

    Per text and metric it keeps the head-averaged [L, L] matrix (so the spread over texts of any
    entry is available), and summed over texts the per-head [L, L, H] matrix and, for cosine and
    CKA, the cross-head [L·H, L·H] matrix.
    """

    def __init__(
        self,
        n_layers: int,
        n_heads: int,
        metrics: Sequence[str] = METRICS,
        drop_sink: bool = False,
        spill: str = "auto",
        chunk_rows: int | None = None,
    ):
        self.n_layers, self.n_heads, self.metrics = n_layers, n_heads, check_metrics(metrics)
        self.drop_sink, self.spill_kind, self.chunk_rows = drop_sink, spill, chunk_rows
        self.per_text: dict[str, list[np.ndarray]] = {m: [] for m in self.metrics}  # each [L, L]
        self.per_head_sum = {m: np.zeros((n_layers, n_layers, n_heads)) for m in self.metrics}
        self.per_head_sumsq = {m: np.zeros((n_layers, n_layers, n_heads)) for m in self.metrics}
        self.cross_sum = {m: np.zeros((n_layers * n_heads,) * 2) for m in self.metrics if m in ("cosine", "cka")}
        self.n_texts = 0
        self._batch = None

    def begin_batch(self, attention_mask: torch.Tensor | None, batch: int, length: int, device) -> None:
        L, H = self.n_layers, self.n_heads
        valid = valid_entries(attention_mask, batch, length, self.drop_sink, device)
        self._batch = dict(
            valid=valid,
            valid_rows=valid.any(-1),  # [B, 1, T]
            maps=_make_spill(self.spill_kind, L, (batch, H, length, length), device)
            if {"cosine", "cosine_map", "jsd"} & set(self.metrics)
            else None,
            gram=_make_spill(self.spill_kind, L, (batch, H, length, length), device) if "cka" in self.metrics else None,
            plogp=torch.zeros(L, batch, H, length, device=device),  # Σ_j p log p of every row
            seen=set(),
        )

    @torch.no_grad()
    def add_layer(self, layer: int, probabilities: torch.Tensor) -> None:
        state = self._batch
        maps = clean_maps(probabilities, state["valid"], self.drop_sink)  # [B, H, T, T]
        if state["maps"] is not None:
            state["maps"].write(layer, maps)
        if "jsd" in self.metrics:  # from the float16-rounded maps, as the pair terms will be: JSD(A, A) = 0
            rounded = maps.half().float()
            state["plogp"][layer] = torch.special.xlogy(rounded, rounded).sum(-1)
        if state["gram"] is not None:
            state["gram"].write(layer, centred_gram(maps, state["valid_rows"]))
        state["seen"].add(layer)

    @torch.no_grad()
    def end_batch(self) -> None:
        state, L, H = self._batch, self.n_layers, self.n_heads
        if len(state["seen"]) != L:
            raise RuntimeError(f"only layers {sorted(state['seen'])} reported attention in this batch")
        batch, _, length, _ = state["valid"].shape
        chunk = self.chunk_rows or max(64, length // L)
        # Σ over row blocks of [B, L·H, L·H] inner products (cosine_map reads cosine's)
        wanted = set(self.metrics) | ({"cosine"} if "cosine_map" in self.metrics else set())
        inner = {m: 0 for m in ("cosine", "cka") if m in wanted}
        mlogm = 0  # Σ over rows of Σ_j m log m: [L, L, B, H]
        for start in range(0, length, chunk):
            stop = min(length, start + chunk)  # causal: rows < stop have no mass on keys ≥ stop
            if state["maps"] is not None:
                block = state["maps"].read_rows(start, stop)[..., :stop]  # [L, B, H, c, stop]
                if "cosine" in inner:
                    inner["cosine"] = inner["cosine"] + _block_gram(block)
                if "jsd" in self.metrics:
                    mlogm = mlogm + _block_mlogm(block)
            if state["gram"] is not None:
                inner["cka"] = inner["cka"] + _block_gram(
                    state["gram"].read_rows(start, stop)
                )  # K is not causal: all keys
        results = {}  # metric -> per-head [B, L, L, H] and, for cosine/CKA, cross-head [B, L·H, L·H]
        if "cosine_map" in self.metrics:
            averaged = head_averaged_cosine(inner["cosine"].double(), L, H)  # [B, L, L]
            results["cosine_map"] = averaged[..., None].expand(-1, -1, -1, H).contiguous()
        for metric, gram in inner.items():
            if metric not in self.metrics:
                continue
            gram = gram.double()
            norms = gram.diagonal(dim1=-2, dim2=-1).clamp_min(1e-30).sqrt()  # [B, L·H]
            cross = gram / (norms[:, :, None] * norms[:, None, :])
            self.cross_sum[metric] += cross.sum(0).cpu().numpy()
            heads = cross.view(batch, L, H, L, H).diagonal(dim1=2, dim2=4)  # [B, L, L, H]
            results[metric] = heads
        if "jsd" in self.metrics:
            plogp = state["plogp"].double().sum(-1)  # [L, B, H]
            n_rows = state["valid_rows"][:, 0].sum(-1).double().clamp_min(1)  # [B]
            divergence = 0.5 * (plogp[:, None] + plogp[None, :]) - mlogm.double()  # [L, L, B, H] nats·rows
            results["jsd"] = (divergence / (n_rows[None, None, :, None] * LN2)).clamp_min(0).permute(2, 0, 1, 3)
        for metric, heads in results.items():
            heads = heads.cpu().numpy()
            self.per_head_sum[metric] += heads.sum(0)
            self.per_head_sumsq[metric] += (heads**2).sum(0)
            self.per_text[metric].extend(heads.mean(-1))
        for spill in (state["maps"], state["gram"]):
            if spill is not None:
                spill.close()
        self.n_texts += batch
        self._batch = None


def head_averaged_cosine(gram: torch.Tensor, n_layers: int, n_heads: int) -> torch.Tensor:
    """cos(Ā_ℓ, Ā_m) [B, L, L] from the (layer, head) inner products [B, L·H, L·H]:
    ⟨Ā_ℓ, Ā_m⟩ ∝ Σ_{h,h′} ⟨A_{ℓ,h}, A_{m,h′}⟩ (the 1/H² cancels in the cosine)."""
    summed = gram.view(-1, n_layers, n_heads, n_layers, n_heads).sum((2, 4))  # [B, L, L]
    norms = summed.diagonal(dim1=-2, dim2=-1).clamp_min(1e-30).sqrt()  # [B, L]
    return summed / (norms[:, :, None] * norms[:, None, :])


def _block_gram(block: torch.Tensor) -> torch.Tensor:
    """[L, B, H, c, T] → this block's inner products of every (layer, head) pair per text [B, L·H, L·H],
    float64 (the blocks' float32 products are summed in float64)."""
    L, B, H, c, T = block.shape
    flat = block.permute(1, 0, 2, 3, 4).reshape(B, L * H, c * T)
    return _chunked_gram(flat)


def _chunked_gram(flat: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """flat [..., n, D] → Σ over chunks of D of the float32 Gram, summed in float64: [..., n, n].

    One float32 matmul over D = T² entries (a million at 1,024 tokens) drifts by ~1e-4 relative
    (measured on a CPU against float64: 1.1e-4 for cosine, 2.0e-4 for CKA at T = 1,024, SmolLM2
    layers 3–8), more on a GPU's split reductions; chunks of 65,536 summed in float64 keep the
    error at the streaming path's ~1e-5 without a float64 copy of the maps.
    """
    gram = 0
    with full_precision():
        for start in range(0, flat.shape[-1], chunk):
            part = flat[..., start : start + chunk]
            gram = gram + (part @ part.transpose(-1, -2)).double()
    return gram


@contextmanager
def full_precision():
    """float32 matmuls in full float32 inside (no TF32 on a GPU, whatever the caller enabled):
    TF32 rounds the inputs to 10 mantissa bits (~5e-4 relative), as much as a similarity's signal."""
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def _block_mlogm(block: torch.Tensor) -> torch.Tensor:
    """[L, B, H, c, T] → Σ over the block's rows of Σ_j m log m, m = (A_ℓ + A_m)/2: [L, L, B, H]."""
    L = block.shape[0]
    out = torch.zeros(L, L, *block.shape[1:3], dtype=torch.float64, device=block.device)
    for layer in range(L - 1):
        mixture = 0.5 * (block[layer : layer + 1] + block[layer + 1 :])  # [L−ℓ−1, B, H, c, T]
        out[layer, layer + 1 :] = torch.special.xlogy(mixture, mixture).sum((-1, -2)).double()
    out = out + out.transpose(0, 1)
    diagonal = torch.special.xlogy(block, block).sum((-1, -2)).double()  # m = A_ℓ itself
    out[range(L), range(L)] = diagonal
    return out


# -- the naive path: all layers' maps at once (reference and benchmark baseline) -----------------


@torch.no_grad()
def naive_similarity(
    maps: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    metrics: Sequence[str] = METRICS,
    drop_sink: bool = False,
) -> dict[str, torch.Tensor]:
    """Per-head similarities {metric: [B, L, L, H]} from a full stack of maps [L, B, H, T, T].

    The `output_attentions=True` way, kept as the benchmark baseline and the tests' reference:
    the same definitions in float32 on all layers at once, no spill, no row blocks; memory grows
    with all layers' maps (and twice that for CKA's Gram matrices).
    """
    L, B, H, T, _ = maps.shape
    valid = valid_entries(attention_mask, B, T, drop_sink, maps.device)
    valid_rows = valid.any(-1)
    cleaned = torch.stack([clean_maps(maps[layer], valid, drop_sink) for layer in range(L)])  # [L, B, H, T, T]
    out = {}
    for metric in check_metrics(metrics):
        if metric == "jsd":
            plogp = torch.special.xlogy(cleaned, cleaned).sum((-1, -2)).double()  # [L, B, H]
            n_rows = valid_rows[:, 0].sum(-1).double().clamp_min(1)  # [B]
            jsd = torch.zeros(L, L, B, H, dtype=torch.float64, device=maps.device)
            for layer in range(L):
                mixture = 0.5 * (cleaned[layer : layer + 1] + cleaned)
                mlogm = torch.special.xlogy(mixture, mixture).sum((-1, -2)).double()  # [L, B, H]
                jsd[layer] = 0.5 * (plogp[layer] + plogp) - mlogm
            out[metric] = (jsd / (n_rows[None, None, :, None] * LN2)).clamp_min(0).permute(2, 0, 1, 3)
            continue
        if metric == "cosine_map":  # one head-averaged map per layer, repeated in every head
            flat = cleaned.mean(2).permute(1, 0, 2, 3).reshape(B, L, T * T).double()  # [B, L, T·T]
            gram = flat @ flat.transpose(-1, -2)
            norms = gram.diagonal(dim1=-2, dim2=-1).clamp_min(1e-30).sqrt()
            out[metric] = (gram / (norms[..., :, None] * norms[..., None, :]))[..., None].expand(-1, -1, -1, H).float()
            continue
        features = (
            cleaned
            if metric == "cosine"
            else torch.stack([centred_gram(cleaned[layer], valid_rows) for layer in range(L)])
        )
        flat = features.permute(1, 2, 0, 3, 4).reshape(B, H, L, T * T)
        gram = _chunked_gram(flat)  # [B, H, L, L], float64
        norms = gram.diagonal(dim1=-2, dim2=-1).clamp_min(1e-30).sqrt()
        out[metric] = (gram / (norms[..., :, None] * norms[..., None, :])).permute(0, 2, 3, 1)
    return out
