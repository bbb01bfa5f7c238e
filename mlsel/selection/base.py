"""Model selectors, scikit-learn style.

Every selector is fitted on **one row per query**: ``fit(X, quality,
latency_s=None, models=...)`` with ``X`` of shape (n, d) and ``quality`` (and
``latency_s``) of shape (n, m). It turns outcomes into an explicit utility::

    utility = quality_weight * quality + (1 - quality_weight) * speed,   speed = 1 / (1 + latency_s)

where latency was measured; without measured latency, utility = quality (the
speed term is unknown, so ``quality_weight`` has no effect, and no latency is
invented).

Selection is ``predict(X, candidates=None)``: for each query the model with
the highest predicted score among ``candidates`` (default: all models), the
decision's ``modelRefs`` in the router's terms. ``predict_proba`` returns the
(n, m) choice distribution: one-hot for deterministic selectors, uniform over
the candidates for :class:`RandomSelector` (so evaluation gets the exact
expectation, never one draw).

Tie rule (documented, never file order): among models whose score is within
``1e-9`` of the best, choose the one with the highest mean training utility;
if that ties too, the one listed first in ``models``.

Queries where every model has the same utility (e.g. all score 0) carry no
information about which model to choose: :class:`SVMSelector` leaves them out
of its training labels (counted in ``n_uninformative_``); KNN and KMeans keep
them, where they add the same amount to every model and change nothing but
their averages.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.base import BaseEstimator

from mlsel.params import BaseParams, default

QUALITY_WEIGHT: float = default(BaseParams, "quality_weight")
SEED: int = default(BaseParams, "seed")


TIE_TOL = 1e-9
_NO_RANK = np.iinfo(np.int64).max


def utility(quality: np.ndarray, latency_s: np.ndarray | None = None, quality_weight: float = QUALITY_WEIGHT) -> np.ndarray:
    """Per (query, model) utility; see the module docstring. Shapes (n, m) -> (n, m)."""
    q = np.asarray(quality, dtype=float)
    if latency_s is None:
        return q
    lat = np.asarray(latency_s, dtype=float)
    if np.isnan(lat).any():
        raise ValueError("latency_s has missing values; give all latencies or none")
    return quality_weight * q + (1.0 - quality_weight) * (1.0 / (1.0 + lat))


def candidate_mask(models: Sequence[str], candidates: Sequence[str] | None) -> np.ndarray:
    """Boolean mask (m,) of the candidate models; unknown names are an error."""
    if candidates is None:
        return np.ones(len(models), dtype=bool)
    unknown = sorted(set(candidates) - set(models))
    if unknown:
        raise ValueError(f"candidate models {unknown} are not among the fitted models {list(models)}")
    if not candidates:
        raise ValueError("empty candidate set")
    return np.isin(np.asarray(models), np.asarray(list(candidates)))


def choose(scores: np.ndarray, rank: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Index of the chosen model per row, with the module's tie rule.

    Parameters
    ----------
    scores : (n, m) higher is better
    rank : (m,) tie-break order, lower wins (0 = highest mean training utility)
    mask : (m,) candidate models; others are never chosen, even where every candidate scores ``-inf`` (a classifier
        gives ``-inf`` to a model it never saw as a label): then the candidates tie and the rank decides among them
    """
    s = np.array(scores, dtype=float, copy=True)
    if mask is not None and not mask.all():
        s[:, ~mask] = -np.inf
    best = s.max(axis=1, keepdims=True)
    tied = s >= best - TIE_TOL
    if mask is not None:  # a row whose candidates all score -inf ties every model at -inf: still only candidates
        tied &= mask[None, :]
    r = np.where(tied, rank[None, :], _NO_RANK)
    return r.argmin(axis=1)


def neighbour_weights(dist: np.ndarray, weights: str) -> np.ndarray:
    """Row-normalised neighbour weights (n, k) from cosine distances: ``uniform`` or ``distance`` (``1 / max(d, 1e-6)``)."""
    if weights not in ("uniform", "distance"):
        raise ValueError(f"weights must be uniform or distance, got {weights!r}")
    w = 1.0 / np.maximum(dist, 1e-6) if weights == "distance" else np.ones_like(dist)
    return w / w.sum(axis=1, keepdims=True)


