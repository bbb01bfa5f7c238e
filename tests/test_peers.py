"""Peers' published recipes: each reproduces a number computed by hand (or by its source's own recipe) on a small case."""

from __future__ import annotations

import re

import numpy as np
import pytest

from mlsel.selection.peers import PEER_LABELS, PEERS, LLMRouterKNN, LLMRouterMLP, LLMRouterSVM, RouterBenchKNN, RouterBenchMLP

MODELS = ["a", "b", "c"]


def _blobs(n_per: int = 30, seed: int = 0):
    """Three separated blobs; in blob j model j alone is right."""
    rng = np.random.default_rng(seed)
    X = np.vstack([np.eye(3)[j] * 5.0 + rng.normal(scale=0.3, size=(n_per, 3)) for j in range(3)]).astype(np.float32)
    q = np.repeat(np.eye(3), n_per, axis=0)
    return X, q


def test_routerbench_knn_is_the_unweighted_neighbour_mean():
    # Five training points on a line (cosine distance: directions); k = 2 for the hand computation.
    X = np.array([[1, 0.0], [1, 0.1], [1, 0.2], [0, 1.0], [0.1, 1.0]], dtype=np.float32)
    q = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1], [0, 1, 1]], dtype=float)
    r = RouterBenchKNN(k=2).fit(X, q, models=MODELS)
    xq = np.array([[1, 0.05]], dtype=np.float32)  # nearest two: rows 0 and 1 -> means a .5, b .5, c 0
    assert r.decision_scores(xq)[0].tolist() == [0.5, 0.5, 0.0]
    # The tie a/b goes to the higher mean training utility (a 2/5, b 3/5 -> b), not the first column (a).
    assert r.predict(xq).tolist() == ["b"]
    assert RouterBenchKNN().k == 50


def test_routerbench_mlp_fits_one_regressor_per_model_with_its_published_settings():
    X, q = _blobs()
    r = RouterBenchMLP().fit(X, q, models=MODELS)
    assert len(r.mlps_) == 3
    m = r.mlps_[0]
    assert (m.hidden_layer_sizes, m.activation, m.learning_rate_init, m.max_iter, m.random_state) == ((100,), "relu", 1e-3, 200, 1234)
    Xt, qt = _blobs(10, seed=1)
    assert (qt[np.arange(len(Xt)), r.predict_index(Xt)] == 1).all()


def test_llmrouter_knn_votes_with_the_suites_tie_rule():
    # Labels: best model per query, ties to the higher training mean (overall means a 2/4, b 3/4 -> b ranks first).
    X = np.array([[0.0], [0.1], [5.0], [5.1]], dtype=np.float32)
    q = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 0], [0, 1, 0]], dtype=float)  # query 0 ties a/b -> label b
    r = LLMRouterKNN(k=2).fit(X, q, models=MODELS)
    assert r.models_[r.model_.classes_[0]] == "a" and list(r.classes_) == [0, 1]
    assert r.predict(np.array([[0.05]], dtype=np.float32)).tolist() == ["b"]  # votes b, b
    # Near 5.05: votes a (query 2) and b (query 3): a 1-1 tie -> b by the training mean (scikit-learn would say a).
    assert r.decision_scores(np.array([[5.05]], dtype=np.float32))[0].tolist() == [1.0, 1.0, -np.inf]
    assert r.predict(np.array([[5.05]], dtype=np.float32)).tolist() == ["b"]
    assert r.model_.predict(np.array([[5.05]], dtype=np.float32)).tolist() == [0]  # the shipped vote: first class


def test_llmrouter_svm_and_mlp_separate_the_blobs_and_label_all_wrong_queries_by_the_tie_rule():
    X, q = _blobs()
    q[0] = 0.0  # an all-wrong query: LLMRouter would label it with the first-listed model; here the best single model
    for cls in (LLMRouterSVM, LLMRouterMLP):
        r = cls().fit(X, q, models=MODELS)
        Xt, qt = _blobs(10, seed=2)
        assert (qt[np.arange(len(Xt)), r.predict_index(Xt)] == 1).mean() >= 0.95, cls.__name__
    svm = LLMRouterSVM().fit(X, q, models=MODELS)
    assert (svm.model_.kernel, svm.model_.C, svm.model_.gamma) == ("rbf", 1.0, "scale")
    mlp = LLMRouterMLP().fit(X, q, models=MODELS)
    assert (mlp.model_.hidden_layer_sizes, mlp.model_.alpha, mlp.model_.max_iter, mlp.model_.random_state) == ((128, 64), 1e-4, 500, 42)


