"""The final evaluation, the only use of the test split: refits, tuned results, frontier and AIQ tables."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlsel.data.costs import COST_UNITS, cost_matrix, fill_missing_cost
from mlsel.metrics.evaluate import Strategy, baseline_strategies, evaluate, oracle_proba
from mlsel.metrics.frontier import aiq_table, zero_router
from mlsel.metrics.latency import PREDICTION_COLUMNS, latency_prediction
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


@dataclass(frozen=True)
class FitInputs:
    """What a final fit of one pool learns from and predicts on: the features of the whole training split (``Xtr``)
    and of the test split (``Xte``) for one feature setting, and the training outcomes."""

    pool: str
    Xtr: np.ndarray
    Xte: np.ndarray
    quality: np.ndarray
    latency: np.ndarray | None
    cost: np.ndarray | None
    models: list[str]


@dataclass(frozen=True)
class FinalFit:
    """One final fit's choices on the test split (a :func:`final_task` or :func:`peer_task` result)."""

    pool: str
    name: str
    proba: np.ndarray
    """Choice distribution (n_test, m)."""
    sweep: np.ndarray | None = None
    """A cost-aware router's model index per test query for each cost weight of the plan, (n_lambdas, n_test); else None."""
    op_proba: np.ndarray | None = None
    """A cost-aware router's choice distribution at its CV operating point's cost weight; else None."""
    peer: bool = False
    """A peer's published router (:mod:`mlsel.selection.peers`) rather than a tuned selector."""
    cost_pred: np.ndarray | None = None
    """A cost-aware router's predicted cost of every model for each test query (n_test, m), in the pool's cost unit
    (:meth:`mlsel.selection.cost_aware.CostAwareRouter.predicted_cost`); else None."""
    selector: Any = None
    """The fitted selector itself for those the router runtime can run (:data:`RUNTIME_SELECTORS`), saved by the tune
    stage for the ship stage to export; else None."""


RUNTIME_SELECTORS = ("knn", "kmeans", "svm")
"""The selectors the router runtime has a model file for (:data:`mlsel.deploy.routing_config.ALGORITHMS`)."""

Fitted = dict[tuple[str, str], FinalFit]
"""Every final fit, by (pool, selector or peer name)."""


def final_task(inputs: FitInputs, name: str, values: dict[str, Any], combo: dict[str, Any], *, lambdas: list[float],
               op_lambda: float | None) -> FinalFit:
    """Refit one tuned selector (``values`` with its chosen ``combo``) on the whole training split; its test choices (and
    a router's sweep over ``lambdas`` and choices at ``op_lambda``)."""
    sel = make_selector(name, combo_params(values, combo))
    fit_selector(sel, inputs.Xtr, inputs.quality, inputs.latency, inputs.models, inputs.cost)
    proba, sweep, op_proba, cost_pred = sel.predict_proba(inputs.Xte), None, None, None
    if isinstance(sel, CostAwareRouter):
        cost_pred = sel.predicted_cost(inputs.Xte)
        if lambdas:
            sweep = sel.predict_index_sweep(inputs.Xte, lambdas)
        if op_lambda is not None:
            sel.set_params(cost_lambda=op_lambda)
            op_proba = sel.predict_proba(inputs.Xte)
    return FinalFit(inputs.pool, name, proba, sweep, op_proba, cost_pred=cost_pred, selector=sel if name in RUNTIME_SELECTORS else None)


PEER_QUALITY_WEIGHT = 1.0
"""The utility weight every peer is fitted with: quality alone, its sources' target, whatever the run's ``quality_weight``
(a peer does not trade quality for the measured latency)."""


def peer_task(inputs: FitInputs, name: str) -> FinalFit:
    """Fit one peer's published router on the whole training split, on quality alone (:data:`PEER_QUALITY_WEIGHT`); its
    test choices."""
    sel = PEERS[name](quality_weight=PEER_QUALITY_WEIGHT).fit(inputs.Xtr, inputs.quality, inputs.latency, models=inputs.models)
    return FinalFit(inputs.pool, name, sel.predict_proba(inputs.Xte), peer=True)


