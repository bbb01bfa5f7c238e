"""Per-call cost in US dollars from a model's ``pricing`` and the server's ``usage``.

A ``models.yaml`` model entry may declare its price, in USD per 1M tokens (as
the router runtime's own config does)::

    models:
      - name: gpt-4o-mini
        pricing: {prompt_per_1m: 0.15, completion_per_1m: 0.60}

Both keys are required and must be finite numbers >= 0 (a quoted string is
not a number); anything else is a :class:`~mlsel.llm.client.BenchmarkError`
naming the file and the model entry. ``pricing`` is per model only (not in
``defaults``); ``pricing: null`` is the same as no pricing.

The cost of one call is::

    cost_usd = prompt_tokens * prompt_per_1m / 1e6 + completion_tokens * completion_per_1m / 1e6

with the token counts the server reported in the reply's ``usage``. A reply
without a usable ``usage`` (either count missing, not an integer, or
negative) has no cost: it is never estimated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

PRICING_KEYS = ("prompt_per_1m", "completion_per_1m")


@dataclass(frozen=True)
class Pricing:
    """USD per 1M prompt tokens and per 1M completion tokens."""

    prompt_per_1m: float
    completion_per_1m: float


def parse_pricing(value: Any, where: str, error: Callable[[str], Exception]) -> Pricing | None:
    """A :class:`Pricing` from a model entry's ``pricing`` block (None for null).

    ``where`` names the file and model entry; ``error`` builds the exception
    raised on a bad block (a message naming ``where`` and the key).
    """
    if value is None:
        return None
    if not isinstance(value, dict):
        raise error(f"{where}: pricing must be a mapping with {' and '.join(PRICING_KEYS)} (USD per 1M tokens), got {value!r}")
    unknown = sorted(set(value) - set(PRICING_KEYS))
    if unknown:
        raise error(f"{where}: unknown keys in pricing: {unknown}; expected {list(PRICING_KEYS)} (USD per 1M tokens)")
    prices = {}
    for key in PRICING_KEYS:
        if key not in value or value[key] is None:
            raise error(f"{where}: pricing.{key} is missing")
        v = value[key]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise error(f"{where}: pricing.{key} must be a finite number >= 0 (USD per 1M tokens), got {v!r}")
        prices[key] = float(v)
    return Pricing(**prices)


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def usage_tokens(reply: Any) -> tuple[int | None, int | None]:
    """``(prompt_tokens, completion_tokens)`` from an OpenAI-style reply's ``usage``; None where absent or invalid."""
    usage = reply.get("usage") if isinstance(reply, dict) else None
    if not isinstance(usage, dict):
        return None, None
    return _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))


def cost_usd(pricing: Pricing | None, prompt_tokens: int | None, completion_tokens: int | None) -> float | None:
    """The cost of one call in USD; None when unpriced or either token count is unknown."""
    if pricing is None or prompt_tokens is None or completion_tokens is None:
        return None
    return prompt_tokens * pricing.prompt_per_1m / 1e6 + completion_tokens * pricing.completion_per_1m / 1e6


def cost_summary(records: list[dict[str, Any]], priced: bool) -> dict[str, float | int]:
    """``cost_usd_total``, ``cost_usd_mean`` and ``n_usage_missing`` over one model's output records.

    Total and mean are over the records with a ``cost_usd`` (NaN when there is
    none, or the model is unpriced). ``n_usage_missing`` counts answered
    records (status not ``failed``) of a priced model without a cost: the
    reply had no usable ``usage``, so the total leaves them out.
    """
    if not priced:
        return {"cost_usd_total": math.nan, "cost_usd_mean": math.nan, "n_usage_missing": 0}
    answered = [r for r in records if r.get("status", "ok") != "failed"]
    costs = [float(r["cost_usd"]) for r in answered if r.get("cost_usd") is not None]
    return {
        "cost_usd_total": math.fsum(costs) if costs else math.nan,
        "cost_usd_mean": math.fsum(costs) / len(costs) if costs else math.nan,
        "n_usage_missing": len(answered) - len(costs),
    }