def test_a_model_that_is_never_a_label_is_never_chosen():
    X, q = _blobs()
    q[:, 2] = 0.0  # c never best
    r = LLMRouterKNN().fit(X, q, models=MODELS)
    assert 2 not in set(r.predict_index(X))
    assert np.isneginf(r.decision_scores(X)[:, 2]).all()


def test_every_peer_has_a_label_and_a_source_commit():
    assert set(PEERS) == set(PEER_LABELS)
    for name, cls in PEERS.items():
        assert re.search(r"[\w-]+/[\w.-]+@[0-9a-f]{40}", cls.__doc__), name  # the source repository at a named commit
        assert PEER_LABELS[name].startswith("Peer: ")


@pytest.mark.parametrize("name", sorted(PEERS))
def test_every_peer_fits_and_predicts_a_distribution(name):
    """Each row of ``predict_proba`` is a distribution over the models that puts its mass on the predicted model, and a model
    right on every training query (the others never) is chosen for (nearly) every new query.

    150 training queries, not fewer: LLMRouter's MF takes 5 epochs of 64-pair batches as published, and on 24 queries
    (5 optimiser steps) it has learnt nothing yet."""
    Xt, _ = _blobs(5, seed=3)

    def distribution(sel) -> np.ndarray:
        p = sel.predict_proba(Xt)
        assert p.shape == (len(Xt), 3) and np.isfinite(p).all() and ((p >= 0.0) & (p <= 1.0)).all(), p
        assert np.allclose(p.sum(axis=1), 1.0) and (p.argmax(axis=1) == sel.predict_index(Xt)).all(), p
        return p

    X, q = _blobs(8)
    distribution(PEERS[name]().fit(X, q, models=MODELS))
    X, _ = _blobs(50)
    always_b = np.zeros((len(X), 3))
    always_b[:, 1] = 1.0  # b (neither the first nor the last column) is right on every training query, a and c never
    chosen = distribution(PEERS[name]().fit(X, always_b, models=MODELS)).argmax(axis=1)
    assert (chosen == 1).mean() >= 0.9, chosen


def test_summary_names_the_best_peer_on_test_and_the_paired_gain_over_it():
    from mlsel.data.outcomes import OutcomeMatrix
    from mlsel.tuning.cv import PoolData
    from mlsel.tuning.final import FinalFit
    from mlsel.tuning.summary import peer_columns

    q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    te = OutcomeMatrix(np.array([f"q{i}" for i in range(4)]), np.array([""] * 4), np.array(["math"] * 4), ["a", "b"], q, None, None)
    d = PoolData("p", ["a", "b"], te, te, te, None)
    onehot = lambda idx: np.eye(2)[idx]  # noqa: E731
    fitted = {("p", "knn"): FinalFit("p", "knn", onehot([0, 1, 0, 0])),              # qualities 1, 1, 1, 1
              ("p", "routerbench_knn"): FinalFit("p", "routerbench_knn", onehot([1, 1, 1, 1])),   # 0, 1, 0, 1 -> 0.5
              ("p", "llmrouter_knn"): FinalFit("p", "llmrouter_knn", onehot([0, 0, 0, 0]))}     # 1, 0, 1, 1 -> 0.75
    cols = peer_columns(d, fitted, ["routerbench_knn", "llmrouter_knn"], "knn", n_bootstrap=500, seed=0)
    assert cols["best_peer"] == PEER_LABELS["llmrouter_knn"] and cols["best_peer_quality"] == 0.75
    assert cols["gain_vs_peer"] == 0.25  # per query 0, 1, 0, 0
    assert 0.0 <= cols["gain_vs_peer_ci_low"] <= 0.25 <= cols["gain_vs_peer_ci_high"] <= 1.0
    assert peer_columns(d, fitted, [], "knn", 10, 0) == {}


