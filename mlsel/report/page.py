"""The published report: one self-contained HTML page built from a run folder.

:func:`build_report` reads only files of the run folder
(:func:`mlsel.paths.run_paths`): ``tables/*.csv`` and ``manifest.json``. It
writes ``<report_dir>/index.html`` and byte-identical copies of every
``tables/*.csv`` under ``<report_dir>/tables/``.

The page opens with no network: CSS is inline, figures are base64 PNG
``data:`` URIs drawn with matplotlib (Agg backend, fixed DPI, no software or
time stamp in the PNG metadata), there is no script, and a
Content-Security-Policy forbids loading anything but ``data:`` images. The
same run folder always gives the same bytes: nothing in the page depends on
the clock, the environment or the machine.

Sections (a section or table appears only when its input file exists):

1. Headline, per pool: the seed's main table (``selection_results.csv``) and
   its "ML routing benefit over random" table, with uplift over the best
   single model (chosen on training data), the share of the random -> oracle
   gap closed, and a verdict in words generated from the confidence intervals.
2. Per-category quality (``per_category.csv``): table and heatmap.
3. Selection shares per model (``selection_share.csv``): table and stacked bars.
4. Quality vs efficiency scatter (latency, or the response-length proxy,
   which is labelled as such and never shown as seconds).
5. Optional tables written by other stages: ``tuned_results.csv``,
   ``frontier.csv`` (cost-quality frontier figure), ``aiq.csv``,
   ``tune_heatmap.csv`` (heatmap when it has two parameter columns and a
   score), ``cv_results.csv`` (first rows), ``router_config_results.csv``;
   any other CSV is listed and linked.
6. Provenance from the manifest: inputs with SHA-256, record counts, dropped
   and repaired records, every stage's parameters (secret-looking keys
   masked) with their hash, package versions and git commit.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlsel.paths import STAGES, resolve_path, run_paths


log = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"
DPI = 100
"""Resolution of every figure (pixels per inch)."""
MAX_ROWS = 40
"""Rows shown of a long optional table; the full CSV is linked."""
SECRET_HINTS = ("key", "token", "secret", "password")
"""A parameter whose name contains one of these has its value masked."""
MASK = "***"

KNOWN_TABLES = (
    "selection_results.csv",
    "per_category.csv",
    "selection_share.csv",
    "tuned_results.csv",
    "frontier.csv",
    "aiq.csv",
    "tune_heatmap.csv",
    "cv_results.csv",
    "router_config_results.csv",
)
"""CSV files the report renders specifically; any other CSV is listed and linked."""

PROXY_LABEL = "Avg response chars (proxy, not a time)"
LATENCY_LABEL = "Avg latency (s)"
KIND_MARKERS = {"oracle": "*", "selector": "o", "tuned": "P", "best_single": "D", "always": "s", "random": "X"}
GROUP_COLUMNS = ("pool", "router", "selector", "strategy", "kind", "model", "name")
SCORE_COLUMNS = ("score", "mean_score", "cv_score", "score_mean", "mean_test_score", "avg_quality", "quality", "utility", "mean_utility")


# --------------------------------------------------------------------------- page model


@dataclass
class Table:
    """A rendered table: header and rows of ``(text, css_class)`` cells."""

    id: str
    caption: str
    columns: list[str]
    rows: list[list[tuple[str, str]]]
    note: str = ""
    link: str = ""
    css: str = ""
    type: str = "table"


@dataclass
class Figure:
    """An embedded PNG figure."""

    id: str
    caption: str
    png_b64: str
    width_px: int
    alt: str = ""
    type: str = "figure"


@dataclass
class Text:
    """A paragraph, a list of sentences (``items``), a list of table links or a sub-heading."""

    text: str = ""
    items: list[str] = field(default_factory=list)
    heading: str = ""
    links: list[str] = field(default_factory=list)  # file names under tables/
    type: str = "text"


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Any] = field(default_factory=list)


# --------------------------------------------------------------------------- formatting


def _isnan(v: Any) -> bool:
    try:
        return v is None or (isinstance(v, float) and math.isnan(v)) or bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def fmt_num(v: Any, digits: int = 3, sign: bool = False, suffix: str = "") -> str:
    """A number with fixed decimals; NaN or missing as an em dash."""
    if _isnan(v):
        return "—"
    return f"{float(v):{'+' if sign else ''}.{digits}f}{suffix}"


def fmt_ci(v: Any, lo: Any, hi: Any, digits: int = 3, sign: bool = False, suffix: str = "") -> str:
    """``value [low, high]``; without bounds just the value."""
    main = fmt_num(v, digits, sign, suffix)
    if _isnan(lo) or _isnan(hi):
        return main
    return f"{main} [{fmt_num(lo, digits, sign, suffix)}, {fmt_num(hi, digits, sign, suffix)}]"


def fmt_generic(v: Any) -> str:
    """A cell of an arbitrary CSV: integers as such, floats to 4 significant digits."""
    if _isnan(v):
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v)}"
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if f.is_integer() and abs(f) < 1e15:
            return f"{int(f)}"
        if abs(f) >= 1000:
            return f"{f:,.1f}"
        return f"{f:.4g}"
    return str(v)


def mask_secrets(value: Any) -> Any:
    """Copy of a (nested) parameter mapping with secret-looking keys' values masked."""
    if isinstance(value, dict):
        return {
            k: (MASK if any(h in str(k).lower() for h in SECRET_HINTS) and v not in (None, "") else mask_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


def _param_text(v: Any) -> str:
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=False, default=str)
    if v == "":
        return '""'
    return str(v)


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


def generic_table(df: pd.DataFrame, id: str, caption: str, link: str = "", max_rows: int = MAX_ROWS) -> Table:
    """Any DataFrame as a table, the first ``max_rows`` rows, numbers right-aligned."""
    shown = df.head(max_rows)
    rows = []
    for rec in shown.itertuples(index=False):
        rows.append([(fmt_generic(v), "num" if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else "") for v in rec])
    note = f"First {len(shown)} of {len(df)} rows; the full table is linked." if len(df) > len(shown) else ""
    return Table(id=id, caption=caption, columns=[str(c) for c in df.columns], rows=rows, note=note, link=link)


# --------------------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    """Base64 PNG of a figure; no Software/time metadata, so the bytes are stable."""
    plt = _plt()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None}, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _figure(fig, id: str, caption: str, alt: str) -> Figure:
    w = int(round(fig.get_size_inches()[0] * DPI))
    return Figure(id=id, caption=caption, png_b64=_png(fig), width_px=w, alt=alt)


