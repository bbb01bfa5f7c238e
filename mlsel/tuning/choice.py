"""Aggregating the CV runs and choosing: per-combination scores, the heatmap, matched operating points, tuned_params.yaml."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlsel.data.costs import COST_UNITS, cost_matrix, fill_missing_cost
from mlsel.metrics.one_se import BEST_SINGLE, CATEGORY_LOOKUP, FOLD_SCORE_COLUMNS, RuleChoice, one_se_rule, per_fold, static_fold_scores
from mlsel.selection.base import best_single_index
from mlsel.selection.registry import ROUTER_PARAM_KEYS, ROUTERS
from mlsel.tuning.cv import PoolData, cv_folds
from mlsel.tuning.grids import CORE_KEYS, HEATMAP_PARAM, params_text

Grids = dict[tuple[str, str], list[dict[str, Any]]]
Chosen = dict[tuple[str, str], int]

CV_COST_COLUMNS = [f"cv_avg_{unit}" for unit in COST_UNITS]
CV_FRONTIER_COLUMNS = ["pool", "router", "cost_lambda", "cv_quality_mean", *CV_COST_COLUMNS]


def _cost_columns(value: float, unit: str | None) -> dict[str, float]:
    """``cv_avg_<unit>`` for every cost unit: ``value`` in the pool's own unit, NaN in the others."""
    return {f"cv_avg_{u}": value if u == unit else np.nan for u in COST_UNITS}
HEATMAP_COLUMNS = ["pool", "selector", "param", "param_value", "onehot_weight", "cv_quality_mean", "cv_quality_std", "cv_utility_mean"]


def _combo_row(pool: str, name: str, i: int, combo: dict[str, Any], r: pd.DataFrame, unit: str | None) -> dict[str, Any]:
    return {"pool": pool, "selector": name, "combo": i, "params": params_text(combo), **combo, "n_fits": int(len(r)),
            "cv_quality_mean": r["quality"].mean(), "cv_quality_std": r["quality"].std(ddof=0),
            "cv_utility_mean": r["utility"].mean(), "cv_utility_std": r["utility"].std(ddof=0),
            **_cost_columns(r["cost"].mean(), unit),
            "cpu_seconds": r["cpu_s"].sum()}


def cv_table(raw: pd.DataFrame, grids: Grids, pools: dict[str, PoolData]) -> tuple[pd.DataFrame, Chosen]:
    """cv_results.csv (one row per pool x selector x combination) and the chosen combination of each.

    The highest mean CV utility wins; ties go to the first in grid order.
    """
    rows, chosen = [], {}
    all_keys: list[str] = []
    for (pool, name), combos in grids.items():
        g = raw[(raw["pool"] == pool) & (raw["selector"] == name)]
        own = []
        for i, combo in enumerate(combos):
            all_keys += [k for k in combo if k not in all_keys]
            own.append(_combo_row(pool, name, i, combo, g[g["combo"] == i], pools[pool].unit))
        chosen[(pool, name)] = max(range(len(combos)), key=lambda i: (own[i]["cv_utility_mean"], -i))
        rows += own
    table = pd.DataFrame(rows)
    table["chosen"] = [chosen[(p, s)] == c for p, s, c in zip(table["pool"], table["selector"], table["combo"])]
    cols = ["pool", "selector", "combo", "params", *all_keys, "n_fits", "cv_quality_mean", "cv_quality_std", "cv_utility_mean",
            "cv_utility_std", *CV_COST_COLUMNS, "cpu_seconds", "chosen"]
    return table[cols], chosen


def cv_sweep(raw: pd.DataFrame, grids: Grids, chosen: Chosen, pools: dict[str, PoolData], lambdas: list[float]) -> pd.DataFrame:
    """cv_frontier.csv: each router's chosen combination swept over the cost weights, CV means."""
    rows = []
    for (pool, name) in grids:
        if name not in ROUTERS:
            continue
        unit = pools[pool].unit
        r = raw[(raw["pool"] == pool) & (raw["selector"] == name) & (raw["combo"] == chosen[(pool, name)])]
        sq = np.array(r["sweep_quality"].tolist()).mean(axis=0)
        sc = np.array(r["sweep_cost"].tolist()).mean(axis=0)
        for lam, q, c in zip(lambdas, sq, sc):
            rows.append({"pool": pool, "router": name, "cost_lambda": lam, "cv_quality_mean": q, **_cost_columns(c, unit)})
    return pd.DataFrame(rows, columns=CV_FRONTIER_COLUMNS)


def heatmap_table(cv: pd.DataFrame, grids: Grids) -> pd.DataFrame:
    """tune_heatmap.csv: per selector's main parameter x one-hot weight, the best CV row over the other keys."""
    heat = []
    for (pool, name) in grids:
        param = HEATMAP_PARAM[name] if name in HEATMAP_PARAM else None
        s = cv[(cv["pool"] == pool) & (cv["selector"] == name)]
        if param not in s or s.empty:
            continue
        top = s.sort_values("cv_utility_mean", ascending=False).groupby([param, "onehot_weight"], sort=True).head(1)
        for _, r in top.sort_values([param, "onehot_weight"]).iterrows():
            heat.append({"pool": pool, "selector": name, "param": param, "param_value": r[param], "onehot_weight": r["onehot_weight"],
                         "cv_quality_mean": r["cv_quality_mean"], "cv_quality_std": r["cv_quality_std"],
                         "cv_utility_mean": r["cv_utility_mean"]})
    return pd.DataFrame(heat, columns=HEATMAP_COLUMNS)


