"""The reference's three selectors: KNN, KMeans and SVM over query features.

Each is written so that the router runtime's rule on its exported file
(:mod:`mlsel.deploy.artifacts`) computes what the selector computes, and each
selects with float32 matrix products over its stored vectors (no per-query
library call): KNN over the training rows, KMeans over the centroids, SVM over
the support vectors.

Stored vectors (KNN's training rows, SVM's support vectors) are rounded to
``store_decimals`` decimal places when fitted, and the selector then works
with the rounded values, so the model that is evaluated is the one whose
file is shipped (short decimals keep the JSON small: every KNN row is written
once per model).
"""

from __future__ import annotations

import numpy as np

from mlsel.params import TrainParams, default
from mlsel.selection.base import (
    QUALITY_WEIGHT,
    SEED,
    TIE_TOL,
    Selector,
    batch_key,
    choose,
    cluster_means,
    neighbour_weights,
    weighted_neighbour_mean,
)

STORE_DECIMALS: int = default(TrainParams, "store_decimals")
CHUNK = 1024
"""Queries per block in the batched products (bounds the (block, rows) score matrix)."""


def stored_rows(X: np.ndarray, decimals: int) -> np.ndarray:
    """C-contiguous float32 copy of ``X`` rounded to ``decimals`` places (0: unrounded)."""
    X = np.asarray(X, dtype=np.float64)
    if decimals > 0:
        X = np.round(X, decimals)
    return np.ascontiguousarray(X, dtype=np.float32)


def unit_rows(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32), as the router runtime normalises an SVM query."""
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), np.float32(1e-12))


def sq_distances(X: np.ndarray, rows: np.ndarray, rows_sq: np.ndarray) -> np.ndarray:
    """Squared L2 distances (n, r) by one float32 product: ``|x|^2 + |row|^2 - 2 x.row``, clipped at 0."""
    d2 = (X * X).sum(axis=1, keepdims=True) + rows_sq[None, :] - 2.0 * (X @ rows.T)
    return np.maximum(d2, 0.0, out=d2)


def augmented_rows(rows: np.ndarray) -> np.ndarray:
    """``[-2 * rows, |rows|^2]`` (r, d + 1), float32: ``[x, 1] @ aug.T`` is ``|row|^2 - 2 x.row`` in one product."""
    rows = np.asarray(rows, dtype=np.float32)
    return np.ascontiguousarray(np.hstack([-2.0 * rows, (rows * rows).sum(axis=1, keepdims=True)]), dtype=np.float32)


def distinct_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(first, inverse)`` with ``rows == rows[first][inverse]``: the first index of each distinct row.

    A matrix product gives two equal rows bit-identical results only if they
    take the same path through the BLAS kernel, and where a row falls in the
    kernel's blocks depends on the CPU (an AVX-512 kernel splits rows
    differently from an AVX2 one). Products over the distinct rows, mapped
    back with ``inverse``, give equal rows equal scores on every CPU, so exact
    ties between duplicates are ties everywhere and the lowest-index rule holds.
    """
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    return first, inverse.reshape(-1)