def _style():
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


def efficiency_column(df: pd.DataFrame) -> tuple[str, str]:
    """(column, axis label): latency where every row has it, else the response-length proxy."""
    if "avg_latency_s" in df and df["avg_latency_s"].notna().all() and len(df):
        return "avg_latency_s", LATENCY_LABEL
    return "avg_response_chars", PROXY_LABEL


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
        if _isnan(x) or _isnan(q):
            continue
        groups.setdefault((round(float(x), 6), round(float(q), 6)), []).append(r)
    fig, ax = plt.subplots(figsize=(9.5, 5.2))
    colors = _colors(len(groups))
    for i, ((x, q), members) in enumerate(groups.items()):
        r = members[0]
        lo, hi = getattr(r, "avg_quality_ci_low", np.nan), getattr(r, "avg_quality_ci_high", np.nan)
        yerr = None if _isnan(lo) or _isnan(hi) else [[max(0.0, q - lo)], [max(0.0, hi - q)]]
        ax.errorbar([x], [q], yerr=yerr, fmt=KIND_MARKERS.get(r.kind, "o"), color=colors[i], ms=10 if r.kind == "oracle" else 7,
                    capsize=3, elinewidth=1, label="\n= ".join(str(m.strategy) for m in members))
    ax.set_xlabel(label)
    ax.set_ylabel("Avg quality (95% CI)")
    ax.set_title(f"Pool {pool}: quality vs {'latency' if col == 'avg_latency_s' else 'response length (proxy, not a time)'}")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False, labelspacing=0.8)
    fig.tight_layout()
    eff = "its average latency in seconds" if col == "avg_latency_s" else "the average length of the chosen answers in characters (a proxy for cost, not a time)"
    return _figure(fig, id, f"Pool {pool}: each strategy's average quality on the held-out queries (bars: 95% CI) against {eff}. "
                   "Strategies that make identical choices share a point; the legend lists them joined by \"=\". "
                   "Markers: star oracle, circle selector, diamond best single, square always-one-model, cross random.",
                   alt=f"quality vs efficiency, pool {pool}")


