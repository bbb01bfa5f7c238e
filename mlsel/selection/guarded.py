"""The guarded router: static routing unless the query's neighbours give paired evidence against it.

Static routing (each category to its best training model,
:mod:`mlsel.selection.lookup`) is hard to beat on real data, and an ML router
that overrules it on noise loses to it, most of all on queries unlike its
training data. This router starts from the static choice and leaves it only
on evidence:

1. **Base choice** ``b(x)``: the per-category lookup (``base="category"``;
   a category with fewer than ``min_queries`` training queries, or none, takes
   the global choice) or the best single model (``base="global"``). The
   category is read from the one-hot part of the features
   (:func:`mlsel.features.build_features`); with ``onehot_weight = 0`` it is
   unknown and the global choice stands in.
2. **Paired evidence**: over the ``k`` nearest training queries (cosine), the
   per-neighbour difference ``d_nj = s_nj - s_n,b(x)`` of each model's score
   against the base model's, ``s = utility - cost_lambda * cost``. Its mean is
   shrunk toward the same difference over the base's group (the category, or
   all training queries) by ``shrink`` pseudo-neighbours:
   ``D_j = (k mean_j + shrink G_j) / (k + shrink)``. Model ``j`` is admitted
   when ``D_j > 0`` and its raw mean difference is at least ``z`` standard
   errors (``std(d_j, ddof=1) / sqrt(k)``); among the admitted the highest
   ``D_j`` wins (the selectors' tie rule).
3. **Novelty floor**: a query whose nearest training query is farther than
   the ``novelty`` quantile of the training queries' own nearest-neighbour
   distances keeps the base choice (``novelty = 1``: off).

Special cases, so cross-validation can fall back to them: ``z = inf`` is the
per-category lookup (``base="category"``) or the best single model
(``base="global"``); ``z = 0, shrink = 0`` with ``base="global"`` is a plain KNN regression (uniform
weights), while with ``base="category"`` a query whose neighbour means tie keeps its category's model, where KNN
regression's tie rule takes the best single model. ``k``, ``z``, ``shrink``, ``base`` and ``novelty`` are
prediction-time parameters: one fit serves the whole grid. With a cost, the base choice is the
lookup on mean ``utility - cost_lambda * cost`` per category, so one fitted
router traces a cost-quality curve as the other routers do.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from mlsel import CATEGORIES
from mlsel.params import TuneParams, default
from mlsel.selection.base import QUALITY_WEIGHT, batch_key, candidate_mask, choose
from mlsel.selection.cost_aware import COST_LAMBDA, CostAwareRouter

BASES = ("category", "global")


class GuardedRouter(CostAwareRouter):
    """Static choice (category lookup or best single) unless the neighbours' paired evidence overrules it.

    Parameters
    ----------
    k : neighbours whose paired differences are the evidence
    z : standard errors the mean paired difference must reach (``inf``: never leave the base choice)
    shrink : pseudo-neighbours at the base group's mean difference
    base : ``category`` (per-category lookup) or ``global`` (best single model)
    novelty : quantile of the training nearest-neighbour distances beyond which a query keeps the base choice (1: off)
    min_queries : training queries a category needs for its own base model
    cost_lambda : cost weight in the score
    """

    PREDICT_PARAMS = ("k", "z", "shrink", "base", "novelty", "cost_lambda")

    def __init__(self, k: int = default(TuneParams, "guard_k"), z: float = default(TuneParams, "guard_z"),
                 shrink: float = default(TuneParams, "guard_shrink"), base: str = default(TuneParams, "guard_base"), novelty: float = default(TuneParams, "guard_novelty"),
                 min_queries: int = 20, quality_weight: float = QUALITY_WEIGHT, cost_lambda: float = COST_LAMBDA):
        self.k = k
        self.z = z
        self.shrink = shrink
        self.base = base
        self.novelty = novelty
        self.min_queries = min_queries
        self.quality_weight = quality_weight
        self.cost_lambda = cost_lambda

    def _fit_router(self, X, u, c):
        from sklearn.neighbors import NearestNeighbors

        self._check()
        self.__dict__.pop("_batch", None)  # a refit invalidates the per-batch cache
        self.nn_ = NearestNeighbors(metric="cosine", algorithm="brute").fit(X)
        self.train_utility_ = u
        self.train_cost_ = c
        cats = category_index(X)
        ncat = len(CATEGORIES)
        self.group_size_ = np.bincount(cats[cats >= 0], minlength=ncat)
        self.group_utility_ = np.zeros((ncat, u.shape[1]))
        self.group_cost_ = np.zeros((ncat, u.shape[1]))
        for g in np.flatnonzero(self.group_size_):
            self.group_utility_[g] = u[cats == g].mean(axis=0)
            if c is not None:
                self.group_cost_[g] = c[cats == g].mean(axis=0)
        self.global_cost_ = np.zeros(u.shape[1]) if c is None else c.mean(axis=0)
        self.__dict__.pop("train_nn_dist_", None)  # the novelty scale of the old rows; see train_nn_dist

    def train_nn_dist(self) -> np.ndarray:
        """Each training query's distance to its nearest other training query, sorted (n,): the novelty scale.

        Searched on first use (only ``novelty < 1`` reads it, so a grid at ``novelty = 1`` never pays for this
        search over the training split) and kept as ``train_nn_dist_``; the same search over the same rows as at fit.
        """
        if "train_nn_dist_" not in self.__dict__:
            X = self.nn_._fit_X
            d, _ = self.nn_.kneighbors(X, n_neighbors=min(2, len(X)))
            self.train_nn_dist_ = np.sort(d[:, -1])
        return self.train_nn_dist_

    def _check(self) -> None:
        if self.base not in BASES:
            raise ValueError(f"base must be one of {BASES}, got {self.base!r}")
        if int(self.k) < 2:
            raise ValueError(f"k must be >= 2 (a standard error needs two neighbours), got {self.k}")
        if not 0.0 < float(self.novelty) <= 1.0:
            raise ValueError(f"novelty must be a quantile in (0, 1], got {self.novelty}")
        if float(self.z) < 0 or float(self.shrink) < 0:
            raise ValueError(f"z and shrink must be >= 0, got {self.z}, {self.shrink}")

    def group_scores(self, X: np.ndarray, cost_lambda: float) -> np.ndarray:
        """Per query (n, m): each model's mean training score over the query's base group (its category, or all queries)."""
        glob = self.train_utility_mean_ - cost_lambda * self.global_cost_
        scores = np.tile(glob, (len(X), 1))
        if self.base == "category":
            cats = category_index(X)
            own = (cats >= 0) & (self.group_size_[np.maximum(cats, 0)] >= self.min_queries)
            scores[own] = self.group_utility_[cats[own]] - cost_lambda * self.group_cost_[cats[own]]
        return scores

    def base_index(self, X: np.ndarray, cost_lambda: float, mask: np.ndarray | None = None) -> np.ndarray:
        """The static choice per query (n,) at ``cost_lambda``."""
        return choose(self.group_scores(X, cost_lambda), self.rank_, mask)

    def _evidence(self, X: np.ndarray, cost_lambda: float, neighbours: tuple[np.ndarray, np.ndarray],
                  mask: np.ndarray | None, need_se: bool) -> dict[str, np.ndarray]:
        """The base group's scores (n, m), the base choice (n,) and the neighbours' paired evidence against it: the mean
        (n, m) and its standard error (n, m; only with ``need_se``).

        They depend on the batch, k, base, min_queries, the cost weight and the candidates, not on z, shrink or
        novelty, so within one batch (:meth:`_neighbours`' cache) a grid of those parameters computes them once.
        """
        _, idx = neighbours
        key = (idx.shape[1], self.base, int(self.min_queries), float(cost_lambda), None if mask is None else mask.tobytes())
        batch = self.__dict__.get("_batch")
        store = batch["evidence"] if batch is not None and batch["neighbours"].get(idx.shape[1]) is neighbours else {}
        ev = store.get(key)
        if ev is None:
            group = self.group_scores(X, cost_lambda)
            ev = store[key] = {"group": group, "base": choose(group, self.rank_, mask)}
        if "mean" in ev and (not need_se or "se" in ev):
            return ev
        n, base = len(X), ev["base"]
        s = self.train_utility_[idx]
        if self.train_cost_ is not None and cost_lambda:
            s = s - cost_lambda * self.train_cost_[idx]
        d = s - s[np.arange(n), :, base][:, :, None]  # (n, k, m): each neighbour's paired difference to the base model
        ev["mean"] = d.mean(axis=1)
        if need_se:
            ev["se"] = d.std(axis=1, ddof=1) / np.sqrt(d.shape[1])
        return ev

    def _gated_scores(self, X: np.ndarray, cost_lambda: float, neighbours: tuple[np.ndarray, np.ndarray],
                      mask: np.ndarray | None = None) -> np.ndarray:
        dist, idx = neighbours
        n = len(X)
        z = float(self.z)
        ev = self._evidence(X, cost_lambda, neighbours, mask, need_se=bool(np.isfinite(z)))
        group, base, mean = ev["group"], ev["base"], ev["mean"]
        k, a = idx.shape[1], float(self.shrink)
        shrunk = (k * mean + a * (group - group[np.arange(n), base][:, None])) / (k + a)
        admitted = (shrunk > 0) & (mean >= z * ev["se"]) if np.isfinite(z) else np.zeros_like(shrunk, dtype=bool)
        if float(self.novelty) < 1.0:
            floor = np.quantile(self.train_nn_dist(), float(self.novelty))
            admitted &= (dist[:, 0] <= floor)[:, None]
        if mask is not None:
            admitted &= mask[None, :]
        admitted[np.arange(n), base] = True
        shrunk[np.arange(n), base] = 0.0
        return np.where(admitted, shrunk, -np.inf)

    def _neighbours(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest training queries of each row.

        Kept, with the evidence derived from them (:meth:`_evidence`), for the last batch (by content,
        :func:`mlsel.selection.base.batch_key`) and each k, so a grid of the other prediction-time parameters (z, shrink,
        base, novelty, cost_lambda) searches the neighbours once per k; a refit clears it.
        """
        self._check()
        k = min(int(self.k), len(self.train_utility_))
        key = batch_key(X)
        batch = self.__dict__.get("_batch")
        if batch is None or batch["key"] != key:
            batch = self._batch = {"key": key, "neighbours": {}, "evidence": {}}
        if k not in batch["neighbours"]:
            batch["neighbours"][k] = self.nn_.kneighbors(np.asarray(X, dtype=np.float32), n_neighbors=k)
        return batch["neighbours"][k]

    def __getstate__(self) -> dict:
        state = dict(super().__getstate__())
        state.pop("_batch", None)  # a cache of the last query batch, never saved
        return state

    def decision_scores(self, X: np.ndarray) -> np.ndarray:
        return self._gated_scores(X, float(self.cost_lambda), self._neighbours(X))

    def predict_index(self, X: np.ndarray, candidates=None) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        mask = candidate_mask(self.models_, candidates)
        return choose(self._gated_scores(X, float(self.cost_lambda), self._neighbours(X), mask), self.rank_, mask)

    def lambda_scores(self, X: np.ndarray, mask: np.ndarray) -> Callable[[float], np.ndarray]:
        """The gated scores of one batch as a function of the cost weight; the neighbours are searched once, here."""
        nb = self._neighbours(X)
        return lambda cost_lambda: self._gated_scores(X, cost_lambda, nb, mask)

    def predict_quality_cost(self, X):
        """Not a per-model prediction: the gate's scores stand in for utility (the cost is inside them)."""
        return self.decision_scores(X), np.zeros((len(X), len(self.models_)))

    def predicted_cost(self, X: np.ndarray) -> None:
        """None: the guarded router predicts no per-model cost (the cost is inside its gated scores)."""
        return None


def category_index(X: np.ndarray) -> np.ndarray:
    """The category (index into :data:`mlsel.CATEGORIES`) of each feature row, from its one-hot part (the last 14
    columns); -1 where they are not a positive multiple of a one-hot (``onehot_weight = 0``, or other features)."""
    X = np.asarray(X)
    if X.shape[1] < len(CATEGORIES):
        return np.full(len(X), -1)
    onehot = X[:, -len(CATEGORIES):]
    valid = ((onehot != 0).sum(axis=1) == 1) & (onehot.max(axis=1) > 0)
    return np.where(valid, onehot.argmax(axis=1), -1)