def _two_groups(n_per_side: int, rng_seed: int = 0) -> np.ndarray:
    """Query vectors in two tight, well separated groups: near (1, 0) for the first half, near (0, 1) for the second."""
    rng = np.random.default_rng(rng_seed)
    a = np.column_stack([np.ones(n_per_side), rng.uniform(-0.05, 0.05, n_per_side)])
    b = np.column_stack([rng.uniform(-0.05, 0.05, n_per_side), np.ones(n_per_side)])
    return np.vstack([a, b])


def test_avengers_pro_pools_reciprocal_ranks_of_the_nearest_clusters_by_hand():
    """Two clusters: model a is best on side A, b on side B. A query at side A's centroid c_A is 1 - |c_A|^2 ~ 0 from it and
    1 - c_A.c_B from c_B; softmax(-9 d) weighs the clusters, a scores w_A * 1 + w_B * 1/2 and b the reverse."""
    from mlsel.selection.peers import AvengersPro

    X = _two_groups(10)
    q = np.zeros((20, 2))
    q[:10, 0], q[10:, 1] = 1.0, 1.0
    sel = AvengersPro(n_clusters=2, top_k=2, quality_weight=1.0).fit(X, q, models=["a", "b"])
    unit = X / np.linalg.norm(X, axis=1, keepdims=True)
    c_a, c_b = unit[:10].mean(axis=0), unit[10:].mean(axis=0)  # k-means on separated groups: each centroid is its group's mean
    query = c_a / np.linalg.norm(c_a)
    d_a, d_b = 1 - query @ c_a, 1 - query @ c_b
    w_a = np.exp(-9 * d_a) / (np.exp(-9 * d_a) + np.exp(-9 * d_b))
    assert sel.decision_scores(query[None, :])[0] == pytest.approx([w_a * 1 + (1 - w_a) * 0.5, w_a * 0.5 + (1 - w_a) * 1])
    assert list(sel.predict(X)) == ["a"] * 10 + ["b"] * 10
    near_b_only = AvengersPro(n_clusters=2, top_k=1, quality_weight=1.0).fit(X, q, models=["a", "b"])
    assert near_b_only.decision_scores(np.array([[0.1, 1.0]]))[0].tolist() == [0.5, 1.0]  # rank 2 of 2 scores 1/2


def test_hiershrink_shrinks_cluster_means_toward_the_level_above_by_hand():
    """Its source's own test case: 24 queries per side; model a scores 1 on side A and 0 on side B (global mean 0.5), model b 0.6
    everywhere. Side A: b1 = (24 * 1 + 24 * 0.5) / 48 = 0.75, b2 = (24 * 1 + 24 * 0.75) / 48 = 0.875 > 0.6: a. Side B: b1 = 12 / 48 =
    0.25, b2 = 24 * 0.25 / 48 = 0.125 < 0.6: b, the dense model."""
    from mlsel.selection.peers import HierShrink

    X = _two_groups(24)
    q = np.column_stack([np.r_[np.ones(24), np.zeros(24)], np.full(48, 0.6)])
    sel = HierShrink(coarse_clusters=2, fine_clusters=2, quality_weight=1.0).fit(X, q, models=["a", "b"])
    scores = sel.decision_scores(X[[0, 30]])
    assert scores[0] == pytest.approx([0.875, 0.6]) and scores[1] == pytest.approx([0.125, 0.6])
    assert list(sel.predict(X)) == ["a"] * 24 + ["b"] * 24
    # One coarse cluster holds everything: b1 is the global mean, and the fine level alone moves the estimate.
    flat = HierShrink(coarse_clusters=1, fine_clusters=2, quality_weight=1.0).fit(X, q, models=["a", "b"])
    assert flat.decision_scores(X[[0]])[0] == pytest.approx([(24 * 1 + 24 * 0.5) / 48, 0.6])
