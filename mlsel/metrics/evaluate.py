"""Held-out evaluation: the seed's tables, computed honestly, with bootstrap CIs.

Strategies are evaluated through their choice distributions ``proba`` (n, m)
on the test queries, so the Random row is the exact expectation (the
per-query mean over the candidates), never one draw.

Definitions (per query, then averaged over the n test queries):

- quality: ``sum_j proba[j] * quality[j]``.
- Best Model %: the share of queries where the chosen model has the highest
  quality; **ties are credited** (any of the tied best models is a hit). A
  query where every model has the same quality (e.g. all score 0) is a hit
  for any choice; ``best_model_pct_decidable`` leaves those queries out.
- Oracle: the highest-quality model; ties go to the most efficient model
  (lowest latency, else shortest response), then to model order.
- Efficiency: ``avg_latency_s`` only where latency was measured, with
  ``median_latency_s`` and ``p90_latency_s``, the median and 90th percentile
  of the chosen answers' latencies (:func:`latency_quantile`; the tail is what
  users feel). Otherwise these columns are NaN and ``avg_response_chars``
  (answer length in characters, a proxy computed from the data, not a time) is
  reported; ``avg_cost_usd`` where the data has real costs.
- Uplifts: ``uplift_vs_random_pct = 100 (Q - Q_random) / Q_random``;
  ``uplift_vs_best_single = Q - Q_best_single`` (best single model chosen on
  the *training* split); ``uplift_vs_category_lookup = Q - Q_lookup``, the
  per-category lookup learned on the training split (static routing, the
  router's per-decision config with one model per category); ``gap_closed_pct = 100 (Q - Q_random) / (Q_oracle -
  Q_random)``; ``best_model_x_vs_random`` = Best Model % / random's.
- Confidence intervals: 95% percentile bootstrap over test queries, paired
  (every strategy is resampled on the same query draws), ``n_bootstrap``
  draws from ``seed``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import pandas as pd

from mlsel import CATEGORIES
from mlsel.data.costs import cost_matrix
from mlsel.data.outcomes import OutcomeMatrix
from mlsel.features import EmbedSettings, features_for
from mlsel.metrics.bootstrap import ci95, resample_indices
from mlsel.params import BaseParams, default
from mlsel.selection.base import TIE_TOL, Selector
from mlsel.selection.baselines import AlwaysSelector, BestSingleSelector, RandomSelector
from mlsel.selection.lookup import GroupLookup
from mlsel.selection.registry import label, load_selector

log = logging.getLogger(__name__)



def oracle_proba(test: OutcomeMatrix) -> np.ndarray:
    """Oracle choice (n, m): best quality, ties to the most efficient, then model order."""
    q = test.quality
    eff, _ = cost_matrix(test)
    tied = q >= q.max(axis=1, keepdims=True) - TIE_TOL
    n, m = q.shape
    key = np.where(tied, eff if eff is not None else np.zeros_like(q), np.inf)
    # Lowest efficiency cost among the tied; argmin takes model order on equal cost.
    idx = np.argmin(key, axis=1)
    out = np.zeros((n, m))
    out[np.arange(n), idx] = 1.0
    return out


@dataclass
class Strategy:
    """One row of the results table: a named choice distribution over models."""

    name: str
    kind: str  # oracle | selector | best_single | category_lookup | task_lookup | always | random
    proba: np.ndarray
    model: str = ""  # the one model a best_single / always row picks ("" otherwise): data, never parsed from ``name``


LOOKUP_MIN_QUERIES: int = default(BaseParams, "lookup_min_queries")

CATEGORY_LOOKUP = "Per-category lookup on train"
TASK_LOOKUP = "Per-task lookup on train (benchmark-only)"


class FittedLookup(NamedTuple):
    """One static lookup fitted on a training split, with the groups of the test queries it routes."""

    lookup: str
    """``category`` or ``task``."""
    fitted: GroupLookup
    test_groups: np.ndarray


def fitted_lookups(train: OutcomeMatrix, test: OutcomeMatrix, quality_weight: float,
                   min_queries: int = LOOKUP_MIN_QUERIES) -> list[FittedLookup]:
    """The static lookups fitted on ``train`` once each: ``category`` always and ``task`` where both splits name tasks.

    One fit serves both the strategies (:func:`lookup_strategies`, :func:`baseline_strategies`) and the
    lookups' content (:func:`lookup_table`)."""
    out = []
    for lookup, tr_groups, te_groups in [("category", train.categories, test.categories), ("task", train.tasks, test.tasks)]:
        if tr_groups is None or te_groups is None:
            continue
        lk = GroupLookup.fit(tr_groups, train.quality, train.latency_s, list(train.models), quality_weight, min_queries)
        out.append(FittedLookup(lookup, lk, np.asarray(te_groups, dtype=str)))
    return out


