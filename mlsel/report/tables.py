"""The one renderer of result tables: HTML ``Table`` blocks for the report page and markdown for the run folder.

Every results table (the seed's main table and its "ML routing benefit over
random" table, for ``selection_results``, ``tuned_results`` and a router
config's per-decision tables) is built once as a :class:`Table` by
:func:`main_table` / :func:`benefit_table`; :func:`table_markdown` renders a
:class:`Table` as markdown, so ``seed_tables.md``
(:func:`seed_tables_markdown`) and ``router_config_results.md``
(:func:`router_config_markdown`) show the same cells as the page. The best
single model's name is read from the results' ``model`` column.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlsel.report.blocks import Table

MAX_ROWS = 40
"""Rows shown of a long optional table; the full CSV is linked."""
PROXY_LABEL = "Avg response chars (proxy, not a time)"
LATENCY_LABEL = "Avg latency (s)"
USD_LABEL = "Avg cost per query (USD)"
PRICE_LABEL = "Avg list price per 1M tokens (proxy, equal tokens assumed)"
COST_LABELS = {"avg_cost_usd": USD_LABEL, "avg_latency_s": LATENCY_LABEL, "avg_response_chars": PROXY_LABEL, "avg_list_price": PRICE_LABEL}
"""Efficiency columns in order of preference, with their axis labels: real USD, measured latency, the length proxy."""
UNIT_NAMES = {"cost_usd": "USD", "latency_s": "latency (s)", "response_chars": "response chars (proxy)",
              "list_price": "list price per 1M tokens (proxy)", "": "none in the data"}
"""How a summary's ``cost_unit`` is named in the report: a proxy is never shown as USD or seconds."""


# --------------------------------------------------------------------------- formatting


PUBLISHED_TABLES = ("*.csv", "static_routing_*.yaml")
"""What a report copies from a run's ``tables/`` beside its page: the tables and the static routing configs."""


def is_missing(v: Any) -> bool:
    try:
        return v is None or (isinstance(v, float) and math.isnan(v)) or bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def fmt_num(v: Any, digits: int = 3, sign: bool = False, suffix: str = "") -> str:
    """A number with fixed decimals; NaN or missing as an em dash. A value that rounds to zero prints as zero (``0.000``,
    ``+0.000`` with a sign), never ``-0.000``."""
    if is_missing(v):
        return "—"
    f = float(v)
    if round(f, digits) == 0:
        f = 0.0
    return f"{f:{'+' if sign else ''}.{digits}f}{suffix}"


def fmt_ci(v: Any, lo: Any, hi: Any, digits: int = 3, sign: bool = False, suffix: str = "") -> str:
    """``value [low, high]``; without bounds just the value."""
    main = fmt_num(v, digits, sign, suffix)
    if is_missing(lo) or is_missing(hi):
        return main
    return f"{main} [{fmt_num(lo, digits, sign, suffix)}, {fmt_num(hi, digits, sign, suffix)}]"


def fmt_generic(v: Any) -> str:
    """A cell of an arbitrary CSV: integers as such, floats to 4 significant digits."""
    if is_missing(v):
        return "—"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v)}"
    if isinstance(v, (float, np.floating)):
        f = float(v)
        if f.is_integer() and abs(f) < 1e15:
            return f"{int(f)}"
        if abs(f) >= 1000:
            return f"{f:,.1f}"
        return f"{f:.4g}"
    return str(v)


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-") or "x"


def generic_table(df: pd.DataFrame, id: str, caption: str, link: str = "", max_rows: int = MAX_ROWS) -> Table:
    """Any DataFrame as a table, the first ``max_rows`` rows, numbers right-aligned."""
    shown = df.head(max_rows)
    rows = []
    for rec in shown.itertuples(index=False):
        rows.append([(fmt_generic(v), "num" if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) else "") for v in rec])
    note = f"First {len(shown)} of {len(df)} rows; the full table is linked." if len(df) > len(shown) else ""
    return Table(id=id, caption=caption, columns=[str(c) for c in df.columns], rows=rows, note=note, link=link)


NO_EFFICIENCY_LABEL = "Efficiency (none measured)"
"""The efficiency column's header when no row has a cost, latency, length or price (its cells are "—", never nan)."""


def efficiency_column(df: pd.DataFrame) -> tuple[str, str]:
    """(column, axis label): the first of :data:`COST_LABELS` every row has (USD, latency, the length proxy, the price proxy);
    else the first any row has; else :data:`NO_EFFICIENCY_LABEL`."""
    for col, label in COST_LABELS.items():
        if col in df and len(df) and df[col].notna().all():
            return col, label
    for col, label in COST_LABELS.items():
        if col in df and df[col].notna().any():
            return col, label
    return "avg_response_chars", NO_EFFICIENCY_LABEL


