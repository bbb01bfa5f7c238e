"""Cost-quality frontier metrics (RouterBench, upstream digest 8.4).

A strategy is a point ``(avg cost, avg quality)`` on the test queries; a
cost-aware router swept over its cost weight is a set of points. Cost is the
pool's cost axis (:data:`mlsel.data.costs.COST_UNITS`: real USD, measured
latency in seconds, or a labelled proxy: answer length in characters or the
list price); tables name the unit.

Definitions
-----------
Non-decreasing hull
    The upper convex hull of a point set, from its cheapest point (highest
    quality among equally cheap ones) up to its highest-quality point (the
    cheapest of equally good ones). Any point on it is reachable by randomly
    mixing two of the strategies per query, and with more budget one can
    always keep the cheaper mix, so the quality reachable at a budget ``c`` is
    the hull's value at ``c``: 0 (unreachable) below the hull's cheapest
    point, flat beyond its highest-quality point.
Zero router
    The hull of the single models' points: the best quality reachable at each
    cost by mixing single models, with no per-query information at all.
AIQ
    ``(1 / (c_max - c_min)) * integral_{c_min}^{c_max} hull(c) dc``: the
    average quality over the budget range. The range is the single models'
    cost range (cheapest to most expensive single model on the same queries),
    so every router of a pool is measured over the same budgets. Parts of the
    hull outside the range do not count; a router with no point at or below a
    budget scores 0 there.
Cost to match the best single model
    The lowest cost at which the hull reaches the best single model's quality
    (best single chosen on the *training* split, quality measured on test);
    NaN when it never does.

Confidence intervals are 95% percentile bootstraps over test queries, paired:
every strategy and the zero router are resampled on the same query draws,
and the cost range is recomputed on each draw.
"""

from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from mlsel.metrics.bootstrap import ci95, resample_indices

log = logging.getLogger(__name__)

TOL = 1e-12


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))


