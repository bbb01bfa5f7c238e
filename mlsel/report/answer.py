"""The page's first screen: what to do per dataset and pool, and the numbers that say why.

:func:`answer_section` turns the cross-dataset summary (one row per dataset and
pool, the columns of :mod:`mlsel.tuning.summary`) into one compact table and
one figure. Per row the table says what to do in words a user acts on
(:func:`do_this`: route with the router the one-standard-error rule chose on CV,
use the per-category lookup, or use the best single model, from the row's
intervals), the chosen router's held-out gains over the best single model and
over the lookup with their 95% CIs, and the cost saved at the matched point
(the point chosen on CV to keep ``matched_target_pct`` of the best single
model's quality), named with its unit. The figure draws the gains of every row
on one axis: router − best single, router − lookup and best peer − best single,
each with its CI (:func:`peer_gains` reads the peer's interval from the
dataset's ``tuned_results.csv``). The table's headers link to the glossary
(:mod:`mlsel.report.glossary`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlsel.paths import resolve_path, run_paths
from mlsel.report.blocks import Figure, Group, Section, Table, Text
from mlsel.report.figures import gains_figure
from mlsel.report.tables import fmt_ci, fmt_num, is_missing, read_table

BEST_SINGLE_PREFIX = "Best single on train"
LOOKUP_LABEL = "Per-category lookup on train"
"""How the summary's ``router`` names the two static candidates the one-standard-error rule can choose."""

COST_UNITS_SHORT = {"cost_usd": "USD per query", "latency_s": "seconds of latency", "response_chars": "answer length (proxy)",
                    "list_price": "list price (proxy)"}
"""The cost unit in the answer table: USD and seconds are real; a proxy says so."""

STATIC_POINT_NAMES = {"best_single": "the best single model", "category_lookup": "the per-category lookup"}


def dataset_label(title: str, pool: Any) -> str:
    return f"{title}, {pool}"


def router_name(name: Any) -> str:
    """The summary's router as the answer table names it (the static candidates in words)."""
    s = str(name)
    if s.startswith(BEST_SINGLE_PREFIX):
        return "the best single model"
    if s == LOOKUP_LABEL:
        return "the per-category lookup"
    return s


SHIPPED = {"best_single": "Use {best}", "category_lookup": "Use the per-category lookup"}
"""``Do this`` for a static shipped config (``ship.csv``'s ``shipped``); an algorithm reads "Route with <its label>"."""


def with_shipped(run_dir: str, summary: pd.DataFrame) -> pd.DataFrame:
    """The summary with ``shipped`` and ``shipped_label`` per row: what the dataset's ship stage chose for the pool
    (``tables/ship.csv``); empty where the ship stage has not run."""
    out = summary.copy()
    shipped, labels = [], []
    for r in out.itertuples(index=False):
        ship = read_table(run_paths(str(resolve_path(run_dir) / r.dataset))["tables"], "ship.csv")
        hit = None if ship is None or "shipped" not in ship else ship[ship["pool"].astype(str) == str(r.pool)]
        shipped.append(str(hit["shipped"].iloc[0]) if hit is not None and len(hit) else "")
        labels.append(str(hit["label"].iloc[0]) if hit is not None and len(hit) else "")
    return out.assign(shipped=shipped, shipped_label=labels)


def do_this(r: Any) -> str:
    """What to do: what the ship stage chose on CV where it ran (``shipped``: the best single model, the lookup, or an
    algorithm with its tuned parameters); else from the summary's verdict (the router's and the lookup's intervals): route
    with the chosen router when it beats both the best single model and the lookup; use the lookup when static routing is
    enough; else the best single model. A row without a verdict is read from the router's interval alone."""
    router, verdict, shipped = str(r.router), getattr(r, "verdict", None), getattr(r, "shipped", "")
    if isinstance(shipped, str) and shipped:
        return SHIPPED[shipped].format(best=r.best_single) if shipped in SHIPPED else f"Route with {r.shipped_label}"
    if router.startswith(BEST_SINGLE_PREFIX):
        return f"Use {r.best_single}"
    if verdict == "ML routing beats static routing":
        return f"Route with {router}"
    if verdict == "static routing is enough":
        return "Use the per-category lookup"
    if verdict == "neither beats the best single model":
        return f"Use {r.best_single}"
    lo = getattr(r, "gain_at_b_ci_low", None)
    if not is_missing(lo) and lo > 0:
        return "Use the per-category lookup" if router == LOOKUP_LABEL else f"Route with {router}"
    return f"Use {r.best_single}"


def saving(r: Any) -> tuple[str, str]:
    """(the cost saved at the matched point with its CI, the point named with the quality it keeps)."""
    if is_missing(getattr(r, "cost_unit", None)) or r.cost_unit == "":
        return "—", "no cost in the data"
    cost, lo, hi = (getattr(r, c, None) for c in ("matched_cost_pct", "matched_cost_pct_ci_low", "matched_cost_pct_ci_high"))
    if is_missing(cost) or is_missing(getattr(r, "matched_router", None)):
        return "—", "none reached the target on CV"
    saved = fmt_ci(100 - cost, None if is_missing(hi) else 100 - hi, None if is_missing(lo) else 100 - lo, 1, False, "%")
    point = STATIC_POINT_NAMES.get(r.matched_router, str(r.matched_router).upper())
    return saved, f"{point}: {fmt_num(r.matched_quality_pct, 1)}% of the quality"


