"""Selectors and evaluation on synthetic data with known answers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import joblib
import numpy as np
import pytest

from mlsel.data.outcomes import OutcomeMatrix
from mlsel.metrics.evaluate import Strategy, evaluate, oracle_proba
from mlsel.selection.base import choose, utility
from mlsel.selection.baselines import BestSingleSelector, RandomSelector
from mlsel.selection.classic import KMeansSelector, KNNSelector, SVMSelector
from mlsel.selection.registry import UnverifiedSelectorError, load_selector, save_selector

MODELS = ["a", "b", "c"]


def clusters(n_per=60, seed=0, noise=0.05):
    """Three well-separated clusters; in cluster j model j is the only correct one."""
    rng = np.random.default_rng(seed)
    centers = np.eye(3) * 5
    X = np.vstack([centers[j] + noise * rng.standard_normal((n_per, 3)) for j in range(3)])
    Q = np.zeros((3 * n_per, 3))
    for j in range(3):
        Q[j * n_per:(j + 1) * n_per, j] = 1.0
    return X.astype(np.float32), Q


def matrix(Q, lat=None, chars=None):
    n = len(Q)
    return OutcomeMatrix(np.array([f"q{i}" for i in range(n)]), np.array([""] * n), np.array(["math"] * n),
                         list(MODELS), Q, lat, chars)


@pytest.mark.parametrize("sel", [KNNSelector(k=5), KMeansSelector(num_clusters=3), SVMSelector()])
def test_selectors_reach_oracle_on_separable_clusters(sel):
    X, Q = clusters()
    Xt, Qt = clusters(seed=1)
    sel.fit(X, Q, models=MODELS)
    chosen = sel.predict_index(Xt)
    assert (Qt[np.arange(len(Qt)), chosen] == 1).all()
    assert list(sel.predict(Xt[:1])) == ["a"]


def test_candidates_restrict_selection():
    X, Q = clusters()
    sel = KNNSelector(k=5).fit(X, Q, models=MODELS)
    picks = sel.predict(X, candidates=["b", "c"])
    assert set(picks) <= {"b", "c"}
    assert (picks[60:120] == "b").all() and (picks[120:] == "c").all()
    with pytest.raises(ValueError, match="not among the fitted models"):
        sel.predict(X, candidates=["zz"])


def test_tie_rule_prefers_higher_mean_training_utility_not_order():
    # Model "c" is best on average, so a tie among all three goes to "c".
    X = np.zeros((4, 2), dtype=np.float32)
    Q = np.array([[0, 0, 1], [0, 0, 1], [1, 1, 1], [0, 1, 1.0]])
    best = BestSingleSelector().fit(X, Q, models=MODELS)
    assert best.model_ == "c"
    scores = np.array([[0.5, 0.5, 0.5], [0.7, 0.7, 0.1]])
    assert list(choose(scores, best.rank_)) == [2, 1]  # rank: c < b < a


def test_choose_never_leaves_the_candidates_when_every_candidate_scores_minus_inf():
    # A classifier peer gives -inf to a model it never saw as a label. Row 0: the only candidate (model 2) scores -inf;
    # row 1: both candidates do. Before the fix the non-candidates tied at -inf too and the rank picked model 0.
    scores = np.array([[0.3, 0.9, -np.inf], [0.5, -np.inf, -np.inf]])
    rank = np.array([0, 1, 2])
    assert list(choose(scores, rank, np.array([False, False, True]))) == [2, 2]
    assert list(choose(scores, rank, np.array([False, True, True]))) == [1, 1]  # the candidates tie; rank 1 beats rank 2
    assert list(choose(scores, rank)) == [1, 0]


def test_utility_uses_latency_only_when_measured():
    q = np.array([[1.0, 1.0]])
    assert np.allclose(utility(q, None, 0.9), q)
    u = utility(q, np.array([[0.0, 9.0]]), 0.9)
    assert np.allclose(u, [[0.9 + 0.1 * 1.0, 0.9 + 0.1 * 0.1]])
    with pytest.raises(ValueError, match="missing values"):
        utility(q, np.array([[np.nan, 1.0]]))


def test_svm_skips_uninformative_queries():
    X, Q = clusters()
    Q = np.vstack([Q, np.zeros((10, 3))])
    X = np.vstack([X, np.zeros((10, 3), dtype=np.float32)])
    sel = SVMSelector().fit(X, Q, models=MODELS)
    assert sel.n_uninformative_ == 10


def test_save_and_load_roundtrip(tmp_path):
    X, Q = clusters()
    sel = KMeansSelector(num_clusters=3).fit(X, Q, models=MODELS)
    save_selector(sel, tmp_path, "kmeans", {"embedder": "e", "data_hash": "h", "seed": 42})
    loaded, manifest = load_selector(tmp_path, "kmeans")
    assert manifest["feature_dim"] == 3 and manifest["models"] == MODELS and manifest["embedder"] == "e"
    assert manifest["params"]["num_clusters"] == 3 and "package_version" in manifest
    assert (loaded.predict(X) == sel.predict(X)).all()
    assert manifest["joblib_sha256"] == hashlib.sha256((tmp_path / "kmeans.joblib").read_bytes()).hexdigest()


class _CreatesMarker:
    """A pickle whose unpickling writes a marker file (what a tampered selector file could do)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "unpickled"))


def test_tampered_selector_is_refused_before_unpickling(tmp_path):
    X, Q = clusters()
    save_selector(KNNSelector(k=3).fit(X, Q, models=MODELS), tmp_path, "knn", {"embedder": "e"})
    path, marker = tmp_path / "knn.joblib", tmp_path / "marker"
    recorded = hashlib.sha256(path.read_bytes()).hexdigest()  # the saved file's digest, as its manifest records it
    joblib.dump(_CreatesMarker(marker), path)
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(UnverifiedSelectorError, match="refusing to unpickle") as err:
        load_selector(tmp_path, "knn")
    assert str(path) in str(err.value) and recorded in str(err.value) and actual in str(err.value)
    assert not marker.exists()