def weighted_neighbour_mean(w: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per query and model, the weighted mean over its neighbours: w (n, k), values (n, k, m) -> (n, m)."""
    return np.einsum("nk,nkm->nm", w, values)


def cluster_means(values: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cluster column means (k, m) of ``values`` (n, m) and cluster sizes (k,).

    A cluster with no row (possible only with duplicate points) gets the overall mean.
    """
    sizes = np.bincount(labels, minlength=k)
    means = np.tile(values.mean(axis=0), (k, 1))
    for c in range(k):
        if sizes[c]:
            means[c] = values[labels == c].mean(axis=0)
    return means, sizes



def batch_key(X: np.ndarray) -> tuple:
    """A content key of a query batch (shape, dtype and a BLAKE2b digest of its bytes).

    Caches of per-batch work (a router's neighbour search, reused across a grid of prediction-time parameters) are
    keyed on it rather than on the array's identity, so an array changed in place, or a new array at a reused address,
    never meets a stale entry. Hashing is ~1 ms per MB, far below the work it saves.
    """
    import hashlib

    a = np.ascontiguousarray(X)
    return a.shape, a.dtype.str, hashlib.blake2b(a.view(np.uint8).reshape(-1), digest_size=16).digest()


def best_single_index(quality: np.ndarray, latency_s: np.ndarray | None, quality_weight: float) -> int:
    """The best single model of a training split: the highest mean utility, ties to the listed order.

    The one definition: :class:`Selector` ranks its models this way (``rank_`` 0 is this model), so
    :class:`mlsel.selection.baselines.BestSingleSelector` and every table's best-single baseline pick it.
    """
    return int(np.argmax(utility(quality, latency_s, quality_weight).mean(axis=0)))

class Selector(BaseEstimator):
    """Base class: fits the utility, the tie-break rank, and selects."""

    quality_weight: float = QUALITY_WEIGHT

    def fit(self, X: np.ndarray, quality: np.ndarray, latency_s: np.ndarray | None = None, models: Sequence[str] | None = None):
        """Fit on one row per query. X (n, d); quality, latency_s (n, m)."""
        quality = np.asarray(quality, dtype=float)
        if quality.ndim != 2 or len(quality) != len(X):
            raise ValueError(f"quality must have shape (n={len(X)}, m), got {quality.shape}")
        self.models_ = list(models) if models is not None else [f"model_{j}" for j in range(quality.shape[1])]
        if len(self.models_) != quality.shape[1]:
            raise ValueError(f"{len(self.models_)} model names for {quality.shape[1]} quality columns")
        u = utility(quality, latency_s, self.quality_weight)
        self.train_utility_mean_ = u.mean(axis=0)
        order = sorted(range(len(self.models_)), key=lambda j: (-self.train_utility_mean_[j], j))
        self.rank_ = np.empty(len(self.models_), dtype=np.int64)
        self.rank_[order] = np.arange(len(self.models_))
        self.n_features_in_ = np.asarray(X).shape[1]
        self._fit(np.asarray(X, dtype=np.float32), u)
        return self

    def _fit(self, X: np.ndarray, u: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def decision_scores(self, X: np.ndarray) -> np.ndarray:
        """Predicted score per (query, model), shape (n, m); higher is better."""
        raise NotImplementedError

    def predict_index(self, X: np.ndarray, candidates: Sequence[str] | None = None) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"feature dimension {X.shape[1]} != fitted {self.n_features_in_}")
        return choose(self.decision_scores(X), self.rank_, candidate_mask(self.models_, candidates))

    def predict(self, X: np.ndarray, candidates: Sequence[str] | None = None) -> np.ndarray:
        """Chosen model name per query, shape (n,)."""
        return np.asarray(self.models_, dtype=object)[self.predict_index(X, candidates)]

    def predict_proba(self, X: np.ndarray, candidates: Sequence[str] | None = None) -> np.ndarray:
        """Choice distribution (n, m); rows sum to 1."""
        idx = self.predict_index(X, candidates)
        out = np.zeros((len(idx), len(self.models_)))
        out[np.arange(len(idx)), idx] = 1.0
        return out
