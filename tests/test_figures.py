"""The report's figures: the frontier names its points in a legend with no overlapping text; the PNGs are small and stable."""

from __future__ import annotations

import base64
import io
import itertools

import pandas as pd
import pytest

from mlsel.report.figures import draw_frontier, frontier_figure, heatmap_figure, share_figure, style

# Single models crowded at the cheap end (the case: their labels, written beside the points, overlapped), one
# expensive model, a cost-aware router's curve, a selector and the zero router between the cheapest and the best model.
FRONTIER = pd.DataFrame([
    {"pool": "p", "kind": "router", "router": "knn_reg", "cost_lambda": 0.0, "avg_quality": 0.60, "avg_cost_usd": 0.0040},
    {"pool": "p", "kind": "router", "router": "knn_reg", "cost_lambda": 1.0, "avg_quality": 0.50, "avg_cost_usd": 0.0012},
    {"pool": "p", "kind": "router", "router": "knn_reg", "cost_lambda": 9.0, "avg_quality": 0.41, "avg_cost_usd": 0.0010},
    {"pool": "p", "kind": "selector", "router": "knn", "cost_lambda": None, "avg_quality": 0.58, "avg_cost_usd": 0.0038},
    {"pool": "p", "kind": "zero_router", "router": "Zero router", "cost_lambda": None, "avg_quality": 0.40, "avg_cost_usd": 0.0010},
    {"pool": "p", "kind": "zero_router", "router": "Zero router", "cost_lambda": None, "avg_quality": 0.62, "avg_cost_usd": 0.0050},
] + [{"pool": "p", "kind": "single", "router": f"Always model-{i}-instruct", "cost_lambda": None, "avg_quality": q, "avg_cost_usd": c}
     for i, (q, c) in enumerate([(0.40, 0.00100), (0.401, 0.00102), (0.399, 0.00104), (0.402, 0.00101), (0.62, 0.0050)])])
RESULTS = pd.DataFrame([
    {"pool": "p", "strategy": "Oracle (best possible)", "kind": "oracle", "avg_quality": 0.8, "avg_cost_usd": 0.00105},
    {"pool": "p", "strategy": "Random Selection (expected)", "kind": "random", "avg_quality": 0.45, "avg_cost_usd": 0.0023},
])


@pytest.fixture
def frontier_fig():
    style()
    fig = draw_frontier(FRONTIER, RESULTS, "p", "avg_cost_usd")
    fig.canvas.draw()
    yield fig
    import matplotlib.pyplot as plt

    plt.close(fig)


def drawn_texts(fig) -> list:
    """The figure's visible, non-empty texts, but the labels of ticks outside their axis's view (matplotlib keeps those,
    at stale positions, and does not draw them)."""
    from matplotlib.text import Text

    hidden = set()
    for ax in fig.axes:
        for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if not min(lim) <= tick.get_loc() <= max(lim):
                    hidden |= {id(tick.label1), id(tick.label2)}
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in hidden]


def test_frontier_texts_do_not_overlap(frontier_fig):
    """No two drawn texts of the figure (title, axis and tick labels, legend entries, annotations) share a pixel."""
    renderer = frontier_fig.canvas.get_renderer()
    texts = drawn_texts(frontier_fig)
    assert len(texts) > 10
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    overlapping = [(a, b) for (a, ba), (b, bb) in itertools.combinations(boxes, 2) if ba.overlaps(bb)]
    assert not overlapping, overlapping


def test_frontier_names_every_point_in_the_legend(frontier_fig):
    """Single models, oracle and random are legend entries, not text beside their points; each model has its own marker."""
    (ax,) = frontier_fig.axes
    assert not ax.texts
    legend = ax.get_legend()
    labels = [t.get_text() for t in legend.get_texts()]
    singles = FRONTIER.loc[FRONTIER["kind"] == "single", "router"].tolist()
    for name in singles + RESULTS["strategy"].tolist() + ["knn_reg (over cost_lambda)", "knn (selector)"]:
        assert name in labels, name
    handles = dict(zip(labels, legend.legend_handles))
    styles = [(handles[n].get_marker(), handles[n].get_color()) for n in singles]
    assert len(set(styles)) == len(singles), styles


def test_frontier_figure_caption_says_the_legend_names_the_points():
    f = frontier_figure(FRONTIER, RESULTS, "p", "avg_cost_usd", "fig-frontier-p")
    assert "named in the legend" in f.caption and f.id == "fig-frontier-p"


def _decoded(png_b64: str):
    from PIL import Image

    raw = base64.b64decode(png_b64)
    with Image.open(io.BytesIO(raw)) as im:
        im.load()
        return raw, im.copy()


def test_figures_are_small_stable_palette_pngs():
    """Every figure is a palette PNG that the page shows at its own width, under 0.09 bytes a pixel (these plots take about
    0.05; matplotlib's own RGBA PNG about 0.15), and the same input gives the same bytes."""
    style()
    mat = pd.DataFrame([[0.1 * i + 0.01 * j for j in range(8)] for i in range(6)], index=[f"strategy {i}" for i in range(6)],
                       columns=[f"category {j}" for j in range(8)])
    share = pd.DataFrame({f"model-{j}": [100 / 3 if j < 3 else 0.0] * 4 for j in range(5)}, index=[f"s{i}" for i in range(4)])
    draws = [lambda: heatmap_figure(mat, "t", "x", "y", "fig-h", "c"), lambda: share_figure(share, "t", "fig-s", "c"),
             lambda: frontier_figure(FRONTIER, RESULTS, "p", "avg_cost_usd", "fig-f")]
    for draw in draws:
        f1, f2 = draw(), draw()
        assert f1.png_b64 == f2.png_b64
        raw, im = _decoded(f1.png_b64)
        assert im.mode == "P"
        assert im.width == f1.width_px  # the page shows it pixel for pixel
        assert len(raw) < 0.09 * im.width * im.height, (f1.id, len(raw), im.size)