def frontier_figure(frontier: pd.DataFrame, results: pd.DataFrame | None, pool: str, cost_col: str, id: str) -> Figure:
    """Cost-quality frontier of one pool: each router's curve over cost_lambda, single models as points."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(9.0, 5.2))
    fr = frontier[frontier["pool"] == pool] if "pool" in frontier else frontier
    routers = list(dict.fromkeys(fr["router"])) if "router" in fr else ["router"]
    colors = _colors(len(routers))
    for i, router in enumerate(routers):
        d = fr[fr["router"] == router] if "router" in fr else fr
        d = d.sort_values("cost_lambda", kind="mergesort") if "cost_lambda" in d else d
        ax.plot(d[cost_col], d["avg_quality"], "-o", color=colors[i], ms=4, lw=1.5, label=f"{router} (over cost_lambda)")
    if results is not None and cost_col in results:
        pts = results[(results["pool"] == pool) & results["kind"].isin(["always", "oracle", "random", "best_single"])]
        for r in pts.itertuples(index=False):
            if _isnan(getattr(r, cost_col)):
                continue
            ax.plot([getattr(r, cost_col)], [r.avg_quality], KIND_MARKERS.get(r.kind, "s"), color="0.25", ms=8 if r.kind == "oracle" else 6)
            ax.annotate(str(r.strategy), (getattr(r, cost_col), r.avg_quality), textcoords="offset points", xytext=(5, 4), fontsize=7, color="0.25")
    xl = LATENCY_LABEL if cost_col == "avg_latency_s" else (PROXY_LABEL if cost_col == "avg_response_chars" else cost_col)
    ax.set_xlabel(xl)
    ax.set_ylabel("Avg quality")
    ax.set_title(f"Pool {pool}: cost-quality frontier")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    return _figure(fig, id, f"Pool {pool}: every router's average quality and {xl.lower()} as its cost weight cost_lambda varies "
                   "(lines), with the single models, random and oracle as grey points.", alt=f"cost-quality frontier, pool {pool}")


# --------------------------------------------------------------------------- headline


def _best_single_name(df: pd.DataFrame) -> str:
    row = df[df["kind"] == "best_single"]
    if row.empty:
        return "the best single model"
    name = str(row["strategy"].iloc[0])
    m = re.search(r"\(([^()]*)\)\s*$", name)
    return m.group(1) if m else name


def main_table(df: pd.DataFrame, pool: str, id: str, caption: str, link: str) -> Table:
    """The seed's main table for one pool, sorted by quality (ties keep file order)."""
    col, label = efficiency_column(df)
    latency = col == "avg_latency_s"
    rows = []
    for r in df.sort_values("avg_quality", ascending=False, kind="mergesort").itertuples(index=False):
        eff = getattr(r, col)
        # The proxy is a character count: never given a time unit.
        eff_text = fmt_num(eff, 2, suffix=" s") if latency else ("—" if _isnan(eff) else f"{float(eff):,.0f}")
        rows.append([
            (str(r.strategy), f"name kind-{r.kind}"),
            (fmt_ci(r.avg_quality, getattr(r, "avg_quality_ci_low", np.nan), getattr(r, "avg_quality_ci_high", np.nan)), "num"),
            (eff_text, "num eff " + ("latency" if latency else "proxy")),
            (fmt_num(r.best_model_pct, 1, suffix="%"), "num"),
            (fmt_ci(getattr(r, "uplift_vs_best_single", np.nan), getattr(r, "uplift_vs_best_single_ci_low", np.nan),
                    getattr(r, "uplift_vs_best_single_ci_high", np.nan), sign=True), "num"),
        ])
    columns = ["Strategy", "Avg Quality [95% CI]", LATENCY_LABEL if latency else PROXY_LABEL, "Best Model %", "vs best single [95% CI]"]
    return Table(id=id, caption=caption, columns=columns, rows=rows, link=link)


def benefit_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Selector (and tuned) rows, best first."""
    sel = df[df["kind"].isin(["selector", "tuned"])]
    return sel.sort_values("avg_quality", ascending=False, kind="mergesort")


def benefit_table(df: pd.DataFrame, id: str, caption: str, link: str) -> Table:
    """The seed's "ML routing benefit over random" table, with uplift over the best single model and gap closed."""
    rows = []
    for r in benefit_rows(df).itertuples(index=False):
        x = getattr(r, "best_model_x_vs_random", np.nan)
        rows.append([
            (str(r.strategy), "name"),
            (fmt_ci(r.uplift_vs_random_pct, r.uplift_vs_random_pct_ci_low, r.uplift_vs_random_pct_ci_high, 1, True, "%"), "num"),
            ("—" if _isnan(x) else f"{float(x):.2f}x more often", "num"),
            (fmt_ci(r.uplift_vs_best_single, r.uplift_vs_best_single_ci_low, r.uplift_vs_best_single_ci_high, 3, True), "num"),
            (fmt_ci(r.gap_closed_pct, getattr(r, "gap_closed_pct_ci_low", np.nan), getattr(r, "gap_closed_pct_ci_high", np.nan), 1, False, "%"), "num"),
        ])
    columns = ["Algorithm", "Quality improvement over random [95% CI]", "Best Model Selection",
               f"Uplift over best single ({_best_single_name(df)}) [95% CI]", "Random → oracle gap closed [95% CI]"]
    return Table(id=id, caption=caption, columns=columns, rows=rows, link=link)


