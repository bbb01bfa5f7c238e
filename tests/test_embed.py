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


def test_a_vector_depends_on_its_text_alone_not_on_the_cache_history(smoke_run, tmp_path):
    """With the default batch size 1 a cold cache and a half-warm one give bitwise the same vectors. With batches
    of 16 they do not (padding and batch shape move the last bits), which is why such vectors are cached apart."""
    import pandas as pd

    from mlsel.paths import run_paths

    texts = pd.read_csv(run_paths(smoke_run.base.run_dir)["data"] / "queries.csv")["query"].tolist()[:120]

    def cold_and_warm(batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        cold = Embedder(cache_dir=tmp_path / f"cold{batch_size}", batch_size=batch_size, progress=False).embed(texts)
        Embedder(cache_dir=tmp_path / f"warm{batch_size}", batch_size=batch_size, progress=False).embed(texts[::2])
        warm = Embedder(cache_dir=tmp_path / f"warm{batch_size}", batch_size=batch_size, progress=False).embed(texts)
        return cold, warm

    cold, warm = cold_and_warm(1)
    assert np.array_equal(cold, warm)
    cold16, warm16 = cold_and_warm(16)
    assert not np.array_equal(cold16, warm16) and np.abs(cold16 - warm16).max() < 1e-6
    assert Embedder(cache_dir=tmp_path, batch_size=16).cache_path.name == "sentence-transformers--all-MiniLM-L6-v2-batch16"
    assert Embedder(cache_dir=tmp_path).cache_path.name == "sentence-transformers--all-MiniLM-L6-v2-batch1"
