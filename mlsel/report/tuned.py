"""The tune stage's tables as report blocks: the cost-quality frontier figures and the tuning heatmaps."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlsel.report.blocks import Figure, Text
from mlsel.report.figures import cv_curves_figure, frontier_figure, heatmap_figure
from mlsel.report.tables import fmt_generic, generic_table, slug

GROUP_COLUMNS = ("pool", "router", "selector", "strategy", "kind", "model", "name")
"""Columns that name a group (one heatmap each) in a generic tuning table."""
SCORE_COLUMNS = ("score", "mean_score", "cv_score", "score_mean", "mean_test_score", "avg_quality", "quality", "utility", "mean_utility")
"""Score columns of a generic tuning table, preferred first."""

FRONTIER_COSTS = ("avg_cost_usd", "avg_latency_s", "avg_response_chars", "avg_list_price")
"""The frontier's cost columns, preferred first."""


def _frontier_cost_column(fr: pd.DataFrame) -> str | None:
    """The first cost column with values (:data:`FRONTIER_COSTS`, then any other ``avg_*``), or None."""
    cands = [c for c in fr.columns if c.startswith("avg_") and c != "avg_quality" and "_ci_" not in c and pd.api.types.is_numeric_dtype(fr[c])]
    for pref in FRONTIER_COSTS:
        if pref in cands and fr[pref].notna().any():
            return pref
    return next((c for c in cands if fr[c].notna().any()), None)


def frontier_blocks(fr: pd.DataFrame, res: pd.DataFrame | None) -> list[Any]:
    """Per pool a quality-vs-cost figure (with the cost's unit said in words), then the table; a sentence when no figure can be drawn."""
    blocks: list[Any] = []
    cost = _frontier_cost_column(fr)
    if cost is None or "avg_quality" not in fr:
        blocks.append(Text(text="No frontier figure: " + ("the table has no avg_quality column." if "avg_quality" not in fr else
                                                          "no cost column has a value in this run (no USD cost, latency, answer "
                                                          "length or list price), so quality cannot be drawn against cost.")))
    else:
        pools = list(dict.fromkeys(fr["pool"])) if "pool" in fr else [""]
        for pool in pools:
            blocks.append(frontier_figure(fr, res, pool, cost, f"fig-frontier-{slug(pool)}"))
        if cost == "avg_response_chars":
            blocks.append(Text(text="Cost here is the average answer length in characters, a proxy, not a time."))
        if cost == "avg_list_price":
            blocks.append(Text(text="Cost here is the chosen model's list price per 1M tokens, a proxy (equal token counts assumed), "
                                    "not a per-query cost."))
    blocks.append(generic_table(fr, "table-frontier", "Cost-quality frontier points.", link="tables/frontier.csv"))
    return blocks


def cv_curves_blocks(th: pd.DataFrame) -> list[Figure]:
    """The tune stage's long table as one figure of cross-validation curves per pool (:func:`cv_curves_figure`)."""
    return [cv_curves_figure(th, pool, f"fig-cv-curves-{slug(pool)}") for pool in dict.fromkeys(th["pool"])]


def _tune_stage_heatmaps(th: pd.DataFrame) -> list[Any]:
    """The tune stage's long table (pool, selector, param, param_value, onehot_weight, cv_*): one heatmap of the CV
    utility over the parameter x one-hot weight per pool and selector whose grid varies both."""
    score = "cv_utility_mean" if "cv_utility_mean" in th.columns else "cv_quality_mean"
    out: list[Any] = []
    for (pool, selector, param), d in th.groupby(["pool", "selector", "param"], sort=False):
        if d["param_value"].nunique() < 2 or d["onehot_weight"].nunique() < 2:
            continue
        mat = d.pivot_table(index="param_value", columns="onehot_weight", values=score, aggfunc="mean")
        mat.index = [fmt_generic(v) for v in mat.index]
        label = f"pool={pool}, selector={selector}"
        lo, hi = float(np.nanmin(mat.to_numpy())), float(np.nanmax(mat.to_numpy()))
        out.append(heatmap_figure(mat, f"Tuning {selector} ({pool}): {score}", "onehot_weight", param, f"fig-tune-heatmap-{slug(label)}",
                                  f"Cross-validated {score} over {param} x onehot_weight for {label} (training split only).",
                                  vmin=lo, vmax=hi if hi > lo else lo + 1e-9, fmt=".3f", cbar_label=score))
    return out


def tune_heatmap_blocks(th: pd.DataFrame) -> list[Any]:
    """Heatmaps when the table is the tune stage's (:func:`_tune_stage_heatmaps`) or has two parameter columns and a
    score column; then the table."""
    if {"pool", "selector", "param", "param_value", "onehot_weight"} <= set(th.columns):
        return cv_curves_blocks(th) + _tune_stage_heatmaps(th) + [generic_table(th, "table-tune-heatmap", "Tuning grid scores.", link="tables/tune_heatmap.csv")]
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
                                         f"fig-tune-heatmap-{slug(label or 'all')}",
                                         f"Cross-validated {score} over {params[0]} x {params[1]}" + (f" for {label}" if label else "") + ".",
                                         vmin=lo, vmax=hi if hi > lo else lo + 1e-9, fmt=".3f", cbar_label=score))
    blocks.append(generic_table(th, "table-tune-heatmap", "Tuning grid scores.", link="tables/tune_heatmap.csv"))
    return blocks


