"""Known-answer tests for the cost-aware routers on synthetic data."""

from __future__ import annotations

import numpy as np
import pytest

from mlsel.selection.classic import KNNSelector
from mlsel.selection.cost_aware import KNNRegressorSelector, fit_selector
from mlsel.selection.registry import ROUTERS, make_selector, selector_params
from mlsel.selection.scoreboard import ClusterScoreboardSelector

MODELS = ["a", "b", "c"]


def _clusters(n_per: int = 60, seed: int = 0):
    """Three well separated blobs; in blob j model j is right, the others wrong; costs 1, 2, 3."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3) * 5.0
    X, quality = [], []
    for j in range(3):
        X.append(centres[j] + rng.normal(scale=0.3, size=(n_per, 3)))
        q = np.zeros((n_per, 3))
        q[:, j] = 1.0
        quality.append(q)
    X = np.vstack(X).astype(np.float32)
    quality = np.vstack(quality)
    cost = np.tile([1.0, 2.0, 3.0], (len(X), 1))
    return X, quality, cost


ALL = ["knn_reg", "mlp", "logreg", "scoreboard", "guarded"]
PARAMS = selector_params(knn_reg_k=10, mlp_hidden=[32], scoreboard_clusters=3, scoreboard_top_p=1, guard_k=10, guard_z=0.0, seed=0)


@pytest.mark.parametrize("name", ALL)
def test_router_reaches_oracle_when_each_cluster_has_one_best_model(name):
    X, q, cost = _clusters()
    Xt, qt, _ = _clusters(n_per=20, seed=1)
    sel = make_selector(name, PARAMS)
    assert isinstance(sel, ROUTERS[name])
    sel.fit(X, q, models=MODELS, cost=cost)
    chosen = sel.predict_index(Xt)
    assert (qt[np.arange(len(Xt)), chosen] == 1.0).mean() >= 0.98
    proba = sel.predict_proba(Xt)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)


@pytest.mark.parametrize("name", ALL)
def test_large_cost_lambda_routes_to_cheapest_model(name):
    X, q, cost = _clusters()
    sel = make_selector(name, PARAMS.model_copy(update={"cost_lambda": 100.0})).fit(X, q, models=MODELS, cost=cost)
    assert set(sel.predict(X)) == {"a"}
    # Candidates are respected: without "a" the cheapest candidate is "b".
    assert set(sel.predict(X, candidates=["b", "c"])) == {"b"}


SWEEP_LAMBDAS = [0.0, 1.0, 2.0, 4.0, 100.0]


@pytest.mark.parametrize("name", ALL)
def test_a_sweep_gives_the_same_answers_as_refitting_at_each_cost_weight(name):
    """One fit swept over the cost weights chooses, at every weight, what a router fitted with that weight chooses.

    The weights cross the switch points. For knn_reg (normalised costs 1/3, 2/3, 1; predicted quality 1 for the blob's
    model, 0 otherwise): in blob 2 c scores 1 - lambda against a's -lambda / 3, so a wins from lambda 1.5; in blob 1 b
    scores 1 - 2 lambda / 3, so a wins from lambda 3: lambda 2 routes a, b, a by blob, lambda 4 a everywhere.
    """
    X, q, cost = _clusters()
    sel = make_selector(name, PARAMS).fit(X, q, models=MODELS, cost=cost)
    sweep = sel.predict_index_sweep(X, SWEEP_LAMBDAS)
    assert sweep.shape == (len(SWEEP_LAMBDAS), len(X))
    sweep_bc = sel.predict_index_sweep(X, SWEEP_LAMBDAS, candidates=["b", "c"])
    refits = []
    for lam, row, row_bc in zip(SWEEP_LAMBDAS, sweep, sweep_bc):
        refit = make_selector(name, PARAMS.model_copy(update={"cost_lambda": lam})).fit(X, q, models=MODELS, cost=cost)
        refits.append(refit.predict_index(X))
        np.testing.assert_array_equal(row, refits[-1], err_msg=f"{name} at cost_lambda {lam}")
        np.testing.assert_array_equal(row_bc, refit.predict_index(X, candidates=["b", "c"]), err_msg=f"{name} at {lam}, b or c")
    # The weights are not all on one side of the switch points: at least three different routings.
    assert len({tuple(r) for r in refits}) >= 3
    if name == "knn_reg":
        by_blob = [[np.bincount(r[i * 60:(i + 1) * 60], minlength=3).argmax() for i in range(3)] for r in refits]
        assert by_blob == [[0, 1, 2], [0, 1, 2], [0, 1, 0], [0, 0, 0], [0, 0, 0]]


def test_without_cost_the_cost_weight_has_no_effect():
    X, q, _ = _clusters()
    a = KNNRegressorSelector(k=5, cost_lambda=0.0).fit(X, q, models=MODELS)
    b = KNNRegressorSelector(k=5, cost_lambda=50.0).fit(X, q, models=MODELS)
    np.testing.assert_array_equal(a.predict_index(X), b.predict_index(X))
    assert not b.has_cost_


def test_cost_is_normalised_by_the_most_expensive_mean():
    X, q, cost = _clusters()
    sel = KNNRegressorSelector(k=5).fit(X, q, models=MODELS, cost=cost)
    assert sel.cost_scale_ == pytest.approx(3.0)
    _, c = sel.predict_quality_cost(X[:4])
    np.testing.assert_allclose(c, np.tile([1 / 3, 2 / 3, 1.0], (4, 1)))


def test_knn_regressor_known_means_and_shrinkage():
    # Four training points on a line; query at 0 with k=2 uniform: neighbours 0 and 1.
    X = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]], dtype=np.float32)
    q = np.array([[1, 0], [0, 0], [0, 1], [0, 1]], dtype=float)
    sel = KNNRegressorSelector(k=2, weights="uniform").fit(X, q, models=["a", "b"])
    qhat, _ = sel.predict_quality_cost(np.array([[1.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(qhat, [[0.5, 0.0]])
    # shrink=2 pseudo-neighbours at the overall means (.25, .5): (0.5 + 1 * .25) / 2, (0 + 1 * .5) / 2.
    sel = KNNRegressorSelector(k=2, weights="uniform", shrink=2).fit(X, q, models=["a", "b"])
    qhat, _ = sel.predict_quality_cost(np.array([[1.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(qhat, [[0.375, 0.25]])


def test_scoreboard_normalises_within_cluster_and_averages_top_p():
    X, q, cost = _clusters()
    sel = ClusterScoreboardSelector(num_clusters=3, top_p=1, random_state=0).fit(X, q, models=MODELS, cost=cost)
    # Each cluster: one model right (1), two wrong (0): min-max gives exactly that row.
    assert sorted(map(tuple, sel.cluster_quality_norm_)) == sorted(map(tuple, np.eye(3)))
    # Costs are identical per model in every cluster: 1/3, 2/3, 1 -> min-max 0, .5, 1.
    np.testing.assert_allclose(sel.cluster_cost_norm_, np.tile([0.0, 0.5, 1.0], (3, 1)))
    # top_p = 3: every query averages all three clusters -> quality 1/3 for every model: tie,
    # broken by the mean-training-utility rank (all equal) then model order -> "a".
    sel3 = ClusterScoreboardSelector(num_clusters=3, top_p=3, random_state=0).fit(X, q, models=MODELS, cost=cost)
    qhat, chat = sel3.predict_quality_cost(X[:5])
    np.testing.assert_allclose(qhat, 1 / 3)
    np.testing.assert_allclose(chat, np.tile([0.0, 0.5, 1.0], (5, 1)))
    assert set(sel3.predict(X)) == {"a"}
    # top_p = 2 by hand: the two nearest clusters' normalised rows (the one-hot row of the blob's model), averaged.
    # Queries placed so that the two nearest blob centres (5 e_j, up to the blobs' noise) are known: (5, 1, 0) is 1 from
    # centre 0, sqrt(41) = 6.4 from centre 1 and sqrt(51) = 7.1 from centre 2; (2.5, 2.5, 0) is midway between 0 and 1.
    sel2 = ClusterScoreboardSelector(num_clusters=3, top_p=2, random_state=0).fit(X, q, models=MODELS, cost=cost)
    Xq = np.array([[5, 1, 0], [2.5, 2.5, 0], [0, 1, 5], [1, 0, 5], [0, 5, 1]], dtype=np.float32)
    qhat2, chat2 = sel2.predict_quality_cost(Xq)
    np.testing.assert_allclose(qhat2, [[0.5, 0.5, 0], [0.5, 0.5, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0, 0.5, 0.5]])
    np.testing.assert_allclose(chat2, np.tile([0.0, 0.5, 1.0], (5, 1)))  # the same cost row in every cluster
    assert sel2.nearest_clusters(Xq).shape == (5, 2)
    # alpha = 0: only cost counts -> cheapest model everywhere.
    sel0 = ClusterScoreboardSelector(num_clusters=3, top_p=1, alpha=0.0, random_state=0).fit(X, q, models=MODELS, cost=cost)
    assert set(sel0.predict(X)) == {"a"}


def test_make_selector_still_knows_the_core_selectors_and_rejects_unknown():
    assert isinstance(make_selector("knn", selector_params()), KNNSelector)
    with pytest.raises(ValueError, match="unknown selector"):
        make_selector("nope", selector_params())


def test_fractional_quality_and_missing_cost():
    X, q, cost = _clusters()
    q = q * 0.5 + 0.25  # fractional qualities (averaged duplicate rows)
    cost[0, 1] = np.nan
    for name in ALL:
        sel = make_selector(name, PARAMS)
        fit_selector(sel, X, q, None, MODELS, cost=cost)
        assert (q[np.arange(len(X)), sel.predict_index(X)] == 0.75).mean() >= 0.95
