"""Peers' published recipes: each reproduces a number computed by hand (or by its source's own recipe) on a small case."""

from __future__ import annotations

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
        assert "@" in cls.__doc__ and ("routerbench" in cls.__doc__ or "LLMRouter" in cls.__doc__), name
        assert PEER_LABELS[name].startswith("Peer: ")


@pytest.mark.parametrize("name", sorted(PEERS))
def test_every_peer_fits_and_predicts_a_distribution(name):
    X, q = _blobs(8)
    sel = PEERS[name]().fit(X, q, models=MODELS)
    p = sel.predict_proba(X)
    assert p.shape == (len(X), 3) and np.allclose(p.sum(axis=1), 1.0)


def test_summary_names_the_best_peer_on_test_and_the_paired_gain_over_it():
    from mlsel.data.outcomes import OutcomeMatrix
    from mlsel.tuning.cv import PoolData
    from mlsel.tuning.summary import peer_columns

    q = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    te = OutcomeMatrix(np.array([f"q{i}" for i in range(4)]), np.array([""] * 4), np.array(["math"] * 4), ["a", "b"], q, None, None)
    d = PoolData("p", ["a", "b"], te, te, te, None)
    onehot = lambda idx: np.eye(2)[idx]  # noqa: E731
    fitted = {("p", "knn"): {"proba": onehot([0, 1, 0, 0])},              # qualities 1, 1, 1, 1
              ("p", "routerbench_knn"): {"proba": onehot([1, 1, 1, 1])},   # 0, 1, 0, 1 -> 0.5
              ("p", "llmrouter_knn"): {"proba": onehot([0, 0, 0, 0])}}     # 1, 0, 1, 1 -> 0.75
    cols = peer_columns(d, fitted, ["routerbench_knn", "llmrouter_knn"], "knn", n_bootstrap=500, seed=0)
    assert cols["best_peer"] == PEER_LABELS["llmrouter_knn"] and cols["best_peer_quality"] == 0.75
    assert cols["gain_vs_peer"] == 0.25  # per query 0, 1, 0, 0
    assert 0.0 <= cols["gain_vs_peer_ci_low"] <= 0.25 <= cols["gain_vs_peer_ci_high"] <= 1.0
    assert peer_columns(d, fitted, [], "knn", 10, 0) == {}
