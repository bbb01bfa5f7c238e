"""Cost-aware routers: per-model quality prediction, then argmax of a utility.

The selectors in :mod:`mlsel.selection.classic` learn *which model* to pick. The
routers here learn, for every candidate model, **how good its answer will be
and how much it will cost** on this query, and pick the model with the highest

    score[j] = predicted_utility[j] - cost_lambda * predicted_cost[j]

so one fitted router traces a whole cost-quality curve by sweeping
``cost_lambda`` (RouterBench's willingness-to-pay, upstream digest 8.4).

Utility is :func:`mlsel.selection.base.utility` (quality where no latency was
measured). Cost is what the caller passes to ``fit(..., cost=...)`` with shape
(n, m): the pool's cost axis (:data:`mlsel.data.costs.COST_UNITS`: real USD,
measured latency in seconds, or a labelled proxy, answer length or list
price); without it, ``latency_s`` where measured. It is normalised by ``cost_scale_`` = the highest per-model mean
training cost, so the model that is most expensive on average costs 1.0 per
query and ``cost_lambda = 0.1`` means "give up 0.1 quality to avoid that
model's average cost". Without a cost matrix (and without latency) the cost
term is zero and ``cost_lambda`` has no effect.

Routers
-------
``knn_reg`` :class:`KNNRegressorSelector`
    RouterBench-style KNN over one row per query: each model's utility and cost
    are the (distance-weighted) means over the k nearest training queries,
    shrunk towards the model's overall training mean by ``shrink``
    pseudo-neighbours (which stops k noisy neighbours from overruling the
    best single model on a near tie).
``mlp`` :class:`MLPSelector`
    scikit-learn ``MLPRegressor`` with one output per model (utility), seeded,
    with early stopping on a validation fraction **of the training queries**;
    cost from a ridge regression on the same features.
``logreg`` :class:`LogRegSelector`
    One L2-regularised logistic regression per model for P(correct);
    fractional qualities enter as two weighted rows (label 1 with weight q,
    label 0 with weight 1 - q). Cost as for ``mlp``.
``scoreboard`` :class:`mlsel.selection.scoreboard.ClusterScoreboardSelector`
    Avengers-Pro's cluster scoreboard (its own module).

All routers keep :class:`mlsel.selection.base.Selector`'s interface and tie rule
(:func:`mlsel.selection.base.choose` with the mean-training-utility rank) and are
built by :func:`mlsel.selection.registry.make_selector` from the typed parameters.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from mlsel.data.costs import fill_missing_cost
from mlsel.params import TuneParams, default
from mlsel.selection.base import QUALITY_WEIGHT, SEED, Selector, candidate_mask, choose, neighbour_weights, weighted_neighbour_mean

COST_LAMBDA: float = default(TuneParams, "cost_lambda")


def _as_hidden(value: Any) -> tuple[int, ...]:
    """``128`` / ``"128,64"`` / ``[128, 64]`` -> ``(128,)`` / ``(128, 64)``."""
    if isinstance(value, (int, np.integer)):
        return (int(value),)
    if isinstance(value, str):
        return tuple(int(v) for v in value.replace("x", ",").split(",") if v.strip())
    return tuple(int(v) for v in value)


class CostAwareRouter(Selector):
    """Base class: predicted utility and cost per (query, model), combined linearly.

    Subclasses implement ``_fit_router(X, u, c)`` with ``c`` the normalised
    training cost (n, m) or None, and ``predict_quality_cost(X)``.
    """

    cost_lambda: float = 0.0
    PREDICT_PARAMS: tuple[str, ...] = ("cost_lambda",)
    """Parameters used only at prediction: a fitted router can change them with ``set_params`` and predict again."""

    def fit(
        self,
        X: np.ndarray,
        quality: np.ndarray,
        latency_s: np.ndarray | None = None,
        models: Sequence[str] | None = None,
        cost: np.ndarray | None = None,
    ):
        """Fit on one row per query. X (n, d); quality, latency_s, cost (n, m).

        ``cost`` defaults to ``latency_s`` (None when neither is given). Missing
        cost values are filled with that model's mean training cost
        (:func:`mlsel.data.costs.fill_missing_cost`, the one rule).
        """
        if cost is None and latency_s is not None:
            cost = latency_s
        if cost is not None:
            cost = np.array(cost, dtype=float, copy=True)
            if cost.shape != np.shape(quality):
                raise ValueError(f"cost must have the shape of quality {np.shape(quality)}, got {cost.shape}")
            cost = fill_missing_cost(cost)
            if (cost < 0).any():
                raise ValueError("cost must be non-negative")
            self.cost_mean_ = cost.mean(axis=0)
            self.cost_scale_ = float(self.cost_mean_.max()) or 1.0
            self._cost_norm = cost / self.cost_scale_
        else:
            self.cost_mean_ = None
            self.cost_scale_ = 1.0
            self._cost_norm = None
        try:
            super().fit(X, quality, latency_s, models)
        finally:
            del self._cost_norm
        return self

    def _fit(self, X: np.ndarray, u: np.ndarray) -> None:
        self.has_cost_ = self._cost_norm is not None
        self._fit_router(X, u, self._cost_norm)

    def _fit_router(self, X: np.ndarray, u: np.ndarray, c: np.ndarray | None) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def predict_quality_cost(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted (utility, normalised cost), each (n, m); cost is zeros without a cost signal."""
        raise NotImplementedError

    def predicted_cost(self, X: np.ndarray) -> np.ndarray | None:
        """The predicted cost (n, m) of each model for each query, in the unit of the training cost; None without a cost
        signal."""
        if not self.has_cost_:
            return None
        return self.predict_quality_cost(np.asarray(X, dtype=np.float32))[1] * self.cost_scale_

    def combine(self, q: np.ndarray, c: np.ndarray, cost_lambda: float) -> np.ndarray:
        """Decision scores (n, m) from predicted utility and cost."""
        return q - cost_lambda * c

    def decision_scores(self, X: np.ndarray) -> np.ndarray:
        q, c = self.predict_quality_cost(np.asarray(X, dtype=np.float32))
        return self.combine(q, c, float(self.cost_lambda))

    def lambda_scores(self, X: np.ndarray, mask: np.ndarray) -> Callable[[float], np.ndarray]:
        """The decision scores (n, m) of one batch as a function of the cost weight; the prediction is made once, here."""
        q, c = self.predict_quality_cost(X)
        return lambda cost_lambda: self.combine(q, c, cost_lambda)

    def predict_index_sweep(self, X: np.ndarray, cost_lambdas: Sequence[float], candidates: Sequence[str] | None = None) -> np.ndarray:
        """Chosen model index per query for each cost weight: shape (len(cost_lambdas), n).

        Predicts once (:meth:`lambda_scores`) and recombines, so a sweep costs one prediction.
        """
        X = np.asarray(X, dtype=np.float32)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(f"feature dimension {X.shape[1]} != fitted {self.n_features_in_}")
        mask = candidate_mask(self.models_, candidates)
        scores = self.lambda_scores(X, mask)
        return np.stack([choose(scores(float(lam)), self.rank_, mask) for lam in cost_lambdas])


