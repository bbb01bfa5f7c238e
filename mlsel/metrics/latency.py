"""What ``quality_weight`` does where latency is measured, and how much of a measured latency repeats.

Every selector scores a model by the utility
``w * quality + (1 - w) / (1 + latency_s)`` (:func:`mlsel.selection.base.utility`),
``w`` = ``quality_weight``. Without a measured latency the utility is the
quality and ``w`` changes nothing; with one, a lower ``w`` trades quality for
speed. The sweep shows that trade on the held-out queries: for each ``w`` of
``quality_weight_sweep`` the train stage's selectors are refitted on the
training split with that weight (their other parameters as saved), the best
single model and the per-category lookup are chosen again by that utility,
and each is scored on the test queries: quality, mean, median and
90th-percentile latency of the chosen answers, and mean USD cost where the
data has it.

Where the same requests were timed again in an independent run, :func:`repeatability` says per model how well the
latency measured once predicts the other run's, and :func:`latency_prediction` does the same for the tuned routers'
per-query latency predictions, against the model's training mean.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import clone

from mlsel.data.outcomes import OutcomeMatrix
from mlsel.metrics.evaluate import SavedSelector, fitted_lookups, latency_quantile, lookup_strategies
from mlsel.selection.baselines import BestSingleSelector
from mlsel.selection.registry import label

SWEEP_COLUMNS = ["pool", "quality_weight", "strategy", "avg_quality", "avg_latency_s", "median_latency_s", "p90_latency_s",
                 "avg_cost_usd", "fast_choice_pct"]
"""``fast_choice_pct``: the percent of test queries sent to a faster answer than the same strategy gives at the highest weight swept."""


def _row(pool: str, w: float, name: str, proba: np.ndarray, te: OutcomeMatrix) -> dict:
    cost = float((proba * te.cost_usd).sum(axis=1).mean()) if te.cost_usd is not None else np.nan
    return {"pool": pool, "quality_weight": w, "strategy": name, "avg_quality": float((proba * te.quality).sum(axis=1).mean()),
            "avg_latency_s": float((proba * te.latency_s).sum(axis=1).mean()), "median_latency_s": latency_quantile(proba, te.latency_s, 0.5),
            "p90_latency_s": latency_quantile(proba, te.latency_s, 0.9), "avg_cost_usd": cost}


def _fast_share(proba: np.ndarray, reference: np.ndarray, latency: np.ndarray) -> float:
    """Percent of queries whose expected latency under ``proba`` is below that under ``reference``."""
    return 100 * float(((proba * latency).sum(axis=1) < (reference * latency).sum(axis=1) - 1e-12).mean())


def sweeps(tr: OutcomeMatrix, te: OutcomeMatrix, weights: list[float]) -> bool:
    """Whether :func:`weight_sweep` has rows: latency measured for every training and test answer, and weights to sweep."""
    return tr.latency_s is not None and te.latency_s is not None and not np.isnan(tr.latency_s).any() and bool(weights)


def weight_sweep(saved: list[SavedSelector], tr: OutcomeMatrix, te: OutcomeMatrix, pool: str, weights: list[float],
                 min_queries: int) -> pd.DataFrame:
    """The sweep's rows for one pool (columns :data:`SWEEP_COLUMNS`); no rows unless :func:`sweeps`.

    ``saved``: the train stage's saved selectors with their features of ``tr``
    and ``te`` (:func:`mlsel.metrics.evaluate.saved_selectors`); each is cloned
    with its saved parameters and refitted per weight.
    """
    if not sweeps(tr, te, weights):
        return pd.DataFrame(columns=SWEEP_COLUMNS)
    models = list(tr.models)
    rows, reference = [], {}
    for w in sorted(weights, reverse=True):
        strategies = [("Best single (train)", BestSingleSelector(quality_weight=w)
                       .fit(np.zeros((len(tr), 1)), tr.quality, tr.latency_s, models=models).predict_proba(np.zeros((len(te), 1))))]
        strategies += [(s.name, s.proba) for s in lookup_strategies(fitted_lookups(tr, te, w, min_queries)) if s.kind == "category_lookup"]
        for s in saved:
            Xtr, Xte = s.features
            refit = clone(s.selector).set_params(quality_weight=w).fit(Xtr, tr.quality, tr.latency_s, models=models)
            strategies.append((label(s.name), refit.predict_proba(Xte)))
        for name, proba in strategies:
            reference.setdefault(name, proba)  # the highest weight swept is each strategy's own reference
            rows.append(_row(pool, w, name, proba, te) | {"fast_choice_pct": _fast_share(proba, reference[name], te.latency_s)})
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)


REPEAT_COLUMNS = ["pool", "model", "n_test", "mean_s_train", "mean_s_test", "mean_s_replicate", "median_ratio",
                  "log_corr_same_request", "r2_model_mean", "r2_same_request"]
"""Per model (and ``all``, pooled): held-out queries timed in both runs; mean latency of the 08-11 training split, of the test
queries in 08-11 and in the replicate run; the median ratio replicate/08-11 of the same request; the correlation of their logs;
pooled only: the share of the replicate's log-latency variance predicted by the model's 08-11 training mean (geometric), and by
the same request's 08-11 latency. Both R^2 are one definition (:func:`_r2`, as in :data:`PREDICTION_COLUMNS`): each prediction
as given, ``1 - SSE / SST`` on the replicate's log latency, so a run that is slower overall counts against both."""