def distinct_aug(aug: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(distinct rows, inverse)`` of ``aug``, the rows C-contiguous (what :func:`nearest_rows` multiplies)."""
    first, inverse = distinct_rows(aug)
    return np.ascontiguousarray(aug[first]), inverse


def nearest_rows(X: np.ndarray, aug: np.ndarray, k: int, distinct: tuple[np.ndarray, np.ndarray] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` stored rows nearest to each query by L2: (squared distances, indices), each (n, k), nearest first.

    ``aug`` is :func:`augmented_rows` of the stored rows: one float32 product
    per block of queries ranks every distinct row (``distinct``: those rows,
    C-contiguous, and the inverse of :func:`distinct_rows`; computed here when
    not given). Among rows at exactly
    the same distance the lower index is nearer (the rule the runtime reference
    implementation :func:`mlsel.deploy.runtime.runtime_knn_select` uses);
    duplicate rows are at exactly the same distance on every CPU.
    """
    X = np.asarray(X, dtype=np.float32)
    r = len(aug)
    k = min(int(k), r)
    kk = min(k + 1, r)
    uniq, inverse = distinct if distinct is not None else distinct_aug(aug)
    if len(X) == 1:
        return _nearest_one(X[0], uniq, inverse, k, kk)
    import torch

    dist = np.empty((len(X), k), dtype=np.float32)
    idx = np.empty((len(X), k), dtype=np.int64)
    for s in range(0, len(X), CHUNK):
        xb = X[s:s + CHUNK]
        xa = np.empty((len(xb), xb.shape[1] + 1), dtype=np.float32)
        xa[:, :-1], xa[:, -1] = xb, 1.0
        score = (xa @ uniq.T)[:, inverse]
        top_v, top_i = (t.numpy() for t in torch.topk(torch.from_numpy(score), kk, dim=1, largest=False, sorted=True))
        order = np.lexsort((top_i, top_v), axis=-1)  # nearest first, lower index first among equal distances
        top_v, top_i = np.take_along_axis(top_v, order, axis=1), np.take_along_axis(top_i, order, axis=1)
        vals, ind = top_v[:, :k].copy(), top_i[:, :k].copy()
        if kk > k:  # exact ties at the k-th place: the lowest indices among them count
            for i in np.flatnonzero(top_v[:, k - 1] == top_v[:, k]):
                cand = _ranked(score[i], top_v[i, k - 1])[:k]
                ind[i], vals[i] = cand, score[i, cand]
        dist[s:s + len(xb)] = np.maximum(vals + (xb * xb).sum(axis=1, keepdims=True), 0.0)
        idx[s:s + len(xb)] = ind
    return dist, idx


def _nearest_one(x: np.ndarray, uniq: np.ndarray, inverse: np.ndarray, k: int, kk: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`nearest_rows` for one query: one matrix-vector product over the distinct rows and a partial sort.

    Every row scoring at most the (k+1)-th smallest score is ranked, so rows tied at the k-th place are all there.
    """
    score = (uniq @ np.append(x, np.float32(1.0)))[inverse]
    part = _ranked(score, np.partition(score, kk - 1)[kk - 1])[:k]
    return np.maximum(score[part] + np.dot(x, x), 0.0)[None, :], part[None, :]


def _ranked(score: np.ndarray, threshold: float) -> np.ndarray:
    """Indices of the rows scoring at most ``threshold``, by score, the lower index first among equal scores."""
    cand = np.flatnonzero(score <= threshold)
    return cand[np.lexsort((cand, score[cand]))]


class KNNSelector(Selector):
    """k nearest training queries; each model's score is its mean utility over them.

    This is the reference's "quality-weighted voting" with one row per query:
    every neighbour votes for every model with that model's utility on it.
    Neighbours are nearest by L2 over the stored (rounded) training rows, the
    runtime's metric; every feature row has the same norm, so this is the
    cosine order up to the rounding. ``weights="distance"`` weights
    neighbours by inverse cosine distance (no runtime equivalent).

    ``k`` and ``weights`` are prediction-time parameters: one fit serves a grid
    of them. The neighbours of the last query batch (by content) are kept, and a
    smaller k reads the first k of them: the neighbour order is total (distance,
    then the lower index), so the k nearest are the first k of any longer list.
    """

    PREDICT_PARAMS = ("k", "weights")

    def __init__(self, k: int = default(TrainParams, "knn_k"), quality_weight: float = QUALITY_WEIGHT, weights: str = "uniform",
                 store_decimals: int = STORE_DECIMALS):
        self.k = k
        self.quality_weight = quality_weight
        self.weights = weights
        self.store_decimals = store_decimals

    def _fit(self, X, u):
        neighbour_weights(np.ones((1, 1)), self.weights)  # rejects a bad `weights` at fit time
        for kept in ("_batch", "_distinct"):  # a refit invalidates what was kept of the old rows
            self.__dict__.pop(kept, None)
        self.aug_ = augmented_rows(stored_rows(X, self.store_decimals))
        self.train_utility_ = u

    @property
    def k_(self) -> int:
        """The neighbours used: ``k``, at most the stored rows."""
        return min(int(self.k), len(self.aug_))

    @property
    def rows_(self) -> np.ndarray:
        """The stored (rounded) training rows (n, d), float32."""
        return self.aug_[:, :-1] * np.float32(-0.5)

    def kneighbors(self, X: np.ndarray, n_neighbors: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Squared L2 distances and indices (n, k) of the nearest stored training rows, nearest first."""
        if getattr(self, "_distinct", None) is None:  # computed once per process, never saved (see __getstate__)
            self._distinct = distinct_aug(self.aug_)
        k = min(int(n_neighbors or self.k_), len(self.aug_))
        key = batch_key(np.asarray(X, dtype=np.float32))
        kept = self.__dict__.get("_batch")
        if kept is None or kept[0] != key or kept[1][1].shape[1] < k:
            kept = self._batch = (key, nearest_rows(X, self.aug_, k, self._distinct))
        dist, idx = kept[1]
        return dist[:, :k].copy(), idx[:, :k].copy()

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop("_distinct", None)  # a copy of the distinct stored rows: rebuilt on first use, not written to the file
        state.pop("_batch", None)  # the last batch's neighbours, never saved
        state.pop("k_", None)  # a property now (older files stored it)
        return state

    def decision_scores(self, X):
        d2, idx = self.kneighbors(X)
        if self.weights == "distance":
            xsq = (np.asarray(X, dtype=np.float64) ** 2).sum(axis=1, keepdims=True)
            rsq = self.aug_[idx, -1].astype(np.float64)
            dot = 0.5 * (xsq + rsq - d2)
            dist = 1.0 - dot / np.sqrt(np.maximum(xsq * rsq, 1e-24))
            return weighted_neighbour_mean(neighbour_weights(dist, self.weights), self.train_utility_[idx])
        return self.train_utility_[idx].mean(axis=1)


class KMeansSelector(Selector):
    """KMeans over training queries; each cluster routes to its best mean-utility model.

    A cluster that gets no training query (possible only with duplicate
    points) falls back to the overall mean utility, stated in
    ``empty_clusters_``. Selection: nearest centroid by L2 (lowest index on
    ties), the runtime's rule.
    """

    def __init__(self, num_clusters: int = default(TrainParams, "kmeans_num_clusters"), quality_weight: float = QUALITY_WEIGHT,
                 random_state: int = SEED):
        self.num_clusters = num_clusters
        self.quality_weight = quality_weight
        self.random_state = random_state

    def _fit(self, X, u):
        from sklearn.cluster import KMeans

        k = min(self.num_clusters, len(X))
        km = KMeans(n_clusters=k, random_state=self.random_state, n_init=10).fit(X)
        self.centroids_ = np.ascontiguousarray(km.cluster_centers_, dtype=np.float32)
        self.centroids_sq_ = (self.centroids_ * self.centroids_).sum(axis=1)
        self.cluster_utility_, self.cluster_sizes_ = cluster_means(u, km.labels_, k)
        self.empty_clusters_ = int((self.cluster_sizes_ == 0).sum())

    def clusters(self, X: np.ndarray) -> np.ndarray:
        """Nearest centroid per query (n,)."""
        X = np.asarray(X, dtype=np.float32)
        return np.concatenate([(self.centroids_sq_[None, :] - 2.0 * (X[s:s + CHUNK] @ self.centroids_.T)).argmin(axis=1)
                               for s in range(0, len(X), CHUNK)]) if len(X) else np.zeros(0, dtype=np.int64)

    def decision_scores(self, X):
        return self.cluster_utility_[self.clusters(X)]


class SVMSelector(Selector):
    """One-vs-rest SVM on L2-normalised features, trained on the best model per query.

    For every model that is some informative training query's best model
    (utility argmax, module tie rule) one binary SVC separates "this model is
    best" from the rest; a query's score for that model is the binary
    decision value ``sum_i coef_i * K(x/|x|, sv_i) + intercept`` with
    ``K = exp(-gamma |a - b|^2)`` (rbf) or ``a . b`` (linear). That is the
    router runtime's per-class rule (query L2-normalised, signed coefficient
    per support vector, one intercept per class), so the exported file
    computes the same scores. Queries where every model has the same utility
    are left out of the labels (``n_uninformative_``). A model that is never
    a training label scores below every label, so it is chosen only when it
    is the sole candidate. The kernel matrix is computed once per fit and
    shared by the per-class problems.
    """

    def __init__(self, kernel: str = default(TrainParams, "svm_kernel"), gamma: float = default(TrainParams, "svm_gamma"),
                 C: float = default(TrainParams, "svm_c"), quality_weight: float = QUALITY_WEIGHT, random_state: int = SEED,
                 store_decimals: int = STORE_DECIMALS):
        self.kernel = kernel
        self.gamma = gamma
        self.C = C
        self.quality_weight = quality_weight
        self.random_state = random_state
        self.store_decimals = store_decimals

    def _kernel(self, A: np.ndarray, B: np.ndarray) -> np.ndarray:
        A = np.asarray(A, dtype=np.float64)
        B = np.asarray(B, dtype=np.float64)
        dot = A @ B.T
        if self.kernel == "linear":
            return dot
        d2 = (A * A).sum(axis=1)[:, None] + (B * B).sum(axis=1)[None, :] - 2.0 * dot
        return np.exp(-float(self.gamma) * np.maximum(d2, 0.0))

    def _fit(self, X, u):
        from sklearn.svm import SVC

        if self.kernel not in ("rbf", "linear"):
            raise ValueError(f"kernel must be rbf or linear, got {self.kernel!r}")
        informative = (u.max(axis=1) - u.min(axis=1)) > TIE_TOL
        self.n_uninformative_ = int((~informative).sum())
        labels = choose(u[informative], self.rank_)
        self.classes_ = np.unique(labels)
        self.constant_ = None
        if len(self.classes_) < 2:
            self.constant_ = int(self.classes_[0]) if len(self.classes_) else int(np.argmin(self.rank_))
            return
        Xu = unit_rows(X[informative])
        K = self._kernel(Xu, Xu)
        coef = np.zeros((len(Xu), len(self.classes_)))
        self.intercept_ = np.zeros(len(self.classes_))
        self.n_support_ = np.zeros(len(self.classes_), dtype=np.int64)
        for j, c in enumerate(self.classes_):
            svc = SVC(kernel="precomputed", C=float(self.C), random_state=self.random_state).fit(K, labels == c)
            # Binary SVC: decision_function = dual_coef_ @ K(sv, x) + intercept_, positive for classes_[1] (True).
            coef[svc.support_, j] = svc.dual_coef_[0]
            self.intercept_[j] = float(svc.intercept_[0])
            self.n_support_[j] = len(svc.support_)
        used = np.flatnonzero((coef != 0).any(axis=1))
        self.coef_ = coef[used]
        if self.kernel == "linear":
            self.sv_ = stored_rows(Xu[used], 0)
            self.weights_ = (self.coef_.T @ Xu[used].astype(np.float64))  # (classes, d): exact linear model
        else:
            self.sv_ = stored_rows(Xu[used], self.store_decimals)
        self.sv_sq_ = (self.sv_ * self.sv_).sum(axis=1)
        self.coef32_ = self.coef_.astype(np.float32)

    def class_scores(self, X: np.ndarray) -> np.ndarray:
        """Decision value per query and label class (n, len(classes_)), float64."""
        Xu = unit_rows(X)
        out = np.empty((len(Xu), len(self.classes_)))
        for s in range(0, len(Xu), CHUNK):
            xb = Xu[s:s + CHUNK]
            if self.kernel == "linear":
                out[s:s + CHUNK] = xb @ self.weights_.T.astype(np.float32)
            else:
                k = sq_distances(xb, self.sv_, self.sv_sq_)
                np.exp(np.float32(-float(self.gamma)) * k, out=k)
                out[s:s + CHUNK] = k @ self.coef32_
        return out + self.intercept_[None, :]

    def decision_scores(self, X):
        out = np.full((len(X), len(self.models_)), -1e9)
        if self.constant_ is not None:
            out[:, self.constant_] = 0.0
            return out
        out[:, self.classes_] = self.class_scores(X)
        return out
