"""Static routing: a lookup table from a query's group (its category, or its task) to one model, learned on training data.

The router's per-decision config can send each category to a fixed model, with
no ML at all. The best such config that the training split supports is a
lookup: for each group, the model with the highest mean training utility.

Rules (the selectors' own, :mod:`mlsel.selection.base`):

- Ties between models in a group's mean go to the model with the higher mean
  training utility over *all* training queries, then to model order.
- A group with fewer than ``min_queries`` training queries keeps the best
  single model (its mean is too noisy to leave the fallback on), and so does a
  group the training split never saw. Both are counted: ``fallback_groups``
  lists the small ones, :meth:`GroupLookup.n_fallback` counts the queries
  routed to the fallback for either reason.

The per-category lookup is what a router can deploy (the category is known at
run time: :func:`mlsel.deploy.routing_config.static_config` writes it as a
per-decision config). A per-task lookup needs the dataset a query came from,
which a router does not know: it is a benchmark-only reference.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from mlsel.selection.base import choose, utility


@dataclass
class GroupLookup:
    """A fitted lookup: group -> model index, and the fallback for other groups."""

    models: list[str]
    table: dict[str, int]
    """Each training group with at least ``min_queries`` queries -> its model's column index."""
    fallback: int
    """The best single model's column index (highest mean training utility, ties to model order)."""
    n_train: dict[str, int] = field(default_factory=dict)
    """Training queries per group (every group seen, including the small ones)."""
    min_queries: int = 1

    @classmethod
    def fit(cls, groups: np.ndarray, quality: np.ndarray, latency_s: np.ndarray | None, models: list[str],
            quality_weight: float, min_queries: int = 1) -> "GroupLookup":
        """Fit on the training split: ``groups`` (n,), ``quality`` and ``latency_s`` (n, m)."""
        if min_queries < 1:
            raise ValueError(f"min_queries must be >= 1, got {min_queries}")
        groups = np.asarray(groups, dtype=str)
        u = utility(quality, latency_s, quality_weight)
        if len(groups) != len(u) or len(u) == 0:
            raise ValueError(f"need one group per training query and at least one query; got {len(groups)} groups, {len(u)} rows")
        overall = u.mean(axis=0)
        order = sorted(range(len(models)), key=lambda j: (-overall[j], j))
        rank = np.empty(len(models), dtype=np.int64)
        rank[order] = np.arange(len(models))
        fallback = int(order[0])
        table, n_train = {}, {}
        for g in sorted(set(groups)):
            mask = groups == g
            n_train[g] = int(mask.sum())
            if n_train[g] >= min_queries:
                table[g] = int(choose(u[mask].mean(axis=0)[None, :], rank)[0])
        return cls(list(models), table, fallback, n_train, min_queries)

    @property
    def fallback_groups(self) -> list[str]:
        """Training groups too small to get their own model (they keep the fallback)."""
        return [g for g, n in self.n_train.items() if n < self.min_queries]

    def predict_index(self, groups: np.ndarray) -> np.ndarray:
        """Column index of the chosen model per query (n,)."""
        return np.asarray([self.table.get(str(g), self.fallback) for g in groups], dtype=np.int64)

    def predict_proba(self, groups: np.ndarray) -> np.ndarray:
        """One-hot choice distribution (n, m)."""
        idx = self.predict_index(groups)
        out = np.zeros((len(idx), len(self.models)))
        out[np.arange(len(idx)), idx] = 1.0
        return out

    def n_fallback(self, groups: np.ndarray) -> int:
        """Queries whose group has no entry (unseen in training or too small): they get the fallback."""
        return int(sum(str(g) not in self.table for g in groups))

    def model_table(self) -> dict[str, str]:
        """Group -> model name, for the groups with an entry."""
        return {g: self.models[j] for g, j in self.table.items()}
