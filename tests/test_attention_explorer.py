"""The notebook's explorer: every control redraws from the stored result."""

import numpy as np

from workbench.attention.analysis import SimilarityResult
from workbench.attention.explorer import Explorer, View


def constructed_result(n_layers: int = 6, n_heads: int = 2, tokens: int = 5) -> SimilarityResult:
    """Layers 2–4 attend alike (0.9), every other pair 0.3; maps kept for layers 0–3 only."""
    similar = np.full((n_layers, n_layers), 0.3)
    similar[2:5, 2:5] = 0.9
    np.fill_diagonal(similar, 1.0)
    key = "cosine/dropped"
    rng = np.random.default_rng(0)
    maps = {layer: np.tril(rng.random((n_heads, tokens, tokens))) for layer in range(4)}
    return SimilarityResult(
        "constructed",
        n_layers,
        n_heads,
        n_texts=3,
        seq_len=tokens,
        metrics=("cosine",),
        sinks=("dropped",),
        mean={key: similar},
        std={key: np.zeros_like(similar)},
        per_head={key: np.repeat(similar[..., None], n_heads, -1)},
        per_head_std={key: np.zeros((n_layers, n_layers, n_heads))},
        cross_head={key: np.kron(similar, np.ones((n_heads, n_heads)))},
        per_text={key: np.stack([similar] * 3)},
        sink_mass=np.zeros(n_layers),
        maps=maps,
        tokens=list("abcde"),
    )


def test_controls_redraw_groups_status_and_figures():
    explorer = Explorer(constructed_result(), View("cosine", "dropped", first=2, second=3, head=None, threshold=0.8))
    assert explorer.groups() == [[2, 3, 4]] and "2 layers share attention" in explorer.status.value
    assert len(explorer.plots[0].layout.shapes) == 1  # the group's red box, drawn on the displayed heatmap
    assert [f.layout.title.text.split(" (")[0] for f in explorer.figures()[1:]] == [
        "cosine similarity per head, layer 2 vs layer 3",
        "attention probabilities of the first text",
    ]
    explorer.controls["threshold"].value = 0.95  # nothing is that similar: no groups, and the status says so at once
    assert explorer.groups() == [] and "0 layers share attention, groups []" in explorer.status.value
    assert len(explorer.plots[0].layout.shapes) == 0  # the displayed heatmap lost its red boxes
    assert explorer.controls["head"].label == "mean" and explorer.view().head is None
    explorer.controls["head"].value = 1
    assert explorer.plots[2].layout.annotations[0].text == "layer 2, head 1"  # redrawn in place


def test_a_pair_without_kept_maps_is_reported_not_raised():
    explorer = Explorer(constructed_result(), View("cosine", "dropped", first=2, second=3, head=None, threshold=0.8))
    explorer.controls["second"].value = 5
    assert explorer.missing_maps() == [5] and "maps of layers [5] were not kept" in explorer.status.value
    assert len(explorer.figures()) == 2 and explorer.plots[2].layout.title.text == "maps of layers [5] were not kept"
