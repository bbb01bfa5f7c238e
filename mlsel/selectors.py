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

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import joblib
import numpy as np
from sklearn.base import BaseEstimator

import mlsel

log = logging.getLogger(__name__)

TIE_TOL = 1e-9


def utility(quality: np.ndarray, latency_s: np.ndarray | None = None, quality_weight: float = 0.9) -> np.ndarray:
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
    mask : (m,) candidate models; others are never chosen
    """
    s = np.array(scores, dtype=float, copy=True)
    if mask is not None:
        s[:, ~mask] = -np.inf
    best = s.max(axis=1, keepdims=True)
    tied = s >= best - TIE_TOL
    r = np.where(tied, rank[None, :], np.iinfo(np.int64).max)
    return r.argmin(axis=1)


class Selector(BaseEstimator):
    """Base class: fits the utility, the tie-break rank, and selects."""

    quality_weight: float = 0.9

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


class KNNSelector(Selector):
    """k nearest training queries (cosine); each model's score is its mean utility over them.

    This is the reference's "quality-weighted voting" with one row per query:
    every neighbour votes for every model with that model's utility on it.
    """

    def __init__(self, k: int = 5, quality_weight: float = 0.9, weights: str = "uniform"):
        self.k = k
        self.quality_weight = quality_weight
        self.weights = weights

    def _fit(self, X, u):
        from sklearn.neighbors import NearestNeighbors

        if self.weights not in ("uniform", "distance"):
            raise ValueError(f"weights must be uniform or distance, got {self.weights!r}")
        self.nn_ = NearestNeighbors(n_neighbors=min(self.k, len(X)), metric="cosine").fit(X)
        self.train_utility_ = u

    def decision_scores(self, X):
        dist, idx = self.nn_.kneighbors(X)
        if self.weights == "distance":
            w = 1.0 / np.maximum(dist, 1e-6)
        else:
            w = np.ones_like(dist)
        w = w / w.sum(axis=1, keepdims=True)
        return np.einsum("nk,nkm->nm", w, self.train_utility_[idx])


class KMeansSelector(Selector):
    """KMeans over training queries; each cluster routes to its best mean-utility model.

    A cluster that gets no training query (possible only with duplicate
    points) falls back to the overall mean utility, stated in
    ``empty_clusters_``.
    """

    def __init__(self, num_clusters: int = 8, quality_weight: float = 0.9, random_state: int = 42):
        self.num_clusters = num_clusters
        self.quality_weight = quality_weight
        self.random_state = random_state

    def _fit(self, X, u):
        from sklearn.cluster import KMeans

        k = min(self.num_clusters, len(X))
        self.km_ = KMeans(n_clusters=k, random_state=self.random_state, n_init=10).fit(X)
        labels = self.km_.labels_
        self.cluster_utility_ = np.tile(u.mean(axis=0), (k, 1))
        self.cluster_sizes_ = np.bincount(labels, minlength=k)
        for c in range(k):
            if self.cluster_sizes_[c]:
                self.cluster_utility_[c] = u[labels == c].mean(axis=0)
        self.empty_clusters_ = int((self.cluster_sizes_ == 0).sum())

    def decision_scores(self, X):
        return self.cluster_utility_[self.km_.predict(X)]


class SVMSelector(Selector):
    """SVC trained on the best model per query (utility argmax, module tie rule).

    Scores are the one-vs-rest shaped decision values of libsvm's one-vs-one
    classifier; a model that is never the best training label scores below
    every label, so it is chosen only when it is the sole candidate.
    """

    def __init__(self, kernel: str = "rbf", gamma: float | str = 1.0, C: float = 1.0, quality_weight: float = 0.9, random_state: int = 42):
        self.kernel = kernel
        self.gamma = gamma
        self.C = C
        self.quality_weight = quality_weight
        self.random_state = random_state

    def _fit(self, X, u):
        from sklearn.svm import SVC

        if self.kernel not in ("rbf", "linear"):
            raise ValueError(f"kernel must be rbf or linear, got {self.kernel!r}")
        informative = (u.max(axis=1) - u.min(axis=1)) > TIE_TOL
        self.n_uninformative_ = int((~informative).sum())
        labels = choose(u[informative], self.rank_)
        self.classes_present_ = np.unique(labels)
        if len(self.classes_present_) < 2:
            self.svc_ = None
            self.constant_ = int(self.classes_present_[0]) if len(self.classes_present_) else int(np.argmin(self.rank_))
            return
        self.svc_ = SVC(kernel=self.kernel, gamma=self.gamma, C=self.C, decision_function_shape="ovr", random_state=self.random_state)
        self.svc_.fit(X[informative], labels)

    def decision_scores(self, X):
        m = len(self.models_)
        out = np.full((len(X), m), -1e9)
        if self.svc_ is None:
            out[:, self.constant_] = 0.0
            return out
        d = self.svc_.decision_function(X)
        if d.ndim == 1:  # binary: positive means classes_[1]
            d = np.stack([-d, d], axis=1)
        out[:, self.svc_.classes_] = d
        return out


class AlwaysSelector(Selector):
    """Always the same model (falls back to the tie rule if it is not a candidate)."""

    def __init__(self, model: str = "", quality_weight: float = 0.9):
        self.model = model
        self.quality_weight = quality_weight

    def _fit(self, X, u):
        if self.model not in self.models_:
            raise ValueError(f"model {self.model!r} is not among {self.models_}")

    def decision_scores(self, X):
        out = np.zeros((len(X), len(self.models_)))
        out[:, self.models_.index(self.model)] = 1.0
        return out


class BestSingleSelector(Selector):
    """The single model with the highest mean utility on the training split."""

    def __init__(self, quality_weight: float = 0.9):
        self.quality_weight = quality_weight

    def _fit(self, X, u):
        self.model_ = self.models_[int(np.argmin(self.rank_))]

    def decision_scores(self, X):
        return np.tile(-self.rank_.astype(float), (len(X), 1))


class RandomSelector(Selector):
    """Uniform choice among the candidates. ``predict_proba`` is the exact expectation."""

    def __init__(self, quality_weight: float = 0.9, random_state: int = 42):
        self.quality_weight = quality_weight
        self.random_state = random_state

    def _fit(self, X, u):
        pass

    def predict_proba(self, X, candidates=None):
        mask = candidate_mask(self.models_, candidates).astype(float)
        return np.tile(mask / mask.sum(), (len(X), 1))

    def predict_index(self, X, candidates=None):
        """One seeded draw per query (for routing use; evaluation uses predict_proba)."""
        rng = np.random.default_rng(self.random_state)
        p = self.predict_proba(X, candidates)[0]
        return rng.choice(len(self.models_), size=len(X), p=p)


SELECTORS: dict[str, type[Selector]] = {"knn": KNNSelector, "kmeans": KMeansSelector, "svm": SVMSelector}
"""The reference's three algorithms by their config ``algorithm.type`` name."""