LOOKUP_STRATEGIES = {"category": (CATEGORY_LOOKUP, "category_lookup"), "task": (TASK_LOOKUP, "task_lookup")}
"""Each lookup's strategy name and kind in the results tables."""


def lookup_strategies(lookups: list[FittedLookup]) -> list[Strategy]:
    """The static lookups (:mod:`mlsel.selection.lookup`, fitted by :func:`fitted_lookups`) as strategies on their test queries.

    Per category always; per task where both splits name tasks (a benchmark-only
    reference: a router does not know a query's task). Which group took which
    model, and how many queries took the fallback: :func:`lookup_table`.
    """
    return [Strategy(*LOOKUP_STRATEGIES[lookup], lk.predict_proba(te_groups)) for lookup, lk, te_groups in lookups]


def lookup_table(lookups: list[FittedLookup], pool: str) -> pd.DataFrame:
    """The static lookups' content: one row per pool, lookup and group (every group of either split; for
    the category lookup, every category of :data:`mlsel.CATEGORIES`, so the table is a complete static config).

    Columns: ``lookup`` (category | task), ``group``, ``n_train``, ``n_test``,
    ``model`` (the group's choice), ``source`` (``train`` where the group's own
    training mean chose it; ``fallback: unseen`` or ``fallback: n_train <
    min_queries`` where the best single model stands in). ``lookups``: :func:`fitted_lookups`.
    """
    rows = []
    for lookup, lk, te_groups in lookups:
        min_queries = lk.min_queries
        every = set(CATEGORIES) if lookup == "category" else set()
        for g in sorted(set(lk.n_train) | set(te_groups) | every):
            n_tr = lk.n_train.get(g, 0)
            source = "train" if g in lk.table else ("fallback: unseen" if n_tr == 0 else f"fallback: n_train < {min_queries}")
            rows.append({"pool": pool, "lookup": lookup, "group": g, "n_train": n_tr, "n_test": int((te_groups == g).sum()),
                         "model": lk.models[lk.predict_index([g])[0]], "source": source})
    return pd.DataFrame(rows, columns=["pool", "lookup", "group", "n_train", "n_test", "model", "source"])


def baseline_strategies(train: OutcomeMatrix, test: OutcomeMatrix, quality_weight: float, min_queries: int = LOOKUP_MIN_QUERIES,
                        lookups: list[FittedLookup] | None = None) -> list[Strategy]:
    """The exact baselines over ``train.models``, for the held-out queries ``test`` (only their groups are read).

    Best single (chosen on ``train``), the static lookups (:func:`lookup_strategies`),
    one Always row per model, and Random as the exact expectation (uniform
    choice distribution). The Oracle needs the test outcomes: see :func:`oracle_proba`.
    ``lookups``: the static lookups already fitted on ``train`` and ``test`` with these settings
    (:func:`fitted_lookups`); None fits them here.
    """
    models = list(train.models)
    n_test = len(test)
    dummy = np.zeros((len(train), 1))
    xte = np.zeros((n_test, 1))
    fit = dict(quality=train.quality, latency_s=train.latency_s, models=models)
    best = BestSingleSelector(quality_weight=quality_weight).fit(dummy, **fit)
    out = [Strategy(f"Best single on train ({best.model_})", "best_single", best.predict_proba(xte), model=best.model_)]
    out += lookup_strategies(fitted_lookups(train, test, quality_weight, min_queries) if lookups is None else lookups)
    for model in models:
        always = AlwaysSelector(model=model, quality_weight=quality_weight).fit(dummy, **fit)
        out.append(Strategy(f"Always {model}", "always", always.predict_proba(xte), model=model))
    rnd = RandomSelector(quality_weight=quality_weight).fit(dummy, **fit)
    out.append(Strategy("Random Selection (expected)", "random", rnd.predict_proba(xte)))
    return out


class SavedSelector(NamedTuple):
    """A selector the train stage saved, with its features of each matrix asked for (:func:`saved_selectors`)."""

    name: str
    selector: Selector
    features: tuple[np.ndarray, ...]