def _fit_inputs(d: PoolData, features: FeatureCache, embedder: str, onehot_weight: float, cost: np.ndarray | None) -> FitInputs:
    """Pool ``d``'s final-fit inputs with the features of one setting (``cost``: the training cost, or None)."""
    return FitInputs(d.name, features(d.tr, embedder, onehot_weight), features(d.te, embedder, onehot_weight), d.tr.quality,
                     d.tr.latency_s, cost, list(d.models))


PEER_WEIGHT = {"routerbench_mlp": 10.0, "embedllm_mf": 5.0, "llmrouter_mlp": 4.0, "llmrouter_mf": 3.0, "llmrouter_svm": 3.0,
               "hiershrink": 2.0, "avengers_pro": 1.5}
"""Relative CPU time of each peer's fit (measured, ``benchmarks/results/tune_profile.md``; others 1): fits start longest
first. No result depends on it."""


def peer_calls(values: dict[str, Any], plan: TunePlan, pools: dict[str, PoolData], features: FeatureCache) -> list[Any]:
    """Every peer fit of ``tune_peer_names`` for every pool, as ``joblib.delayed`` calls of :func:`peer_task`, longest
    first (:data:`PEER_WEIGHT`). No CV choice feeds them, so they can run beside the CV."""
    from joblib import delayed

    calls = []
    for d in pools.values():
        for name in values["tune_peer_names"]:  # most peers embed the query text alone: no category one-hot
            inputs = _fit_inputs(d, features, plan.embedders[0], PEER_ONEHOT_WEIGHT.get(name, 0.0), None)
            calls.append((PEER_WEIGHT.get(name, 1.0), delayed(peer_task)(inputs, name)))
    return [c for _, c in sorted(calls, key=lambda wc: -wc[0])]


def fit_final(values: dict[str, Any], plan: TunePlan, pools: dict[str, PoolData], chosen_combos: dict[tuple[str, str], dict[str, Any]],
              operating: dict[tuple[str, str], dict[str, Any]], features: FeatureCache, n_jobs: int, scheduler: str = "",
              peers: Fitted | None = None) -> Fitted:
    """Refit every tuned selector, and fit every peer of ``tune_peer_names``, in parallel (features are built here, once per
    setting); ``{(pool, name): final_task or peer_task result}``.

    ``peers``: the peers' fits already made (:func:`peer_calls`, run beside the CV); then only the selectors are fitted
    here. The fits run on local joblib workers, or on the Dask cluster at ``scheduler`` (an address).
    """
    from joblib import Parallel, delayed

    from mlsel.tuning.parallel import joblib_backend

    tasks = []
    for pool, d in pools.items():
        cost_tr, _ = cost_matrix(d.tr)
        for name in plan.names:
            combo = chosen_combos[(pool, name)]
            op = operating[(pool, name)]["cost_lambda"] if (pool, name) in operating else None
            inputs = _fit_inputs(d, features, combo["embedder"], float(combo["onehot_weight"]), cost_tr)
            tasks.append(delayed(final_task)(inputs, name, values, combo, lambdas=plan.lambdas if d.unit else [], op_lambda=op))
    if peers is None:
        tasks += peer_calls(values, plan, pools, features)
    t0 = time.perf_counter()
    with joblib_backend(n_jobs, scheduler) as jobs:
        out = {(o.pool, o.name): o for o in Parallel(n_jobs=jobs)(tasks)}
    log.info("tune: final fits in %.1f s", time.perf_counter() - t0)
    return out if peers is None else {**out, **peers}


def test_cost(d: PoolData) -> np.ndarray | None:
    """Test-split cost; a missing value takes the model's training mean (:func:`mlsel.data.costs.fill_missing_cost`)."""
    cost_tr, _ = cost_matrix(d.tr)
    cost_te, _ = cost_matrix(d.te)
    if cost_te is not None:
        cost_te = fill_missing_cost(cost_te, reference=cost_tr)
    return cost_te


@dataclass(frozen=True)
class TunedStrategies:
    """One pool's tuned selectors on the test split, as ``_tuned_strategies`` finds them."""

    strategies: list[Strategy]
    """Each tuned selector, and each router at its CV operating point."""
    frontier: list[dict[str, Any]]
    """frontier.csv rows: each router per cost weight, each other selector once (none without a cost)."""
    curve_quality: dict[str, np.ndarray]
    """Per router: test quality per cost weight and query, (n_lambdas, n_test)."""
    curve_cost: dict[str, np.ndarray]
    """Per router: test cost per cost weight and query, (n_lambdas, n_test)."""


