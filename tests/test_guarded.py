"""Known answers for the guarded router (static choice unless paired evidence) and the task-grouped CV folds."""

from __future__ import annotations

import numpy as np
import pytest

from mlsel import CATEGORIES
from mlsel.data.outcomes import OutcomeMatrix, kfold_queries
from mlsel.features import build_features
from mlsel.params import ConfigError
from mlsel.selection.guarded import GuardedRouter, category_index
from mlsel.selection.lookup import GroupLookup
from mlsel.tuning.cv import PoolData, cv_folds

INF = float("inf")


def _gate_case():
    """10 math training queries: 4 near direction e1 where b beats a on 3 of 4; 6 near e2 where a wins.

    Category means: a 6/10, b 3/10 -> the lookup (and the best single model) is a.
    For a query at e1 the 4 nearest are the e1 queries: d = b - a = [1, 1, 1, 0], mean 0.75,
    sd (ddof 1) 0.5, standard error 0.25: 3 standard errors.
    """
    emb = np.array([[1.0, 0.001 * i] for i in range(4)] + [[0.0, 1.0]] * 6)
    X = build_features(emb / np.linalg.norm(emb, axis=1, keepdims=True), ["math"] * 10, 1.0)
    q = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0], [0.0, 0.0]] + [[1.0, 0.0]] * 6)
    return X, q


def test_gate_leaves_the_static_choice_only_beyond_z_standard_errors():
    X, q = _gate_case()
    r = GuardedRouter(k=4, z=2.9, shrink=0.0, base="category").fit(X, q, models=["a", "b"])
    xq = build_features(np.array([[1.0, 0.0]]), ["math"], 1.0)
    assert r.base_index(xq, 0.0).tolist() == [0]
    assert r.predict(xq).tolist() == ["b"]  # t = 3 >= 2.9
    assert r.set_params(z=3.1).predict(xq).tolist() == ["a"]  # t = 3 < 3.1
    assert r.set_params(z=INF).predict(xq).tolist() == ["a"]


def test_shrink_pulls_the_evidence_toward_the_category_difference():
    X, q = _gate_case()
    xq = build_features(np.array([[1.0, 0.0]]), ["math"], 1.0)
    r = GuardedRouter(k=4, z=0.0, base="category").fit(X, q, models=["a", "b"])
    # Shrunk difference (4 * 0.75 + s * (0.3 - 0.6)) / (4 + s): s = 6 -> +0.12 (b); s = 10 -> 0, not above 0 (a).
    assert r.set_params(shrink=6.0).predict(xq).tolist() == ["b"]
    assert r.set_params(shrink=10.0).predict(xq).tolist() == ["a"]
    scores = r.set_params(shrink=6.0).decision_scores(xq)
    assert scores[0].tolist() == pytest.approx([0.0, 0.12])


def test_novelty_floor_keeps_the_static_choice_far_from_the_training_queries():
    X, q = _gate_case()
    r = GuardedRouter(k=4, z=0.0, base="category", novelty=0.5).fit(X, q, models=["a", "b"])
    on = build_features(np.array([[1.0, 0.002]]) / np.linalg.norm([1.0, 0.002]), ["math"], 1.0)  # a training point
    off = build_features(np.array([[1.0, 0.5]]) / np.linalg.norm([1.0, 0.5]), ["math"], 1.0)  # nearest is ~0.05 away
    assert r.predict(on).tolist() == ["b"]
    assert r.predict(off).tolist() == ["a"]
    assert r.set_params(novelty=1.0).predict(off).tolist() == ["b"]  # floor off: the same 4 neighbours decide


def test_infinite_z_is_the_category_lookup_or_the_best_single_model():
    rng = np.random.default_rng(0)
    n, m = 300, 3
    cats = rng.choice(list(CATEGORIES[:4]), size=n)
    q = (rng.random((n, m)) < np.array([0.5, 0.55, 0.45])).astype(float)
    q[cats == CATEGORIES[0], 2] = 1.0  # category 0: model c always right
    X = build_features(rng.normal(size=(n, 8)), cats, 1.0)
    r = GuardedRouter(k=20, z=INF, base="category", min_queries=20).fit(X, q, models=["a", "b", "c"])
    lk = GroupLookup.fit(cats, q, None, ["a", "b", "c"], 1.0, min_queries=20)
    assert (r.predict_index(X) == lk.predict_index(cats)).all()
    assert set(r.predict_index(X)[cats == CATEGORIES[0]]) == {2}
    r.set_params(base="global")
    assert (r.predict_index(X) == int(np.argmax(q.mean(axis=0)))).all()
    # Without a one-hot part the category is unknown: the global choice stands in.
    X0 = build_features(rng.normal(size=(n, 8)), cats, 0.0)
    assert (category_index(X0) == -1).all()
    r0 = GuardedRouter(k=20, z=INF, base="category").fit(X0, q, models=["a", "b", "c"])
    assert (r0.predict_index(X0) == int(np.argmax(q.mean(axis=0)))).all()


