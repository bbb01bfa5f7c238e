"""Baseline selectors: always one model, the best single model on training data, uniform random."""

from __future__ import annotations

import numpy as np

from mlsel.selection.base import QUALITY_WEIGHT, SEED, Selector, candidate_mask


class AlwaysSelector(Selector):
    """Always the same model (falls back to the tie rule if it is not a candidate)."""

    def __init__(self, model: str = "", quality_weight: float = QUALITY_WEIGHT):
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

    def __init__(self, quality_weight: float = QUALITY_WEIGHT):
        self.quality_weight = quality_weight

    def _fit(self, X, u):
        self.model_ = self.models_[int(np.argmin(self.rank_))]

    def decision_scores(self, X):
        return np.tile(-self.rank_.astype(float), (len(X), 1))


class RandomSelector(Selector):
    """Uniform choice among the candidates. ``predict_proba`` is the exact expectation."""

    def __init__(self, quality_weight: float = QUALITY_WEIGHT, random_state: int = SEED):
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