def verdicts(df: pd.DataFrame) -> list[str]:
    """One sentence per selector, generated from the CIs: does it beat the best single model and random?"""
    best = _best_single_name(df)
    out = []
    for r in benefit_rows(df).itertuples(index=False):
        d, lo, hi = r.uplift_vs_best_single, r.uplift_vs_best_single_ci_low, r.uplift_vs_best_single_ci_high
        ci = f"{fmt_num(d, 3, True)} quality, 95% CI [{fmt_num(lo, 3, True)}, {fmt_num(hi, 3, True)}]"
        if not _isnan(lo) and lo > 0:
            s = f"{r.strategy} beats the best single model ({best}): {ci}; the whole interval is above 0."
        elif not _isnan(hi) and hi < 0:
            s = f"{r.strategy} does not beat the best single model ({best}); it is worse: {ci}; the whole interval is below 0."
        else:
            s = f"{r.strategy} does not beat the best single model ({best}): {ci}; the interval includes 0, so no difference is shown."
        rlo = r.uplift_vs_random_pct_ci_low
        if not _isnan(rlo) and rlo > 0:
            s += f" It beats random selection ({fmt_num(r.uplift_vs_random_pct, 1, True, '%')} quality)"
        else:
            s += f" It does not clearly beat random selection ({fmt_num(r.uplift_vs_random_pct, 1, True, '%')} quality, CI lower bound {fmt_num(rlo, 1, True, '%')})"
        s += f" and closes {fmt_num(getattr(r, 'gap_closed_pct', np.nan), 1, suffix='%')} of the random → oracle gap."
        out.append(s)
    return out


def results_blocks(res: pd.DataFrame, prefix: str, file: str, what: str) -> list[Any]:
    """Per pool: both seed tables and the verdicts (used for selection_results and tuned_results)."""
    blocks: list[Any] = []
    for pool, df in res.groupby("pool", sort=False):
        n = int(df["n_queries"].iloc[0]) if "n_queries" in df else 0
        col, _ = efficiency_column(df)
        blocks.append(Text(heading=f"Pool {pool} — {n} held-out queries"))
        blocks.append(main_table(df, pool, f"{prefix}-main-{_slug(pool)}", f"{what}, pool {pool}: the seed's main table, best quality first.",
                                 f"tables/{file}"))
        if col != "avg_latency_s":
            blocks.append(Text(text="No latency was measured for this data, so efficiency is shown as the average length of the chosen "
                                    "answers in characters: a proxy for cost, not a time."))
        bt = benefit_table(df, f"{prefix}-benefit-{_slug(pool)}", f"{what}, pool {pool}: ML routing benefit over random (expected).",
                           f"tables/{file}")
        if bt.rows:
            blocks.append(bt)
            blocks.append(Text(items=verdicts(df)))
    return blocks


# --------------------------------------------------------------------------- sections


def _read(tables: Path, name: str) -> pd.DataFrame | None:
    p = tables / name
    if not p.is_file():
        return None
    try:
        return pd.read_csv(p)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def _strategy_order(res: pd.DataFrame | None, pool: str, names: list[str]) -> list[str]:
    if res is not None and "strategy" in res:
        d = res[res["pool"] == pool].sort_values("avg_quality", ascending=False, kind="mergesort")
        order = [s for s in d["strategy"] if s in names]
        return order + [s for s in names if s not in order]
    return names


