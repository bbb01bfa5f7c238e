"""The reference's three selectors: KNN, KMeans and SVM over query features."""

from __future__ import annotations

import numpy as np

from mlsel.params import TrainParams, default
from mlsel.selection.base import QUALITY_WEIGHT, SEED, TIE_TOL, Selector, choose, cluster_means, neighbour_weights, weighted_neighbour_mean


class KNNSelector(Selector):
    """k nearest training queries (cosine); each model's score is its mean utility over them.

    This is the reference's "quality-weighted voting" with one row per query:
    every neighbour votes for every model with that model's utility on it.
    """

    def __init__(self, k: int = default(TrainParams, "knn_k"), quality_weight: float = QUALITY_WEIGHT, weights: str = "uniform"):
        self.k = k
        self.quality_weight = quality_weight
        self.weights = weights

    def _fit(self, X, u):
        from sklearn.neighbors import NearestNeighbors

        neighbour_weights(np.ones((1, 1)), self.weights)  # rejects a bad `weights` at fit time
        self.nn_ = NearestNeighbors(n_neighbors=min(self.k, len(X)), metric="cosine").fit(X)
        self.train_utility_ = u

    def decision_scores(self, X):
        dist, idx = self.nn_.kneighbors(X)
        return weighted_neighbour_mean(neighbour_weights(dist, self.weights), self.train_utility_[idx])


class KMeansSelector(Selector):
    """KMeans over training queries; each cluster routes to its best mean-utility model.

    A cluster that gets no training query (possible only with duplicate
    points) falls back to the overall mean utility, stated in
    ``empty_clusters_``.
    """

    def __init__(self, num_clusters: int = default(TrainParams, "kmeans_num_clusters"), quality_weight: float = QUALITY_WEIGHT,
                 random_state: int = SEED):
        self.num_clusters = num_clusters
        self.quality_weight = quality_weight
        self.random_state = random_state

    def _fit(self, X, u):
        from sklearn.cluster import KMeans

        k = min(self.num_clusters, len(X))
        self.km_ = KMeans(n_clusters=k, random_state=self.random_state, n_init=10).fit(X)
        self.cluster_utility_, self.cluster_sizes_ = cluster_means(u, self.km_.labels_, k)
        self.empty_clusters_ = int((self.cluster_sizes_ == 0).sum())

    def decision_scores(self, X):
        return self.cluster_utility_[self.km_.predict(X)]


class SVMSelector(Selector):
    """SVC trained on the best model per query (utility argmax, module tie rule).

    Scores are the one-vs-rest shaped decision values of libsvm's one-vs-one
    classifier; a model that is never the best training label scores below
    every label, so it is chosen only when it is the sole candidate.
    """

    def __init__(self, kernel: str = default(TrainParams, "svm_kernel"), gamma: float | str = default(TrainParams, "svm_gamma"),
                 C: float = default(TrainParams, "svm_c"), quality_weight: float = QUALITY_WEIGHT, random_state: int = SEED):
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