def saved_selectors(folder: Path, names: list[str], matrices: Sequence[OutcomeMatrix], embed: EmbedSettings,
                    models: list[str] | None = None) -> list[SavedSelector]:
    """The selectors the train stage saved in ``folder`` (``names``), each with its features of every matrix of ``matrices``.

    The features are those the selector's manifest names (embedder, one-hot
    weight), built once per setting, matrix by matrix; with ``models``, a
    selector fitted on other models is an error.
    """
    out, feats = [], {}
    for name in names:
        sel, manifest = load_selector(folder, name)
        if models is not None and manifest["models"] != list(models):
            raise ValueError(f"selector {folder.name}/{name} was fitted on models {manifest['models']}, the pool has {models}; rerun train")
        key = (manifest["embedder"], float(manifest["onehot_weight"]))
        if key not in feats:
            feats[key] = tuple(features_for(m, key[0], key[1], embed) for m in matrices)
        out.append(SavedSelector(name, sel, feats[key]))
    return out


def saved_selector_strategies(folder: Path, names: list[str], models: list[str], te: OutcomeMatrix, tr: OutcomeMatrix,
                              quality_weight: float, embed: EmbedSettings, lookup_min_queries: int = LOOKUP_MIN_QUERIES,
                              lookups: list[FittedLookup] | None = None, saved: list[SavedSelector] | None = None) -> list[Strategy]:
    """Oracle, the selectors the train stage saved in ``folder`` (``names``) and the baselines, on the test queries ``te``.

    Each selector gets the features its manifest names (:func:`saved_selectors`);
    a selector fitted on other models than ``models`` is an error. ``saved``:
    those selectors already loaded, their last features being those of ``te``
    (then ``folder`` and ``names`` are not read). ``lookups``: see
    :func:`baseline_strategies`.
    """
    if saved is None:
        saved = saved_selectors(folder, names, [te], embed, models)
    strategies = [Strategy("Oracle (best possible)", "oracle", oracle_proba(te))]
    strategies += [Strategy(label(s.name), "selector", s.selector.predict_proba(s.features[-1])) for s in saved]
    return strategies + baseline_strategies(tr, te, quality_weight, lookup_min_queries, lookups)


def latency_quantile(proba: np.ndarray, latency: np.ndarray | None, q: float) -> float:
    """The ``q``-quantile of the chosen answers' latency: each test query weighs 1, split over its models by ``proba``.

    The inverted CDF of that mixture: the smallest latency at which the chosen
    answers' cumulative share reaches ``q`` (for one model per query, the
    ``ceil(q n)``-th smallest chosen latency). NaN without measured latency or
    when a chosen answer's latency is missing.
    """
    if latency is None:
        return np.nan
    keep = proba.ravel() > 0
    values = latency.ravel()[keep]
    if np.isnan(values).any():
        return np.nan
    return float(np.quantile(values, q, weights=proba.ravel()[keep], method="inverted_cdf"))


def _results_row(s: Strategy, pool: str, test: OutcomeMatrix, per_q: dict, hit: dict, boot: dict, boot_hit: dict,
                 names: dict[str, str], decidable: np.ndarray) -> dict:
    """One strategy's row: quality, efficiency, Best Model %, uplifts, each with its paired bootstrap CI."""
    r_name, o_name, b_name = names["random"], names["oracle"], names["best_single"]
    Qr, Qo, Qb = per_q[r_name].mean(), per_q[o_name].mean(), per_q[b_name].mean()
    Q = per_q[s.name].mean()
    bq = boot[s.name]
    with np.errstate(divide="ignore", invalid="ignore"):
        up_r = 100 * (bq - boot[r_name]) / boot[r_name]
        gap = 100 * (bq - boot[r_name]) / (boot[o_name] - boot[r_name])
    d_best = bq - boot[b_name]
    lk_name = names.get("category_lookup")
    d_lk = bq - boot[lk_name] if lk_name else np.full_like(bq, np.nan)
    Qlk = per_q[lk_name].mean() if lk_name else np.nan
    hit_rate = hit[s.name].mean()
    rand_hit = hit[r_name].mean()
    return {
        "pool": pool,
        "strategy": s.name,
        "kind": s.kind,
        "model": s.model,
        "n_queries": len(per_q[s.name]),
        "avg_quality": Q,
        "avg_quality_ci_low": ci95(bq)[0],
        "avg_quality_ci_high": ci95(bq)[1],
        "avg_latency_s": float((s.proba * test.latency_s).sum(axis=1).mean()) if test.latency_s is not None else np.nan,
        "median_latency_s": latency_quantile(s.proba, test.latency_s, 0.5),
        "p90_latency_s": latency_quantile(s.proba, test.latency_s, 0.9),
        "avg_response_chars": float((s.proba * test.response_chars).sum(axis=1).mean()) if test.response_chars is not None else np.nan,
        "avg_cost_usd": float((s.proba * test.cost_usd).sum(axis=1).mean()) if test.cost_usd is not None else np.nan,
        "avg_list_price": float((s.proba * test.list_price).sum(axis=1).mean()) if test.list_price is not None else np.nan,
        "best_model_pct": 100 * hit_rate,
        "best_model_pct_ci_low": 100 * ci95(boot_hit[s.name])[0],
        "best_model_pct_ci_high": 100 * ci95(boot_hit[s.name])[1],
        "best_model_pct_decidable": 100 * hit[s.name][decidable].mean() if decidable.any() else np.nan,
        "best_model_x_vs_random": hit_rate / rand_hit if rand_hit > 0 else np.nan,
        "uplift_vs_random_pct": 100 * (Q - Qr) / Qr if Qr > 0 else np.nan,
        "uplift_vs_random_pct_ci_low": ci95(up_r)[0],
        "uplift_vs_random_pct_ci_high": ci95(up_r)[1],
        "uplift_vs_best_single": Q - Qb,
        "uplift_vs_best_single_ci_low": ci95(d_best)[0],
        "uplift_vs_best_single_ci_high": ci95(d_best)[1],
        "uplift_vs_category_lookup": Q - Qlk,
        "uplift_vs_category_lookup_ci_low": ci95(d_lk)[0] if lk_name else np.nan,
        "uplift_vs_category_lookup_ci_high": ci95(d_lk)[1] if lk_name else np.nan,
        "gap_closed_pct": 100 * (Q - Qr) / (Qo - Qr) if Qo > Qr else np.nan,
        "gap_closed_pct_ci_low": ci95(gap)[0],
        "gap_closed_pct_ci_high": ci95(gap)[1],
    }