class _RidgeCost:
    """Per-model cost regression (multi-output ridge) on the router features."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def fit(self, X: np.ndarray, c: np.ndarray | None) -> "_RidgeCost":
        self.m_ = None if c is None else c.shape[1]
        if c is not None:
            from sklearn.linear_model import Ridge

            self.model_ = Ridge(alpha=self.alpha).fit(X, c)
        return self

    def predict(self, X: np.ndarray, m: int) -> np.ndarray:
        if self.m_ is None:
            return np.zeros((len(X), m))
        return np.clip(self.model_.predict(X), 0.0, None)


class KNNRegressorSelector(CostAwareRouter):
    """k nearest training queries (cosine); per-model utility and cost are their weighted means.

    Parameters
    ----------
    k : neighbours
    weights : ``uniform`` or ``distance`` (weight ``1 / max(d, 1e-6)``)
    shrink : pseudo-neighbours at the model's overall training mean, added to
        the weighted mean with total weight ``shrink / k`` of the neighbours'
    cost_lambda : cost weight in the decision score
    """

    PREDICT_PARAMS = ("k", "weights", "shrink", "cost_lambda")

    def __init__(self, k: int = default(TuneParams, "knn_reg_k"), weights: str = default(TuneParams, "knn_reg_weights"),
                 shrink: float = default(TuneParams, "knn_reg_shrink"), quality_weight: float = QUALITY_WEIGHT, cost_lambda: float = COST_LAMBDA):
        self.k = k
        self.weights = weights
        self.shrink = shrink
        self.quality_weight = quality_weight
        self.cost_lambda = cost_lambda

    def _fit_router(self, X, u, c):
        from sklearn.neighbors import NearestNeighbors

        if self.weights not in ("uniform", "distance"):
            raise ValueError(f"weights must be uniform or distance, got {self.weights!r}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        self.nn_ = NearestNeighbors(metric="cosine", algorithm="brute").fit(X)
        self.n_train_ = len(X)
        self.train_utility_ = u
        self.train_cost_ = c
        self.utility_prior_ = u.mean(axis=0)
        self.cost_prior_ = None if c is None else c.mean(axis=0)

    def _mean(self, w: np.ndarray, values: np.ndarray, prior: np.ndarray) -> np.ndarray:
        est = weighted_neighbour_mean(w, values)
        if self.shrink > 0:
            a = self.shrink / w.shape[1]  # prior weight relative to the neighbours' total weight 1
            est = (est + a * prior[None, :]) / (1.0 + a)
        return est

    def predict_quality_cost(self, X):
        if self.weights not in ("uniform", "distance") or self.k < 1:
            raise ValueError(f"need weights uniform|distance and k >= 1, got {self.weights!r}, {self.k}")
        dist, idx = self.nn_.kneighbors(np.asarray(X, dtype=np.float32), n_neighbors=min(int(self.k), self.n_train_))
        w = neighbour_weights(dist, self.weights)
        q = self._mean(w, self.train_utility_[idx], self.utility_prior_)
        if self.train_cost_ is None:
            return q, np.zeros_like(q)
        return q, self._mean(w, self.train_cost_[idx], self.cost_prior_)


class MLPSelector(CostAwareRouter):
    """Multi-output MLP regressor of per-model utility (seeded, early stopping on training queries).

    Parameters
    ----------
    hidden : hidden layer sizes, e.g. ``(128,)``
    alpha : L2 penalty
    learning_rate_init, max_iter, batch_size : Adam settings
    validation_fraction : share of the *training* queries held out for early stopping
    random_state : seed (weights, batches, the early-stopping split)
    cost_ridge_alpha : ridge penalty of the cost model
    """

    def __init__(
        self, hidden: Any = tuple(default(TuneParams, "mlp_hidden")), alpha: float = default(TuneParams, "mlp_alpha"), learning_rate_init: float = 1e-3,
        max_iter: int = 200, batch_size: int = 256, validation_fraction: float = 0.1, quality_weight: float = QUALITY_WEIGHT,
        cost_lambda: float = COST_LAMBDA, random_state: int = SEED, cost_ridge_alpha: float = 1.0,
    ):
        self.hidden = hidden
        self.alpha = alpha
        self.learning_rate_init = learning_rate_init
        self.max_iter = max_iter
        self.batch_size = batch_size
        self.validation_fraction = validation_fraction
        self.quality_weight = quality_weight
        self.cost_lambda = cost_lambda
        self.random_state = random_state
        self.cost_ridge_alpha = cost_ridge_alpha

    def _fit_router(self, X, u, c):
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor

        early = len(X) >= 20  # early stopping needs a validation part with a few queries
        self.mlp_ = MLPRegressor(
            hidden_layer_sizes=_as_hidden(self.hidden), alpha=self.alpha, learning_rate_init=self.learning_rate_init,
            max_iter=self.max_iter, batch_size=max(1, min(self.batch_size, int(len(X) * (1 - self.validation_fraction)) if early else len(X))), early_stopping=early,
            validation_fraction=self.validation_fraction, n_iter_no_change=10, random_state=self.random_state,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.mlp_.fit(X, u)
        self.cost_model_ = _RidgeCost(self.cost_ridge_alpha).fit(X, c)

    def predict_quality_cost(self, X):
        q = self.mlp_.predict(X)
        q = q.reshape(len(X), -1)
        return q, self.cost_model_.predict(X, q.shape[1])


class LogRegSelector(CostAwareRouter):
    """One logistic regression per model predicting P(correct); cost by ridge regression.

    Parameters
    ----------
    C : inverse L2 strength
    max_iter : LBFGS iterations
    """

    def __init__(self, C: float = default(TuneParams, "logreg_c"), max_iter: int = 500, quality_weight: float = QUALITY_WEIGHT,
                 cost_lambda: float = COST_LAMBDA, cost_ridge_alpha: float = 1.0):
        self.C = C
        self.max_iter = max_iter
        self.quality_weight = quality_weight
        self.cost_lambda = cost_lambda
        self.cost_ridge_alpha = cost_ridge_alpha

    def _fit_router(self, X, u, c):
        from sklearn.linear_model import LogisticRegression

        u01 = np.clip(u, 0.0, 1.0)
        self.clf_: list[Any] = []
        n = len(X)
        X2 = np.vstack([X, X])
        y2 = np.r_[np.ones(n), np.zeros(n)]
        for j in range(u.shape[1]):
            w2 = np.r_[u01[:, j], 1.0 - u01[:, j]]
            keep = w2 > 0
            if len(np.unique(y2[keep])) < 2:  # always right or always wrong: a constant
                self.clf_.append(float(u01[0, j]))
                continue
            clf = LogisticRegression(C=self.C, max_iter=self.max_iter)
            clf.fit(X2[keep], y2[keep], sample_weight=w2[keep])
            self.clf_.append(clf)
        self.cost_model_ = _RidgeCost(self.cost_ridge_alpha).fit(X, c)

    def predict_quality_cost(self, X):
        q = np.column_stack([np.full(len(X), clf) if isinstance(clf, float) else clf.predict_proba(X)[:, 1] for clf in self.clf_])
        return q, self.cost_model_.predict(X, q.shape[1])


def fit_selector(selector: Selector, X: np.ndarray, quality: np.ndarray, latency_s: np.ndarray | None, models: Sequence[str], cost: np.ndarray | None = None) -> Selector:
    """Fit any selector; routers also get ``cost`` (the others ignore it)."""
    if isinstance(selector, CostAwareRouter):
        return selector.fit(X, quality, latency_s, models=models, cost=cost)
    return selector.fit(X, quality, latency_s, models=models)