def _tuned_strategies(d: PoolData, fitted: Fitted, plan: TunePlan, operating: dict[tuple[str, str], dict[str, Any]],
                     cost_te: np.ndarray | None) -> TunedStrategies:
    """The tuned selectors' strategies, their frontier rows and the routers' per-query test curves (quality, cost)."""
    te, unit, pool = d.te, d.unit, d.name
    strategies, front, curves_q, curves_c = [], [], {}, {}
    ar = np.arange(len(te))
    for name in plan.names:
        o = fitted[(pool, name)]
        strategies.append(Strategy(label(name, tuned=True), "selector", o.proba))
        if o.sweep is not None and cost_te is not None:
            curves_q[name] = np.stack([te.quality[ar, s] for s in o.sweep])
            curves_c[name] = np.stack([cost_te[ar, s] for s in o.sweep])
            for lam, q, c in zip(plan.lambdas, curves_q[name].mean(axis=1), curves_c[name].mean(axis=1)):
                front.append({"pool": pool, "kind": "router", "router": name, "cost_lambda": lam, "avg_quality": q, f"avg_{unit}": c})
            if o.op_proba is not None:
                lam = operating[(pool, name)]["cost_lambda"]
                strategies.append(Strategy(f"{name.upper()} (tuned, matched lambda={lam:g})", "selector", o.op_proba))
        elif cost_te is not None:
            idx = o.proba.argmax(axis=1)
            front.append({"pool": pool, "kind": "selector", "router": name, "cost_lambda": np.nan,
                          "avg_quality": float(te.quality[ar, idx].mean()), f"avg_{unit}": float(cost_te[ar, idx].mean())})
    return TunedStrategies(strategies, front, curves_q, curves_c)


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


def evaluate_pool(d: PoolData, fitted: Fitted, plan: TunePlan,
                  operating: dict[tuple[str, str], dict[str, Any]], p: Any) -> tuple[pd.DataFrame, list[dict[str, Any]], pd.DataFrame | None]:
    """One pool's tuned results table, frontier rows and AIQ table (None without a cost)."""
    cost_te = test_cost(d)
    strategies = [Strategy("Oracle (best possible)", "oracle", oracle_proba(d.te))]
    tuned = _tuned_strategies(d, fitted, plan, operating, cost_te)
    baselines = baseline_strategies(d.tr, d.te, p.quality_weight, p.lookup_min_queries)
    peers = [Strategy(PEER_LABELS[name], "peer", fitted[(d.name, name)].proba) for name in p.tune_peer_names]
    strategies += tuned.strategies + peers + baselines
    best_j = best_single_index(d.tr.quality, d.tr.latency_s, p.quality_weight)
    results = evaluate(d.te, strategies, d.name, n_bootstrap=p.tune_n_bootstrap, seed=p.seed)["results"]
    if cost_te is None:
        return results, tuned.frontier, None
    front = tuned.frontier + _single_and_zero_router(d, cost_te)
    aiq = aiq_table(d.name, d.te.quality, cost_te, tuned.curve_quality, tuned.curve_cost, best_j, n_bootstrap=p.tune_n_bootstrap,
                    seed=p.seed)
    aiq.insert(2, "cost_unit", d.unit)
    return results, front, aiq


def final_tables(p: Any, plan: TunePlan, pools: dict[str, PoolData], fitted: Fitted,
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


def latency_predictions(pools: dict[str, PoolData], fitted: Fitted, plan: TunePlan, replicate: pd.DataFrame) -> pd.DataFrame:
    """Per pool whose cost axis is the measured latency: how well each tuned router's per-query latency prediction repeats
    in the other run (:func:`mlsel.metrics.latency.latency_prediction`); no rows for the other pools."""
    parts = []
    for pool, d in pools.items():
        if d.unit != "latency_s":
            continue
        predictions = {label(name, tuned=True): fitted[(pool, name)].cost_pred for name in plan.names
                       if fitted[(pool, name)].cost_pred is not None}
        parts.append(latency_prediction(pool, d.tr, d.te, replicate, predictions))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PREDICTION_COLUMNS)