ALL_MODELS = "all (in both runs)"


def _r2(target: np.ndarray, prediction: np.ndarray) -> float:
    """The one R^2 of this module: the share of ``target``'s variance the prediction, taken as given (no refit, no rescaling),
    explains: ``1 - SSE / SST``; negative where it does worse than ``target``'s own mean."""
    return float(1 - ((target - prediction) ** 2).sum() / ((target - target.mean()) ** 2).sum())


def log_train_mean(tr: OutcomeMatrix) -> np.ndarray:
    """Each model's log latency predicted from the training split: the mean log latency there (the log of the geometric
    mean), (m,)."""
    return np.log(tr.latency_s).mean(axis=0)


def replicate_matrix(te: OutcomeMatrix, replicate: pd.DataFrame) -> np.ndarray:
    """The other run's latency of each test query and model (n_test, m), NaN where that run did not time it."""
    if not len(replicate):
        return np.full(te.quality.shape, np.nan)
    rep = replicate.pivot(index="query_id", columns="model", values="latency_s")
    return rep.reindex(index=te.query_ids, columns=list(te.models)).to_numpy(dtype=float)


def repeatability(pool: str, tr: OutcomeMatrix, te: OutcomeMatrix, replicate: pd.DataFrame) -> pd.DataFrame:
    """How well latency measured once predicts the same requests timed again (columns :data:`REPEAT_COLUMNS`).

    ``replicate``: ``query_id``, ``model``, ``latency_s`` of the other run
    (:func:`mlsel.data.bfcl_replicate.read_bfcl_replicate`). Each model's
    prediction is fitted on the training split only (the geometric mean of its
    latencies there) and scored on the test queries; a model without replicate
    timings has a row with ``n_test`` 0.
    """
    if tr.latency_s is None or te.latency_s is None:
        return pd.DataFrame(columns=REPEAT_COLUMNS)
    timed_again, log_mean = replicate_matrix(te, replicate), log_train_mean(tr)
    rows, pooled = [], {"again": [], "model_mean": [], "first": []}
    for j, model in enumerate(te.models):
        row = dict.fromkeys(REPEAT_COLUMNS, np.nan) | {"pool": pool, "model": model, "n_test": 0,
                                                     "mean_s_train": float(tr.latency_s[:, j].mean())}
        again = timed_again[:, j]
        ok = ~np.isnan(again) & ~np.isnan(te.latency_s[:, j])
        if ok.sum() >= 2:
            first, again = te.latency_s[ok, j], again[ok]
            row |= {"n_test": int(ok.sum()), "mean_s_test": float(first.mean()), "mean_s_replicate": float(again.mean()),
                    "median_ratio": float(np.median(again / first)),
                    "log_corr_same_request": float(np.corrcoef(np.log(first), np.log(again))[0, 1])}
            pooled["again"].append(np.log(again))
            pooled["first"].append(np.log(first))
            pooled["model_mean"].append(np.full(len(again), log_mean[j]))
        rows.append(row)
    if pooled["again"]:
        again, first, mean = (np.concatenate(pooled[k]) for k in ("again", "first", "model_mean"))
        rows.append(dict.fromkeys(REPEAT_COLUMNS, np.nan) | {
            "pool": pool, "model": ALL_MODELS, "n_test": len(again), "mean_s_test": float(np.exp(first).mean()),
            "mean_s_replicate": float(np.exp(again).mean()), "median_ratio": float(np.median(np.exp(again - first))),
            "log_corr_same_request": float(np.corrcoef(first, again)[0, 1]), "r2_model_mean": _r2(again, mean),
            "r2_same_request": _r2(again, first)})
    return pd.DataFrame(rows, columns=REPEAT_COLUMNS)


