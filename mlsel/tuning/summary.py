"""Does routing pay on this data? One summary row per pool, everything chosen on the training split.

The cross-dataset metrics (LLMRouterBench, RouterBench), on the held-out queries:

Router
    The candidate chosen by the one-standard-error rule on the CV inside the
    training split (:mod:`mlsel.metrics.one_se`; never the best on test): the
    simplest of the best single model, the per-category lookup and the tuned
    selectors and routers (in that order) whose mean CV utility is within one
    standard error of its paired per-fold difference to the CV-best. It can be
    a static choice. The plain arg-max (the highest mean CV utility) is kept
    beside it (``argmax_router``, with its Gain@B and its gain over the lookup
    and their CIs), so both can be compared.
Gain@B
    ``Q_router - Q_best_single``: quality minus the best single model's, the
    best single model chosen on the training split.
Gap@O
    ``100 (Q_router - Q_best_single) / (Q_oracle - Q_best_single)``: the share
    of the best-single -> oracle gap closed (``gap_closed_pct``); the share of
    the random -> oracle gap is ``gap_closed_random_pct``.
CostSave@B
    ``100 (1 - C_op / C_best_single)``: the cost saved at the operating point
    chosen on CV to keep at least the best single model's quality: the
    candidates are the best single model itself, the per-category lookup if
    its CV quality reaches the best single model's, and each cost-aware
    router's cheapest CV point that does (:func:`mlsel.tuning.choice.operating_points`
    at ratio 1); among them the one-standard-error rule on the per-fold CV
    cost picks the simplest within one standard error of the cheapest
    (:func:`mlsel.tuning.choice.rule_point`). Where that is the best single
    model the saving is 0: CV showed none beyond its noise. Its held-out
    quality is reported beside it (``op_quality``), since CV can miss.
Matched point
    The same choice at ``tune_match_quality_ratio`` of the best single model's
    quality (``matched_*``): the share of its quality kept and of its cost paid.
Static routing
    The per-category lookup learned on the training split (each category to
    its best training model, :mod:`mlsel.selection.lookup`: what the router's
    per-decision config can do without ML): its quality, its gain over the
    best single model (``lookup_gain_at_b``) and the router's gain over it
    (``gain_vs_lookup``), each with its CI; the per-task lookup's quality
    (``task_lookup_quality``, benchmark-only: a router does not know the task).
    ``verdict``, from the intervals: "ML routing beats static routing" when
    the router's gains over the best single model and over the lookup both
    have CI low > 0; else "static routing is enough" when the router's or the
    lookup's gain over the best single model has CI low > 0; else "neither
    beats the best single model".
Peers
    The peers' published routers (:mod:`mlsel.selection.peers`), fitted with
    their sources' settings on the same split: the best of them on the
    held-out queries (``best_peer``, ``best_peer_quality``; chosen on test,
    so the strongest competitor) and the router's paired gain over it
    (``gain_vs_peer`` with CI).
AIQ - zero
    The AIQ of the cost-aware router with the highest AIQ on its CV sweep
    (over the single models' CV cost range; :func:`cv_aiq_router`) minus the
    zero router's, on the held-out queries, from ``aiq.csv``.

Every interval is a 95% paired bootstrap over the held-out queries (the same
draws for every quantity of the row); ratios are recomputed on each draw.
Costs are in the pool's cost unit (``cost_unit``): USD where the data has a
real per-query cost, otherwise a labelled proxy.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlsel.data.costs import cost_matrix, fill_missing_cost
from mlsel.metrics.bootstrap import ci95, resample_indices
from mlsel.metrics.evaluate import CATEGORY_LOOKUP as LOOKUP_LABEL
from mlsel.metrics.evaluate import LOOKUP_MIN_QUERIES, oracle_proba
from mlsel.metrics.frontier import aiq as area_quality
from mlsel.metrics.one_se import BEST_SINGLE, CATEGORY_LOOKUP, STATIC_CANDIDATES, fit_static
from mlsel.selection.base import best_single_index
from mlsel.selection.peers import PEER_LABELS
from mlsel.selection.registry import label
from mlsel.tuning.choice import cv_mean
from mlsel.tuning.cv import PoolData, TunePlan
from mlsel.tuning.final import Fitted

SUMMARY_COLUMNS = [
    "pool", "split", "n_train", "n_test", "best_single", "best_single_quality", "oracle_quality", "random_quality",
    "router", "router_quality", "gain_at_b", "gain_at_b_ci_low", "gain_at_b_ci_high",
    "argmax_router", "argmax_gain_at_b", "argmax_gain_at_b_ci_low", "argmax_gain_at_b_ci_high",
    "argmax_gain_vs_lookup", "argmax_gain_vs_lookup_ci_low", "argmax_gain_vs_lookup_ci_high",
    "gap_closed_pct", "gap_closed_pct_ci_low", "gap_closed_pct_ci_high", "gap_closed_random_pct",
    "category_lookup_quality", "lookup_gain_at_b", "lookup_gain_at_b_ci_low", "lookup_gain_at_b_ci_high",
    "gain_vs_lookup", "gain_vs_lookup_ci_low", "gain_vs_lookup_ci_high", "task_lookup_quality", "verdict",
    "best_peer", "best_peer_quality", "gain_vs_peer", "gain_vs_peer_ci_low", "gain_vs_peer_ci_high",
    "cost_unit", "best_single_cost", "cost_router", "cost_lambda", "op_quality", "op_cost",
    "cost_save_at_b_pct", "cost_save_at_b_ci_low", "cost_save_at_b_ci_high",
    "matched_target_pct", "matched_router", "matched_cost_lambda", "matched_quality_pct", "matched_quality_pct_ci_low", "matched_quality_pct_ci_high",
    "matched_cost_pct", "matched_cost_pct_ci_low", "matched_cost_pct_ci_high",
    "aiq_router", "aiq_minus_zero", "aiq_minus_zero_ci_low", "aiq_minus_zero_ci_high",
]


def cv_router(cv: pd.DataFrame, pool: str, names: list[str]) -> str:
    """The plain arg-max: the tuned selector or router with the highest mean CV utility (ties: first in ``names``)."""
    chosen = cv[(cv["pool"] == pool) & cv["chosen"]].set_index("selector")["cv_utility_mean"]
    return max(names, key=lambda n: (chosen.get(n, -np.inf), -names.index(n)))


def cheapest_point(operating: dict[tuple[str, str], dict[str, Any]], pool: str, unit: str | None) -> tuple[str, float] | None:
    """Among a pool's CV operating points (one per router), the cheapest in CV cost (ties: higher CV quality); None if none."""
    points = [(name, op) for (p, name), op in operating.items() if p == pool]
    if not points or unit is None:
        return None
    name, op = min(points, key=lambda x: (x[1][f"cv_avg_{unit}"], -x[1]["cv_quality_mean"]))
    return name, float(op["cost_lambda"])


