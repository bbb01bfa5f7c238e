"""Shares of the training queries per model: of the training labels, and of each fitted selector's choices (``train_share.csv``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from mlsel.data.outcomes import OutcomeMatrix
from mlsel.selection.base import choose, utility

TRAINING_LABELS = "best model (training labels)"
"""The ``strategy`` of ``train_share.csv``'s label rows."""

SHARE_COLUMNS = ["pool", "strategy", "model", "share_pct"]


def share_rows(pool: str, strategy: str, models: list[str], chosen: np.ndarray) -> list[dict[str, Any]]:
    """One row per model: the percentage of ``chosen`` (model indices) that picks it."""
    counts = np.bincount(chosen, minlength=len(models))
    return [{"pool": pool, "strategy": strategy, "model": m, "share_pct": 100 * c / len(chosen)} for m, c in zip(models, counts)]


def label_share_rows(pool: str, train: OutcomeMatrix, quality_weight: float, rank: np.ndarray) -> list[dict[str, Any]]:
    """The training labels' rows: each training query's best model by utility, ties broken by ``rank`` (the selectors' rule)."""
    best = choose(utility(train.quality, train.latency_s, quality_weight), rank)
    return share_rows(pool, TRAINING_LABELS, list(train.models), best)
