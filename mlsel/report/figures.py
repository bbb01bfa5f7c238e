"""The report's figures: matplotlib (Agg backend) drawn to base64 PNG with stable bytes."""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd

from mlsel.report.blocks import Figure
from mlsel.report.tables import COST_LABELS, efficiency_column, is_missing

DPI = 85
"""Resolution of every figure (pixels per inch; 10-point text is 12 pixels high). With the octree palette of
:func:`_png` the six default datasets' page is 1.56 MB, its 50 figures 1.03 MB of it; at 100 dpi with a median-cut palette
it was 2.16 MB, over the 2 MB a tracked file may take."""
SCATTER_NOTE = ("Strategies that make identical choices share a point; the legend lists them joined by \"=\". "
                "Markers: star oracle, circle selector, diamond best single, square always-one-model, cross random.")
FRONTIER_NOTE = ("Lines: the cost-aware routers over cost_lambda; the fixed selectors as points; the zero router, which mixes two "
                 "single models, as a dashed segment; each single model as a point of its own marker and colour, random and oracle "
                 "as grey points, all named in the legend.")
CV_CURVES_NOTE = ("Mean over the folds (bars: one SD), one line per category one-hot weight; computed inside the training split "
                  "only.")
"""How to read every figure of a kind (:attr:`mlsel.report.blocks.Figure.shared`)."""
KIND_MARKERS = {"oracle": "*", "selector": "o", "tuned": "P", "best_single": "D", "always": "s", "random": "X"}
SINGLE_MARKERS = ("s", "D", "^", "v", "<", ">", "p")
"""Markers of the single models in the frontier figure, cycled with the eight Dark2 colours (7 x 8 distinct pairs)."""


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> tuple[str, int]:
    """Base64 PNG of a figure and its width in pixels; no Software/time metadata, so the bytes are stable.

    The image is stored with a palette of at most 256 colours (fast octree, no
    dithering: deterministic). Octree spreads a small error over every pixel
    (the white background becomes 254 grey) where median cut puts a large one
    on rare colours, and its images compress better: for these plots about a
    quarter of the bytes of matplotlib's own RGBA PNG (median cut: a third).
    """
    from PIL import Image

    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    buf.seek(0)
    with Image.open(buf) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE)
    out = io.BytesIO()
    small.save(out, format="PNG", optimize=True)
    return base64.b64encode(out.getvalue()).decode("ascii"), small.width


def _figure(fig, id: str, caption: str, alt: str, shared: str = "") -> Figure:
    """The figure as a report block shown at its own pixel width (the tight bounding box, which a legend or long labels
    may make wider than the figure's size), so the browser does not rescale it. ``shared``: how to read every figure of
    its kind, said after ``caption`` (a page of many datasets says it once)."""
    png, width = _png(fig)
    return Figure(id=id, caption=f"{caption} {shared}" if shared else caption, png_b64=png, width_px=width, alt=alt, shared=shared)


def style():
    import matplotlib

    matplotlib.rcParams.update({
        "font.size": 10, "axes.titlesize": 11, "axes.labelsize": 10,
        "svg.hashsalt": "mlsel", "path.simplify": True,
    })


def _colors(n: int) -> list:
    plt = _plt()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


def heatmap_figure(mat: pd.DataFrame, title: str, xlabel: str, ylabel: str, id: str, caption: str,
                   vmin: float | None = 0.0, vmax: float | None = 1.0, fmt: str = ".2f", cbar_label: str = "") -> Figure:
    """A seaborn heatmap of ``mat`` (rows x columns) with annotated cells."""
    import seaborn as sns

    plt = _plt()
    n_r, n_c = mat.shape
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 + 0.62 * n_c + 0.07 * max(len(str(i)) for i in mat.index)), max(2.6, 1.4 + 0.36 * n_r)))
    sns.heatmap(mat.astype(float), ax=ax, annot=n_c * n_r <= 400, fmt=fmt, cmap="viridis", vmin=vmin, vmax=vmax,
                linewidths=0.4, linecolor="white", annot_kws={"fontsize": 8}, cbar_kws={"label": cbar_label})
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.tick_params(axis="x", labelrotation=45)
    for lab in ax.get_xticklabels():
        lab.set_horizontalalignment("right")
    fig.tight_layout()
    return _figure(fig, id, caption, alt=title)


