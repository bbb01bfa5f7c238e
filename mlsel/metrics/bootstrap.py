"""The one paired bootstrap: resampling held-out queries, percentile intervals, paired differences.

Every interval in the suite is a 95% percentile bootstrap over test queries.
It is *paired*: all strategies of one table are resampled on the same query
draws (:func:`resample_indices` once, then index every per-query vector with
it), so a difference of two strategies carries only the variation of the
difference.
"""

from __future__ import annotations

import numpy as np


def resample_indices(n: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """Query indices of ``n_bootstrap`` resamples of ``n`` queries, shape (n_bootstrap, n), from ``seed``."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n, size=(n_bootstrap, n))


def ci95(samples: np.ndarray) -> tuple[float, float]:
    """2.5th and 97.5th percentiles of bootstrap statistics, NaN draws left out (NaN, NaN if none is left)."""
    x = np.asarray(samples, dtype=float)
    x = x[~np.isnan(x)]
    if not len(x):
        return float("nan"), float("nan")
    lo, hi = np.percentile(x, [2.5, 97.5])
    return float(lo), float(hi)


def paired_difference(a: np.ndarray, b: np.ndarray, n_bootstrap: int, seed: int) -> tuple[float, float, float]:
    """Mean of ``a - b`` over queries (shape (n,) each) and its 95% paired bootstrap CI."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    boot = d[resample_indices(len(d), n_bootstrap, seed)].mean(axis=1)
    lo, hi = ci95(boot)
    return float(d.mean()), lo, hi
