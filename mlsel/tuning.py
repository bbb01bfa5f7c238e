"""Tuning by cross-validation inside the training split, then one held-out evaluation.

:func:`tune_selectors` is the tune stage (notebook ``40_tune_selectors``):

1. **Cross-validation, training split only.** The training queries of each
   pool are split K-fold by query (:func:`mlsel.data.outcomes.kfold_queries`, stratified
   by category), repeated over seeds ``seed, seed + 1, ...``. Every parameter
   combination of a named grid (:data:`GRIDS`) is fitted on the K-1 folds and
   scored on the held-out fold. Tasks run in parallel with joblib behind a
   tqdm progress bar. The test split is not read here at all.
2. **Choice.** Per pool and selector, the combination with the highest mean
   CV utility (the user's ``quality_weight``; quality where no latency was
   measured) wins; ties go to the first in grid order. For every router the
   *matched operating point* is also chosen on CV: the largest cost weight of
   the sweep whose CV quality is at least ``tune_match_quality_ratio`` times
   the best single model's CV quality (the best single model is the one with
   the highest mean training utility; its CV quality is its mean over the
   training queries).
3. **Final evaluation, the only use of the test split.** Each tuned selector
   is refitted on the whole training split and evaluated on the test split
   with :func:`mlsel.metrics.evaluate.evaluate` beside the exact baselines (oracle,
   best single chosen on train, always-X, expected random). Routers are also
   swept over ``tune_cost_lambdas`` on the test queries (a fixed list, not
   tuned) to draw their cost-quality curves and compute AIQ against the zero
   router (:mod:`mlsel.frontier`).

Outputs (fixed names)
---------------------
``<run_dir>/tune/cv_results.csv``
    One row per pool x selector x parameter combination: ``pool, selector,
    combo, params`` (compact ``key=value; ...``), one column per tuned key
    (``embedder, onehot_weight, quality_weight, knn_k, ...``; empty where the
    selector does not read it), ``n_fits`` (folds x seeds), ``cv_quality_mean,
    cv_quality_std, cv_utility_mean, cv_utility_std`` (std over the folds and
    seeds), ``cv_avg_latency_s`` or ``cv_avg_response_chars`` (mean cost of the
    chosen answers; the other is empty), ``cpu_seconds`` (CPU time of its fits
    and predictions summed over folds; a fit shared by combinations that differ
    only in prediction-time parameters is counted once, in the first),
    ``chosen`` (bool).
``<run_dir>/tune/cv_frontier.csv``
    Routers only, their chosen combination: ``pool, router, cost_lambda,
    cv_quality_mean, cv_avg_latency_s, cv_avg_response_chars``.
``<run_dir>/tune/cv_folds.csv``
    ``pool, query_id, cv_seed, fold``: which training query was in which
    validation fold (every id is a training-split query).
``<run_dir>/tune/tuned_params.yaml``
    params.yaml-shaped: ``train:`` (one set of core-selector values for all
    pools, see :func:`_shared_choice`), ``tune:`` (router values), and
    ``pools:`` (per pool and selector: the chosen values with their CV scores,
    plus ``operating_points``). The user's params.yaml is never written.
``<run_dir>/tables/tuned_results.csv``
    The columns of ``selection_results.csv`` (:func:`mlsel.metrics.evaluate.evaluate`);
    strategies ``"<NAME> (tuned)"`` and, for routers, ``"<NAME> (tuned,
    matched lambda=<x>)"``, beside the baselines.
``<run_dir>/tables/frontier.csv``
    ``pool, kind, router, cost_lambda, avg_quality, avg_latency_s,
    avg_response_chars`` on the test queries; ``kind`` is ``router`` (one row
    per cost weight), ``selector`` (tuned core selectors, one point),
    ``single`` (always one model) or ``zero_router`` (the hull vertices of the
    single models); ``cost_lambda`` is empty for non-routers.
``<run_dir>/tables/aiq.csv``
    :func:`mlsel.metrics.frontier.aiq_table` per pool plus ``cost_unit``
    (``latency_s`` or ``response_chars``): ``pool, router, n_points, aiq,
    ci_low, ci_high, aiq_minus_zero_router (+ _ci_low, _ci_high),
    cost_to_match_best_single, best_single_quality, cost_min, cost_max``.
``<run_dir>/tables/tune_heatmap.csv``
    Heatmap data, CV only: ``pool, selector, param, param_value,
    onehot_weight, cv_quality_mean, cv_quality_std, cv_utility_mean``: for
    each selector's main parameter (:data:`HEATMAP_PARAM`, e.g. ``knn_k``) x
    the category one-hot weight, the best CV score over the remaining
    parameters.

Cost is measured latency (s) where the data has it, else the labelled proxy
``response_chars``; with neither, frontier and AIQ tables are empty.
"""

