"""The peers are fitted on quality alone, their sources' target, whatever the run's ``quality_weight``."""

from __future__ import annotations

import numpy as np
import pytest

from mlsel import CATEGORIES
from mlsel.data.outcomes import OutcomeMatrix
from mlsel.features import build_features
from mlsel.selection.base import best_single_index
from mlsel.selection.peers import PEERS
from mlsel.tuning.cv import PoolData, TunePlan
from mlsel.tuning.final import peer_calls


def _pool(n: int = 120) -> PoolData:
    """Model ``slow`` answers 4 queries in 5 right in 9 s; model ``fast`` every second one and every fifth in 0.1 s.

    On quality alone ``slow`` is the best model of 80% of the queries (a tie goes to the better model on average, ``slow``);
    at ``quality_weight=0.5`` the utility (0.5 q + 0.5 / (1 + latency)) makes ``fast`` the best of 60%.
    """
    rng = np.random.default_rng(0)
    i = np.arange(n)
    q = np.column_stack([(i % 5 != 0), (i % 5 == 0) | (i % 2 == 0)]).astype(float)
    lat = np.column_stack([np.full(n, 9.0), np.full(n, 0.1)])
    m = OutcomeMatrix(np.array([f"q{i}" for i in range(n)]), np.array([f"text {i}" for i in range(n)]),
                      rng.choice(CATEGORIES[:3], size=n), ["slow", "fast"], q, lat, None)
    tr, te = m.subset(np.arange(n) < 90), m.subset(np.arange(n) >= 90)
    return PoolData("p", ["slow", "fast"], m, tr, te, None)


LEARN_IT = ("routerbench_knn", "llmrouter_knn", "avengers_pro", "hiershrink", "llmrouter_svm")


@pytest.mark.parametrize("peer", sorted(PEERS))
def test_peer_calls_fit_every_peer_on_quality_even_when_the_run_weighs_latency(peer):
    d = _pool()
    assert best_single_index(d.tr.quality, d.tr.latency_s, 0.5) == 1  # the run's utility prefers `fast`
    rng = np.random.default_rng(1)
    emb = {id(m): rng.normal(size=(len(m), 8)) for m in (d.tr, d.te)}

    def features(m, _embedder, ow):
        return build_features(emb[id(m)] / np.linalg.norm(emb[id(m)], axis=1, keepdims=True), list(m.categories), ow)

    plan = TunePlan(names=[], router_names=[], embedders=["e"], lambdas=[])
    (call,) = peer_calls({"tune_peer_names": [peer], "quality_weight": 0.5}, plan, {"p": d}, features)
    func, args, kwargs = call
    fit = func(*args, **kwargs)
    inputs = args[0]

    def direct(quality_weight: float) -> np.ndarray:
        sel = PEERS[peer](quality_weight=quality_weight).fit(inputs.Xtr, inputs.quality, inputs.latency, models=inputs.models)
        return sel.predict_proba(inputs.Xte)

    np.testing.assert_array_equal(fit.proba, direct(1.0))
    if peer in LEARN_IT:  # these follow the majority label of 90 queries: `slow` on quality alone, `fast` at 0.5
        assert fit.proba[:, 0].mean() > 0.5, fit.proba.mean(axis=0)
        assert direct(0.5)[:, 1].mean() > 0.5