LATENCY_COLUMNS = {"avg_latency_s": "Avg Latency", "median_latency_s": "Median latency", "p90_latency_s": "p90 latency"}
"""The measured-latency columns (seconds of the chosen answers), shown beside the cost where latency was measured."""


def measured(df: pd.DataFrame, col: str) -> bool:
    """Whether every row has a value in ``col`` (a measured latency column where the data records one per request)."""
    return col in df and len(df) > 0 and bool(df[col].notna().all())


def fmt_efficiency(v: Any, col: str) -> str:
    """An efficiency cell in its own unit: USD with 6 decimals, seconds, or a plain character count (never a unit it is not)."""
    if is_missing(v):
        return "—"
    if col == "avg_cost_usd":
        return f"${float(v):.6f}"
    if col == "avg_latency_s":
        return fmt_num(v, 2, suffix=" s")
    if col == "avg_list_price":
        return f"{float(v):.3f} per 1M tok"
    return f"{float(v):,.0f}"


# --------------------------------------------------------------------------- results tables


def best_single_model(df: pd.DataFrame) -> str:
    """The model of the ``best_single`` row (from the ``model`` column); a phrase if there is none."""
    row = df[df["kind"] == "best_single"]
    if row.empty:
        return "the best single model"
    return str(row["model"].iloc[0])


def main_table(df: pd.DataFrame, id: str = "", caption: str = "", link: str = "") -> Table:
    """The seed's main table for one pool, sorted by quality (ties keep file order)."""
    col, label = efficiency_column(df)
    with_lookup = "uplift_vs_category_lookup" in df and df["uplift_vs_category_lookup"].notna().any()
    latency = [c for c in LATENCY_COLUMNS if c != col and measured(df, c)]
    rows = []
    for r in df.sort_values("avg_quality", ascending=False, kind="mergesort").itertuples(index=False):
        lookup = [(fmt_ci(r.uplift_vs_category_lookup, r.uplift_vs_category_lookup_ci_low, r.uplift_vs_category_lookup_ci_high,
                          sign=True), "num")] if with_lookup else []
        rows.append([
            (str(r.strategy), f"name kind-{r.kind}"),
            (fmt_ci(r.avg_quality, getattr(r, "avg_quality_ci_low", np.nan), getattr(r, "avg_quality_ci_high", np.nan)), "num"),
            (fmt_efficiency(getattr(r, col, np.nan), col), "num eff " + {"avg_cost_usd": "usd", "avg_latency_s": "latency"}.get(col, "proxy")),
            (fmt_num(r.best_model_pct, 1, suffix="%"), "num"),
            (fmt_ci(getattr(r, "uplift_vs_best_single", np.nan), getattr(r, "uplift_vs_best_single_ci_low", np.nan),
                    getattr(r, "uplift_vs_best_single_ci_high", np.nan), sign=True), "num"),
        ] + [(fmt_efficiency(getattr(r, c, np.nan), "avg_latency_s"), "num eff latency") for c in latency] + lookup)
    columns = ["Strategy", "Avg Quality [95% CI]", label, "Best Model %", "vs best single [95% CI]"]
    columns += [LATENCY_COLUMNS[c] for c in latency]
    columns += ["vs per-category lookup [95% CI]"] if with_lookup else []
    return Table(id=id, caption=caption, columns=columns, rows=rows, link=link)


def benefit_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Selector (and tuned) rows, best first."""
    sel = df[df["kind"].isin(["selector", "tuned"])]
    return sel.sort_values("avg_quality", ascending=False, kind="mergesort")


def benefit_table(df: pd.DataFrame, id: str = "", caption: str = "", link: str = "") -> Table:
    """The seed's "ML routing benefit over random" table, with uplift over the best single model and gap closed."""
    rows = []
    for r in benefit_rows(df).itertuples(index=False):
        x = getattr(r, "best_model_x_vs_random", np.nan)
        rows.append([
            (str(r.strategy), "name"),
            (fmt_ci(r.uplift_vs_random_pct, r.uplift_vs_random_pct_ci_low, r.uplift_vs_random_pct_ci_high, 1, True, "%"), "num"),
            ("—" if is_missing(x) else f"{float(x):.2f}x more often", "num"),
            (fmt_ci(r.uplift_vs_best_single, r.uplift_vs_best_single_ci_low, r.uplift_vs_best_single_ci_high, 3, True), "num"),
            (fmt_ci(r.gap_closed_pct, getattr(r, "gap_closed_pct_ci_low", np.nan), getattr(r, "gap_closed_pct_ci_high", np.nan), 1, False, "%"), "num"),
        ])
    columns = ["Algorithm", "Quality improvement over random [95% CI]", "Best Model Selection",
               f"Uplift over best single ({best_single_model(df)}) [95% CI]", "Random → oracle gap closed [95% CI]"]
    return Table(id=id, caption=caption, columns=columns, rows=rows, link=link)