def _breakdowns(test: OutcomeMatrix, strategies: list[Strategy], per_q: dict, pool: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-category quality (strategy x category) and selection shares (strategy x model)."""
    cat_rows, share_rows = [], []
    cats = sorted(set(test.categories))
    for s in strategies:
        for c in cats:
            mask = test.categories == c
            cat_rows.append(
                {"pool": pool, "strategy": s.name, "kind": s.kind, "category": c, "n_queries": int(mask.sum()),
                 "avg_quality": float(per_q[s.name][mask].mean())}
            )
        share = s.proba.mean(axis=0)
        for j, model in enumerate(test.models):
            share_rows.append({"pool": pool, "strategy": s.name, "kind": s.kind, "model": model, "share_pct": 100 * float(share[j])})
    return pd.DataFrame(cat_rows), pd.DataFrame(share_rows)


def evaluate(
    test: OutcomeMatrix,
    strategies: list[Strategy],
    pool: str,
    n_bootstrap: int,
    seed: int,
) -> dict[str, pd.DataFrame]:
    """Evaluate strategies on held-out queries.

    Parameters
    ----------
    test : the test split's outcomes (n queries x m models)
    strategies : must include exactly one of kind ``oracle``, ``random`` and
        ``best_single``
    pool : pool name written in every row

    Returns
    -------
    dict with tidy DataFrames ``results`` (one row per strategy),
    ``per_category`` (strategy x category) and ``selection_share``
    (strategy x model).
    """
    q = test.quality
    n, m = q.shape
    if n == 0:
        raise ValueError(f"pool {pool}: no test queries")
    best = q >= q.max(axis=1, keepdims=True) - TIE_TOL
    decidable = ~best.all(axis=1)
    kinds = {s.kind: s for s in strategies}
    for need in ("oracle", "random", "best_single"):
        if need not in kinds:
            raise ValueError(f"strategies must include a {need!r} row")
    names = {k: kinds[k].name for k in ("oracle", "random", "best_single", "category_lookup") if k in kinds}
    per_q = {s.name: (s.proba * q).sum(axis=1) for s in strategies}
    hit = {s.name: (s.proba * best).sum(axis=1) for s in strategies}
    idx = resample_indices(n, n_bootstrap, seed)  # one draw of queries for every strategy: the CIs are paired
    boot = {name: v[idx].mean(axis=1) for name, v in per_q.items()}
    boot_hit = {name: v[idx].mean(axis=1) for name, v in hit.items()}
    results = pd.DataFrame([_results_row(s, pool, test, per_q, hit, boot, boot_hit, names, decidable) for s in strategies])
    per_category, selection_share = _breakdowns(test, strategies, per_q, pool)
    return {"results": results, "per_category": per_category, "selection_share": selection_share}


