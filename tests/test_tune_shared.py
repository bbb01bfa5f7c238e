"""Work the tune stage shares must give the answers of the work it replaces, bit for bit.

A grid of prediction-time parameters on one fitted selector reuses the last batch's neighbour search (KNN, the
guarded router) and the guarded router's paired evidence; the peers' fits run beside the CV. Each is checked here
against fresh objects doing the work again, on data with duplicate rows (exact ties).
"""

from __future__ import annotations

import numpy as np
import pytest
from joblib import delayed

from mlsel import CATEGORIES
from mlsel.features import build_features
from mlsel.selection.base import batch_key
from mlsel.selection.classic import KNNSelector
from mlsel.selection.guarded import GuardedRouter
from mlsel.tuning.cv import run_cv_with

INF = float("inf")


def _data(n: int = 300, m: int = 4, seed: int = 0):
    """Features with the category one-hot, a third of the rows duplicated (exact ties), outcomes and a cost."""
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 8))
    emb[n // 3: 2 * n // 3] = emb[: n // 3]  # duplicates: neighbours at exactly equal distances
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cats = rng.choice(CATEGORIES[:4], size=n)
    X = build_features(emb, list(cats), 1.0).astype(np.float32)
    q = (rng.random((n, m)) < np.linspace(0.3, 0.7, m)).astype(float)
    cost = rng.random((n, m)) * np.arange(1, m + 1)
    return X, q, cost


def test_batch_key_follows_content_not_identity():
    X, _, _ = _data()
    assert batch_key(X) == batch_key(X.copy())
    Y = X.copy()
    Y[3, 2] += 1e-7
    assert batch_key(Y) != batch_key(X)
    assert batch_key(X[:10]) != batch_key(X[:11])


def test_knn_neighbours_of_a_smaller_k_are_the_first_of_a_larger():
    X, q, _ = _data()
    fit, query = X[:200], X[200:]
    shared = KNNSelector(k=60).fit(fit, q[:200])
    for k in (60, 5, 17, 60, 120):  # smaller k after larger: read from the kept search; larger: searched again
        shared.set_params(k=k)
        fresh = KNNSelector(k=k).fit(fit, q[:200])
        for a, b in zip(shared.kneighbors(query), fresh.kneighbors(query)):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(shared.decision_scores(query), fresh.decision_scores(query))
        for a, b in zip(shared.kneighbors(query[:1]), fresh.kneighbors(query[:1])):  # the one-query path
            np.testing.assert_array_equal(a, b)


def test_knn_refit_and_changed_batch_never_reuse_old_neighbours():
    X, q, _ = _data()
    sel = KNNSelector(k=10).fit(X[:200], q[:200])
    query = X[200:].copy()
    sel.kneighbors(query)
    sel.fit(X[100:], q[100:])  # other rows: the kept search is gone
    np.testing.assert_array_equal(sel.kneighbors(query)[1], KNNSelector(k=10).fit(X[100:], q[100:]).kneighbors(query)[1])
    query[0] = X[5]  # the same array changed in place: searched again
    np.testing.assert_array_equal(sel.kneighbors(query)[1], KNNSelector(k=10).fit(X[100:], q[100:]).kneighbors(query)[1])


@pytest.mark.parametrize("with_cost", [False, True])
def test_guarded_grid_on_one_fit_equals_a_fresh_router_per_combination(with_cost):
    X, q, cost = _data()
    fit, query = X[:200], X[200:]
    c = cost[:200] if with_cost else None
    lambdas = [0.0, 0.05, 0.3]
    shared = GuardedRouter(k=20, min_queries=5).fit(fit, q[:200], models=list("abcd"), cost=c)
    for k in (20, 50):
        for z in (0.0, 1.0, INF):
            for shrink in (0.0, 30.0):
                for base in ("category", "global"):
                    params = {"k": k, "z": z, "shrink": shrink, "base": base}
                    shared.set_params(**params)
                    fresh = GuardedRouter(min_queries=5, **params).fit(fit, q[:200], models=list("abcd"), cost=c)
                    np.testing.assert_array_equal(shared.predict_index_sweep(query, lambdas), fresh.predict_index_sweep(query, lambdas))
                    np.testing.assert_array_equal(shared.decision_scores(query), fresh.decision_scores(query))
                    np.testing.assert_array_equal(shared.predict_index(query, candidates=["a", "c"]),
                                                  fresh.predict_index(query, candidates=["a", "c"]))


def test_guarded_refit_clears_the_kept_batch_and_novelty_scale():
    X, q, _ = _data()
    r = GuardedRouter(k=10, z=0.0, novelty=0.5, min_queries=5).fit(X[:200], q[:200], models=list("abcd"))
    query = X[200:]
    r.predict_index(query)
    r.fit(X[100:], q[100:], models=list("abcd"))
    fresh = GuardedRouter(k=10, z=0.0, novelty=0.5, min_queries=5).fit(X[100:], q[100:], models=list("abcd"))
    np.testing.assert_array_equal(r.predict_index(query), fresh.predict_index(query))
    from sklearn.neighbors import NearestNeighbors

    d, _ = NearestNeighbors(metric="cosine", algorithm="brute").fit(X[100:]).kneighbors(X[100:], n_neighbors=2)
    np.testing.assert_array_equal(r.train_nn_dist(), np.sort(d[:, -1]))
    assert "_batch" not in r.__getstate__()


def test_extra_calls_run_beside_the_cv_and_come_back_in_order():
    raw, extra = run_cv_with([], [delayed(pow)(2, i) for i in range(5)], n_jobs=2)
    assert raw.empty
    assert extra == [1, 2, 4, 8, 16]