def test_zero_z_and_shrink_is_plain_knn_regression_with_the_global_base_only():
    # Binary outcomes and k = 10 make neighbour-mean ties common. With base "global" a tie keeps the best single model,
    # which the selectors' tie rule also picks: KNN regression exactly. With base "category" a tie keeps the category's
    # model instead (the documented difference), so on some queries the two differ.
    from mlsel.selection.cost_aware import KNNRegressorSelector

    rng = np.random.default_rng(3)
    n, m = 400, 3
    cats = rng.choice(list(CATEGORIES[:4]), size=n)
    q = (rng.random((n, m)) < np.array([0.55, 0.5, 0.45])).astype(float)
    q[cats == CATEGORIES[1], 2] = (rng.random(int((cats == CATEGORIES[1]).sum())) < 0.9)  # category 1: model c
    emb = rng.normal(size=(n, 8))
    X = build_features(emb / np.linalg.norm(emb, axis=1, keepdims=True), cats, 1.0)
    fit, query = X[:300], X[300:]
    reg = KNNRegressorSelector(k=10, weights="uniform", shrink=0.0).fit(fit, q[:300], models=["a", "b", "c"]).predict_index(query)
    r = GuardedRouter(k=10, z=0.0, shrink=0.0, base="global", min_queries=1).fit(fit, q[:300], models=["a", "b", "c"])
    np.testing.assert_array_equal(r.predict_index(query), reg)
    r.set_params(base="category")
    assert (r.predict_index(query) != reg).any()


def test_cost_weight_moves_the_static_choice_to_the_cheaper_model():
    X, q = _gate_case()
    cost = np.tile([10.0, 1.0], (len(X), 1))  # a is 10x dearer; normalised costs 1.0 and 0.1
    r = GuardedRouter(k=4, z=INF, base="category").fit(X, q, models=["a", "b"], cost=cost)
    # Category score a: 0.6 - lam * 1.0, b: 0.3 - lam * 0.1 -> b from lam > 1/3.
    assert r.predict_index_sweep(X[:1], [0.0, 0.3, 0.4]).ravel().tolist() == [0, 0, 1]


def test_bad_parameters_are_errors():
    X, q = _gate_case()
    for bad in ({"base": "task"}, {"k": 1}, {"novelty": 0.0}, {"z": -1.0}):
        with pytest.raises(ValueError):
            GuardedRouter(**bad).fit(X, q, models=["a", "b"])


def test_task_grouped_folds_never_split_a_task():
    rng = np.random.default_rng(1)
    tasks = rng.choice([f"t{i}" for i in range(7)], size=200)
    folds = kfold_queries(np.arange(200).astype(str), np.array(["math"] * 200), 3, seed=5, groups=tasks)
    assert len(folds) == 3
    assert sorted(np.concatenate([v for _, v in folds]).tolist()) == list(range(200))
    for fit, valid in folds:
        assert not set(tasks[fit]) & set(tasks[valid])
    # Another seed shuffles the tasks into other folds.
    other = kfold_queries(np.arange(200).astype(str), np.array(["math"] * 200), 3, seed=6, groups=tasks)
    assert any(set(tasks[a[1]]) != set(tasks[b[1]]) for a, b in zip(folds, other))


def _pool(tasks, split):
    n = len(tasks)
    m = OutcomeMatrix(np.array([f"q{i}" for i in range(n)]), np.array([""] * n), np.array(["math"] * n), ["a", "b"],
                      np.zeros((n, 2)), None, None, tasks=np.array(tasks))
    return PoolData("p", ["a", "b"], m, m, m, None, split)


def test_cv_folds_mirror_a_by_task_split():
    tasks = [f"t{i % 4}" for i in range(40)]
    folds, table = cv_folds(_pool(tasks, "by_task"), 3, 1, 0)
    for _, _, fit, valid in folds:
        assert not {tasks[i] for i in fit} & {tasks[i] for i in valid}
    assert len(table) == 40
    # A seeded split keeps stratified folds, which put every task on both sides.
    folds, _ = cv_folds(_pool(tasks, "seeded"), 3, 1, 0)
    assert all({tasks[i] for i in fit} & {tasks[i] for i in valid} for _, _, fit, valid in folds)
    with pytest.raises(ConfigError, match="by_task needs at least tune_n_folds=3 training tasks.*has 2"):
        cv_folds(_pool([f"t{i % 2}" for i in range(40)], "by_task"), 3, 1, 0)