def peer_gains(run_dir: str, summary: pd.DataFrame) -> pd.DataFrame:
    """``peer_gain`` (best peer − best single model) and its CI per summary row: the peer's row of the dataset's
    ``tuned_results.csv`` (its paired uplift over the best single model); without it, the difference of the two
    qualities (no interval)."""
    out = summary.copy()
    cols = ("uplift_vs_best_single", "uplift_vs_best_single_ci_low", "uplift_vs_best_single_ci_high")
    values = []
    for r in out.itertuples(index=False):
        peer = getattr(r, "best_peer", None)
        if is_missing(peer):
            values.append((np.nan, np.nan, np.nan))
            continue
        tuned = read_table(run_paths(str(resolve_path(run_dir) / r.dataset))["tables"], "tuned_results.csv")
        hit = None if tuned is None or not set(cols) <= set(tuned.columns) else (
            tuned[(tuned["pool"].astype(str) == str(r.pool)) & (tuned["strategy"] == peer)])
        if hit is not None and len(hit):
            values.append(tuple(float(hit.iloc[0][c]) for c in cols))
        else:
            values.append((float(r.best_peer_quality) - float(r.best_single_quality), np.nan, np.nan))
    out[["peer_gain", "peer_gain_ci_low", "peer_gain_ci_high"]] = pd.DataFrame(values, index=out.index)
    return out


ANSWER_COLUMNS = [
    ("Dataset, pool", ""), ("Do this", "#gloss-do-this"), ("Router chosen on CV", "#gloss-one-se"),
    ("Router − best single [95% CI]", "#gloss-gain-at-b"), ("Router − lookup [95% CI]", "#gloss-lookup"),
    ("Cost saved at matched quality [95% CI]", "#gloss-matched"), ("Matched point", "#gloss-matched"), ("Cost unit", "#gloss-cost"),
]
"""The answer table's headers and the glossary entries they link to."""


def answer_table(df: pd.DataFrame, titles: dict[str, str]) -> Table:
    """One row per dataset and pool (:data:`ANSWER_COLUMNS`); the first cell links to the dataset's section."""
    rows = []
    for r in df.itertuples(index=False):
        saved, point = saving(r)
        unit = COST_UNITS_SHORT.get(r.cost_unit, "—") if isinstance(r.cost_unit, str) else "—"
        rows.append([
            (dataset_label(titles[r.dataset], r.pool), "name"), (do_this(r), "name do"), (router_name(r.router), "name"),
            (fmt_ci(r.gain_at_b, r.gain_at_b_ci_low, r.gain_at_b_ci_high, 3, True), "num"),
            (fmt_ci(getattr(r, "gain_vs_lookup", None), getattr(r, "gain_vs_lookup_ci_low", None),
                    getattr(r, "gain_vs_lookup_ci_high", None), 3, True), "num"),
            (saved, "num"), (point, "name"), (unit, "name"),
        ])
    return Table("answer-table", "What to do per dataset and pool, from the held-out queries.", [c for c, _ in ANSWER_COLUMNS], rows,
                 link="tables/summary.csv", css="compact answer", column_links=[h for _, h in ANSWER_COLUMNS],
                 row_links=[f"#{ds}" for ds in df["dataset"]])


def answer_figure(df: pd.DataFrame, titles: dict[str, str]) -> Figure:
    """The gains of every row on one axis (:func:`mlsel.report.figures.gains_figure`), labelled as the table's rows."""
    return gains_figure(df, [dataset_label(titles[d], p) for d, p in zip(df["dataset"], df["pool"])], "fig-answer")


ACTIONS = (("Route", "Route with the router chosen on CV"), ("Use the per-category lookup", "Use the per-category lookup"),
           ("Use", "Use the best single model"))
"""The answer's three kinds of action, by how :func:`do_this` begins (first match), and how the summary names them."""


def in_short(df: pd.DataFrame, titles: dict[str, str]) -> list[str]:
    """One sentence per kind of action that some row takes: which rows, out of how many."""
    kinds: dict[str, list[str]] = {}
    for r in df.itertuples(index=False):
        action = do_this(r)
        name = next(name for start, name in ACTIONS if action.startswith(start))
        kinds.setdefault(name, []).append(dataset_label(titles[r.dataset], r.pool))
    out = [f"{name} on {len(labels)} of {len(df)}: {'; '.join(labels)}." for name, labels in kinds.items()]
    saved = [r for r in df.itertuples(index=False) if not is_missing(getattr(r, "matched_cost_pct_ci_high", None))
             and r.matched_cost_pct_ci_high < 100]
    if saved:
        real = [f"{dataset_label(titles[r.dataset], r.pool)} {fmt_num(100 - r.matched_cost_pct, 1)}% ({COST_UNITS_SHORT[r.cost_unit]})"
                for r in saved if r.cost_unit in ("cost_usd", "latency_s")]
        out.append(f"The matched point saves cost on {len(saved)} of {len(df)} (whole interval above 0)"
                   + (f"; in USD or seconds: {'; '.join(real)}." if real else "."))
    return out


def answer_section(df: pd.DataFrame, titles: dict[str, str]) -> Section:
    """The first screen: the answer table and, beside it or under it, the gains figure and the answer in short."""
    sec = Section("answer", "The answer: does routing pay, per dataset and pool?")
    if df.empty:
        sec.blocks.append(Text(text="No dataset has a summary row yet: run the tune stage (mlsel run) first."))
        return sec
    note = Group([Text(heading="In short", items=in_short(df, titles)),
                  Text(text="Held out, with 95% paired bootstrap intervals: a difference counts only when its whole interval is on "
                            "one side of 0. The headers link to the glossary; each dataset's section has the details.")],
                 css="in-short")
    sec.blocks.append(Group([answer_table(df, titles), answer_figure(df, titles), note], css="first-screen"))
    return sec