def _fold_series(d: PoolData, folds: pd.DataFrame, values: np.ndarray) -> pd.Series:
    """A per-training-query value's mean on each CV validation fold, indexed by (cv_seed, fold)."""
    v = pd.Series(values, index=d.tr.query_ids)
    f = folds[folds["pool"] == d.name]
    return f.assign(value=v.reindex(f["query_id"].to_numpy()).to_numpy()).groupby(["cv_seed", "fold"])["value"].mean()


def cv_mean(d: PoolData, folds: pd.DataFrame | None, values: np.ndarray) -> float:
    """A per-training-query value as the CV scores a strategy: the mean over the CV folds of its mean on each validation fold.

    Without a fold table (or for a pool not in it), its mean over the training split.
    """
    if folds is None or not (folds["pool"] == d.name).any():
        return float(pd.Series(values).mean())  # NaN skipped, as over the folds
    return float(_fold_series(d, folds, values).mean())


def cv_single_quality(d: PoolData, folds: pd.DataFrame | None, j: int) -> float:
    """Model ``j``'s quality as the CV scores a strategy (:func:`cv_mean`)."""
    return cv_mean(d, folds, d.tr.quality[:, j])


def operating_points(pools: dict[str, PoolData], sweep: pd.DataFrame, router_names: list[str], quality_weight: float,
                     match_ratio: float, folds: pd.DataFrame | None = None) -> dict[tuple[str, str], dict[str, Any]]:
    """Matched operating points, chosen on CV only.

    Per pool and router: the cheapest point of its CV sweep (ties: the larger
    cost weight) whose CV quality is at least ``match_ratio`` times the best
    single model's CV quality (best by training utility; scored on the same
    folds as the routers, :func:`cv_single_quality`).
    """
    operating: dict[tuple[str, str], dict[str, Any]] = {}
    for pool, d in pools.items():
        tr = d.tr
        best_j = best_single_index(tr.quality, tr.latency_s, quality_weight)
        target = match_ratio * cv_single_quality(d, folds, best_j)
        for name in router_names:
            s = sweep[(sweep["pool"] == pool) & (sweep["router"] == name)]
            ok = s[s["cv_quality_mean"] >= target - 1e-12]
            if ok.empty or d.unit is None:
                continue
            cost_col = f"cv_avg_{d.unit}"
            pick = ok.sort_values([cost_col, "cost_lambda"], ascending=[True, False]).iloc[0]
            operating[(pool, name)] = {"cost_lambda": float(pick["cost_lambda"]), "cv_quality_mean": float(pick["cv_quality_mean"]),
                                       cost_col: float(pick[cost_col]), "target_cv_quality": target,
                                       "best_single_on_train": d.matrix.models[best_j]}
    return operating


def fold_scores(raw: pd.DataFrame, pools: dict[str, PoolData], n_folds: int, n_seeds: int, seed: int, quality_weight: float,
                min_queries: int) -> pd.DataFrame:
    """cv_fold_scores.csv: every CV fit's scores per fold (``raw`` without the sweeps) and the static candidates' on the
    same folds (:func:`mlsel.metrics.one_se.static_fold_scores`); :data:`mlsel.metrics.one_se.FOLD_SCORE_COLUMNS`."""
    parts = [raw.reindex(columns=FOLD_SCORE_COLUMNS)] if len(raw) else []
    for d in pools.values():
        folds, _ = cv_folds(d, n_folds, n_seeds, seed)
        parts.append(static_fold_scores(d.name, d.tr, folds, seed, quality_weight, min_queries, cost_matrix(d.tr)[0]))
    return pd.concat(parts, ignore_index=True).sort_values(["pool", "selector", "combo", "cv_seed", "fold"], kind="stable",
                                                             ignore_index=True)


def headline_choice(scores: pd.DataFrame, pool: str, names: list[str], chosen: Chosen) -> RuleChoice:
    """The one-standard-error rule over the best single model, the per-category lookup and every tuned selector and router
    (each at its chosen combination), in that order, on one pool's CV fold scores."""
    candidates = {BEST_SINGLE: 0, CATEGORY_LOOKUP: 0, **{n: chosen[(pool, n)] for n in names}}
    return one_se_rule(per_fold(scores[scores["pool"] == pool], candidates))