def _verdict_class(r: Any) -> tuple[str, bool]:
    """(vs the best single model: beats | worse | unclear, beats random?) from the intervals."""
    lo, hi, rlo = r.uplift_vs_best_single_ci_low, r.uplift_vs_best_single_ci_high, r.uplift_vs_random_pct_ci_low
    vs_best = "beats" if not is_missing(lo) and lo > 0 else "worse" if not is_missing(hi) and hi < 0 else "unclear"
    return vs_best, bool(not is_missing(rlo) and rlo > 0)


def _verdict(r: Any, best: str) -> str:
    d, lo, hi = r.uplift_vs_best_single, r.uplift_vs_best_single_ci_low, r.uplift_vs_best_single_ci_high
    ci = f"{fmt_num(d, 3, True)} quality, 95% CI [{fmt_num(lo, 3, True)}, {fmt_num(hi, 3, True)}]"
    vs_best, vs_random = _verdict_class(r)
    if vs_best == "beats":
        s = f"{r.strategy} beats the best single model ({best}): {ci}; the whole interval is above 0."
    elif vs_best == "worse":
        s = f"{r.strategy} does not beat the best single model ({best}); it is worse: {ci}; the whole interval is below 0."
    else:
        s = f"{r.strategy} does not beat the best single model ({best}): {ci}; the interval includes 0, so no difference is shown."
    if vs_random:
        s += f" It beats random selection ({fmt_num(r.uplift_vs_random_pct, 1, True, '%')} quality)"
    else:
        s += (f" It does not clearly beat random selection ({fmt_num(r.uplift_vs_random_pct, 1, True, '%')} quality, CI lower bound "
              f"{fmt_num(r.uplift_vs_random_pct_ci_low, 1, True, '%')})")
    return s + f" and closes {fmt_num(getattr(r, 'gap_closed_pct', np.nan), 1, suffix='%')} of the random → oracle gap."


def _span(values: list[float], digits: int, sign: bool = False, suffix: str = "") -> str:
    lo, hi = min(values), max(values)
    return fmt_num(lo, digits, sign, suffix) if lo == hi else f"{fmt_num(lo, digits, sign, suffix)} to {fmt_num(hi, digits, sign, suffix)}"


def _group_verdict(rows: list[Any], best: str) -> str:
    names = ", ".join(str(r.strategy) for r in rows[:-1]) + f" and {rows[-1].strategy}"
    vs_best, vs_random = _verdict_class(rows[0])
    diff = _span([r.uplift_vs_best_single for r in rows], 3, True)
    s = {"beats": f"{names} each beat the best single model ({best}): the whole interval is above 0 for each ({diff} quality).",
         "worse": f"{names} do not beat the best single model ({best}); each is worse, the whole interval below 0 ({diff} quality).",
         "unclear": f"{names} do not beat the best single model ({best}): each interval includes 0, so no difference is shown "
                    f"({diff} quality)."}[vs_best]
    up = _span([r.uplift_vs_random_pct for r in rows], 1, True, "%")
    s += f" Each beats random selection ({up} quality)" if vs_random else f" None clearly beats random selection ({up} quality)"
    return s + f" and closes {_span([getattr(r, 'gap_closed_pct', np.nan) for r in rows], 1, suffix='%')} of the random → oracle gap."


def verdicts(df: pd.DataFrame) -> list[str]:
    """The verdicts from the CIs (does a selector beat the best single model, and random?): one sentence per selector,
    selectors with the same verdict grouped into one sentence (in table order of their first member)."""
    best = best_single_model(df)
    groups: dict[tuple[str, bool], list[Any]] = {}
    for r in benefit_rows(df).itertuples(index=False):
        groups.setdefault(_verdict_class(r), []).append(r)
    return [_verdict(rows[0], best) if len(rows) == 1 else _group_verdict(rows, best) for rows in groups.values()]


def read_table(tables: Path, name: str) -> pd.DataFrame | None:
    p = tables / name
    if not p.is_file():
        return None
    try:
        return pd.read_csv(p)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


