"""A pool's cost axis and the one rule for missing costs.

Cost axes
---------
:data:`COST_UNITS`, in order of preference: real USD per query, measured
latency, the answer-length proxy, the list-price proxy. A pool's cost is the
first its data has (:func:`cost_matrix`), or the one named by the tune stage's
``cost_axis`` (:func:`with_cost_axis`).

Missing costs
-------------
One rule, :func:`fill_missing_cost`, wherever a cost matrix has holes (router
fits, CV scores, the CV AIQ choice, held-out scores): a model's missing cost is
its mean known cost on the training rows at hand. Per model, because costs
differ by model far more than by query (RouterBench: a GPT-4 call costs 62
Mistral-7B calls on average): one mean over all models would charge a cheap
model's missing call like an expensive one's and the reverse.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from mlsel.data.outcomes import OutcomeMatrix

COST_UNITS: dict[str, str] = {
    "cost_usd": "cost in USD per query",
    "latency_s": "latency in seconds",
    "response_chars": "response length in characters (a proxy, not a price or a time)",
    "list_price": "the model's list price per 1M tokens (a proxy: equal token counts assumed)",
}
"""The cost axes, in order of preference: a pool's cost is the first its data has (see :func:`cost_matrix`)."""


def cost_matrix(m: OutcomeMatrix) -> tuple[np.ndarray | None, str | None]:
    """A pool's cost axis and its unit: real USD where the data has it, else measured latency, else the
    response-length proxy, else the list-price proxy; ``(None, None)`` with none of them."""
    for unit in COST_UNITS:
        values = getattr(m, unit)
        if values is not None:
            return values, unit
    return None, None


def with_cost_axis(m: OutcomeMatrix, axis: str) -> OutcomeMatrix:
    """``m`` with ``axis`` (a key of :data:`COST_UNITS`) as the axis :func:`cost_matrix` returns; ``auto`` returns ``m``.

    The axes ahead of ``axis`` in :data:`COST_UNITS` are left out of the
    returned matrix (for the tune stage's ``cost_axis``: a pool with both USD
    and measured latency can be tuned for seconds). Data without ``axis`` is a
    :class:`ValueError`.
    """
    if axis == "auto":
        return m
    if axis not in COST_UNITS or getattr(m, axis) is None:
        raise ValueError(f"cost_axis {axis!r}: this data has no such cost axis (it has {[u for u in COST_UNITS if getattr(m, u) is not None]})")
    ahead = list(COST_UNITS)[: list(COST_UNITS).index(axis)]
    return replace(m, **{unit: None for unit in ahead})


def fill_missing_cost(cost: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """The one rule for missing costs (module docstring): each NaN of ``cost`` (n, m) becomes its model's mean known cost in ``reference``.

    ``reference`` (k, m), default ``cost`` itself, is the training rows at hand:
    the rows a router fits on, or the training split when choices on
    validation or test queries are scored. Returns a new array; a model with
    a missing cost and no known cost in ``reference`` is a ``ValueError``.
    """
    out = np.array(cost, dtype=float, copy=True)
    ref = out if reference is None else np.asarray(reference, dtype=float)
    holes = np.isnan(out)
    if not holes.any():
        return out
    need = holes.any(axis=0)
    if (need & np.isnan(ref).all(axis=0)).any():
        raise ValueError("cost has a model with no values at all: its missing costs have no known cost to take the mean of")
    means = np.full(out.shape[1], np.nan)
    means[need] = np.nanmean(ref[:, need], axis=0)
    return np.where(holes, means[None, :], out)
