"""Cross-validation inside the training split: pools, folds, features, tasks and their parallel run."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from mlsel.data.costs import cost_matrix, fill_missing_cost, with_cost_axis
from mlsel.data.outcomes import OutcomeMatrix, kfold_queries, load_prepared, pool_matrix, split_masks
from mlsel.features import EmbedSettings, build_features
from mlsel.manifest import read_manifest
from mlsel.params import ConfigError
from mlsel.progress import progress_bar
from mlsel.selection.base import Selector, utility
from mlsel.selection.cost_aware import CostAwareRouter, fit_selector
from mlsel.selection.registry import make_selector
from mlsel.tuning.grids import combo_params, selector_grid

log = logging.getLogger(__name__)


@dataclass
class PoolData:
    """One pool's outcomes split into training (``tr``, all the CV sees) and test (``te``) queries."""

    name: str
    models: list[str]
    matrix: OutcomeMatrix
    tr: OutcomeMatrix
    te: OutcomeMatrix
    unit: str | None
    """Cost unit of the training split: a key of :data:`mlsel.data.costs.COST_UNITS`, or None."""
    split: str = "seeded"
    """How the prepare stage split train from test (``seeded``, ``source`` or ``by_task``): the CV folds mirror it."""


@dataclass
class TunePlan:
    """What the tune stage searches, derived from its parameter object."""

    names: list[str]
    """``selector_names`` then ``tune_router_names``, without repeats."""
    router_names: list[str]
    embedders: list[str]
    lambdas: list[float]


class CVTask(NamedTuple):
    """One (pool, selector, feature setting, fold): every combination of the group is fitted and scored."""

    X: np.ndarray
    quality: np.ndarray
    latency: np.ndarray | None
    cost: np.ndarray | None
    models: list[str]
    fit_idx: np.ndarray
    valid_idx: np.ndarray
    name: str
    combos: list[tuple[int, dict[str, Any]]]
    values: dict[str, Any]
    lambdas: list[float]
    user_qw: float
    meta: dict[str, Any]


def prepared_split(run_dir: str) -> str:
    """The prepare stage's ``split`` of a run folder (``seeded`` for a run prepared before it was recorded)."""
    return read_manifest(run_dir)["stages"]["prepare"]["params"].get("split", "seeded")


def load_pools(run_dir: str, pools: dict[str, list[str]], cost_axis: str = "auto") -> dict[str, PoolData]:
    """Each pool's outcome matrix of the prepared run, split by the prepared train/test labels, with ``cost_axis``
    as its cost (:func:`mlsel.data.costs.with_cost_axis`)."""
    queries, outcomes = load_prepared(run_dir)
    split = prepared_split(run_dir)
    out = {}
    for pool, models in pools.items():
        matrix = with_cost_axis(pool_matrix(queries, outcomes, list(models)), cost_axis)
        train, test = split_masks(queries, matrix)
        tr = matrix.subset(train)  # the CV never sees any other row
        out[pool] = PoolData(pool, list(models), matrix, tr, matrix.subset(test), cost_matrix(tr)[1], split)
    return out


class FeatureCache:
    """Features per (matrix, embedder, one-hot weight); each text is embedded once per embedder."""

    def __init__(self, embed: EmbedSettings) -> None:
        self.embed = embed
        self._store: dict[str, dict[str, np.ndarray]] = {}

    def __call__(self, m: OutcomeMatrix, emb_id: str, ow: float) -> np.ndarray:
        store = self._store.setdefault(emb_id, {})
        missing = [t for t in dict.fromkeys(m.queries) if t not in store]
        if missing:
            vecs = self.embed.embedder(emb_id).embed(missing)
            store.update(zip(missing, vecs))
        return build_features(np.stack([store[t] for t in m.queries]), m.categories, ow)