def cv_aiq_router(d: PoolData, sweep: pd.DataFrame, folds: pd.DataFrame | None, names: list[str]) -> str | None:
    """The cost-aware router whose CV sweep has the highest AIQ (training data only; ties: first in ``names``).

    The budget range is the single models' CV cost range, their CV points the
    zero router's, as :func:`mlsel.metrics.frontier.aiq_table` does on test.
    """
    cost, unit = cost_matrix(d.tr)
    if cost is None or not names:
        return None
    cost = fill_missing_cost(cost)  # each model's training mean, as cv_task charges the routers
    single_cost = [cv_mean(d, folds, cost[:, j]) for j in range(len(d.models))]
    cmin, cmax = min(single_cost), max(single_cost)
    scores = {}
    for name in names:
        s = sweep[(sweep["pool"] == d.name) & (sweep["router"] == name)]
        if not s.empty:
            scores[name] = area_quality(s[f"cv_avg_{unit}"], s["cv_quality_mean"], cmin, cmax)
    return max(scores, key=lambda n: (scores[n], -names.index(n))) if scores else None


def static_choices(d: PoolData, quality_weight: float, min_queries: int = LOOKUP_MIN_QUERIES) -> dict[str, np.ndarray]:
    """The static candidates' model index per test query, fitted on the whole training split: the best single model and
    the per-category lookup (:mod:`mlsel.selection.lookup`, as the tuned results' baselines fit them)."""
    best, lookup = fit_static(d.tr, quality_weight, min_queries)
    return {BEST_SINGLE: np.full(len(d.te), best), CATEGORY_LOOKUP: lookup.predict_index(d.te.categories)}