def headline_section(res: pd.DataFrame) -> Section:
    sec = Section("headline", "Headline: selectors against baselines on held-out queries")
    summary = []
    for pool, df in res.groupby("pool", sort=False):
        sel = benefit_rows(df)
        if sel.empty:
            continue
        top = sel.iloc[0]
        beat = [str(s) for s, lo in zip(sel["strategy"], sel["uplift_vs_best_single_ci_low"]) if not _isnan(lo) and lo > 0]
        summary.append(
            f"Pool {pool}: the best selector is {top['strategy']} at {fmt_num(top['avg_quality'])} average quality "
            f"(best single model {_best_single_name(df)}: {fmt_num(df.loc[df['kind'] == 'best_single', 'avg_quality'].iloc[0]) if (df['kind'] == 'best_single').any() else '—'}; "
            f"oracle: {fmt_num(df.loc[df['kind'] == 'oracle', 'avg_quality'].iloc[0]) if (df['kind'] == 'oracle').any() else '—'}). "
            + (f"{len(beat)} of {len(sel)} selectors beat the best single model ({', '.join(beat)})." if beat
               else f"None of the {len(sel)} selectors beats the best single model.")
        )
    sec.blocks.append(Text(items=summary))
    sec.blocks.append(Text(text=(
        "Random is the exact expectation over the pool's models (the per-query mean), not one draw. The best single model "
        "is chosen on the training split. Best Model % credits ties: a query where the chosen model has the highest quality, "
        "including queries every model answers equally, counts as a hit. Confidence intervals are 95% percentile bootstrap "
        "intervals over the held-out queries, paired across strategies. A selector beats a baseline when the whole interval "
        "of the difference is above 0.")))
    sec.blocks += results_blocks(res, "results", "selection_results.csv", "Held-out results")
    return sec


def per_category_section(pc: pd.DataFrame, res: pd.DataFrame | None) -> Section:
    sec = Section("per-category", "Per-category quality")
    sec.blocks.append(Text(text="Average quality of each strategy on the held-out queries of each category (n = held-out queries in the category)."))
    for pool, df in pc.groupby("pool", sort=False):
        order = _strategy_order(res, pool, list(dict.fromkeys(df["strategy"])))
        mat = df.pivot_table(index="strategy", columns="category", values="avg_quality", aggfunc="mean", sort=False).reindex(order)
        cats = list(mat.columns)
        ns = df.drop_duplicates("category").set_index("category")["n_queries"] if "n_queries" in df else pd.Series(dtype=int)
        sec.blocks.append(Text(heading=f"Pool {pool}"))
        rows = [[(str(s), "name")] + [(fmt_num(mat.loc[s, c], 3), "num") for c in cats] for s in mat.index]
        cols = ["Strategy"] + [f"{c} (n={int(ns[c])})" if c in ns else str(c) for c in cats]
        sec.blocks.append(Table(f"per-category-{_slug(pool)}", f"Pool {pool}: average quality per category.", cols, rows, link="tables/per_category.csv", css="compact"))
        sec.blocks.append(heatmap_figure(mat, f"Pool {pool}: average quality per category", "category", "", f"fig-per-category-{_slug(pool)}",
                                         f"Pool {pool}: strategy x category average quality (0 to 1).", cbar_label="avg quality"))
    return sec


def share_section(sh: pd.DataFrame, res: pd.DataFrame | None) -> Section:
    sec = Section("selection-share", "Which models the strategies choose")
    sec.blocks.append(Text(text="Share of held-out queries each strategy routes to each model (%). Random spreads evenly; the oracle's shares show where each model is the best (ties go to the most efficient model)."))
    for pool, df in sh.groupby("pool", sort=False):
        order = _strategy_order(res, pool, list(dict.fromkeys(df["strategy"])))
        models = list(dict.fromkeys(df["model"]))
        mat = df.pivot_table(index="strategy", columns="model", values="share_pct", aggfunc="sum", sort=False).reindex(index=order, columns=models)
        sec.blocks.append(Text(heading=f"Pool {pool}"))
        rows = [[(str(s), "name")] + [(fmt_num(mat.loc[s, m], 1, suffix="%"), "num") for m in models] for s in mat.index]
        sec.blocks.append(Table(f"share-{_slug(pool)}", f"Pool {pool}: selection share per model.", ["Strategy"] + models, rows, link="tables/selection_share.csv"))
        sec.blocks.append(share_figure(mat.fillna(0.0), f"Pool {pool}: selection share per model", f"fig-share-{_slug(pool)}",
                                       f"Pool {pool}: each bar is one strategy; segments are the share of queries routed to each model (%)."))
    return sec