def cv_folds(pool: PoolData, n_folds: int, n_seeds: int, seed: int) -> tuple[list[tuple], pd.DataFrame]:
    """``(seed offset, fold, fit_idx, valid_idx)`` over seeds ``seed, seed + 1, ...`` and the cv_folds.csv rows.

    The folds mirror the held-out split: with ``split: by_task`` they are
    grouped by task (no fold fits on a task it validates on), so the CV choice
    is itself made out of distribution; otherwise stratified by category.
    """
    tr, folds, frames = pool.tr, [], []
    groups = None
    if pool.split == "by_task":
        if tr.tasks is None or len(set(tr.tasks)) < n_folds:
            n = 0 if tr.tasks is None else len(set(tr.tasks))
            raise ConfigError(f"pool {pool.name}: split by_task needs at least tune_n_folds={n_folds} training tasks for "
                              f"task-grouped CV folds; the training split has {n}")
        groups = tr.tasks
    for s in range(n_seeds):
        for f, (fit_idx, valid_idx) in enumerate(kfold_queries(tr.query_ids, tr.categories, n_folds, seed + s, groups)):
            folds.append((s, f, fit_idx, valid_idx))
            frames.append(pd.DataFrame({"pool": pool.name, "query_id": tr.query_ids[valid_idx], "cv_seed": seed + s, "fold": f}))
    return folds, pd.concat(frames, ignore_index=True)


def _by_features(combos: list[dict[str, Any]]) -> dict[tuple[str, float], list[tuple[int, dict[str, Any]]]]:
    groups: dict[tuple[str, float], list[tuple[int, dict[str, Any]]]] = {}
    for i, combo in enumerate(combos):
        groups.setdefault((combo["embedder"], float(combo["onehot_weight"])), []).append((i, combo))
    return groups


def build_cv_tasks(p: Any, plan: TunePlan, pools: dict[str, PoolData], features: FeatureCache
                   ) -> tuple[list[CVTask], dict[tuple[str, str], list[dict[str, Any]]], pd.DataFrame]:
    """The CV tasks, every (pool, selector)'s combinations (grid order) and the cv_folds.csv table."""
    values = p.model_dump()
    tasks, grids, fold_tables = [], {}, []
    for pool in pools.values():
        tr = pool.tr
        cost_tr, _ = cost_matrix(tr)
        folds, fold_table = cv_folds(pool, p.tune_n_folds, p.tune_n_seeds, p.seed)
        fold_tables.append(fold_table)
        for name in plan.names:
            combos = selector_grid(p.tune_grid, name, plan.embedders, tr.latency_s is not None, p.quality_weight,
                                   latency_cost=pool.unit == "latency_s")
            grids[(pool.name, name)] = combos
            for (emb_id, ow), group in _by_features(combos).items():
                X = features(tr, emb_id, ow)
                for s, f, fit_idx, valid_idx in folds:
                    meta = {"pool": pool.name, "cv_seed": p.seed + s, "fold": f}
                    tasks.append(CVTask(X, tr.quality, tr.latency_s, cost_tr, list(pool.models), fit_idx, valid_idx, name, group,
                                        values, plan.lambdas, p.quality_weight, meta))
    return tasks, grids, pd.concat(fold_tables, ignore_index=True)


def _fit_or_share(t: CVTask, combo: dict[str, Any], fitted: dict[tuple, Selector]) -> Selector:
    sel = make_selector(t.name, combo_params(t.values, combo))
    # Combinations that differ only in prediction-time parameters share one fit.
    predict_only = getattr(type(sel), "PREDICT_PARAMS", ())
    key = tuple(sorted((k, repr(v)) for k, v in sel.get_params().items() if k not in predict_only))
    if key in fitted:
        return fitted[key].set_params(**{k: getattr(sel, k) for k in predict_only})
    fi = t.fit_idx
    fit_selector(sel, t.X[fi], t.quality[fi], None if t.latency is None else t.latency[fi], t.models,
                 None if t.cost is None else t.cost[fi])
    fitted[key] = sel
    return sel


