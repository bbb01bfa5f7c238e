"""The outcome-record schema and its checks: columns, errors, drop/repair counts, query ids, categories.

An *outcome table* is a DataFrame with one row per (query, model)::

    query_id        16 hex digits of SHA-256 of the query text (content hash)
    query           the query text
    category        one of :data:`mlsel.CATEGORIES`
    model           model name
    quality         float in [0, 1]; NaN for a missing score (JSON null or NaN, an
                    empty CSV cell) until ``missing_quality_policy`` handles it
    latency_s       measured response time in seconds, NaN where not measured
    response_chars  length of the model's answer text, NaN where unknown
    task            source task / sub-dataset, "" where unknown
    cost_usd        real cost of that call in US dollars, NaN where unknown

A reader may add ``source_row``: where the record was read (``file:line`` or
``file record i``), which the ``missing_quality_policy`` error names.
A reader may add ``list_price``: the model's list price per 1M tokens, where
the data has prices but no per-query cost (LLMRouter). It is a proxy (equal
token counts across models assumed), never shown as a cost in USD.

Category policy
---------------
Names are lower-cased, stripped, and ``_``/``-`` become spaces, so
``computer_science`` and ``Computer-Science`` are ``computer science`` (counted as
``repaired.category_alias``). Anything else outside the 14 names is an error
naming the record, or, with ``unknown_category_policy="other"``, becomes
``other`` and is counted.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from mlsel import CATEGORIES

log = logging.getLogger(__name__)

OUTCOME_COLUMNS = ["query_id", "query", "category", "model", "quality", "latency_s", "response_chars", "task", "cost_usd"]


class DataError(ValueError):
    """Bad input data; the message names the file, the record and the problem."""


@dataclass
class DataLog:
    """Counts of dropped and repaired records, plus the input files and checksums."""

    inputs: dict[str, str] = field(default_factory=dict)
    n_records_read: int = 0
    dropped: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": dict(sorted(self.inputs.items())),
            "n_records_read": self.n_records_read,
            "dropped": dict(sorted(self.dropped.items())),
            "repaired": dict(sorted(self.repaired.items())),
        }


def query_id(text: str) -> str:
    """Content hash of a query text (16 hex digits of SHA-256)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def normalize_category(value: Any, where: str, policy: str, dlog: DataLog) -> str:
    """Map a raw category to one of the 14 names (see the module's category policy)."""
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: missing or empty category")
    if value in CATEGORIES:
        return value
    alias = value.strip().lower().replace("_", " ").replace("-", " ")
    alias = " ".join(alias.split())
    if alias in CATEGORIES:
        dlog.repaired["category_alias"] += 1
        return alias
    if policy == "other":
        dlog.repaired["unknown_category_to_other"] += 1
        return "other"
    raise DataError(
        f"{where}: unknown category {value!r}; expected one of {list(CATEGORIES)} "
        "(set unknown_category_policy: other to map it to 'other')"
    )


def check_quality(value: Any, where: str) -> float:
    """A quality in [0, 1] as float; anything else is a :class:`DataError` naming ``where`` (file:line or record)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{where}: quality must be a number in [0, 1], got {value!r}")
    q = float(value)
    if math.isnan(q) or q < 0.0 or q > 1.0:
        raise DataError(f"{where}: quality must be in [0, 1], got {value!r}")
    return q


def check_quality_or_missing(value: Any, where: str) -> float:
    """:func:`check_quality`, except that null (``None``) and NaN are a missing quality: NaN, for ``missing_quality_policy``.

    A hole in real results is written as ``null`` or, by Python's json for a
    missing float, as ``NaN``; both mean "no score", never a malformed record,
    so every reader hands them to the same policy step
    (:func:`mlsel.data.outcomes.apply_missing_quality`) as RouterBench's empty cells.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return float("nan")
    return check_quality(value, where)


def check_latency(value: Any, where: str) -> float:
    """A response time in seconds (>= 0) as float, NaN for null; anything else is a :class:`DataError` naming ``where``."""
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(float(value)) or value < 0:
        raise DataError(f"{where}: response_time must be a non-negative number of seconds or null, got {value!r}")
    return float(value)


def check_cost(value: Any, where: str) -> float:
    """A call's cost in US dollars (finite, >= 0) as float, NaN for null/absent; anything else is a :class:`DataError` naming ``where``."""
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)) or value < 0:
        raise DataError(f"{where}: cost_usd must be a finite non-negative number of US dollars or null, got {value!r}")
    return float(value)