def share_figure(share: pd.DataFrame, title: str, id: str, caption: str) -> Figure:
    """Horizontal stacked bars: one bar per strategy, segments are model shares (%)."""
    plt = _plt()
    n = len(share.index)
    fig, ax = plt.subplots(figsize=(9.0, max(2.6, 1.6 + 0.38 * n)))
    left = np.zeros(n)
    colors = _colors(len(share.columns))
    y = np.arange(n)
    for j, model in enumerate(share.columns):
        vals = share[model].to_numpy(dtype=float)
        ax.barh(y, vals, left=left, color=colors[j], label=str(model), edgecolor="white", linewidth=0.5)
        for yi, (l, v) in enumerate(zip(left, vals)):
            if v >= 8:
                ax.text(l + v / 2, yi, f"{v:.0f}", ha="center", va="center", fontsize=7, color="white")
        left += vals
    ax.set_yticks(y, [str(s) for s in share.index])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of held-out queries routed to the model (%)")
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14 - 0.02 * max(0, 8 - n)), ncol=min(3, len(share.columns)), fontsize=8, frameon=False)
    fig.tight_layout()
    return _figure(fig, id, caption, alt=title)


def scatter_figure(df: pd.DataFrame, pool: str, id: str) -> Figure:
    """Avg quality (with 95% CI) against efficiency, one point per distinct (efficiency, quality).

    Strategies that make the same choices land on the same point; they share
    one marker whose legend entry names all of them (joined by " = ").
    """
    plt = _plt()
    col, label = efficiency_column(df)
    groups: dict[tuple[float, float], list] = {}
    for r in df.itertuples(index=False):
        x, q = getattr(r, col), r.avg_quality
        if is_missing(x) or is_missing(q):
            continue
        groups.setdefault((round(float(x), 6), round(float(q), 6)), []).append(r)
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    colors = _colors(len(groups))
    for i, ((x, q), members) in enumerate(groups.items()):
        r = members[0]
        lo, hi = getattr(r, "avg_quality_ci_low", np.nan), getattr(r, "avg_quality_ci_high", np.nan)
        yerr = None if is_missing(lo) or is_missing(hi) else [[max(0.0, q - lo)], [max(0.0, hi - q)]]
        ax.errorbar([x], [q], yerr=yerr, fmt=KIND_MARKERS.get(r.kind, "o"), color=colors[i], ms=10 if r.kind == "oracle" else 7,
                    capsize=3, elinewidth=1, label="\n= ".join(str(m.strategy) for m in members))
    ax.set_xlabel(label)
    ax.set_ylabel("Avg quality (95% CI)")
    ax.set_title(f"Pool {pool}: quality vs {label[4:].lower()}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, labelspacing=0.8)
    fig.tight_layout()
    eff = {"avg_cost_usd": "its average cost per query in US dollars", "avg_latency_s": "its average latency in seconds",
           "avg_list_price": "the average list price per 1M tokens of the chosen models (a proxy: equal token counts assumed)"}.get(
        col, "the average length of the chosen answers in characters (a proxy for cost, not a time)")
    return _figure(fig, id, f"Pool {pool}: each strategy's average quality on the held-out queries (bars: 95% CI) against {eff}.",
                   alt=f"quality vs efficiency, pool {pool}", shared=SCATTER_NOTE)


def frontier_curves(fr: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The curves over cost_lambda of a frontier table: one per cost-aware router (``kind == "router"``; every row
    without a ``kind`` column), sorted by cost_lambda. Selectors, single models and the zero router are not curves."""
    routers = fr[fr["kind"] == "router"] if "kind" in fr else fr
    if "router" not in routers:
        return {"router": routers} if len(routers) else {}
    out = {}
    for name in dict.fromkeys(routers["router"]):
        d = routers[routers["router"] == name]
        out[str(name)] = d.sort_values("cost_lambda", kind="mergesort") if "cost_lambda" in d else d
    return out


def draw_frontier(frontier: pd.DataFrame, results: pd.DataFrame | None, pool: str, cost_col: str):
    """The matplotlib figure of :func:`frontier_figure` (open: the caller saves or closes it).

    Every point and line is named in the legend, none by a text beside it: single
    models crowd at the cheap end, where labels written next to them overlap.
    Each single model has its own marker and colour (:data:`SINGLE_MARKERS` cycled
    with the eight Dark2 colours, distinct for up to 56 models); oracle and random
    are grey points with their kind's marker.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9.0, 5.2))
    fr = frontier[frontier["pool"] == pool] if "pool" in frontier else frontier
    kind = fr["kind"] if "kind" in fr else pd.Series("router", index=fr.index)
    curves = frontier_curves(fr)
    points = fr[kind == "selector"]
    colors = _colors(len(curves) + len(points))
    for i, (name, d) in enumerate(curves.items()):
        ax.plot(d[cost_col], d["avg_quality"], "-o", color=colors[i], ms=4, lw=1.5, label=f"{name} (over cost_lambda)")
    names = list(curves)
    for i, r in enumerate(points.itertuples(index=False)):
        if not is_missing(getattr(r, cost_col)):
            ax.plot([getattr(r, cost_col)], [r.avg_quality], KIND_MARKERS["selector"], color=colors[len(names) + i], ms=7, label=f"{r.router} (selector)")
    zero = fr[kind == "zero_router"].dropna(subset=[cost_col]).sort_values(cost_col, kind="mergesort")
    if len(zero):
        ax.plot(zero[cost_col], zero["avg_quality"], "--", color="0.45", lw=1.2, label="zero router (mixtures of single models)")
    singles = [(r.router, getattr(r, cost_col), r.avg_quality, "always") for r in fr[kind == "single"].itertuples(index=False)]
    if results is not None and cost_col in results:
        extra = results[(results["pool"] == pool) & results["kind"].isin(["oracle", "random"] + ([] if singles else ["always", "best_single"]))]
        singles += [(r.strategy, getattr(r, cost_col), r.avg_quality, r.kind) for r in extra.itertuples(index=False)]
    dark = plt.get_cmap("Dark2")
    n_models = 0
    for name, x, q, k in singles:
        if is_missing(x):
            continue
        if k in ("oracle", "random"):
            ax.plot([x], [q], KIND_MARKERS[k], color="0.25", ms=9 if k == "oracle" else 7, ls="none", label=str(name))
        else:
            ax.plot([x], [q], SINGLE_MARKERS[n_models % len(SINGLE_MARKERS)], color=dark(n_models % dark.N), ms=7, ls="none",
                    label=str(name))
            n_models += 1
    ax.set_xlabel(COST_LABELS[cost_col] if cost_col in COST_LABELS else cost_col)
    ax.set_ylabel("Avg quality")
    ax.set_title(f"Pool {pool}: cost-quality frontier")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def frontier_figure(frontier: pd.DataFrame, results: pd.DataFrame | None, pool: str, cost_col: str, id: str) -> Figure:
    """Cost-quality frontier of one pool (drawn by :func:`draw_frontier`).

    Only the cost-aware routers (``kind == "router"``) have a curve over
    cost_lambda; the zero router (mixtures of two single models) is a dashed
    segment between its two end points; single models and the fixed selectors
    are points; oracle and random come from ``results`` when given.
    """
    fig = draw_frontier(frontier, results, pool, cost_col)
    xl = COST_LABELS[cost_col] if cost_col in COST_LABELS else cost_col
    return _figure(fig, id, f"Pool {pool}: each cost-aware router's average quality and {xl.lower()} as its cost weight cost_lambda "
                   "varies.",
                   alt=f"cost-quality frontier, pool {pool}", shared=FRONTIER_NOTE)


def cv_curves_figure(th: pd.DataFrame, pool: str, id: str) -> Figure:
    """Cross-validation curves of one pool: per selector or router, the CV score (mean; bars: one SD over folds)
    against its tuned parameter, one line per one-hot weight (the tune stage's ``tune_heatmap`` table)."""
    plt = _plt()
    d = th[th["pool"] == pool]
    score = "cv_utility_mean" if "cv_utility_mean" in d.columns else "cv_quality_mean"
    sd = score.replace("_mean", "_std")
    if sd not in d.columns and "cv_quality_mean" in d.columns and np.allclose(d[score], d["cv_quality_mean"], equal_nan=True):
        sd = "cv_quality_std"  # no latency: the utility is the quality, and so is its spread
    groups = list(d.groupby(["selector", "param"], sort=False))
    cols = min(4, max(1, len(groups)))
    rows = -(-len(groups) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.9 * cols + 0.6, 2.5 * rows + 0.6), squeeze=False)
    weights = sorted(d["onehot_weight"].unique())
    colors = _colors(len(weights))
    for ax, ((selector, param), g) in zip(axes.ravel(), groups):
        for w, c in zip(weights, colors):
            gw = g[g["onehot_weight"] == w].sort_values("param_value", kind="mergesort")
            if gw.empty:
                continue
            x, y = gw["param_value"].to_numpy(dtype=float), gw[score].to_numpy(dtype=float)
            e = gw[sd].to_numpy(dtype=float) if sd in gw else None
            ax.errorbar(x, y, yerr=e, fmt="-o", color=c, ms=4, lw=1.4, capsize=3, elinewidth=0.9, label=f"one-hot weight {w:g}")
        vals = g["param_value"].to_numpy(dtype=float)
        if vals.min() > 0 and vals.max() / vals.min() >= 10:
            ax.set_xscale("log")
        ax.set_title(str(selector), fontsize=10)
        ax.set_xlabel(str(param), fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(groups):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel(f"CV {score.removeprefix('cv_').removesuffix('_mean')}")
    legend: dict[str, object] = {}
    for ax in axes.ravel():
        for h, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, h)
    fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=max(1, len(weights)), fontsize=8, frameon=False)
    fig.suptitle(f"Pool {pool}: cross-validation curves (training split only)", fontsize=11)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _figure(fig, id, f"Pool {pool}: each selector's and router's cross-validated {score} against the parameter it tunes.",
                   alt=f"cross-validation curves, pool {pool}", shared=CV_CURVES_NOTE)