def upper_hull(cost: Sequence[float], quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Vertices of the non-decreasing upper convex hull, sorted by cost.

    Parameters
    ----------
    cost, quality : (k,) one point per strategy or operating point (NaN points are ignored)

    Returns
    -------
    (hull_cost, hull_quality), each (h,) with h >= 1; costs strictly increasing,
    qualities strictly increasing.
    """
    c = np.asarray(cost, dtype=float).ravel()
    q = np.asarray(quality, dtype=float).ravel()
    if c.shape != q.shape:
        raise ValueError(f"cost {c.shape} and quality {q.shape} differ in shape")
    ok = ~(np.isnan(c) | np.isnan(q))
    c, q = c[ok], q[ok]
    if not len(c):
        raise ValueError("no points")
    order = np.lexsort((-q, c))  # by cost, then best quality first
    pts = np.column_stack([c[order], q[order]])
    # Keep the best point per distinct cost.
    keep = np.r_[True, np.diff(pts[:, 0]) > TOL]
    pts = pts[keep]
    hull: list[np.ndarray] = []
    for p in pts:  # Andrew's monotone chain, upper part (clockwise turns only)
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) >= -TOL:
            hull.pop()
        hull.append(p)
    h = np.array(hull)
    top = int(np.argmax(h[:, 1]))  # first (cheapest) maximum
    h = h[: top + 1]
    return h[:, 0].copy(), h[:, 1].copy()


def zero_router(single_cost: Sequence[float], single_quality: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """The zero router: the non-decreasing hull of the single models' (cost, quality) points."""
    return upper_hull(single_cost, single_quality)


def hull_quality(hull_cost: np.ndarray, hull_q: np.ndarray, at: float | np.ndarray) -> np.ndarray:
    """Quality reachable at budget ``at``: 0 below the hull, interpolated on it, flat beyond it."""
    at = np.asarray(at, dtype=float)
    val = np.interp(at, hull_cost, hull_q)
    return np.where(at < hull_cost[0] - TOL, 0.0, val)


def aiq(cost: Sequence[float], quality: Sequence[float], cost_min: float, cost_max: float) -> float:
    """Average quality under the points' non-decreasing hull over ``[cost_min, cost_max]``.

    See the module docstring; with ``cost_max <= cost_min`` (one cost only)
    this is the hull's quality at ``cost_min``.
    """
    hc, hq = upper_hull(cost, quality)
    if cost_max - cost_min <= TOL:
        return float(hull_quality(hc, hq, cost_min))
    inner = hc[(hc > cost_min) & (hc < cost_max)]
    xs = np.unique(np.r_[cost_min, inner, cost_max])
    area = 0.0
    for a, b in zip(xs[:-1], xs[1:]):
        if a < hc[0] - TOL:
            continue  # below the hull's cheapest point nothing is reachable; hc[0] is a breakpoint
        fa, fb = np.interp([a, b], hc, hq)
        area += 0.5 * (fa + fb) * (b - a)
    return float(area / (cost_max - cost_min))


def cost_to_match(cost: Sequence[float], quality: Sequence[float], target: float) -> float:
    """Lowest cost at which the points' hull reaches ``target`` quality; NaN if never."""
    hc, hq = upper_hull(cost, quality)
    if hq[-1] < target - 1e-12:
        return float("nan")
    if hq[0] >= target - 1e-12:
        return float(hc[0])
    j = int(np.argmax(hq >= target - 1e-12))
    c0, c1, q0, q1 = hc[j - 1], hc[j], hq[j - 1], hq[j]
    return float(c0 + (target - q0) * (c1 - c0) / (q1 - q0))


def aiq_table(
    pool: str,
    single_quality: np.ndarray,
    single_cost: np.ndarray,
    router_quality: Mapping[str, np.ndarray],
    router_cost: Mapping[str, np.ndarray],
    best_single: int,
    n_bootstrap: int,
    seed: int,
) -> pd.DataFrame:
    """AIQ per router and for the zero router, with paired bootstrap CIs over queries.

    Parameters
    ----------
    pool : pool name written in every row
    single_quality, single_cost : (n, m) per test query and single model
    router_quality, router_cost : router name -> (L, n), per operating point
        (e.g. cost weight) and test query: the chosen model's quality and cost
    best_single : column of the best single model chosen on the training split

    Returns
    -------
    DataFrame, one row per router plus one ``Zero router``: ``pool, router,
    n_points, aiq, ci_low, ci_high, aiq_minus_zero_router,
    aiq_minus_zero_router_ci_low, aiq_minus_zero_router_ci_high,
    cost_to_match_best_single, best_single_quality, cost_min, cost_max``.
    """
    n = single_quality.shape[0]
    idx = resample_indices(n, n_bootstrap, seed)

    def stats(qs: np.ndarray, cs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        # qs, cs: (k, n) -> point estimates (k,) and bootstrap means (B, k)
        qb = np.column_stack([row[idx].mean(axis=1) for row in qs])
        cb = np.column_stack([row[idx].mean(axis=1) for row in cs])
        return qs.mean(axis=1), cs.mean(axis=1), qb, cb

    sq, sc, sq_b, sc_b = stats(single_quality.T, single_cost.T)
    cmin, cmax = float(sc.min()), float(sc.max())
    cmin_b, cmax_b = sc_b.min(axis=1), sc_b.max(axis=1)
    zero = aiq(sc, sq, cmin, cmax)
    zero_b = np.array([aiq(sc_b[b], sq_b[b], cmin_b[b], cmax_b[b]) for b in range(n_bootstrap)])
    target = float(sq[best_single])
    zlo, zhi = ci95(zero_b)
    rows = [{
        "pool": pool, "router": "Zero router", "n_points": int(len(sq)), "aiq": zero, "ci_low": zlo, "ci_high": zhi,
        "aiq_minus_zero_router": 0.0, "aiq_minus_zero_router_ci_low": 0.0, "aiq_minus_zero_router_ci_high": 0.0,
        "cost_to_match_best_single": cost_to_match(sc, sq, target), "best_single_quality": target, "cost_min": cmin, "cost_max": cmax,
    }]
    for name in router_quality:
        rq, rc, rq_b, rc_b = stats(np.asarray(router_quality[name], float), np.asarray(router_cost[name], float))
        a = aiq(rc, rq, cmin, cmax)
        a_b = np.array([aiq(rc_b[b], rq_b[b], cmin_b[b], cmax_b[b]) for b in range(n_bootstrap)])
        lo, hi = ci95(a_b)
        dlo, dhi = ci95(a_b - zero_b)
        rows.append({
            "pool": pool, "router": name, "n_points": int(len(rq)), "aiq": a, "ci_low": lo, "ci_high": hi,
            "aiq_minus_zero_router": a - zero, "aiq_minus_zero_router_ci_low": dlo, "aiq_minus_zero_router_ci_high": dhi,
            "cost_to_match_best_single": cost_to_match(rc, rq, target), "best_single_quality": target, "cost_min": cmin, "cost_max": cmax,
        })
    return pd.DataFrame(rows)