def efficiency_section(res: pd.DataFrame) -> Section:
    sec = Section("quality-efficiency", "Quality vs efficiency")
    for pool, df in res.groupby("pool", sort=False):
        col, label = efficiency_column(df)
        if col not in df or df[col].isna().all():
            sec.blocks.append(Text(text=f"Pool {pool}: neither latency nor response length is available; no figure."))
            continue
        sec.blocks.append(scatter_figure(df.sort_values("avg_quality", ascending=False, kind="mergesort"), str(pool), f"fig-scatter-{_slug(pool)}"))
    return sec


def _frontier_cost_column(fr: pd.DataFrame) -> str | None:
    cands = [c for c in fr.columns if c.startswith("avg_") and c != "avg_quality" and "_ci_" not in c and pd.api.types.is_numeric_dtype(fr[c])]
    for pref in ("avg_latency_s", "avg_response_chars"):
        if pref in cands and fr[pref].notna().any():
            return pref
    return next((c for c in cands if fr[c].notna().any()), None)


def frontier_blocks(fr: pd.DataFrame, res: pd.DataFrame | None) -> list[Any]:
    blocks: list[Any] = []
    cost = _frontier_cost_column(fr)
    if cost and "avg_quality" in fr:
        pools = list(dict.fromkeys(fr["pool"])) if "pool" in fr else [""]
        for pool in pools:
            blocks.append(frontier_figure(fr, res, pool, cost, f"fig-frontier-{_slug(pool)}"))
        if cost == "avg_response_chars":
            blocks.append(Text(text="Cost here is the average answer length in characters, a proxy, not a time."))
    blocks.append(generic_table(fr, "table-frontier", "Cost-quality frontier points.", link="tables/frontier.csv"))
    return blocks


def tune_heatmap_blocks(th: pd.DataFrame) -> list[Any]:
    """Heatmaps when the table has two parameter columns and a score column; else a table."""
    blocks: list[Any] = []
    score = next((c for c in SCORE_COLUMNS if c in th.columns), None)
    if score is None:
        numeric = [c for c in th.columns if pd.api.types.is_numeric_dtype(th[c])]
        score = numeric[-1] if numeric else None
    groups = [c for c in th.columns if c in GROUP_COLUMNS]
    params = [c for c in th.columns if c != score and c not in groups and not c.endswith(("_std", "_sd", "_ci_low", "_ci_high", "_se"))
              and not c.startswith(("n_", "std_"))]
    if score is not None and len(params) == 2 and pd.api.types.is_numeric_dtype(th[score]):
        keys = [tuple()] if not groups else list(dict.fromkeys(map(tuple, th[groups].astype(str).to_numpy())))
        for key in keys[:12]:
            d = th
            for g, v in zip(groups, key):
                d = d[d[g].astype(str) == v]
            mat = d.pivot_table(index=params[0], columns=params[1], values=score, aggfunc="mean")
            label = ", ".join(f"{g}={v}" for g, v in zip(groups, key))
            lo, hi = float(np.nanmin(mat.to_numpy())), float(np.nanmax(mat.to_numpy()))
            blocks.append(heatmap_figure(mat, f"Tuning: {score}" + (f" ({label})" if label else ""), params[1], params[0],
                                         f"fig-tune-heatmap-{_slug(label or 'all')}",
                                         f"Cross-validated {score} over {params[0]} x {params[1]}" + (f" for {label}" if label else "") + ".",
                                         vmin=lo, vmax=hi if hi > lo else lo + 1e-9, fmt=".3f", cbar_label=score))
    blocks.append(generic_table(th, "table-tune-heatmap", "Tuning grid scores.", link="tables/tune_heatmap.csv"))
    return blocks


def optional_sections(tables: Path, res: pd.DataFrame | None) -> list[Section]:
    out: list[Section] = []
    tuned = _read(tables, "tuned_results.csv")
    if tuned is not None and len(tuned):
        sec = Section("tuned", "Tuned selectors (held-out)")
        sec.blocks.append(Text(text="Selectors with hyper-parameters chosen by cross-validation inside the training split, evaluated on the same held-out queries."))
        if {"pool", "strategy", "kind", "avg_quality"} <= set(tuned.columns):
            sec.blocks += results_blocks(tuned, "tuned", "tuned_results.csv", "Tuned results")
        else:
            sec.blocks.append(generic_table(tuned, "table-tuned", "Tuned results.", link="tables/tuned_results.csv"))
        out.append(sec)
    fr = _read(tables, "frontier.csv")
    if fr is not None and len(fr):
        out.append(Section("frontier", "Cost-quality frontier", frontier_blocks(fr, res)))
    aiq = _read(tables, "aiq.csv")
    if aiq is not None:
        out.append(Section("aiq", "AIQ: area under the cost-quality curve", [generic_table(aiq, "table-aiq", "AIQ per router.", link="tables/aiq.csv")]))
    th = _read(tables, "tune_heatmap.csv")
    if th is not None and len(th):
        out.append(Section("tune-heatmap", "Hyper-parameter tuning", tune_heatmap_blocks(th)))
    cv = _read(tables, "cv_results.csv")
    if cv is not None:
        out.append(Section("cv-results", "Cross-validation results",
                           [generic_table(cv, "table-cv-results", "Cross-validation results (first rows).", link="tables/cv_results.csv", max_rows=20)]))
    rc = _read(tables, "router_config_results.csv")
    if rc is not None:
        out.append(Section("router-config", "Per-decision routing config",
                           [generic_table(rc, "table-router-config", "Per-decision routing config evaluated offline.", link="tables/router_config_results.csv")]))
    return out