def rule_point(d: PoolData, scores: pd.DataFrame, raw: pd.DataFrame, folds: pd.DataFrame, chosen: Chosen,
               operating: dict[tuple[str, str], dict[str, Any]], lambdas: list[float], target: float, best_j: int,
               router_names: list[str]) -> tuple[tuple[str, float] | None, RuleChoice | None]:
    """The operating point the one-standard-error rule chooses on CV cost, among the points reaching ``target`` CV quality.

    Candidates, simplest first: the best single model of the training split (``best_j``; the target is a share of its
    CV quality, so it reaches any target up to its own), the per-category lookup if its CV quality reaches ``target``,
    then each router's cheapest CV point that does (``operating``, :func:`operating_points`). A point's utility on a fold
    is minus its mean cost there: the rule keeps the simplest within one standard error of the cheapest. Returns
    ``((candidate, cost weight), the rule's choice)``, the cost weight NaN for a static candidate; ``(None, None)`` for a
    pool without a cost.
    """
    if d.unit is None:
        return None, None
    cost = fill_missing_cost(cost_matrix(d.tr)[0])  # each model's training mean where missing, as the CV charges it
    sc = scores[scores["pool"] == d.name]
    cols = {BEST_SINGLE: -_fold_series(d, folds, cost[:, best_j])}
    lams = {BEST_SINGLE: np.nan}
    if per_fold(sc, {CATEGORY_LOOKUP: 0}, "quality")[CATEGORY_LOOKUP].mean() >= target - 1e-12:
        cols[CATEGORY_LOOKUP] = -per_fold(sc, {CATEGORY_LOOKUP: 0}, "cost")[CATEGORY_LOOKUP]
        lams[CATEGORY_LOOKUP] = np.nan
    for name in router_names:
        op = operating.get((d.name, name))
        if op is None:
            continue
        r = raw[(raw["pool"] == d.name) & (raw["selector"] == name) & (raw["combo"] == chosen[(d.name, name)])]
        k = lambdas.index(op["cost_lambda"])
        cols[name] = -pd.Series([c[k] for c in r["sweep_cost"]], index=pd.MultiIndex.from_frame(r[["cv_seed", "fold"]]))
        lams[name] = float(op["cost_lambda"])
    rule = one_se_rule(pd.DataFrame(cols))
    return (rule.chosen, lams[rule.chosen]), rule


def shared_choice(cv: pd.DataFrame, core: list[str]) -> dict[str, Any]:
    """One ``train:`` section for all pools.

    The feature setting (embedder, onehot_weight, quality_weight) shared by
    the core selectors is the one with the highest mean, over pools and core
    selectors, of each selector's best CV utility at that setting; each
    selector's own keys are then its best at that setting, averaged over pools.
    """
    sub = cv[cv["selector"].isin(core)]
    if sub.empty:
        return {}
    feat = ["embedder", "onehot_weight", "quality_weight"]
    best_at = sub.groupby(["pool", "selector", *feat], sort=False)["cv_utility_mean"].max().reset_index()
    setting = best_at.groupby(feat, sort=False)["cv_utility_mean"].mean().idxmax()
    out: dict[str, Any] = dict(zip(feat, setting))
    at = sub[(sub["embedder"] == setting[0]) & (sub["onehot_weight"] == setting[1]) & (sub["quality_weight"] == setting[2])]
    for name in core:
        s = at[at["selector"] == name]
        if s.empty:
            continue
        mean = s.groupby("params", sort=False)["cv_utility_mean"].mean()
        row = s[s["params"] == mean.idxmax()].iloc[0]
        for key in CORE_KEYS:
            if key in row and pd.notna(row[key]):
                out[key] = row[key]
    return out


def plain(v: Any) -> Any:
    """A numpy scalar or tuple as the plain YAML-safe Python value."""
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, tuple):
        return list(v)
    return v


def tuned_params_doc(cv: pd.DataFrame, grids: Grids, chosen: Chosen, operating: dict[tuple[str, str], dict[str, Any]],
                     pools: dict[str, PoolData], names: list[str], router_names: list[str]) -> dict[str, Any]:
    """tuned_params.yaml's content: ``base`` (if latency was measured), ``train``, ``tune`` and ``pools``."""
    shared = {k: plain(v) for k, v in shared_choice(cv, [n for n in names if n not in ROUTERS]).items()}
    doc: dict[str, Any] = {}
    if any(d.matrix.latency_s is not None for d in pools.values()) and "quality_weight" in shared:
        doc["base"] = {"quality_weight": shared["quality_weight"]}
    shared.pop("quality_weight", None)
    doc["train"] = shared
    first_pool = next(iter(pools))
    doc["tune"] = {}
    for name in router_names:
        combo = grids[(first_pool, name)][chosen[(first_pool, name)]]
        doc["tune"].update({k: plain(v) for k, v in combo.items() if k in ROUTER_PARAM_KEYS[name]})
    doc["pools"] = {}
    for (pool, name), combos in grids.items():
        i = chosen[(pool, name)]
        r = cv[(cv["pool"] == pool) & (cv["selector"] == name) & (cv["combo"] == i)].iloc[0]
        entry = {k: plain(v) for k, v in combos[i].items()}
        entry.update({"cv_quality_mean": round(float(r["cv_quality_mean"]), 6), "cv_quality_std": round(float(r["cv_quality_std"]), 6)})
        doc["pools"].setdefault(pool, {"selectors": {}, "operating_points": {}})["selectors"][name] = entry
    for (pool, name), op in operating.items():
        doc["pools"][pool]["operating_points"][name] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in op.items()}
    return doc
