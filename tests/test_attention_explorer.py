"""The notebook's explorer: every control redraws from the stored result."""

import numpy as np
import pytest

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


@pytest.mark.slow  # 0.6 s quiet: too long for test-fast's minute
def test_controls_redraw_groups_status_and_figures():
    explorer = Explorer(constructed_result(), View("cosine", "dropped", first=2, second=3, head=None, threshold=0.8))
    assert explorer.groups() == [[2, 3, 4]] and "2 layers share attention" in explorer.status.value
    assert len(explorer.plots[0].layout.shapes) == 1  # the group's red box, drawn on the displayed heatmap
    assert [f.layout.title.text.split("<br>")[0] for f in explorer.figures()[1:]] == [
        "cosine per head pair,",
        "attention of the first text (5 tokens), sink dropped",
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


def test_the_maps_follow_the_sink_setting_the_colour_scale_and_show_token_text():
    result = constructed_result()
    for table in (result.mean, result.std, result.per_head, result.per_head_std, result.cross_head, result.per_text):
        table["cosine/kept"] = table["cosine/dropped"]
    result.sinks = ("kept", "dropped")
    explorer = Explorer(result, View("cosine", "dropped", first=2, second=3, head=0, threshold=0.8))
    z = np.array(explorer.figures()[2].data[0].z)  # layer 2, head 0, sink dropped: key 0 gone, rows renormalised
    expected = np.tril(result.maps[2][0])[1:, 1:]
    assert np.allclose(z[:, 0], 0) and np.allclose(z[1:, 1:], expected / expected.sum(1, keepdims=True))
    explorer.controls["sink"].value = "kept"
    assert np.allclose(np.array(explorer.plots[2].data[0].z), result.maps[2][0])  # as measured
    explorer.controls["scale"].value = "row-normalised"
    assert np.allclose(np.array(explorer.plots[2].data[0].z).max(1)[1:], 1.0)  # every row peaks at 1
    explorer.controls["scale"].value = "absolute"
    assert explorer.plots[2].data[0].zmax == 1.0
    assert list(explorer.plots[2].layout.xaxis.ticktext) == list("abcde")  # token text, not "6:****"