from __future__ import annotations

import itertools
import logging
import time
from typing import Any

import numpy as np
import pandas as pd
import yaml
from mlsel.data.outcomes import OutcomeMatrix, data_hash, kfold_queries, load_prepared, pool_matrix, split_masks
from mlsel.features import Embedder, build_features
from mlsel.metrics.evaluate import Strategy, baseline_strategies, evaluate, oracle_proba
from mlsel.metrics.frontier import aiq_table, zero_router
from mlsel.paths import ConfigError, params_hash, run_paths, update_manifest, write_csv
from mlsel.selection.base import Selector, utility
from mlsel.selection.cost_aware import CostAwareRouter, ROUTERS, ROUTER_PARAM_KEYS, fit_selector
from mlsel.selection.registry import make_selector


log = logging.getLogger(__name__)

DEFAULT_ROUTERS = ["knn_reg", "mlp", "logreg", "scoreboard"]
DEFAULT_COST_LAMBDAS = [0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 100.0]

GRIDS: dict[str, dict[str, Any]] = {
    # The main job: <= ~4 minutes on 2 cores for MMLU-Pro (9.3k training queries), both pools.
    "default": {
        "onehot_weight": [1.0],
        "quality_weight": [0.5, 0.9, 1.0],  # searched only where latency was measured
        "selectors": {
            "knn": {"onehot_weight": [0.0, 1.0], "knn_k": [50, 200]},
            "kmeans": {"kmeans_num_clusters": [8, 16]},
            "svm": {"svm_kernel": ["rbf"], "svm_gamma": [1.0], "svm_c": [1.0]},
            # k, shrink and weights are prediction-time parameters: one fit per fold serves them all.
            "knn_reg": {"onehot_weight": [0.5, 1.0], "knn_reg_k": [100, 200, 400], "knn_reg_weights": ["distance"], "knn_reg_shrink": [0.0, 100.0]},
            "mlp": {"mlp_hidden": [128], "mlp_alpha": [10.0]},
            "logreg": {"logreg_c": [0.01, 0.1]},
            # top_p and alpha are prediction-time parameters.
            "scoreboard": {"scoreboard_clusters": [20, 60], "scoreboard_top_p": [1, 4], "scoreboard_alpha": [1.0]},
        },
    },
    # Smoke runs: seconds on 600 queries.
    "small": {
        "onehot_weight": [0.5, 1.0],
        "quality_weight": [0.9],
        "selectors": {
            "knn": {"knn_k": [5, 20]},
            "kmeans": {"kmeans_num_clusters": [4, 8]},
            "svm": {"onehot_weight": [1.0], "svm_c": [1.0]},
            "knn_reg": {"knn_reg_k": [10, 30]},
            "mlp": {"mlp_hidden": [32], "mlp_alpha": [1e-2]},
            "logreg": {"logreg_c": [1.0]},
            "scoreboard": {"scoreboard_clusters": [8], "scoreboard_top_p": [1, 2]},
        },
    },
}
"""Named search spaces. ``onehot_weight``/``quality_weight`` at the top are shared
by all selectors unless a selector's own grid lists them; the embedders come
from ``tune_embedders`` (default: the train stage's ``embedder``)."""

HEATMAP_PARAM = {
    "knn": "knn_k", "kmeans": "kmeans_num_clusters", "svm": "svm_c", "knn_reg": "knn_reg_k",
    "mlp": "mlp_alpha", "logreg": "logreg_c", "scoreboard": "scoreboard_clusters",
}
"""The parameter each selector's heatmap row varies (against ``onehot_weight``)."""