def candidate_label(name: str, d: PoolData, quality_weight: float) -> str:
    """A candidate's strategy name in the tuned results: the best single model's and the lookup's baseline names, else the
    tuned selector's label."""
    if name == BEST_SINGLE:
        return f"Best single on train ({d.models[best_single_index(d.tr.quality, d.tr.latency_s, quality_weight)]})"
    if name == CATEGORY_LOOKUP:
        return LOOKUP_LABEL
    return label(name, tuned=True)


def candidate_proba(d: PoolData, fitted: Fitted, name: str, static: dict[str, np.ndarray]) -> np.ndarray:
    """A candidate's choice distribution on the test queries (n_test, m): a static one's one-hot, else its final fit's."""
    if name in STATIC_CANDIDATES:
        return np.eye(len(d.models))[static[name]]
    return fitted[(d.name, name)].proba


def _op_choice(fitted: Fitted, plan: TunePlan, pool: str, point: tuple[str, float] | None,
               static: dict[str, np.ndarray] | None = None) -> np.ndarray | None:
    """Test-split model index per query of a router at a cost weight (from its sweep), or of a static candidate; or None."""
    if point is None:
        return None
    name, lam = point
    if name in STATIC_CANDIDATES:
        return None if static is None else static[name]
    sweep = fitted[(pool, name)].sweep
    return None if sweep is None else np.asarray(sweep[plan.lambdas.index(lam)])


def _ratio(num: np.ndarray, den: np.ndarray, idx: np.ndarray) -> tuple[float, float, float]:
    """``100 * mean(num) / mean(den)`` and its paired bootstrap CI over the draws ``idx``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        boot = 100 * num[idx].mean(axis=1) / den[idx].mean(axis=1)
    lo, hi = ci95(np.where(np.isfinite(boot), boot, np.nan))  # a draw with a zero denominator has no ratio
    return float(100 * num.mean() / den.mean()) if den.mean() else np.nan, lo, hi


@dataclass(frozen=True)
class CVChoices:
    """What the cross-validation chose for one pool: the summary row's choices, none made on test."""

    router: str
    """The headline: the candidate the one-standard-error rule chose (a static candidate's name,
    :data:`mlsel.metrics.one_se.STATIC_CANDIDATES`, or a tuned selector's or router's)."""
    at_best: tuple[str, float] | None = None
    """(candidate, cost weight): the point keeping the best single model's CV quality that the rule chose (CostSave@B);
    the cost weight is NaN for a static candidate."""
    matched: tuple[str, float] | None = None
    """(candidate, cost weight): the same at ``match_ratio`` of it (the matched point)."""
    aiq_router: str | None = None
    """The router with the highest CV AIQ (:func:`cv_aiq_router`)."""
    argmax: str | None = None
    """The plain arg-max of the CV (:func:`cv_router`), reported beside the rule's choice; None: the same as ``router``."""


@dataclass(frozen=True)
class SummarySettings:
    """How the summary row scores: the user's utility weight, the bootstrap, the matched point's target ratio."""

    quality_weight: float
    n_bootstrap: int
    seed: int
    match_ratio: float = 1.0
    min_queries: int = LOOKUP_MIN_QUERIES
    """The per-category lookup's smallest group (``lookup_min_queries``)."""