def _kv_table(id: str, caption: str, items: list[tuple[str, str]], head: tuple[str, str] = ("Item", "Value"), cls: str = "mono") -> Table:
    return Table(id, caption, list(head), [[(k, "name"), (v, cls)] for k, v in items])


def provenance_section(manifest: dict[str, Any], csvs: list[str], tables_dir: Path) -> Section:
    sec = Section("provenance", "Data provenance and parameters")
    if not manifest.get("stages") and not manifest.get("git_commit"):
        sec.blocks.append(Text(text="This run folder has no manifest.json: provenance is unknown."))
    stages = manifest.get("stages", {})
    prep = stages.get("prepare", {})
    dlog = prep.get("data") or {}
    if dlog:
        sec.blocks.append(Text(heading="Input data"))
        inputs = sorted((dlog.get("inputs") or {}).items())
        sec.blocks.append(Table("prov-inputs", "Input files read by the prepare stage, with SHA-256.", ["File", "SHA-256"],
                                [[(str(k), "mono"), (str(v), "mono")] for k, v in inputs]))
        counts = [("records read", fmt_generic(dlog.get("n_records_read")))]
        for key in ("n_queries", "n_train", "n_test"):
            if key in prep:
                counts.append((key.replace("n_", "queries: ") if key != "n_queries" else "queries kept", fmt_generic(prep[key])))
        for kind in ("dropped", "repaired"):
            for reason, n in sorted((dlog.get(kind) or {}).items()):
                counts.append((f"{kind}: {reason}", fmt_generic(n)))
        sec.blocks.append(_kv_table("prov-counts", "Records read, kept, dropped and repaired (by reason).", counts, ("Count", "Records"), cls="num"))
        outputs = sorted((prep.get("outputs") or {}).items())
        if outputs:
            sec.blocks.append(_kv_table("prov-outputs", "Prepared data files, with SHA-256.", [(k, str(v)) for k, v in outputs], ("File", "SHA-256")))
    order = [s for s in STAGES if s in stages] + sorted(s for s in stages if s not in STAGES)
    if order:
        sec.blocks.append(Text(heading="Parameters of every stage"))
    for stage in order:
        entry = stages[stage] or {}
        params = mask_secrets(entry.get("params") or {})
        items = [(str(k), _param_text(v)) for k, v in sorted(params.items())]
        extra = [f"params hash {entry['params_hash']}"] if entry.get("params_hash") else []
        if entry.get("data_hash"):
            extra.append(f"data hash {entry['data_hash']}")
        sec.blocks.append(_kv_table(f"prov-params-{_slug(stage)}", f"Stage {stage}" + (f" ({'; '.join(extra)})" if extra else "") + ".",
                                    items, ("Parameter", "Value")))
    versions = sorted((manifest.get("package_versions") or {}).items())
    if versions or manifest.get("git_commit"):
        sec.blocks.append(Text(heading="Software"))
        items = [("git commit", str(manifest.get("git_commit", "unknown")))] + [(k, str(v)) for k, v in versions]
        sec.blocks.append(_kv_table("prov-software", "Git commit and package versions.", items, ("Package", "Version")))
    sec.blocks.append(Text(heading="Tables"))
    rows = []
    for name in csvs:
        df = _read(tables_dir, name)
        shape = f"{len(df)} rows x {len(df.columns)} columns" if df is not None else ""
        rows.append([(name, "link"), (shape, ""), ("shown above" if name in KNOWN_TABLES else "not rendered; linked only", "")])
    sec.blocks.append(Table("prov-tables", "Every CSV of the run folder, copied byte-identical into tables/ beside this page.",
                            ["File", "Size", "In this report"], rows))
    return sec


