"""The final evaluation, the only use of the test split: refits, tuned results, frontier and AIQ tables."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from mlsel.data.costs import COST_UNITS, cost_matrix, fill_missing_cost
from mlsel.metrics.evaluate import Strategy, baseline_strategies, evaluate, oracle_proba
from mlsel.metrics.frontier import aiq_table, zero_router
from mlsel.selection.base import best_single_index
from mlsel.selection.cost_aware import CostAwareRouter, fit_selector
from mlsel.selection.peers import PEER_LABELS, PEER_ONEHOT_WEIGHT, PEERS
from mlsel.selection.registry import label, make_selector
from mlsel.tuning.cv import FeatureCache, PoolData, TunePlan
from mlsel.tuning.grids import combo_params

log = logging.getLogger(__name__)

FRONTIER_COLUMNS = ["pool", "kind", "router", "cost_lambda", "avg_quality", *(f"avg_{unit}" for unit in COST_UNITS)]
AIQ_COLUMNS = ["pool", "router", "cost_unit", "n_points", "aiq", "ci_low", "ci_high", "aiq_minus_zero_router",
               "aiq_minus_zero_router_ci_low", "aiq_minus_zero_router_ci_high", "cost_to_match_best_single",
               "best_single_quality", "cost_min", "cost_max"]


def final_task(pool: str, name: str, values: dict[str, Any], combo: dict[str, Any], Xtr: np.ndarray, Xte: np.ndarray,
               quality: np.ndarray, latency: np.ndarray | None, cost: np.ndarray | None, models: list[str], lambdas: list[float],
               op_lambda: float | None) -> dict[str, Any]:
    """Refit one tuned selector on the whole training split; its test choices (and a router's sweep)."""
    sel = make_selector(name, combo_params(values, combo))
    fit_selector(sel, Xtr, quality, latency, models, cost)
    out: dict[str, Any] = {"pool": pool, "name": name, "proba": sel.predict_proba(Xte), "sweep": None, "op_proba": None}
    if isinstance(sel, CostAwareRouter):
        if lambdas:
            out["sweep"] = sel.predict_index_sweep(Xte, lambdas)
        if op_lambda is not None:
            sel.set_params(cost_lambda=op_lambda)
            out["op_proba"] = sel.predict_proba(Xte)
    return out


def peer_task(pool: str, name: str, Xtr: np.ndarray, Xte: np.ndarray, quality: np.ndarray, latency: np.ndarray | None,
              models: list[str], quality_weight: float) -> dict[str, Any]:
    """Fit one peer's published router on the whole training split; its test choices."""
    sel = PEERS[name](quality_weight=quality_weight).fit(Xtr, quality, latency, models=models)
    return {"pool": pool, "name": name, "proba": sel.predict_proba(Xte), "sweep": None, "op_proba": None, "peer": True}


def fit_final(values: dict[str, Any], plan: TunePlan, pools: dict[str, PoolData], chosen_combos: dict[tuple[str, str], dict[str, Any]],
              operating: dict[tuple[str, str], dict[str, Any]], features: FeatureCache, n_jobs: int,
              scheduler: str = "") -> dict[tuple[str, str], dict[str, Any]]:
    """Refit every tuned selector, and fit every peer of ``tune_peer_names``, in parallel (features are built here, once per
    setting); ``{(pool, name): final_task or peer_task output}``.

    The fits run on local joblib workers, or on the Dask cluster at ``scheduler`` (an address).
    """
    from joblib import Parallel, delayed

    from mlsel.tuning.parallel import joblib_backend

    tasks = []
    for pool, d in pools.items():
        cost_tr, _ = cost_matrix(d.tr)
        for name in plan.names:
            combo = chosen_combos[(pool, name)]
            op = operating[(pool, name)]["cost_lambda"] if (pool, name) in operating else None
            emb, ow = combo["embedder"], float(combo["onehot_weight"])
            tasks.append(delayed(final_task)(pool, name, values, combo, features(d.tr, emb, ow), features(d.te, emb, ow), d.tr.quality,
                                             d.tr.latency_s, cost_tr, list(d.models), plan.lambdas if d.unit else [], op))
        for name in values["tune_peer_names"]:  # most peers embed the query text alone: no category one-hot
            ow = PEER_ONEHOT_WEIGHT.get(name, 0.0)
            tasks.append(delayed(peer_task)(pool, name, features(d.tr, plan.embedders[0], ow), features(d.te, plan.embedders[0], ow),
                                            d.tr.quality, d.tr.latency_s, list(d.models), values["quality_weight"]))
    t0 = time.perf_counter()
    with joblib_backend(n_jobs, scheduler) as jobs:
        out = {(o["pool"], o["name"]): o for o in Parallel(n_jobs=jobs)(tasks)}
    log.info("tune: final fits in %.1f s", time.perf_counter() - t0)
    return out


def test_cost(d: PoolData) -> np.ndarray | None:
    """Test-split cost; a missing value takes the model's training mean (:func:`mlsel.data.costs.fill_missing_cost`)."""
    cost_tr, _ = cost_matrix(d.tr)
    cost_te, _ = cost_matrix(d.te)
    if cost_te is not None:
        cost_te = fill_missing_cost(cost_te, reference=cost_tr)
    return cost_te


def _tuned_strategies(d: PoolData, fitted: dict[tuple[str, str], dict[str, Any]], plan: TunePlan,
                      operating: dict[tuple[str, str], dict[str, Any]], cost_te: np.ndarray | None
                      ) -> tuple[list[Strategy], list[dict[str, Any]], dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The tuned selectors' strategies, their frontier rows and the routers' per-query test curves (quality, cost)."""
    te, unit, pool = d.te, d.unit, d.name
    strategies, front, curves_q, curves_c = [], [], {}, {}
    ar = np.arange(len(te))
    for name in plan.names:
        o = fitted[(pool, name)]
        strategies.append(Strategy(label(name, tuned=True), "selector", o["proba"]))
        if o["sweep"] is not None and cost_te is not None:
            curves_q[name] = np.stack([te.quality[ar, s] for s in o["sweep"]])
            curves_c[name] = np.stack([cost_te[ar, s] for s in o["sweep"]])
            for lam, q, c in zip(plan.lambdas, curves_q[name].mean(axis=1), curves_c[name].mean(axis=1)):
                front.append({"pool": pool, "kind": "router", "router": name, "cost_lambda": lam, "avg_quality": q, f"avg_{unit}": c})
            if o["op_proba"] is not None:
                lam = operating[(pool, name)]["cost_lambda"]
                strategies.append(Strategy(f"{name.upper()} (tuned, matched lambda={lam:g})", "selector", o["op_proba"]))
        elif cost_te is not None:
            idx = o["proba"].argmax(axis=1)
            front.append({"pool": pool, "kind": "selector", "router": name, "cost_lambda": np.nan,
                          "avg_quality": float(te.quality[ar, idx].mean()), f"avg_{unit}": float(cost_te[ar, idx].mean())})
    return strategies, front, curves_q, curves_c


def _single_and_zero_router(d: PoolData, cost_te: np.ndarray) -> list[dict[str, Any]]:
    """Frontier rows of the single models and the zero router (their upper hull)."""
    pool, unit, front = d.name, d.unit, []
    sq, sc = d.te.quality.mean(axis=0), cost_te.mean(axis=0)
    for j, model in enumerate(d.models):
        front.append({"pool": pool, "kind": "single", "router": f"Always {model}", "cost_lambda": np.nan,
                      "avg_quality": float(sq[j]), f"avg_{unit}": float(sc[j])})
    hc, hq = zero_router(sc, sq)
    for c, q in zip(hc, hq):
        front.append({"pool": pool, "kind": "zero_router", "router": "Zero router", "cost_lambda": np.nan, "avg_quality": q, f"avg_{unit}": c})
    return front


def evaluate_pool(d: PoolData, fitted: dict[tuple[str, str], dict[str, Any]], plan: TunePlan,
                  operating: dict[tuple[str, str], dict[str, Any]], p: Any) -> tuple[pd.DataFrame, list[dict[str, Any]], pd.DataFrame | None]:
    """One pool's tuned results table, frontier rows and AIQ table (None without a cost)."""
    cost_te = test_cost(d)
    strategies = [Strategy("Oracle (best possible)", "oracle", oracle_proba(d.te))]
    tuned, front, curves_q, curves_c = _tuned_strategies(d, fitted, plan, operating, cost_te)
    baselines = baseline_strategies(d.tr, d.te, p.quality_weight, p.lookup_min_queries)
    peers = [Strategy(PEER_LABELS[name], "peer", fitted[(d.name, name)]["proba"]) for name in p.tune_peer_names]
    strategies += tuned + peers + baselines
    best_j = best_single_index(d.tr.quality, d.tr.latency_s, p.quality_weight)
    results = evaluate(d.te, strategies, d.name, n_bootstrap=p.tune_n_bootstrap, seed=p.seed)["results"]
    if cost_te is None:
        return results, front, None
    front += _single_and_zero_router(d, cost_te)
    aiq = aiq_table(d.name, d.te.quality, cost_te, curves_q, curves_c, best_j, n_bootstrap=p.tune_n_bootstrap, seed=p.seed)
    aiq.insert(2, "cost_unit", d.unit)
    return results, front, aiq


def final_tables(p: Any, plan: TunePlan, pools: dict[str, PoolData], fitted: dict[tuple[str, str], dict[str, Any]],
                 operating: dict[tuple[str, str], dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """tuned_results.csv, frontier.csv and aiq.csv over all pools."""
    results, front, aiqs = [], [], []
    for d in pools.values():
        r, f, a = evaluate_pool(d, fitted, plan, operating, p)
        results.append(r)
        front += f
        if a is not None:
            aiqs.append(a)
    tuned = pd.concat(results, ignore_index=True)
    front_df = pd.DataFrame(front).reindex(columns=FRONTIER_COLUMNS)
    aiq_df = pd.concat(aiqs, ignore_index=True) if aiqs else pd.DataFrame(columns=AIQ_COLUMNS)
    return tuned, front_df, aiq_df