def benchmark_figure(summary: pd.DataFrame, id: str = "fig-benchmark") -> Figure:
    """The benchmark's summary, one bar per model: mean quality of the scored answers, and mean response time (s)."""
    plt = _plt()
    n = len(summary)
    fig, (aq, at) = plt.subplots(1, 2, figsize=(9.5, max(2.4, 1.2 + 0.42 * n)), sharey=True)
    y = np.arange(n)
    colors = _colors(n)
    aq.barh(y, summary["quality_mean"].astype(float), color=colors)
    at.barh(y, summary["response_time_s_mean"].astype(float), color=colors)
    for yi, (ok, total) in enumerate(zip(summary["n_ok"], summary["n"])):
        aq.annotate(f"{int(ok)}/{int(total)} answered", (0, yi), xytext=(3, 0), textcoords="offset points", va="center", fontsize=7,
                    color="white")
    aq.set_yticks(y, [str(m) for m in summary["model"]])
    aq.invert_yaxis()
    aq.set_xlim(0, 1)
    aq.set_xlabel("mean quality of the answers")
    at.set_xlabel("mean response time (s)")
    for ax in (aq, at):
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Benchmark: quality and response time per model", fontsize=11)
    fig.tight_layout()
    return _figure(fig, id, "Per model: the mean quality of its scored answers (failed calls are not scored as 0) and its mean response time.",
                   alt="benchmark quality and response time per model")