def summary_row(d: PoolData, fitted: Fitted, plan: TunePlan, choices: CVChoices,
                cost_te: np.ndarray | None, aiq: pd.DataFrame | None, settings: SummarySettings) -> dict[str, Any]:
    """One pool's summary row (see the module docstring)."""
    te, ar = d.te, np.arange(len(d.te))
    best = best_single_index(d.tr.quality, d.tr.latency_s, settings.quality_weight)
    router, op_b, op_m, aiq_router = choices.router, choices.at_best, choices.matched, choices.aiq_router
    n_bootstrap, seed, match_ratio = settings.n_bootstrap, settings.seed, settings.match_ratio
    static = static_choices(d, settings.quality_weight, settings.min_queries)
    q_r = (candidate_proba(d, fitted, router, static) * te.quality).sum(axis=1)
    q_b, q_o, q_rand = te.quality[:, best], (oracle_proba(te) * te.quality).sum(axis=1), te.quality.mean(axis=1)
    idx = resample_indices(len(te), n_bootstrap, seed)
    gain_lo, gain_hi = ci95((q_r - q_b)[idx].mean(axis=1))
    gap = _ratio(q_r - q_b, q_o - q_b, idx)
    row: dict[str, Any] = {
        "pool": d.name, "n_train": len(d.tr), "n_test": len(te), "best_single": d.models[best], "best_single_quality": q_b.mean(),
        "oracle_quality": q_o.mean(), "random_quality": q_rand.mean(), "router": candidate_label(router, d, settings.quality_weight),
        "router_quality": q_r.mean(), "gain_at_b": (q_r - q_b).mean(), "gain_at_b_ci_low": gain_lo, "gain_at_b_ci_high": gain_hi,
        "gap_closed_pct": gap[0], "gap_closed_pct_ci_low": gap[1], "gap_closed_pct_ci_high": gap[2],
        "gap_closed_random_pct": _ratio(q_r - q_rand, q_o - q_rand, idx)[0], "cost_unit": d.unit or "",
    }
    argmax = choices.argmax or router
    q_a = (candidate_proba(d, fitted, argmax, static) * te.quality).sum(axis=1)
    q_l = te.quality[np.arange(len(te)), static[CATEGORY_LOOKUP]]
    a_lo, a_hi = ci95((q_a - q_b)[idx].mean(axis=1))
    l_lo, l_hi = ci95((q_a - q_l)[idx].mean(axis=1))
    row.update({"argmax_router": candidate_label(argmax, d, settings.quality_weight), "argmax_gain_at_b": (q_a - q_b).mean(),
                "argmax_gain_at_b_ci_low": a_lo, "argmax_gain_at_b_ci_high": a_hi, "argmax_gain_vs_lookup": (q_a - q_l).mean(),
                "argmax_gain_vs_lookup_ci_low": l_lo, "argmax_gain_vs_lookup_ci_high": l_hi})
    if cost_te is None:
        return row
    c_b = cost_te[:, best]
    row["best_single_cost"] = c_b.mean()
    choice = _op_choice(fitted, plan, d.name, op_b, static)
    if choice is not None:
        c_op = cost_te[ar, choice]
        save = _ratio(c_b - c_op, c_b, idx)
        row.update({"cost_router": op_b[0], "cost_lambda": op_b[1], "op_quality": te.quality[ar, choice].mean(), "op_cost": c_op.mean(),
                    "cost_save_at_b_pct": save[0], "cost_save_at_b_ci_low": save[1], "cost_save_at_b_ci_high": save[2]})
    matched = _op_choice(fitted, plan, d.name, op_m, static)
    if matched is not None:
        qm, cm = _ratio(te.quality[ar, matched], q_b, idx), _ratio(cost_te[ar, matched], c_b, idx)
        row.update({"matched_target_pct": 100 * match_ratio, "matched_router": op_m[0], "matched_cost_lambda": op_m[1],
                    "matched_quality_pct": qm[0], "matched_quality_pct_ci_low": qm[1], "matched_quality_pct_ci_high": qm[2],
                    "matched_cost_pct": cm[0], "matched_cost_pct_ci_low": cm[1], "matched_cost_pct_ci_high": cm[2]})
    if aiq is not None and aiq_router is not None and (aiq["router"] == aiq_router).any():
        a = aiq[aiq["router"] == aiq_router].iloc[0]
        row.update({"aiq_router": aiq_router, "aiq_minus_zero": a["aiq_minus_zero_router"],
                    "aiq_minus_zero_ci_low": a["aiq_minus_zero_router_ci_low"], "aiq_minus_zero_ci_high": a["aiq_minus_zero_router_ci_high"]})
    return row