CORE_KEYS = ("knn_k", "kmeans_num_clusters", "svm_kernel", "svm_gamma", "svm_c")
FEATURE_KEYS = ("embedder", "onehot_weight")


def selector_label(name: str) -> str:
    return f"{name.upper()} (tuned)"


def _combos(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def selector_grid(grid_name: str, name: str, embedders: list[str], has_latency: bool, defaults: dict[str, Any]) -> list[dict[str, Any]]:
    """All parameter combinations of one selector in a named grid (feature keys included)."""
    if grid_name not in GRIDS:
        raise ConfigError(f"unknown tune_grid {grid_name!r}; expected one of {sorted(GRIDS)}")
    spec = GRIDS[grid_name]
    own = dict(spec["selectors"].get(name, {}))
    if name not in spec["selectors"]:
        log.warning("tune grid %r has no entry for %r; only its configured values are evaluated", grid_name, name)
    grid: dict[str, list[Any]] = {"embedder": list(embedders)}
    grid["onehot_weight"] = list(own.pop("onehot_weight", spec["onehot_weight"]))
    qw = own.pop("quality_weight", spec["quality_weight"])
    grid["quality_weight"] = list(qw) if has_latency else [defaults["quality_weight"]]
    grid.update({k: list(v) for k, v in own.items()})
    return _combos(grid)


def _cost_matrix(m: OutcomeMatrix) -> tuple[np.ndarray | None, str | None]:
    if m.latency_s is not None:
        return m.latency_s, "latency_s"
    if m.response_chars is not None:
        return m.response_chars, "response_chars"
    return None, None


def _params_text(combo: dict[str, Any]) -> str:
    return "; ".join(f"{k}={v}" for k, v in combo.items())


def _cv_task(
    X: np.ndarray, quality: np.ndarray, latency: np.ndarray | None, cost: np.ndarray | None, models: list[str],
    fit_idx: np.ndarray, valid_idx: np.ndarray, name: str, combos: list[tuple[int, dict[str, Any]]],
    base: dict[str, Any], lambdas: list[float], user_qw: float, meta: dict[str, Any],
) -> list[dict[str, Any]]:
    """Fit every combination on ``fit_idx`` and score it on ``valid_idx`` (both training-split rows)."""
    rows = []
    qv = quality[valid_idx]
    uv = utility(qv, None if latency is None else latency[valid_idx], user_qw)
    cv = None if cost is None else np.nan_to_num(cost[valid_idx], nan=float(np.nanmean(cost)))
    ar = np.arange(len(valid_idx))
    fitted: dict[tuple, Selector] = {}
    for combo_id, combo in combos:
        cpu0 = time.process_time()
        sel = make_selector(name, {**base, **combo})
        # Combinations that differ only in prediction-time parameters share one fit.
        predict_only = getattr(type(sel), "PREDICT_PARAMS", ())
        key = tuple(sorted((k, repr(v)) for k, v in sel.get_params().items() if k not in predict_only))
        if key in fitted:
            sel = fitted[key].set_params(**{k: getattr(sel, k) for k in predict_only})
        else:
            fit_selector(sel, X[fit_idx], quality[fit_idx], None if latency is None else latency[fit_idx], models,
                                 None if cost is None else cost[fit_idx])
            fitted[key] = sel
        if isinstance(sel, CostAwareRouter):
            sweep = sel.predict_index_sweep(X[valid_idx], [float(sel.cost_lambda), *lambdas])
            idx, sweep = sweep[0], sweep[1:]
        else:
            idx, sweep = sel.predict_index(X[valid_idx]), None
        row = {**meta, "selector": name, "combo": combo_id, "quality": float(qv[ar, idx].mean()),
               "utility": float(uv[ar, idx].mean()), "cost": float(cv[ar, idx].mean()) if cv is not None else np.nan,
               "cpu_s": time.process_time() - cpu0}
        if sweep is not None:
            row["sweep_quality"] = [float(qv[ar, s].mean()) for s in sweep]
            row["sweep_cost"] = [float(cv[ar, s].mean()) if cv is not None else np.nan for s in sweep]
        rows.append(row)
    return rows


def _final_task(pool: str, name: str, params: dict[str, Any], Xtr: np.ndarray, Xte: np.ndarray, quality: np.ndarray,
                latency: np.ndarray | None, cost: np.ndarray | None, models: list[str], lambdas: list[float],
                op_lambda: float | None) -> dict[str, Any]:
    """Refit one tuned selector on the whole training split; its test choices (and a router's sweep)."""
    sel = make_selector(name, params)
    fit_selector(sel, Xtr, quality, latency, models, cost)
    out: dict[str, Any] = {"pool": pool, "name": name, "proba": sel.predict_proba(Xte), "sweep": None, "op_proba": None}
    if isinstance(sel, CostAwareRouter):
        if lambdas:
            out["sweep"] = sel.predict_index_sweep(Xte, lambdas)
        if op_lambda is not None:
            sel.set_params(cost_lambda=op_lambda)
            out["op_proba"] = sel.predict_proba(Xte)
    return out


def _run_tasks(tasks: list[tuple], n_jobs: int) -> list[dict[str, Any]]:
    from joblib import Parallel, delayed
    from tqdm.auto import tqdm

    out: list[dict[str, Any]] = []
    par = Parallel(n_jobs=n_jobs, return_as="generator_unordered")
    with tqdm(total=len(tasks), desc="tune CV", unit="task") as bar:
        for rows in par(delayed(_cv_task)(*t) for t in tasks):
            out.extend(rows)
            bar.update(1)
    return out


def _shared_choice(cv: pd.DataFrame, core: list[str]) -> dict[str, Any]:
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


def _plain(v: Any) -> Any:
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    if isinstance(v, (np.bool_,)):
        return bool(v)
    if isinstance(v, tuple):
        return list(v)
    return v


def tune_selectors(
    run_dir: str,
    seed: int,
    pools: dict[str, list[str]],
    selector_names: list[str],
    quality_weight: float,
    embed_batch_size: int,
    device: str,
    embedder: str,
    onehot_weight: float,
    knn_k: int,
    kmeans_num_clusters: int,
    svm_kernel: str,
    svm_gamma: float,
    svm_c: float,
    tune_n_folds: int,
    tune_n_seeds: int,
    tune_n_jobs: int,
    tune_grid: str,
    **extra: Any,
) -> pd.DataFrame:
    """Tune every selector and router by CV inside the training split; evaluate the tuned ones once on test.

    Parameters are the flat keys of ``stage_params(params, "tune")``;
    ``extra`` may carry the tune section's router keys: ``tune_router_names``
    (routers tuned besides ``selector_names``), ``tune_embedders`` (embedder
    ids to search; empty: ``embedder``), ``tune_cost_lambdas`` (the cost-weight
    sweep), ``tune_match_quality_ratio``, ``tune_n_bootstrap``, ``cost_lambda``
    and the routers' defaults (``knn_reg_k``, ``mlp_hidden``, ...). Other
    extras (e.g. ``data_dir``) are ignored.

    Returns the ``tuned_results.csv`` table (one row per pool x strategy). See
    the module docstring for every file written.
    """
    t_start = time.perf_counter()
    params = {k: v for k, v in locals().items() if k not in ("extra", "t_start")} | extra
    router_names = list(extra.get("tune_router_names", DEFAULT_ROUTERS) or [])
    names = list(dict.fromkeys([*selector_names, *router_names]))
    embedders = list(extra.get("tune_embedders") or [embedder])
    lambdas = [float(x) for x in (extra.get("tune_cost_lambdas") or DEFAULT_COST_LAMBDAS)]
    match_ratio = float(extra.get("tune_match_quality_ratio", 0.98))
    n_bootstrap = int(extra.get("tune_n_bootstrap", 1000))
    if tune_n_folds < 2 or tune_n_seeds < 1:
        raise ConfigError(f"tune_n_folds must be >= 2 and tune_n_seeds >= 1, got {tune_n_folds}, {tune_n_seeds}")
    if tune_grid not in GRIDS:
        raise ConfigError(f"unknown tune_grid {tune_grid!r}; expected one of {sorted(GRIDS)}")
    base = {k: v for k, v in params.items() if k not in ("pools", "selector_names")}

    queries, outcomes = load_prepared(run_dir)
    paths = run_paths(run_dir)
    emb_cache: dict[str, dict[str, np.ndarray]] = {}

    def features(m: OutcomeMatrix, emb_id: str, ow: float) -> np.ndarray:
        if emb_id not in emb_cache:
            emb_cache[emb_id] = {}
        store = emb_cache[emb_id]
        missing = [t for t in dict.fromkeys(m.queries) if t not in store]
        if missing:
            vecs = Embedder(emb_id, batch_size=embed_batch_size, device=device).embed(missing)
            store.update(zip(missing, vecs))
        return build_features(np.stack([store[t] for t in m.queries]), m.categories, ow)

    # ------------------------------------------------------------ CV inside the training split
    tasks, fold_rows, grids, pool_data = [], [], {}, {}
    for pool, models in pools.items():
        matrix = pool_matrix(queries, outcomes, list(models))
        train, test = split_masks(queries, matrix)
        tr = matrix.subset(train)  # the CV never sees any other row
        cost_tr, unit = _cost_matrix(tr)
        pool_data[pool] = (matrix, train, test, unit)
        folds = []
        for s in range(tune_n_seeds):
            for f, (fit_idx, valid_idx) in enumerate(kfold_queries(tr.query_ids, tr.categories, tune_n_folds, seed + s)):
                folds.append((s, f, fit_idx, valid_idx))
                fold_rows.append(pd.DataFrame({"pool": pool, "query_id": tr.query_ids[valid_idx], "cv_seed": seed + s, "fold": f}))
        for name in names:
            combos = selector_grid(tune_grid, name, embedders, tr.latency_s is not None, {"quality_weight": quality_weight})
            grids[(pool, name)] = combos
            by_feat: dict[tuple[str, float], list[tuple[int, dict[str, Any]]]] = {}
            for i, combo in enumerate(combos):
                by_feat.setdefault((combo["embedder"], float(combo["onehot_weight"])), []).append((i, combo))
            for (emb_id, ow), group in by_feat.items():
                X = features(tr, emb_id, ow)
                for s, f, fit_idx, valid_idx in folds:
                    meta = {"pool": pool, "cv_seed": seed + s, "fold": f}
                    tasks.append((X, tr.quality, tr.latency_s, cost_tr, list(models), fit_idx, valid_idx, name, group, base,
                                  lambdas, quality_weight, meta))
    log.info("tune: %d CV tasks (%s grid, %d folds x %d seeds, %d pools, selectors %s)", len(tasks), tune_grid,
             tune_n_folds, tune_n_seeds, len(pools), names)
    t_cv = time.perf_counter()
    raw = pd.DataFrame(_run_tasks(tasks, tune_n_jobs))
    cv_seconds = time.perf_counter() - t_cv

    # ------------------------------------------------------------ aggregate and choose
    rows, sweep_rows, chosen, heat = [], [], {}, []
    all_keys: list[str] = []
    for (pool, name), combos in grids.items():
        unit = pool_data[pool][3]
        g = raw[(raw["pool"] == pool) & (raw["selector"] == name)]
        for i, combo in enumerate(combos):
            r = g[g["combo"] == i]
            all_keys += [k for k in combo if k not in all_keys]
            row = {"pool": pool, "selector": name, "combo": i, "params": _params_text(combo), **combo, "n_fits": int(len(r)),
                   "cv_quality_mean": r["quality"].mean(), "cv_quality_std": r["quality"].std(ddof=0),
                   "cv_utility_mean": r["utility"].mean(), "cv_utility_std": r["utility"].std(ddof=0),
                   "cv_avg_latency_s": r["cost"].mean() if unit == "latency_s" else np.nan,
                   "cv_avg_response_chars": r["cost"].mean() if unit == "response_chars" else np.nan,
                   "cpu_seconds": r["cpu_s"].sum()}
            rows.append(row)
        best = max(range(len(combos)), key=lambda i: (rows[-len(combos) + i]["cv_utility_mean"], -i))
        chosen[(pool, name)] = best
        if name in ROUTERS:
            r = g[g["combo"] == best]
            sq = np.array(r["sweep_quality"].tolist()).mean(axis=0)
            sc = np.array(r["sweep_cost"].tolist()).mean(axis=0)
            for lam, q, c in zip(lambdas, sq, sc):
                sweep_rows.append({"pool": pool, "router": name, "cost_lambda": lam, "cv_quality_mean": q,
                                   "cv_avg_latency_s": c if unit == "latency_s" else np.nan,
                                   "cv_avg_response_chars": c if unit == "response_chars" else np.nan})
    cv_table = pd.DataFrame(rows)
    cv_table["chosen"] = [chosen[(p, s)] == c for p, s, c in zip(cv_table["pool"], cv_table["selector"], cv_table["combo"])]
    cols = ["pool", "selector", "combo", "params", *all_keys, "n_fits", "cv_quality_mean", "cv_quality_std", "cv_utility_mean",
            "cv_utility_std", "cv_avg_latency_s", "cv_avg_response_chars", "cpu_seconds", "chosen"]
    cv_table = cv_table[cols]
    cv_sweep = pd.DataFrame(sweep_rows, columns=["pool", "router", "cost_lambda", "cv_quality_mean", "cv_avg_latency_s", "cv_avg_response_chars"])
    for (pool, name), _ in grids.items():
        p = HEATMAP_PARAM.get(name)
        s = cv_table[(cv_table["pool"] == pool) & (cv_table["selector"] == name)]
        if p not in s or s.empty:
            continue
        top = s.sort_values("cv_utility_mean", ascending=False).groupby([p, "onehot_weight"], sort=True).head(1)
        for _, r in top.sort_values([p, "onehot_weight"]).iterrows():
            heat.append({"pool": pool, "selector": name, "param": p, "param_value": r[p], "onehot_weight": r["onehot_weight"],
                         "cv_quality_mean": r["cv_quality_mean"], "cv_quality_std": r["cv_quality_std"], "cv_utility_mean": r["cv_utility_mean"]})
    heatmap = pd.DataFrame(heat, columns=["pool", "selector", "param", "param_value", "onehot_weight", "cv_quality_mean", "cv_quality_std", "cv_utility_mean"])

    # Matched operating points, chosen on CV only.
    operating: dict[tuple[str, str], dict[str, Any]] = {}
    for pool, (matrix, train, test, unit) in pool_data.items():
        tr = matrix.subset(train)
        u_tr = utility(tr.quality, tr.latency_s, quality_weight)
        best_j = int(np.argmax(u_tr.mean(axis=0)))  # same rule as BestSingleSelector (ties: model order)
        target = match_ratio * float(tr.quality[:, best_j].mean())
        for name in router_names:
            s = cv_sweep[(cv_sweep["pool"] == pool) & (cv_sweep["router"] == name)]
            ok = s[s["cv_quality_mean"] >= target - 1e-12]
            if ok.empty or unit is None:
                continue
            cost_col = f"cv_avg_{unit}"
            pick = ok.sort_values([cost_col, "cost_lambda"], ascending=[True, False]).iloc[0]
            operating[(pool, name)] = {"cost_lambda": float(pick["cost_lambda"]), "cv_quality_mean": float(pick["cv_quality_mean"]),
                                       f"cv_avg_{unit}": float(pick[cost_col]), "target_cv_quality": target,
                                       "best_single_on_train": matrix.models[best_j]}

    # ------------------------------------------------------------ tuned_params.yaml
    tune_dir = paths["tune"]
    tune_dir.mkdir(parents=True, exist_ok=True)
    write_csv(cv_table, tune_dir / "cv_results.csv")
    write_csv(cv_sweep, tune_dir / "cv_frontier.csv")
    write_csv(pd.concat(fold_rows, ignore_index=True), tune_dir / "cv_folds.csv")
    write_csv(heatmap, paths["tables"] / "tune_heatmap.csv")
    core = [n for n in names if n not in ROUTERS]
    shared = {k: _plain(v) for k, v in _shared_choice(cv_table, core).items()}
    has_latency = any(pd_[0].latency_s is not None for pd_ in pool_data.values())
    doc: dict[str, Any] = {}
    if has_latency and "quality_weight" in shared:
        doc["base"] = {"quality_weight": shared["quality_weight"]}
    shared.pop("quality_weight", None)
    doc["train"] = shared
    first_pool = next(iter(pools))
    doc["tune"] = {}
    for name in router_names:
        combo = grids[(first_pool, name)][chosen[(first_pool, name)]]
        doc["tune"].update({k: _plain(v) for k, v in combo.items() if k in ROUTER_PARAM_KEYS.get(name, ())})
    doc["pools"] = {}
    for (pool, name), combos in grids.items():
        combo = combos[chosen[(pool, name)]]
        r = cv_table[(cv_table["pool"] == pool) & (cv_table["selector"] == name) & (cv_table["combo"] == chosen[(pool, name)])].iloc[0]
        entry = {k: _plain(v) for k, v in combo.items()}
        entry.update({"cv_quality_mean": round(float(r["cv_quality_mean"]), 6), "cv_quality_std": round(float(r["cv_quality_std"]), 6)})
        doc["pools"].setdefault(pool, {"selectors": {}, "operating_points": {}})["selectors"][name] = entry
    for (pool, name), op in operating.items():
        doc["pools"][pool]["operating_points"][name] = {k: (round(v, 6) if isinstance(v, float) else v) for k, v in op.items()}
    header = (f"# Chosen by mlsel.tune: grid {tune_grid!r}, {tune_n_folds}-fold x {tune_n_seeds} seed(s) CV by query inside the\n"
              f"# training split of {paths['root']}. train/tune: one setting for all pools (paste into params.yaml\n"
              f"# if you want it); pools: the per-pool choices the tuned evaluation used. Not params.yaml itself.\n")
    (tune_dir / "tuned_params.yaml").write_text(header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))

    # ------------------------------------------------------------ final evaluation: the only use of the test split
    # Fit the tuned selectors in parallel (features are built here, once per setting).
    final_tasks = []
    for pool, (matrix, train, test, unit) in pool_data.items():
        tr, te = matrix.subset(train), matrix.subset(test)
        cost_tr, _ = _cost_matrix(tr)
        for name in names:
            combo = grids[(pool, name)][chosen[(pool, name)]]
            op = operating.get((pool, name))
            final_tasks.append((pool, name, {**base, **combo}, features(tr, combo["embedder"], float(combo["onehot_weight"])),
                                features(te, combo["embedder"], float(combo["onehot_weight"])), tr.quality, tr.latency_s, cost_tr,
                                list(pools[pool]), lambdas if unit else [], None if op is None else op["cost_lambda"]))
    from joblib import Parallel, delayed

    t_final = time.perf_counter()
    fitted_out = {(o["pool"], o["name"]): o for o in Parallel(n_jobs=tune_n_jobs)(delayed(_final_task)(*t) for t in final_tasks)}
    log.info("tune: final fits in %.1f s", time.perf_counter() - t_final)

    results, front, aiqs = [], [], []
    for pool, (matrix, train, test, unit) in pool_data.items():
        models = list(pools[pool])
        tr, te = matrix.subset(train), matrix.subset(test)
        cost_tr, _ = _cost_matrix(tr)
        cost_te, _ = _cost_matrix(te)
        if cost_te is not None:
            cost_te = np.where(np.isnan(cost_te), np.nanmean(cost_tr, axis=0)[None, :], cost_te)
        strategies = [Strategy("Oracle (best possible)", "oracle", oracle_proba(te))]
        curves_q, curves_c = {}, {}
        ar = np.arange(len(te))
        for name in names:
            o = fitted_out[(pool, name)]
            strategies.append(Strategy(selector_label(name), "selector", o["proba"]))
            if o["sweep"] is not None and cost_te is not None:
                curves_q[name] = np.stack([te.quality[ar, s] for s in o["sweep"]])
                curves_c[name] = np.stack([cost_te[ar, s] for s in o["sweep"]])
                for lam, q, c in zip(lambdas, curves_q[name].mean(axis=1), curves_c[name].mean(axis=1)):
                    front.append({"pool": pool, "kind": "router", "router": name, "cost_lambda": lam, "avg_quality": q, f"avg_{unit}": c})
                if o["op_proba"] is not None:
                    lam = operating[(pool, name)]["cost_lambda"]
                    strategies.append(Strategy(f"{name.upper()} (tuned, matched lambda={lam:g})", "selector", o["op_proba"]))
            elif cost_te is not None:
                idx = o["proba"].argmax(axis=1)
                front.append({"pool": pool, "kind": "selector", "router": name, "cost_lambda": np.nan,
                              "avg_quality": float(te.quality[ar, idx].mean()), f"avg_{unit}": float(cost_te[ar, idx].mean())})
        baselines = baseline_strategies(tr, len(te), quality_weight)
        strategies += baselines
        # The best single model (chosen on the training split), as a column index.
        best_j = next(int(s.proba[0].argmax()) for s in baselines if s.kind == "best_single")
        results.append(evaluate(te, strategies, pool, n_bootstrap=n_bootstrap, seed=seed)["results"])
        if cost_te is not None:
            sq, sc = te.quality.mean(axis=0), cost_te.mean(axis=0)
            for j, model in enumerate(models):
                front.append({"pool": pool, "kind": "single", "router": f"Always {model}", "cost_lambda": np.nan,
                              "avg_quality": float(sq[j]), f"avg_{unit}": float(sc[j])})
            hc, hq = zero_router(sc, sq)
            for c, q in zip(hc, hq):
                front.append({"pool": pool, "kind": "zero_router", "router": "Zero router", "cost_lambda": np.nan, "avg_quality": q, f"avg_{unit}": c})
            t = aiq_table(pool, te.quality, cost_te, curves_q, curves_c, best_j, n_bootstrap=n_bootstrap, seed=seed)
            t.insert(2, "cost_unit", unit)
            aiqs.append(t)
    tuned = pd.concat(results, ignore_index=True)
    front_cols = ["pool", "kind", "router", "cost_lambda", "avg_quality", "avg_latency_s", "avg_response_chars"]
    front_df = pd.DataFrame(front).reindex(columns=front_cols)
    aiq_df = pd.concat(aiqs, ignore_index=True) if aiqs else pd.DataFrame(
        columns=["pool", "router", "cost_unit", "n_points", "aiq", "ci_low", "ci_high", "aiq_minus_zero_router",
                 "aiq_minus_zero_router_ci_low", "aiq_minus_zero_router_ci_high", "cost_to_match_best_single",
                 "best_single_quality", "cost_min", "cost_max"])
    tables = paths["tables"]
    write_csv(tuned, tables / "tuned_results.csv")
    write_csv(front_df, tables / "frontier.csv")
    write_csv(aiq_df, tables / "aiq.csv")

    total = time.perf_counter() - t_start
    update_manifest(run_dir, "tune", {
        "params": params, "params_hash": params_hash(params), "data_hash": data_hash(run_dir),
        "grid": tune_grid, "grid_spec": GRIDS[tune_grid], "selectors": names, "embedders": embedders, "cost_lambdas": lambdas,
        "cost_unit": {p: d[3] for p, d in pool_data.items()}, "n_cv_tasks": len(tasks), "n_cv_fits": int(len(raw)),
        "cv_seconds": round(cv_seconds, 1), "cv_cpu_seconds": round(float(raw["cpu_s"].sum()), 1), "total_seconds": round(total, 1),
        "chosen": {f"{p}/{n}": _params_text(grids[(p, n)][i]) for (p, n), i in chosen.items()},
        "operating_points": {f"{p}/{n}": op for (p, n), op in operating.items()},
        "test_split_used_by": "final evaluation only (tuned_results, frontier, aiq)",
    })
    log.info("tune: done in %.1f s (CV %.1f s)", total, cv_seconds)
    return tuned