# --------------------------------------------------------------------------- assembly


def collect(run_dir: str) -> list[Section]:
    """All sections of the report for a run folder (tables built, figures drawn)."""
    paths = run_paths(run_dir)
    tables = paths["tables"]
    _style()
    res = _read(tables, "selection_results.csv")
    sections: list[Section] = []
    if res is not None and len(res):
        sections.append(headline_section(res))
    else:
        sections.append(Section("headline", "Headline", [Text(text="No selection_results.csv in this run folder: run the evaluate stage first.")]))
    pc = _read(tables, "per_category.csv")
    if pc is not None and len(pc):
        sections.append(per_category_section(pc, res))
    sh = _read(tables, "selection_share.csv")
    if sh is not None and len(sh):
        sections.append(share_section(sh, res))
    if res is not None and len(res):
        sections.append(efficiency_section(res))
    sections += optional_sections(tables, res)
    csvs = sorted(p.name for p in tables.glob("*.csv")) if tables.is_dir() else []
    others = [c for c in csvs if c not in KNOWN_TABLES]
    if others:
        sections.append(Section("other-tables", "Other tables",
                                [Text(text="Tables of this run folder that the report does not render; open them from the links."),
                                 Text(links=others)]))
    manifest = _read_manifest(paths["manifest"])
    sections.append(provenance_section(manifest, csvs, tables))
    return sections


def _read_manifest(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {"stages": {}}


def report_sections(run_dir: str) -> list[str]:
    """Titles of the sections the report of ``run_dir`` shows (draws the figures)."""
    return [s.title for s in collect(run_dir)]


def render(sections: list[Section], run_dir: str, manifest: dict[str, Any]) -> str:
    """The HTML page for ``sections``."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mlsel.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    res_stage = manifest.get("stages", {})
    subtitle = []
    if "prepare" in res_stage:
        p = res_stage["prepare"].get("params", {})
        subtitle.append(f"source {p.get('source', '?')}")
        if "n_queries" in res_stage["prepare"]:
            subtitle.append(f"{res_stage['prepare']['n_queries']} queries ({res_stage['prepare'].get('n_test', '?')} held out)")
    if manifest.get("git_commit"):
        subtitle.append(f"commit {str(manifest['git_commit'])[:12]}")
    return env.get_template(TEMPLATE).render(
        sections=sections, run_name=Path(str(run_dir)).name, subtitle=" · ".join(subtitle),
    )


def build_report(run_dir: str, report_dir: str, seed: int = 42, **extra: Any) -> Path:
    """Build ``<report_dir>/index.html`` and copy ``<run_dir>/tables/*.csv`` to ``<report_dir>/tables/``.

    Parameters
    ----------
    run_dir : the run folder (read only: ``tables/*.csv`` and ``manifest.json``)
    report_dir : output folder, created if missing
    seed : accepted for the common stage signature; nothing in the report is random
    extra : other stage parameters, ignored

    Returns
    -------
    Path of ``index.html``. The same run folder always gives the same bytes.
    CSVs in ``<report_dir>/tables/`` that the run folder does not have are
    removed, so the published tables mirror the run.
    """
    paths = run_paths(run_dir)
    if not paths["root"].is_dir():
        raise FileNotFoundError(f"{paths['root']}: run folder not found; run the earlier stages first")
    out = resolve_path(report_dir)
    out_tables = out / "tables"
    out_tables.mkdir(parents=True, exist_ok=True)
    sections = collect(run_dir)
    html = render(sections, run_dir, _read_manifest(paths["manifest"]))
    sources = sorted(paths["tables"].glob("*.csv")) if paths["tables"].is_dir() else []
    if out_tables.resolve() != paths["tables"].resolve():
        # The published tables mirror the run: a CSV left by an earlier build of
        # another run would sit beside the page without being what it shows.
        names = {p.name for p in sources}
        for stale in sorted(out_tables.glob("*.csv")):
            if stale.name not in names:
                log.info("report: removing %s (not in %s)", stale, paths["tables"])
                stale.unlink()
        for src in sources:
            shutil.copyfile(src, out_tables / src.name)
    index = out / "index.html"
    tmp = index.with_suffix(".tmp")
    tmp.write_bytes(html.encode("utf-8"))
    tmp.replace(index)
    log.info("report: %s (%d sections)", index, len(sections))
    return index