VERDICTS = ("ML routing beats static routing", "static routing is enough", "neither beats the best single model")


def static_columns(tuned: pd.DataFrame, router: str, gain_at_b_ci_low: float) -> dict[str, Any]:
    """The static-routing columns of one pool's summary row, from its tuned results table (the same paired draws).

    ``router`` is the CV-chosen router's strategy name in ``tuned``.
    """
    by_kind = tuned.set_index("kind")
    lookup = by_kind.loc["category_lookup"]
    r = tuned[tuned["strategy"] == router].iloc[0]
    lk_low = float(lookup["uplift_vs_best_single_ci_low"])
    if gain_at_b_ci_low > 0 and r["uplift_vs_category_lookup_ci_low"] > 0:
        verdict = VERDICTS[0]
    elif gain_at_b_ci_low > 0 or lk_low > 0:
        verdict = VERDICTS[1]
    else:
        verdict = VERDICTS[2]
    return {"category_lookup_quality": lookup["avg_quality"], "lookup_gain_at_b": lookup["uplift_vs_best_single"],
            "lookup_gain_at_b_ci_low": lk_low, "lookup_gain_at_b_ci_high": lookup["uplift_vs_best_single_ci_high"],
            "gain_vs_lookup": r["uplift_vs_category_lookup"], "gain_vs_lookup_ci_low": r["uplift_vs_category_lookup_ci_low"],
            "gain_vs_lookup_ci_high": r["uplift_vs_category_lookup_ci_high"],
            "task_lookup_quality": by_kind.loc["task_lookup", "avg_quality"] if "task_lookup" in by_kind.index else np.nan,
            "verdict": verdict}


def peer_columns(d: PoolData, fitted: Fitted, peers: list[str], router_name: str,
                 n_bootstrap: int, seed: int, router_proba: np.ndarray | None = None) -> dict[str, Any]:
    """The best of ``peers`` on the held-out queries and the paired gain over it of the router ``router_name`` (its
    name in ``fitted``, or its choice distribution ``router_proba`` on the test queries, e.g. a static candidate's);
    empty without peers. The draws are the summary row's (``n_bootstrap``, ``seed``)."""
    if not peers:
        return {}
    q = {name: (fitted[(d.name, name)].proba * d.te.quality).sum(axis=1) for name in peers}
    proba = fitted[(d.name, router_name)].proba if router_proba is None else router_proba
    best = max(peers, key=lambda n: (q[n].mean(), -peers.index(n)))
    diff = (proba * d.te.quality).sum(axis=1) - q[best]
    lo, hi = ci95(diff[resample_indices(len(diff), n_bootstrap, seed)].mean(axis=1))
    return {"best_peer": PEER_LABELS[best], "best_peer_quality": q[best].mean(), "gain_vs_peer": diff.mean(),
            "gain_vs_peer_ci_low": lo, "gain_vs_peer_ci_high": hi}


def summary_table(rows: list[dict[str, Any]], split: str) -> pd.DataFrame:
    """summary.csv of one run folder: one row per pool, :data:`SUMMARY_COLUMNS`."""
    df = pd.DataFrame(rows).reindex(columns=SUMMARY_COLUMNS)
    df["split"] = split
    return df
