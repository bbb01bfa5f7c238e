"""Known-answer tests for the cost-quality frontier metrics (hand-computed hulls and areas)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlsel.metrics.frontier import aiq, aiq_table, cost_to_match, hull_quality, upper_hull, zero_router


def test_upper_hull_drops_dominated_and_concave_points():
    # (1, .2) (2, .3) (3, .7) (4, .5) (5, .8): (2, .3) lies below the chord (1,.2)-(3,.7);
    # (4, .5) is below; the hull is (1,.2) (3,.7) (5,.8).
    hc, hq = upper_hull([2, 1, 3, 5, 4], [0.3, 0.2, 0.7, 0.8, 0.5])
    np.testing.assert_allclose(hc, [1, 3, 5])
    np.testing.assert_allclose(hq, [0.2, 0.7, 0.8])


def test_upper_hull_is_non_decreasing_and_keeps_cheapest_best():
    # The most expensive point is worse than a cheaper one: the hull stops at the best point.
    hc, hq = upper_hull([1, 2, 3], [0.5, 0.9, 0.6])
    np.testing.assert_allclose(hc, [1, 2])
    np.testing.assert_allclose(hq, [0.5, 0.9])
    # Two points at the same cost: the better one is kept; equal best qualities: the cheaper one.
    hc, hq = upper_hull([1, 1, 2, 4], [0.1, 0.4, 0.8, 0.8])
    np.testing.assert_allclose(hc, [1, 2])
    np.testing.assert_allclose(hq, [0.4, 0.8])
    # Collinear middle points are not vertices.
    hc, hq = upper_hull([0, 1, 2], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(hc, [0, 2])


def test_aiq_known_areas():
    # Hull (1,.2)-(3,.7)-(5,.8) on [1, 5]: trapezoids 2*(.2+.7)/2 + 2*(.7+.8)/2 = .9 + 1.5 = 2.4; / 4 = 0.6.
    assert aiq([1, 3, 5, 4], [0.2, 0.7, 0.8, 0.5], 1, 5) == pytest.approx(0.6)
    # Extended flat to the maximum cost: hull (1,.5)-(2,.9) on [1, 5]: .7 + 3*.9 = 3.4; / 4 = .85.
    assert aiq([1, 2, 3], [0.5, 0.9, 0.6], 1, 5) == pytest.approx(0.85)
    # Below the router's cheapest point nothing is reachable: one point (3, .6) on [1, 5]: 2*.6/4 = .3.
    assert aiq([3], [0.6], 1, 5) == pytest.approx(0.3)
    # Points outside the range only count inside it: hull (0, 0)-(4, .8) on [2, 4]: mean of .4 and .8 = .6.
    assert aiq([0, 4], [0.0, 0.8], 2, 4) == pytest.approx(0.6)
    # Degenerate range: the hull's value at that cost.
    assert aiq([1, 2], [0.2, 0.4], 2, 2) == pytest.approx(0.4)


def test_zero_router_mixture_beats_single_points():
    # Single models A (1, .4), B (3, .6), C (2, .45): C is below the mix of A and B (.5 at cost 2).
    hc, hq = zero_router([1, 3, 2], [0.4, 0.6, 0.45])
    np.testing.assert_allclose(hc, [1, 3])
    assert hull_quality(hc, hq, 2.0) == pytest.approx(0.5)
    assert hull_quality(hc, hq, 0.5) == 0.0
    assert hull_quality(hc, hq, 10.0) == pytest.approx(0.6)


def test_cost_to_match():
    c, q = [1, 3, 5], [0.2, 0.7, 0.8]
    assert cost_to_match(c, q, 0.45) == pytest.approx(2.0)  # halfway from (1,.2) to (3,.7)
    assert cost_to_match(c, q, 0.1) == pytest.approx(1.0)
    assert math.isnan(cost_to_match(c, q, 0.9))


def test_aiq_table_router_dominating_zero_router():
    # Two models, 4 queries. Model 0: cheap (1), right on queries 0,1. Model 1: expensive (3), right on 1,2,3.
    quality = np.array([[1, 0], [1, 1], [0, 1], [0, 1]], dtype=float)
    cost = np.array([[1, 3]] * 4, dtype=float)
    # A router with two operating points: oracle-like (model 0 on q0, q1; model 1 on q2, q3) and always-0.
    rq = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], dtype=float)
    rc = np.array([[1, 1, 3, 3], [1, 1, 1, 1]], dtype=float)
    t = aiq_table("p", quality, cost, {"R": rq}, {"R": rc}, best_single=1, n_bootstrap=50, seed=0)
    zero = t[t["router"] == "Zero router"].iloc[0]
    r = t[t["router"] == "R"].iloc[0]
    # Zero router: (1, .5)-(3, .75) on [1, 3]: mean .625. Router: (1, .5)-(2, 1) then flat: (.75 + 1) / 2 = .875.
    assert zero["aiq"] == pytest.approx(0.625)
    assert r["aiq"] == pytest.approx(0.875)
    assert r["aiq_minus_zero_router"] == pytest.approx(0.25)
    # Best single is model 1 (.75): the router's hull reaches .75 at cost 1.5; the zero router at cost 3.
    assert r["cost_to_match_best_single"] == pytest.approx(1.5)
    assert zero["cost_to_match_best_single"] == pytest.approx(3.0)
    assert r["ci_low"] <= r["aiq"] <= r["ci_high"]
