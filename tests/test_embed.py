"""The real offline embedder, its disk cache, and the feature layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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


def test_a_vector_depends_on_its_text_alone_not_on_the_cache_history(smoke_run, tmp_path, embed_cache):
    """One text per pass (the ONNX backends; torch with batch size 1): a cold cache and a half-warm one give bitwise the
    same vectors. Torch with batches of 16 does not (padding and batch shape move the last bits), which is why each
    backend and batch size has a cache folder of its own."""
    import pandas as pd

    from mlsel.paths import run_paths

    texts = pd.read_csv(run_paths(smoke_run.base.run_dir)["data"] / "queries.csv")["query"].tolist()[:120]

    def cold_and_warm(batch_size: int, backend: str) -> tuple[np.ndarray, np.ndarray]:
        kw = {"batch_size": batch_size, "backend": backend, "progress": False}
        cold_dir, warm_dir = embed_cache(f"cold{batch_size}{backend}"), embed_cache(f"warm{batch_size}{backend}")
        cold = Embedder(cache_dir=cold_dir, **kw).embed(texts)
        Embedder(cache_dir=warm_dir, **kw).embed(texts[::2])
        warm = Embedder(cache_dir=warm_dir, **kw).embed(texts)
        return cold, warm

    for backend in ("onnx", "torch"):
        cold, warm = cold_and_warm(1, backend)
        assert np.array_equal(cold, warm), backend
    cold16, warm16 = cold_and_warm(16, "torch")
    assert not np.array_equal(cold16, warm16) and np.abs(cold16 - warm16).max() < 1e-6
    names = {(bs, b): Embedder(cache_dir=tmp_path, batch_size=bs, backend=b).cache_path.name
             for bs, b in ((16, "torch"), (1, "torch"), (1, "onnx"), (1, "onnx_int8"))}
    assert names == {(16, "torch"): "sentence-transformers--all-MiniLM-L6-v2-batch16",
                     (1, "torch"): "sentence-transformers--all-MiniLM-L6-v2-batch1",
                     (1, "onnx"): "sentence-transformers--all-MiniLM-L6-v2-onnx",
                     (1, "onnx_int8"): "sentence-transformers--all-MiniLM-L6-v2-onnx_int8"}
    assert Embedder(cache_dir=tmp_path).backend == "onnx"  # the default


# Texts of every length: one word, a sentence, and one far past the model's 256 tokens (truncated).
LENGTHS = ["Law.", "What is the derivative of x^2 with respect to x?",
           " ".join(["The court considered whether the contract was void for mistake."] * 60)]


def test_onnx_backend_gives_torch_vectors_to_float_rounding_and_int8_moves_them(embed_cache):
    """The exported graph holds the model's own pooling and normalisation: the same vectors as torch's bare ``encode``
    to float rounding, at every length; the int8 graph stays close (cosine > 0.98) but not that close."""
    cache = embed_cache()
    vecs = {b: Embedder(cache_dir=cache, backend=b, progress=False).embed(LENGTHS) for b in ("torch", "onnx", "onnx_int8")}
    assert vecs["onnx"].shape == vecs["torch"].shape == (3, 384) and vecs["onnx"].dtype == np.float32
    assert np.abs(vecs["onnx"] - vecs["torch"]).max() < 1e-5
    assert ((vecs["onnx"] * vecs["torch"]).sum(axis=1) > 0.99999).all()
    cos8 = (vecs["onnx_int8"] * vecs["torch"]).sum(axis=1)
    assert (cos8 > 0.98).all() and np.abs(vecs["onnx_int8"] - vecs["torch"]).max() > 1e-4
    assert np.allclose(np.linalg.norm(vecs["onnx_int8"], axis=1), 1.0, atol=1e-5)


def test_the_graph_is_exported_once_and_keyed_by_weights_and_versions(tmp_path, monkeypatch):
    """A second embedder with the same cache loads the exported file (exporting again would fail here); other exporter
    versions give another folder, so a new torch or onnx exports anew."""
    from mlsel import encoders

    first = Embedder(cache_dir=tmp_path / "c", progress=False)
    v1 = first.embed(LENGTHS[:2])
    graph = tmp_path / "c" / first.info.graph
    assert first.info.backend == "onnx" and graph.is_file() and graph.parent.parent.name == "onnx"
    monkeypatch.setattr(encoders, "export_onnx", lambda *a, **k: (_ for _ in ()).throw(AssertionError("exported twice")))
    (tmp_path / "c" / "embeddings").rename(tmp_path / "c" / "old-embeddings")  # vectors gone, graph kept
    second = Embedder(cache_dir=tmp_path / "c", progress=False)
    assert np.array_equal(second.embed(LENGTHS[:2]), v1) and second.info == first.info
    versions = encoders._versions()
    monkeypatch.setattr(encoders, "_versions", lambda: {**versions, "torch": "0.0-other"})
    model = second._load()
    with pytest.raises(AssertionError, match="exported twice"):
        encoders.onnx_graph(model, second.model_id, tmp_path / "c", "onnx")


def test_a_model_that_does_not_export_falls_back_to_torch_and_says_why(tmp_path, monkeypatch, caplog):
    from mlsel import encoders

    def refuse(model, path):
        raise RuntimeError("unsupported operator aten::made_up\nmore detail")

    monkeypatch.setattr(encoders, "export_onnx", refuse)
    e = Embedder(cache_dir=tmp_path, progress=False)
    with caplog.at_level("WARNING", logger="mlsel.encoders"):
        v = e.embed(LENGTHS[:2])
    assert e.info == encoders.EncoderInfo("onnx", "torch", fallback="RuntimeError: unsupported operator aten::made_up")
    assert "embed_backend onnx is not available (RuntimeError: unsupported operator aten::made_up); encoding with torch" in caplog.text
    assert e.cache_path.name.endswith("-batch1")  # torch's vectors go to torch's folder
    torch_v = Embedder(cache_dir=tmp_path / "t", backend="torch", progress=False).embed(LENGTHS[:2])
    assert np.array_equal(v, torch_v)


def test_backend_and_batch_size_are_checked():
    with pytest.raises(ValueError, match="embed_batch_size 16 needs embed_backend torch: the onnx backend embeds one text per pass"):
        Embedder(batch_size=16)
    with pytest.raises(ValueError, match="embed_backend 'tensorflow': not one of onnx, onnx_int8, torch"):
        Embedder(backend="tensorflow")


def test_the_train_stage_records_what_encoded(smoke_run):
    import json

    manifest = json.loads((Path(smoke_run.base.run_dir) / "manifest.json").read_text())
    emb = manifest["stages"]["train"]["embedding"]
    assert emb["asked"] == emb["backend"] == manifest["stages"]["train"]["params"]["embed_backend"] == "onnx"
    # The graph is named when the stage encoded a text; the session's earlier runs may have cached every one.
    assert emb["fallback"] == "" and (emb["graph"] == "" or emb["graph"].startswith("onnx/sentence-transformers--all-MiniLM-L6-v2-"))


def _fake_encoder(texts: list[str]) -> np.ndarray:
    """A stand-in model: a text's vector from its hash, slowly, so that two processes overlap."""
    import hashlib
    import time

    time.sleep(0.2)
    rows = [np.frombuffer(hashlib.sha256(t.encode()).digest(), dtype=np.uint8)[:8].astype(np.float32) for t in texts]
    return np.asarray(rows) / 255.0


def _embed_in_child(cache: str, texts: list[str], out) -> None:
    e = Embedder(cache_dir=cache, backend="torch", progress=False)
    e._encoder = _fake_encoder
    e.embed(texts)
    out.put(e.n_encoded)


def test_runs_side_by_side_share_the_cache_and_embed_each_text_once(tmp_path):
    """Two processes embedding overlapping texts into one cache at once: the cache folder's lock makes the second wait,
    read what the first wrote, and embed only the rest; every text is in the cache once."""
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    out = ctx.Queue()
    a, b = [f"text {i}" for i in range(0, 60)], [f"text {i}" for i in range(30, 90)]
    procs = [ctx.Process(target=_embed_in_child, args=(str(tmp_path), texts, out)) for texts in (a, b)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    encoded = sorted(out.get(timeout=5) for _ in procs)
    assert sum(encoded) == 90 and encoded in ([30, 60], [60, 30])
    keys = np.load(Embedder(cache_dir=tmp_path, backend="torch").cache_path / "keys.npy")
    assert len(keys) == len(set(keys.tolist())) == 90