# --------------------------------------------------------------------------- markdown


def table_markdown(table: Table) -> list[str]:
    """A :class:`Table` as markdown lines: header, separator, one line per row (cell texts; CSS classes dropped)."""
    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [line(table.columns), "|" + "---|" * len(table.columns)] + [line([text for text, _ in row]) for row in table.rows]


def seed_tables_markdown(results: pd.DataFrame) -> str:
    """``seed_tables.md``: per pool, the seed's main table and its "ML routing benefit over random" table, with CIs."""
    out = []
    for pool, df in results.groupby("pool", sort=False):
        out.append(f"### Pool `{pool}` — {int(df['n_queries'].iloc[0])} held-out queries\n")
        out += table_markdown(main_table(df))
        out.append("\n**ML routing benefit over random (expected)**\n")
        out += table_markdown(benefit_table(df))
        out.append("")
    return "\n".join(out)


def _routing_table(ev: Any) -> Table:
    """Decision, priority, categories, algorithm, modelRefs and routed test queries of a router config evaluation."""
    rows = []
    for info in ev.decisions:
        d = info.decision
        if d is None:
            if info.n_test:
                cells = [info.name, "-", "(no decision matches)", f"best single on train ({ev.best_single_model})", "all", str(info.n_test)]
                rows.append([(c, "") for c in cells])
            continue
        cells = [info.name, str(d.priority), ", ".join(d.categories), f"{d.algorithm} ({d.params_text()})", ", ".join(d.model_refs),
                 str(info.n_test)]
        rows.append([(c, "") for c in cells])
    return Table("", "", ["Decision", "Priority", "Categories", "Algorithm", "modelRefs", "Test queries"], rows)


def router_config_markdown(ev: Any) -> str:
    """``router_config_results.md`` of a :class:`mlsel.deploy.evaluate_config.RouterConfigEvaluation`.

    The routing table, the overall table (with the router config against the
    best single-algorithm configuration, paired) and one table per decision.
    """
    cfg, res = ev.config, ev.result
    out = [f"## Router config `{Path(cfg.path).name}` on the held-out queries\n", f"**Verdict.** {ev.verdict}\n"]
    out += table_markdown(_routing_table(ev))
    rule = (f"they go to `default_decision` {cfg.default_decision!r}" if cfg.default_decision
            else f"they go to the best single model on train among all models ({ev.best_single_model})")
    out.append(f"\nTest queries no decision matches: {ev.n_unmatched}; {rule}.\n")
    ov = res[res["decision"] == "overall"]
    out.append(f"### Overall — {int(ov['n_queries'].iloc[0])} held-out queries, all models\n")
    out += table_markdown(main_table(ov))
    out.append(f"\nBest single-algorithm configuration: **{ev.best_single_algorithm}**. Router config minus it: "
               f"{fmt_ci(*ev.difference, digits=3, sign=True)} avg quality (paired bootstrap, 95% CI).\n")
    for info in ev.decisions:
        if not info.n_test:
            continue
        d = info.decision
        df = res[(res["decision"] == info.name) & (res["scope"] == "decision")]
        what = f"{d.algorithm} ({d.params_text()}), categories: {', '.join(d.categories)}" if d else "unmatched queries, best single on train"
        out.append(f"### Decision `{info.name}` — {info.n_test} held-out queries; {what}; candidates: {', '.join(df['model_refs'].iloc[0].split(';'))}\n")
        out += table_markdown(main_table(df))
        out.append("")
    return "\n".join(out)


def export_sentences(ex: pd.DataFrame) -> list[str]:
    """Per exported pool, one sentence saying whether the shipped files choose what was evaluated (from the table's values)."""
    out = []
    for pool, g in ex.groupby("pool", sort=False):
        n = int(g["n_test"].max())
        algs = ", ".join(g["algorithm"])
        off = g[g["agreement_rate"] < 1.0]
        if off.empty:
            out.append(f"Pool {pool}: on all {n} held-out queries the runtime's rule on each exported file ({algs}) picks the model "
                       "the evaluated selector picks, so the shipped routers have the evaluated quality.")
            continue
        parts = [f"{r.algorithm} agrees on {100 * r.agreement_rate:.1f}% (quality {fmt_num(r.runtime_quality, 3)} shipped vs "
                 f"{fmt_num(r.selector_quality, 3)} evaluated)" for r in off.itertuples()]
        out.append(f"Pool {pool}: the shipped files differ from the evaluated selectors on some held-out queries: {'; '.join(parts)}.")
    return out