def test_selector_without_recorded_digest_is_refused(tmp_path):
    """A manifest with no digest (as older versions wrote) is not trusted either."""
    X, Q = clusters()
    save_selector(KNNSelector(k=3).fit(X, Q, models=MODELS), tmp_path, "knn", {"embedder": "e"})
    mpath, marker = tmp_path / "knn.manifest.json", tmp_path / "marker"
    manifest = json.loads(mpath.read_text())
    manifest.pop("joblib_sha256", None)
    mpath.write_text(json.dumps(manifest))
    joblib.dump(_CreatesMarker(marker), tmp_path / "knn.joblib")
    with pytest.raises(UnverifiedSelectorError, match="no recorded digest") as err:
        load_selector(tmp_path, "knn")
    assert str(tmp_path / "knn.joblib") in str(err.value) and str(mpath) in str(err.value)
    assert not marker.exists()


# ---------------------------------------------------------------- evaluation


def _strategies(test, train_Q, picks):
    x = np.zeros((len(test), 1))
    dummy = np.zeros((len(train_Q), 1))
    best = BestSingleSelector().fit(dummy, train_Q, models=MODELS)
    rnd = RandomSelector().fit(dummy, train_Q, models=MODELS)
    sel = np.zeros_like(test.quality)
    sel[np.arange(len(test)), picks] = 1
    return [
        Strategy("Oracle", "oracle", oracle_proba(test)),
        Strategy("Sel", "selector", sel),
        Strategy("Best", "best_single", best.predict_proba(x)),
        Strategy("Random", "random", rnd.predict_proba(x)),
    ]


def test_random_is_exact_expectation_and_oracle_is_100pct():
    rng = np.random.default_rng(0)
    Q = rng.integers(0, 2, size=(200, 3)).astype(float)
    test = matrix(Q, chars=rng.integers(100, 900, size=(200, 3)).astype(float))
    out = evaluate(test, _strategies(test, Q, rng.integers(0, 3, 200)), "p", n_bootstrap=200, seed=0)
    r = out["results"].set_index("strategy")
    assert r.loc["Random", "avg_quality"] == pytest.approx(Q.mean(axis=1).mean())
    assert r.loc["Oracle", "best_model_pct"] == pytest.approx(100.0)
    assert r.loc["Oracle", "avg_quality"] == pytest.approx(Q.max(axis=1).mean())
    assert np.isnan(r.loc["Oracle", "avg_latency_s"])  # no latency measured: none shown
    assert r.loc["Sel", "avg_quality_ci_low"] <= r.loc["Sel", "avg_quality"] <= r.loc["Sel", "avg_quality_ci_high"]
    assert r.loc["Oracle", "gap_closed_pct"] == pytest.approx(100.0)
    assert r.loc["Random", "gap_closed_pct"] == pytest.approx(0.0)
    share = out["selection_share"]
    assert share[share["strategy"] == "Random"]["share_pct"].tolist() == pytest.approx([100 / 3] * 3)


def test_ties_get_best_model_credit_and_oracle_prefers_efficient():
    Q = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 0.0]])
    chars = np.array([[500.0, 100.0, 50.0], [10.0, 20.0, 5.0]])
    test = matrix(Q, chars=chars)
    out = evaluate(test, _strategies(test, Q, np.array([0, 1])), "p", n_bootstrap=50, seed=0)
    r = out["results"].set_index("strategy")
    assert r.loc["Sel", "best_model_pct"] == 100.0  # "a" ties "b" at 1.0; all-zero query credits any choice
    assert r.loc["Sel", "best_model_pct_decidable"] == 100.0
    assert oracle_proba(test).argmax(axis=1).tolist() == [1, 2]  # tied best -> shortest answer


def test_bootstrap_is_seeded_and_paired():
    """Two different strategies whose per-query difference is known by hand: Sel answers with b, the best single
    model is a, and b scores exactly a + 0.5 on every test query (0 -> 0.5, 0.5 -> 1). Paired draws (the same queries for
    both) give a mean difference of 0.5 in every draw, so the uplift's interval is [0.5, 0.5]; drawn separately it would
    spread as wide as Sel's own interval, which a's 0 / 0.5 mix makes wide."""
    rng = np.random.default_rng(1)
    a = rng.choice([0.0, 0.5], size=300)
    Q = np.column_stack([a, a + 0.5, rng.integers(0, 2, size=300).astype(float)])
    test = matrix(Q)
    train_Q = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])  # training means a 1, b .5, c 0: the best single model is a
    s = _strategies(test, train_Q, np.full(300, 1))  # Sel picks b everywhere
    r = evaluate(test, s, "p", n_bootstrap=300, seed=7)["results"]
    assert r.equals(evaluate(test, s, "p", n_bootstrap=300, seed=7)["results"])  # seeded
    r = r.set_index("strategy")
    assert r.loc["Best", "avg_quality"] == pytest.approx(a.mean())  # the Best row is a
    sel = r.loc["Sel"]
    assert sel["uplift_vs_best_single"] == pytest.approx(0.5)
    assert (sel["uplift_vs_best_single_ci_low"], sel["uplift_vs_best_single_ci_high"]) == pytest.approx((0.5, 0.5), abs=1e-12)
    # Sel's own interval is not degenerate (sd of b is .25, so about +-1.96 * .25 / sqrt(300) = +-.028): the pairing,
    # not a constant strategy, makes the difference's interval a point.
    assert sel["avg_quality_ci_high"] - sel["avg_quality_ci_low"] > 0.03