def gain_figure(summary: pd.DataFrame, labels: list[str], id: str) -> Figure:
    """Gain@B with its 95% CI per dataset and pool (a forest plot): right of 0, routing beats the best single model."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 0.55 * len(summary) + 1.6))
    y = np.arange(len(summary))[::-1]
    g, lo, hi = (summary[c].to_numpy(dtype=float) for c in ("gain_at_b", "gain_at_b_ci_low", "gain_at_b_ci_high"))
    colors = ["#2a7f3f" if low > 0 else ("#b03a2e" if high < 0 else "0.35") for low, high in zip(lo, hi)]
    for yi, gi, l, h, c in zip(y, g, lo, hi, colors):
        ax.errorbar([gi], [yi], xerr=[[gi - l], [h - gi]], fmt="o", color=c, capsize=4, ms=7)
    ax.axvline(0.0, color="0.2", lw=1)
    ax.set_yticks(y, labels)
    ax.set_xlabel("Gain@B: router quality minus the best single model's (95% CI)")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _figure(fig, id, "Gain over the best single model per dataset and pool, with 95% paired bootstrap intervals on held-out "
                   "queries. Green: routing beats the best single model; grey: no difference shown; red: worse.",
                   alt="Gain over the best single model per dataset and pool")


def ship_figure(ship: pd.DataFrame, id: str = "fig-ship") -> Figure:
    """The shipped config's held-out gain over the best single model and over the per-category lookup, with 95% CIs, per
    pool (``tables/ship.csv``)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8.5, 0.9 * len(ship) + 1.6))
    y = np.arange(len(ship))[::-1].astype(float)
    for off, (col, name, color) in zip((0.15, -0.15), (("gain_vs_best_single", "vs the best single model", "#1f5f99"),
                                                       ("gain_vs_lookup", "vs the per-category lookup", "#b5651d"))):
        g, lo, hi = (ship[c].to_numpy(dtype=float) for c in (col, f"{col}_ci_low", f"{col}_ci_high"))
        ax.errorbar(g, y + off, xerr=[g - lo, hi - g], fmt="o", color=color, capsize=4, ms=6, label=name)
    ax.axvline(0.0, color="0.2", lw=1)
    ax.set_yticks(y, [f"{p}: {s}" for p, s in zip(ship["pool"], ship["shipped"])])
    ax.set_xlabel("held-out quality of the shipped config minus the baseline's (95% CI)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, frameon=False)
    fig.tight_layout()
    return _figure(fig, id, "What is shipped, per pool: its held-out gain over the best single model and over the per-category lookup, "
                   "with 95% paired bootstrap intervals.", alt="Shipped config's gains per pool")


GAIN_SERIES = (("gain_at_b", "router − best single", "#1f5f99", "o"), ("gain_vs_lookup", "router − lookup", "#b5651d", "s"),
               ("peer_gain", "best peer − best single", "0.45", "D"))
"""The answer figure's series: summary column (with ``_ci_low``/``_ci_high``), legend, colour, marker."""


def gains_figure(df: pd.DataFrame, labels: list[str], id: str) -> Figure:
    """Per row (dataset and pool, first at the top), :data:`GAIN_SERIES` with their 95% CIs on one axis; a series a row
    does not have is left out of that row, an interval it does not have is drawn as the point alone."""
    plt = _plt()
    n = len(df)
    fig, ax = plt.subplots(figsize=(6.0, 0.34 * n + 0.95))
    y = np.arange(n)[::-1].astype(float)
    for off, (col, name, color, marker) in zip((0.22, 0.0, -0.22), GAIN_SERIES):
        if col not in df or df[col].isna().all():
            continue
        g = df[col].to_numpy(dtype=float)
        lo, hi = (df[f"{col}_ci_{s}"].to_numpy(dtype=float) if f"{col}_ci_{s}" in df else np.full(n, np.nan) for s in ("low", "high"))
        ok = ~np.isnan(g)
        err = [np.maximum(0.0, g - np.where(np.isnan(lo), g, lo))[ok], np.maximum(0.0, np.where(np.isnan(hi), g, hi) - g)[ok]]
        ax.errorbar(g[ok], y[ok] + off, xerr=err, fmt=marker, color=color, ms=5, capsize=3, elinewidth=1.2, label=name)
    ax.axvline(0.0, color="0.2", lw=1)
    ax.set_yticks(y, labels, fontsize=9)
    ax.set_ylim(-0.6, n - 0.4)
    ax.set_xlabel("held-out quality difference (95% CI)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3, frameon=False, fontsize=8, handletextpad=0.3, columnspacing=1.0)
    fig.tight_layout()
    return _figure(fig, id, "Per dataset and pool: the chosen router's held-out gain over the best single model and over the per-category "
                   "lookup, and the best peer's gain over the best single model (95% paired bootstrap intervals). Right of 0: better.",
                   alt="Gains over the best single model and the lookup per dataset and pool")