def make_selector(name: str, params: dict[str, Any]) -> Selector:
    """Build a selector from flat parameters (the params.yaml train keys).

    ``knn`` reads ``knn_k``; ``kmeans`` reads ``kmeans_num_clusters``; ``svm``
    reads ``svm_kernel``, ``svm_gamma``, ``svm_c``; all read ``quality_weight``
    and ``seed``.
    """
    qw = float(params.get("quality_weight", 0.9))
    seed = int(params.get("seed", 42))
    if name == "knn":
        return KNNSelector(k=int(params.get("knn_k", 5)), quality_weight=qw)
    if name == "kmeans":
        return KMeansSelector(num_clusters=int(params.get("kmeans_num_clusters", 8)), quality_weight=qw, random_state=seed)
    if name == "svm":
        return SVMSelector(
            kernel=params.get("svm_kernel", "rbf"), gamma=params.get("svm_gamma", 1.0), C=float(params.get("svm_c", 1.0)),
            quality_weight=qw, random_state=seed,
        )
    from mlsel import routers  # lazy: routers builds on this module

    if name in routers.ROUTERS:
        return routers.make_router(name, params)
    raise ValueError(f"unknown selector {name!r}; known: {sorted(SELECTORS)}")


def save_selector(selector: Selector, folder: str | os.PathLike[str], name: str, manifest: dict[str, Any]) -> Path:
    """Write ``<name>.joblib`` and ``<name>.manifest.json`` into ``folder``.

    The manifest records what a loader must match: embedder id, feature
    dimension, models, parameters, data hash, seed, package version.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.joblib"
    joblib.dump(selector, path)
    full = {
        "selector": name,
        "class": type(selector).__name__,
        "params": {k: v for k, v in selector.get_params().items()},
        "models": list(selector.models_),
        "feature_dim": int(selector.n_features_in_),
        "package_version": mlsel.__version__,
        **manifest,
    }
    (folder / f"{name}.manifest.json").write_text(json.dumps(full, indent=2, sort_keys=True, default=str) + "\n")
    return path


def load_selector(folder: str | os.PathLike[str], name: str) -> tuple[Selector, dict[str, Any]]:
    """Load a selector saved by :func:`save_selector` and its manifest."""
    folder = Path(folder)
    mpath = folder / f"{name}.manifest.json"
    if not mpath.is_file():
        raise FileNotFoundError(f"{mpath}: no selector manifest; run the train stage first")
    manifest = json.loads(mpath.read_text())
    selector = joblib.load(folder / f"{name}.joblib")
    if list(selector.models_) != manifest["models"] or selector.n_features_in_ != manifest["feature_dim"]:
        raise ValueError(f"{mpath}: manifest does not match the saved selector")
    return selector, manifest
