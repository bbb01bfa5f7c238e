"""The real offline embedder, its disk cache, and the feature layout."""

from __future__ import annotations

import numpy as np

from mlsel.features import Embedder, build_features


def test_minilm_embeds_offline_and_cache_makes_rerun_free(tmp_path):
    texts = ["What is the derivative of x^2?", "Explain photosynthesis.", "What is the derivative of x^2?"]
    e = Embedder(cache_dir=tmp_path, progress=False)
    v = e.embed(texts)
    assert v.shape == (3, 384)
    assert e.n_encoded == 2  # duplicate text embedded once
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert np.allclose(v[0], v[2])
    again = Embedder(cache_dir=tmp_path, progress=False)
    v2 = again.embed(texts[:2] + ["A new query about law."])
    assert again.n_encoded == 1 and again._model is not None
    assert np.allclose(v2[:2], v[:2])
    third = Embedder(cache_dir=tmp_path, progress=False)
    third.embed(texts)
    assert third.n_encoded == 0 and third._model is None  # nothing embedded, model never loaded
    # Semantics: the two math questions are closer than math vs biology.
    m = third.embed(["What is the derivative of x^3?"])
    assert float(v[0] @ m[0]) > float(v[1] @ m[0])


def test_features_are_embedding_plus_weighted_onehot():
    emb = np.ones((2, 384), dtype=np.float32) / np.sqrt(384)
    X = build_features(emb, ["math", "law"], onehot_weight=0.25)
    assert X.shape == (2, 398)
    assert X[0, 384:].sum() == 0.25 and X[1, 384:].argmax() == 8  # law is index 8