def cv_task(t: CVTask) -> list[dict[str, Any]]:
    """Fit every combination on ``fit_idx`` and score it on ``valid_idx`` (both training-split rows).

    A missing validation cost takes its model's mean training-split cost (:func:`mlsel.data.costs.fill_missing_cost`),
    as the CV AIQ choice charges the single models (:func:`mlsel.tuning.summary.cv_aiq_router`).
    """
    rows = []
    vi = t.valid_idx
    qv = t.quality[vi]
    uv = utility(qv, None if t.latency is None else t.latency[vi], t.user_qw)
    cv = None if t.cost is None else fill_missing_cost(t.cost[vi], reference=t.cost)
    ar = np.arange(len(vi))
    Xv = t.X[vi]  # one array for every combination: a router sharing a fit keeps its neighbour search of it (guarded)
    fitted: dict[tuple, Selector] = {}
    for combo_id, combo in t.combos:
        cpu0 = time.process_time()
        sel = _fit_or_share(t, combo, fitted)
        if isinstance(sel, CostAwareRouter):
            sweep = sel.predict_index_sweep(Xv, [float(sel.cost_lambda), *t.lambdas])
            idx, sweep = sweep[0], sweep[1:]
        else:
            idx, sweep = sel.predict_index(Xv), None
        row = {**t.meta, "selector": t.name, "combo": combo_id, "quality": float(qv[ar, idx].mean()),
               "utility": float(uv[ar, idx].mean()), "cost": float(cv[ar, idx].mean()) if cv is not None else np.nan,
               "cpu_s": time.process_time() - cpu0}
        if sweep is not None:
            row["sweep_quality"] = [float(qv[ar, s].mean()) for s in sweep]
            row["sweep_cost"] = [float(cv[ar, s].mean()) if cv is not None else np.nan for s in sweep]
        rows.append(row)
    return rows


CV_TASK_WEIGHT = {"svm": 6.0, "mlp": 5.0, "logreg": 5.0, "kmeans": 4.0, "guarded": 3.0, "scoreboard": 2.0, "knn_reg": 2.0, "knn": 1.0}
"""Relative CPU time of one CV task per selector (measured, ``benchmarks/results/tune_profile.md``). Tasks start in this
order, the longest first, so that two workers finish together; no result depends on it."""


def run_cv_tasks(tasks: list[CVTask], n_jobs: int, scheduler: str = "") -> pd.DataFrame:
    """Run the tasks with joblib behind a progress bar: local workers, or the Dask cluster at ``scheduler`` (an address).

    One row per (task, combination), sorted by pool, selector, CV seed, fold
    and combination: the same table whatever the backend and completion order.
    """
    return run_cv_with(tasks, [], n_jobs, scheduler)[0]


def run_cv_with(tasks: list[CVTask], extra: list[Any], n_jobs: int, scheduler: str = "") -> tuple[pd.DataFrame, list[Any]]:
    """:func:`run_cv_tasks`, with independent ``extra`` calls (``joblib.delayed``; e.g. the peers' fits, which no CV choice
    feeds) run by the same workers, so neither waits for the other; ``(the CV table, extra's results in order)``.

    ``extra`` starts first (give it longest first), then the CV tasks, the longest first (:data:`CV_TASK_WEIGHT`).
    """
    from joblib import Parallel, delayed

    from mlsel.tuning.parallel import call_with, indexed, joblib_backend

    shared = ("X", "quality", "latency", "cost")  # the same arrays in many tasks: sent to a cluster once
    order = sorted(range(len(tasks)), key=lambda i: -CV_TASK_WEIGHT.get(tasks[i].name, 1.0))  # stable: ties keep build order
    calls = [(len(tasks) + j, c) for j, c in enumerate(extra)]
    calls += [(i, delayed(call_with)(cv_task, tasks[i]._replace(**dict.fromkeys(shared)), **{k: getattr(tasks[i], k) for k in shared}))
              for i in order]
    out: list[dict[str, Any]] = []
    done: dict[int, Any] = {}
    with joblib_backend(n_jobs, scheduler) as jobs, progress_bar(len(calls), "tune CV", "task") as bar:
        par = Parallel(n_jobs=jobs, return_as="generator_unordered")
        for i, result in par(delayed(indexed)(i, func, *args, **kwargs) for i, (func, args, kwargs) in calls):
            if i < len(tasks):
                out.extend(result)
            else:
                done[i - len(tasks)] = result
            bar.update(1)
    extra_results = [done[j] for j in range(len(extra))]
    if not out:
        return pd.DataFrame(out), extra_results
    keys = ["pool", "selector", "cv_seed", "fold", "combo"]
    return pd.DataFrame(out).sort_values(keys, kind="stable").reset_index(drop=True), extra_results
