"""What ``quality_weight`` does where latency is measured: the utility-weight sweep.

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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import clone

from mlsel.data.outcomes import OutcomeMatrix
from mlsel.features import features_for
from mlsel.metrics.evaluate import latency_quantile, lookup_strategies
from mlsel.selection.baselines import BestSingleSelector
from mlsel.selection.registry import label, load_selector

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


def weight_sweep(folder: Path, names: list[str], tr: OutcomeMatrix, te: OutcomeMatrix, pool: str, weights: list[float],
                 embed_batch_size: int, device: str, min_queries: int) -> pd.DataFrame:
    """The sweep's rows for one pool (columns :data:`SWEEP_COLUMNS`); no rows without measured latency.

    ``folder`` holds the train stage's saved selectors ``names``; each is
    cloned with its saved parameters and refitted per weight on the features
    its manifest names.
    """
    if tr.latency_s is None or te.latency_s is None or np.isnan(tr.latency_s).any() or not weights:
        return pd.DataFrame(columns=SWEEP_COLUMNS)
    models = list(tr.models)
    fitted: dict[str, tuple] = {}
    feats: dict[tuple[str, float], tuple[np.ndarray, np.ndarray]] = {}
    for name in names:
        sel, manifest = load_selector(folder, name)
        key = (manifest["embedder"], float(manifest["onehot_weight"]))
        if key not in feats:
            feats[key] = (features_for(tr, key[0], key[1], embed_batch_size, device), features_for(te, key[0], key[1], embed_batch_size, device))
        fitted[name] = (sel, feats[key])
    rows, reference = [], {}
    for w in sorted(weights, reverse=True):
        strategies = [("Best single (train)", BestSingleSelector(quality_weight=w)
                       .fit(np.zeros((len(tr), 1)), tr.quality, tr.latency_s, models=models).predict_proba(np.zeros((len(te), 1))))]
        strategies += [(s.name, s.proba) for s in lookup_strategies(tr, te, w, min_queries) if s.kind == "category_lookup"]
        for name, (sel, (Xtr, Xte)) in fitted.items():
            refit = clone(sel).set_params(quality_weight=w).fit(Xtr, tr.quality, tr.latency_s, models=models)
            strategies.append((label(name), refit.predict_proba(Xte)))
        for name, proba in strategies:
            reference.setdefault(name, proba)  # the highest weight swept is each strategy's own reference
            rows.append(_row(pool, w, name, proba, te) | {"fast_choice_pct": _fast_share(proba, reference[name], te.latency_s)})
    return pd.DataFrame(rows, columns=SWEEP_COLUMNS)
