"""The matrix-factorisation peers (LLMRouter's MF, EmbedLLM's TextMF): their score formulas on fixed weights by hand, their
training pairs, that they learn an obvious per-cluster best model, and that a fit is deterministic."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mlsel.selection.peers import PEER_LABELS, PEERS
from mlsel.selection.peers_mf import EmbedLLMMF, LLMRouterMF

MODELS = ["a", "b", "c"]


def _blobs(n_per: int = 30, seed: int = 0):
    """Three separated blobs; in blob j model j alone is right."""
    rng = np.random.default_rng(seed)
    X = np.vstack([np.eye(3)[j] * 5.0 + rng.normal(scale=0.3, size=(n_per, 3)) for j in range(3)]).astype(np.float32)
    return X, np.repeat(np.eye(3), n_per, axis=0)


def test_llmrouter_mf_score_is_the_bilinear_form_on_normalised_model_vectors():
    """delta(M, q) = w . (normalize(P_M) * (W q)): P = [[3, 4], [1, 0]] normalises to [[.6, .8], [1, 0]]; W = I, w = (1, 2),
    q = (1, 1): a scores .6 + 2 * .8 = 2.2, b scores 1."""
    X, q = _blobs(4)
    sel = LLMRouterMF(epochs=1).fit(X, q[:, :2], models=["a", "b"])  # weights replaced below
    sel.model_embeddings_ = np.array([[3.0, 4.0], [1.0, 0.0]], dtype=np.float32)
    sel.text_proj_ = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32)
    sel.classifier_ = np.array([1.0, 2.0], dtype=np.float32)
    assert sel.decision_scores(np.array([[1.0, 1.0, 7.0]]))[0] == pytest.approx([2.2, 1.0])
    assert sel.predict(np.array([[1.0, 1.0, 7.0], [1.0, -1.0, 0.0]])).tolist() == ["a", "b"]  # second: -1 against 1


def test_embedllm_mf_score_is_the_logit_difference():
    """logits = C (P_M * (T q + t)) + c; score logit[1] - logit[0]. T q + t = (1.5, 1); a: P = (1, 2) -> (1.5, 2), logits
    (1.6, 2.3), score .7; b: P = (0, 1) -> (0, 1), logits (.1, 1.3), score 1.2."""
    X, q = _blobs(4)
    sel = EmbedLLMMF(epochs=1).fit(X, q[:, :2], models=["a", "b"])  # weights replaced below
    sel.model_embeddings_ = np.array([[1.0, 2.0], [0.0, 1.0]], dtype=np.float32)
    sel.text_proj_ = (np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=np.float32), np.array([0.5, 0.0], dtype=np.float32))
    sel.classifier_ = (np.eye(2, dtype=np.float32), np.array([0.1, 0.3], dtype=np.float32))
    assert sel.decision_scores(np.array([[1.0, 1.0, 9.0]]))[0] == pytest.approx([0.7, 1.2])
    assert sel.predict(np.array([[1.0, 1.0, 9.0]])).tolist() == ["b"]


def test_llmrouter_mf_pairs_each_querys_winner_against_every_other_model_ties_included():
    # Training means a 2/3, b 1/3, c 1/3: a ranks first, then b (listed before c).
    q = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    sel = LLMRouterMF(epochs=1).fit(np.ones((3, 2), dtype=np.float32), q, models=MODELS)
    qi, win, lose = sel._pairs(q)
    assert qi.tolist() == [0, 0, 1, 1, 2, 2]
    assert win.tolist() == [0, 0, 1, 1, 0, 0]  # query 1 ties b and c: b by the training mean, c still a loser
    assert lose.tolist() == [1, 2, 0, 2, 1, 2]
    all_wrong = sel._pairs(np.zeros((1, 3)))  # no information, still two pairs: the best training model wins
    assert all_wrong[1].tolist() == [0, 0] and all_wrong[2].tolist() == [1, 2]


@pytest.mark.parametrize("sel", [LLMRouterMF(batch_size=1), EmbedLLMMF(lr=1e-2, epochs=300)], ids=["llmrouter_mf", "embedllm_mf"])
def test_mf_peers_learn_the_right_model_per_cluster(sel):
    """The LLMRouter MF with the source's schedule (one step per pair); EmbedLLM's with a larger step and more epochs than
    its defaults, which are sized for 36,000 queries, not 90."""
    X, q = _blobs()
    sel.fit(X, q, models=MODELS)
    Xt, qt = _blobs(10, seed=3)
    assert (qt[np.arange(len(Xt)), sel.predict_index(Xt)] == 1).mean() >= 0.95
    assert sel.decision_scores(Xt).shape == (len(Xt), 3)


@pytest.mark.parametrize("cls", [LLMRouterMF, EmbedLLMMF])
def test_mf_fits_are_deterministic_and_leave_torch_state_alone(cls):
    X, q = _blobs(8)
    q[::3, 1] = 1.0
    rng_state, threads = torch.random.get_rng_state(), torch.get_num_threads()
    one, two = cls().fit(X, q, models=MODELS), cls().fit(X, q, models=MODELS)
    assert torch.equal(torch.random.get_rng_state(), rng_state) and torch.get_num_threads() == threads
    assert np.array_equal(one.decision_scores(X), two.decision_scores(X))
    assert np.array_equal(one.predict_index(X), two.predict_index(X))
    other = cls(random_state=7).fit(X, q, models=MODELS)
    assert not np.array_equal(one.model_embeddings_, other.model_embeddings_)


def test_mf_peers_are_registered_with_their_sources_defaults():
    assert PEERS["llmrouter_mf"] is LLMRouterMF and PEERS["embedllm_mf"] is EmbedLLMMF
    assert PEER_LABELS["llmrouter_mf"].startswith("Peer: ") and PEER_LABELS["embedllm_mf"].startswith("Peer: ")
    mf = LLMRouterMF()
    assert (mf.dim, mf.lr, mf.epochs) == (128, 1e-3, 5)
    e = EmbedLLMMF()
    assert (e.dim, e.alpha, e.lr, e.weight_decay, e.batch_size, e.epochs, e.random_state) == (232, 0.05, 1e-4, 1e-5, 2048, 50, 42)