def repeatability_sentence(rep: pd.DataFrame) -> str:
    """The report's one sentence on how much of a request's latency repeats (from the pooled row)."""
    pooled = rep[rep["model"] == ALL_MODELS]
    if pooled.empty:
        return "No model of this pool was timed in both runs."
    r = pooled.iloc[0]
    n_models = int((rep["n_test"] > 0).sum()) - 1
    return (f"Over {n_models} models timed in both runs ({int(r.n_test)} held-out request-model pairs), which model answers "
            f"predicts {r.r2_model_mean:.0%} of the variance of a request's log latency in the other run (the model's mean on the "
            f"training split), and the same request's own earlier latency {r.r2_same_request:.0%} (both R^2 of the prediction as "
            f"given; the other run was {r.median_ratio:.2f}x the first in median, which counts against both).")


PREDICTION_COLUMNS = ["pool", "predictor", "n_pairs", "r2_same_run", "r2_replicate", "n_floored"]
"""Per latency predictor, over the held-out request-model pairs timed in both runs: the share of the variance of log
latency it predicts in this run's test split (``r2_same_run``) and in the other run (``r2_replicate``), and how many of
its predictions were below :data:`LATENCY_FLOOR_S` and raised to it before the log."""

MODEL_MEAN = "Model mean (training split)"
LATENCY_FLOOR_S = 0.01
"""Predictions below 10 ms are raised to it before the log: a regression may predict 0 s (or less, clipped to 0)."""


def latency_prediction(pool: str, tr: OutcomeMatrix, te: OutcomeMatrix, replicate: pd.DataFrame,
                       predictions: dict[str, np.ndarray]) -> pd.DataFrame:
    """How well per-query latency predictions repeat (columns :data:`PREDICTION_COLUMNS`).

    ``predictions``: per router label, its predicted latency in seconds of every model for each test query (n_test, m),
    fitted on the training split (:meth:`mlsel.selection.cost_aware.CostAwareRouter.predicted_cost`). The first row is
    the per-model prediction of :func:`repeatability` (the model's geometric training mean), so a router's per-query
    prediction is read against it on the same pairs.
    """
    if tr.latency_s is None or te.latency_s is None or not len(replicate):
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    again = replicate_matrix(te, replicate)
    qi, mj = np.nonzero(~np.isnan(again) & ~np.isnan(te.latency_s))
    if len(qi) < 2:
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    first, again = np.log(te.latency_s[qi, mj]), np.log(again[qi, mj])
    model_mean = np.exp(log_train_mean(tr))
    rows = []
    for name, pred in {MODEL_MEAN: np.broadcast_to(model_mean, te.latency_s.shape), **predictions}.items():
        pred = np.asarray(pred, dtype=float)[qi, mj]
        log_pred = np.log(np.maximum(pred, LATENCY_FLOOR_S))
        rows.append({"pool": pool, "predictor": name, "n_pairs": len(qi), "r2_same_run": _r2(first, log_pred),
                     "r2_replicate": _r2(again, log_pred), "n_floored": int((pred < LATENCY_FLOOR_S).sum())})
    return pd.DataFrame(rows, columns=PREDICTION_COLUMNS)


def prediction_sentence(pred: pd.DataFrame) -> str:
    """The report's sentence on the routers' per-query latency predictions, against the per-model mean."""
    base = pred[pred["predictor"] == MODEL_MEAN]
    routers = pred[pred["predictor"] != MODEL_MEAN]
    if base.empty or routers.empty:
        return "No router of this pool predicts a per-query latency."
    best = routers.loc[routers["r2_replicate"].idxmax()]
    return (f"The best per-query latency prediction of a tuned router, {best.predictor}'s, predicts {best.r2_replicate:.0%} of "
            f"the variance of log latency in the other run ({best.r2_same_run:.0%} in this run's test split), against "
            f"{base.iloc[0].r2_replicate:.0%} for the model's training mean alone.")
