"""Avengers-Pro's cluster scoreboard router (digest 8.2), a cost-aware router.

KMeans with many clusters on one row per query; per cluster and model the
mean utility p and mean cost c, each min-max normalised across models
*within the cluster*; cluster score ``alpha * p~ + (1 - alpha) * (1 - c~)``;
a query's score is the mean over its ``top_p`` nearest clusters.
``cost_lambda`` subtracts a further ``cost_lambda * c~``; with ``alpha = 1``
sweeping ``cost_lambda`` is the same ranking as sweeping
``alpha = 1 / (1 + cost_lambda)``. Cost and utility as in
:mod:`mlsel.selection.cost_aware`.
"""

from __future__ import annotations

import numpy as np

from mlsel.params import TuneParams, default
from mlsel.selection.base import QUALITY_WEIGHT, SEED, cluster_means
from mlsel.selection.cost_aware import COST_LAMBDA, CostAwareRouter


class ClusterScoreboardSelector(CostAwareRouter):
    """Avengers-Pro cluster scoreboard (see the module docstring).

    Parameters
    ----------
    num_clusters : KMeans clusters (Avengers-Pro uses 60)
    alpha : quality share of the cluster score, in [0, 1]
    top_p : nearest clusters whose scores are averaged
    n_init : KMeans restarts (k-means++ seeding; one is enough with many clusters)
    random_state : KMeans seed

    Attributes
    ----------
    cluster_quality_, cluster_cost_ : (k, m) per-cluster means (raw; cost normalised by ``cost_scale_``)
    cluster_quality_norm_, cluster_cost_norm_ : (k, m) min-max normalised within each cluster
    """

    PREDICT_PARAMS = ("alpha", "top_p", "cost_lambda")

    def __init__(
        self, num_clusters: int = default(TuneParams, "scoreboard_clusters"), alpha: float = default(TuneParams, "scoreboard_alpha"),
        top_p: int = default(TuneParams, "scoreboard_top_p"), quality_weight: float = QUALITY_WEIGHT, cost_lambda: float = COST_LAMBDA,
        n_init: int = 1, random_state: int = SEED,
    ):
        self.num_clusters = num_clusters
        self.alpha = alpha
        self.top_p = top_p
        self.quality_weight = quality_weight
        self.cost_lambda = cost_lambda
        self.n_init = n_init
        self.random_state = random_state

    @staticmethod
    def _minmax(a: np.ndarray) -> np.ndarray:
        lo, hi = a.min(axis=1, keepdims=True), a.max(axis=1, keepdims=True)
        span = hi - lo
        # A cluster where every model is equal adds the same (zero) to every model.
        return np.where(span > 1e-12, (a - lo) / np.where(span > 1e-12, span, 1.0), 0.0)

    def _fit_router(self, X, u, c):
        from sklearn.cluster import KMeans

        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.top_p < 1:
            raise ValueError(f"top_p must be >= 1, got {self.top_p}")
        k = min(self.num_clusters, len(X))
        self.km_ = KMeans(n_clusters=k, random_state=self.random_state, n_init=self.n_init).fit(X)
        cq, self.cluster_sizes_ = cluster_means(u, self.km_.labels_, k)
        cc = np.zeros_like(cq) if c is None else cluster_means(c, self.km_.labels_, k)[0]
        self.cluster_quality_, self.cluster_cost_ = cq, cc
        self.cluster_quality_norm_ = self._minmax(cq)
        self.cluster_cost_norm_ = self._minmax(cc)

    def nearest_clusters(self, X: np.ndarray) -> np.ndarray:
        """Indices (n, min(top_p, k)) of each query's nearest centroids, nearest first."""
        d = self.km_.transform(np.asarray(X, dtype=np.float32))
        p = min(self.top_p, d.shape[1])
        idx = np.argsort(d, axis=1, kind="stable")[:, :p]
        return idx

    def predict_quality_cost(self, X):
        idx = self.nearest_clusters(X)
        return self.cluster_quality_norm_[idx].mean(axis=1), self.cluster_cost_norm_[idx].mean(axis=1)

    def predicted_cost(self, X: np.ndarray) -> np.ndarray | None:
        """The mean cost of the ``top_p`` nearest clusters (their raw means, not the min-max normalised scores the router
        combines), in the unit of the training cost; None without a cost signal."""
        if not self.has_cost_:
            return None
        return self.cluster_cost_[self.nearest_clusters(X)].mean(axis=1) * self.cost_scale_

    def combine(self, q, c, cost_lambda):
        a = float(self.alpha)
        return a * q + (1.0 - a) * (1.0 - c) - cost_lambda * c
