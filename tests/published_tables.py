"""Does a fresh run reproduce the published tables? Real changes fail; float noise from another CPU passes.

Test helper, not part of the package (``from published_tables import ...``;
``tools/compare_tables.py`` puts ``tests/`` on ``sys.path``).

Why a tolerance at all: two CPUs of one machine kind run different float
kernels (AVX2 or AVX-512 in torch and the BLAS), and the same texts embed to
vectors up to ~2e-7 apart. That flips a near-tie now and then: one training
label in 9,313, one held-out choice in a few thousand. Every conclusion stays.

The rule, per cell of every ``reports/tables/**/*.csv`` (the published table's
values set the allowances):

- **Conclusions match exactly**: every text cell (verdicts, chosen model,
  chosen router, cost unit, split), every flag (``chosen``, ``argmax``,
  ``within_one_se``), every count (``n_*``) and every chosen parameter or
  operating point (``*_lambda``, ``param_value``, ``onehot_weight``,
  ``matched_target_pct``).
- **The sign of each interval against 0 matches** (``X_ci_low``/``X_ci_high``
  and AIQ's ``ci_low``/``ci_high``; within 1e-6 of 0 counts as 0).
- **Numbers move by at most what** :data:`FLIPS_PER_1000` **flipped choices
  per thousand of the table's held-out queries can cause**: a row computed on
  n held-out queries may have ``k = max(1, F n / 1000)`` flips (F =
  :data:`FLIPS_PER_1000`; at least one, so a small set is not held to a
  fraction of a flip). One flip on one of n queries moves a mean quality by at
  most 1/n (qualities are in [0, 1]). With ``q = k / n`` each column may move by:

  - quality units (qualities, gains, uplifts over the best single model or the
    lookup, AIQ and AIQ - zero, CV scores, agreement rates, ...): ``q``;
  - a share in percent of the queries (``share_pct``, ``best_model_pct``,
    ``fast_choice_pct``): ``100 q`` points; ``best_model_pct_decidable``, a
    share of the n_dec queries where the models differ: ``100 k / n_dec``;
  - a ratio in percent of a baseline quality D (flips do not move D: the
    oracle and random are fixed by the held-out outcomes, the best single
    model is chosen on training): ``100 q / D`` points. D is, per column:
    ``gap_closed_pct`` oracle - best single in a ``summary.csv``
    (:mod:`mlsel.tuning.summary`), oracle - random in the per-strategy tables
    (``selection_results``, ``tuned_results``, ``router_config_results``;
    :mod:`mlsel.metrics.evaluate`); ``gap_closed_random_pct`` oracle - random;
    ``uplift_vs_random_pct`` random; ``matched_quality_pct`` best single.
    ``best_model_x_vs_random`` (a hit rate over random's): ``q / D`` with D
    random's hit rate;
  - costs, latencies and sizes: ``10 q`` of their value (a model's per-query
    cost is at most ~10 times a mean cost);
  - a cost in percent of the best single model's (``matched_cost_pct``, and
    ``cost_save_at_b_pct`` = 100 - that): ``10 q`` of that percent (the row's
    ``matched_cost_pct``, or ``100 - cost_save_at_b_pct``), the cost allowance
    of its numerator;

  each plus one unit of the 6th written decimal (the two values' rounding).
  Intervals' bounds (``*_ci_low``/``*_ci_high``) move like their value.

Where n and the baselines come from, per row, the first found:

1. the row itself: ``n_queries`` or ``n_test`` (when > 0; e.g. per category in
   ``per_category.csv``, per decision in ``router_config_results.csv``),
   ``best_single_quality``, ``oracle_quality``, ``random_quality`` (a
   ``summary.csv`` row has them all);
2. in a per-strategy table (columns ``strategy`` and ``kind``), the rows of its
   group (alike in every column before ``strategy``: the pool, or a decision
   of ``router_config_results.csv``): the oracle's and random's
   ``avg_quality``, random's ``best_model_pct`` / 100 as its hit rate, and
   n_dec = n (100 - ``best_model_pct``) / (100 - ``best_model_pct_decidable``)
   (every undecidable query is a hit), the smallest over the group's rows;
3. the published ``summary.csv`` of the table's dataset folder, the row of the
   row's ``pool`` (``n_test`` and the three qualities), else that folder's
   ``selection_results.csv`` (``n_queries``, the oracle's and random's
   ``avg_quality``). A pool found twice gives its smallest value, a table
   without a ``pool`` column (or a pool found in neither) the smallest of the
   folder's: the looser allowance. Tables scored by cross-validation on the
   training split (``choice``, ``ship_choice``, ``tune_heatmap``,
   ``train_share``) use the held-out n too: the training split is larger, so
   that is the looser bound;
4. a conservative bound below every published one: n = :data:`N_FALLBACK`
   (BFCL's 340 is the smallest held-out set), D = :data:`D_FALLBACK` for a
   baseline quality, gap or hit rate not found or not above 0 (BFCL's oracle -
   best single gap, 0.065, is the smallest), n_dec = ``D_FALLBACK n``.

A formula changed on purpose moves numbers far beyond this (the checks in
``tests/test_full_pipeline.py`` show each kind is caught).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

FLIPS_PER_1000 = 2.0
"""Flipped choices per thousand held-out queries that float noise may cause (at least one on RouterBench's 952)."""
COST_SPREAD = 10.0
"""A model's per-query cost over a mean cost, at most: one flip moves a mean cost by this over n of it."""
N_FALLBACK = 300
"""Held-out queries of a table whose n is found nowhere (fewer than any published dataset's: BFCL's 340)."""
D_FALLBACK = 0.05
"""A baseline quality, gap or hit rate found nowhere (below every published one: BFCL's oracle - best single gap, 0.065)."""
ATOL = 1.01e-6
"""One unit of the 6th decimal the tables are written with."""
ZERO = 1e-6
"""An interval bound within this of 0 counts as 0 for its sign."""

EXACT = re.compile(r"^(n_.*|.*_lambda|param_value|onehot_weight|matched_target_pct)$")
COST_RATIO = re.compile(r"^(cost_save_at_b|matched_cost_pct)")
RATIO = re.compile(r"^(gap_closed|uplift_vs_random|matched_quality|best_model_x_vs_random)")
COST = re.compile(r"(cost|latency|response_chars|list_price|size_mb)")
SHARE = re.compile(r"(share_pct|best_model_pct|fast_choice_pct)")
STRATEGY_TABLES = ("selection_results.csv", "tuned_results.csv", "router_config_results.csv")
"""Per-strategy tables (:mod:`mlsel.metrics.evaluate`): their ``gap_closed_pct`` is of the oracle - random gap."""
BASELINES = ("n", "n_decidable", "best_single_quality", "oracle_quality", "random_quality", "random_hit")
"""What a row's allowances are computed from (the module docstring says where each is looked up)."""


def column_kind(column: str) -> str:
    """How a numeric column may move: ``exact``, ``quality``, ``share``, ``decidable`` (a share of the decidable
    queries), ``ratio`` (in percent of a baseline quality; ``best_model_x_vs_random`` as a plain ratio), ``cost``
    (relative to its value) or ``cost_ratio`` (a cost in percent of the best single model's)."""
    if EXACT.match(column):
        return "exact"
    if COST_RATIO.match(column):
        return "cost_ratio"
    if RATIO.match(column):
        return "ratio"
    if column.startswith("best_model_pct_decidable"):
        return "decidable"
    if SHARE.search(column):
        return "share"
    if COST.search(column):
        return "cost"
    return "quality"  # qualities, gains, uplifts over the best single, AIQ, CV scores, agreement


def flips(n: np.ndarray | float) -> np.ndarray:
    """The flip budget on n held-out queries: :data:`FLIPS_PER_1000` per thousand, at least one."""
    return np.maximum(1.0, FLIPS_PER_1000 * np.asarray(n, float) / 1000.0)


def _read(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path) if path.is_file() else None


def _put(out: dict, key: object, name: str, value: float) -> None:
    """Keep the smallest value per key (several rows of one pool: the looser allowance)."""
    if np.isfinite(value) and value > 0:
        d = out.setdefault(key, {})
        d[name] = min(d.get(name, np.inf), float(value))


def folder_baselines(folder: Path) -> dict[object, dict[str, float]]:
    """Per pool (None: the smallest of every pool's), n and the baseline qualities of a published dataset folder
    (step 3 of the lookup): its ``summary.csv``, else its ``selection_results.csv``."""
    out: dict[object, dict[str, float]] = {}
    s, res = _read(folder / "summary.csv"), _read(folder / "selection_results.csv")
    if s is not None and "n_test" in s.columns:
        for _, r in s.iterrows():
            for name, col in (("n", "n_test"), ("best_single_quality", "best_single_quality"),
                              ("oracle_quality", "oracle_quality"), ("random_quality", "random_quality")):
                _put(out, r.get("pool"), name, float(r.get(col, np.nan)))
    elif res is not None and "n_queries" in res.columns:
        for _, r in res.iterrows():
            _put(out, r.get("pool"), "n", float(r["n_queries"]))
            if r.get("kind") in ("oracle", "random") and "avg_quality" in res.columns:
                _put(out, r.get("pool"), f"{r['kind']}_quality", float(r["avg_quality"]))
    for pool in [p for p in out if p is not None]:
        for name, v in out[pool].items():
            _put(out, None, name, v)
    return out


def _group_baselines(table: pd.DataFrame) -> dict[str, np.ndarray]:
    """Step 2 of the lookup, per row of a per-strategy table (columns ``strategy``, ``kind``): its group's (the rows
    alike in every column before ``strategy``) oracle and random quality, random's hit rate and n_dec."""
    rows = len(table)
    out = {name: np.full(rows, np.nan) for name in ("oracle_quality", "random_quality", "random_hit", "n_decidable")}
    if not {"strategy", "kind", "avg_quality"} <= set(table.columns):
        return out
    keys = list(table.columns[:list(table.columns).index("strategy")])
    groups = table.fillna({k: "" for k in keys}).groupby(keys, sort=False).indices if keys else {None: np.arange(rows)}
    for idx in groups.values():
        g = table.iloc[idx]
        for kind, name in (("oracle", "oracle_quality"), ("random", "random_quality")):
            if (g["kind"] == kind).any():
                out[name][idx] = float(g.loc[g["kind"] == kind, "avg_quality"].iloc[0])
        if "best_model_pct" in g.columns and (g["kind"] == "random").any():
            out["random_hit"][idx] = float(g.loc[g["kind"] == "random", "best_model_pct"].iloc[0]) / 100.0
        if {"best_model_pct", "best_model_pct_decidable", "n_queries"} <= set(g.columns):
            n, pct, dec = (g[c].to_numpy(float) for c in ("n_queries", "best_model_pct", "best_model_pct_decidable"))
            ok = 100.0 - dec > 1.0  # a row with misses on the decidable queries (near 100 the rounding would dominate)
            if ok.any():  # every undecidable query is a hit: n pct = 100 (n - n_dec) + dec n_dec
                out["n_decidable"][idx] = np.min(n[ok] * (100.0 - pct[ok]) / (100.0 - dec[ok]))
    return out


def row_baselines(table: pd.DataFrame, folder: dict[object, dict[str, float]]) -> dict[str, np.ndarray]:
    """Per row of ``table``, n and each baseline by the lookup order of the module docstring (``folder``: step 3's,
    :func:`folder_baselines`)."""
    rows = len(table)
    pools = table["pool"].tolist() if "pool" in table.columns else [None] * rows
    own = {"n": ("n_queries", "n_test"), "best_single_quality": ("best_single_quality",),
           "oracle_quality": ("oracle_quality",), "random_quality": ("random_quality",)}
    group = _group_baselines(table)
    out = {}
    for name in BASELINES:
        v = np.full(rows, np.nan)
        for col in own.get(name, ()):
            if col in table.columns and pd.api.types.is_numeric_dtype(table[col]):
                x = table[col].to_numpy(float)
                v = np.where(np.isnan(v) & (x > 0), x, v)
        if name in group:
            v = np.where(np.isnan(v), group[name], v)
        for i in np.flatnonzero(np.isnan(v)):
            v[i] = folder.get(pools[i], {}).get(name, folder.get(None, {}).get(name, np.nan))
        out[name] = v
    out["n"] = np.where(np.isnan(out["n"]), N_FALLBACK, out["n"])
    out["n_decidable"] = np.where(np.isnan(out["n_decidable"]), D_FALLBACK * out["n"], np.minimum(out["n_decidable"], out["n"]))
    return out


def _positive(d: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(d) & (d > 0), d, D_FALLBACK)


def _point(table: pd.DataFrame, column: str) -> np.ndarray:
    """A CI column's point value (``X`` of ``X_ci_low``; ``cost_save_at_b_ci_low`` is of ``cost_save_at_b_pct``)."""
    base = re.sub(r"_ci_(low|high)$", "", column)
    for c in (base, base + "_pct", column):
        if c in table.columns and pd.api.types.is_numeric_dtype(table[c]):
            return table[c].to_numpy(float)
    return np.full(len(table), np.nan)


def allowances(table: pd.DataFrame, name: str, base: dict[str, np.ndarray]) -> dict[str, tuple[str, np.ndarray]]:
    """``{column: (kind, per-row allowance)}`` for the numeric columns of the published ``table`` (file ``name``), from
    its rows' baselines (:func:`row_baselines`), the rounding unit not included."""
    n, k = base["n"], flips(base["n"])
    q = k / n
    out = {}
    for col in table.columns:
        if not pd.api.types.is_numeric_dtype(table[col]):
            continue
        kind = "exact" if pd.api.types.is_bool_dtype(table[col]) else column_kind(col)
        value = table[col].to_numpy(float)
        if kind == "exact":
            tol = np.zeros(len(table))
        elif kind == "quality":
            tol = q
        elif kind == "share":
            tol = 100.0 * q
        elif kind == "decidable":
            tol = 100.0 * k / base["n_decidable"]
        elif kind == "cost":
            tol = COST_SPREAD * q * np.abs(value)
        elif kind == "cost_ratio":
            p = _point(table, col)
            p = np.where(np.isnan(p), value, p)  # no point value in the row: the cell's own
            tol = COST_SPREAD * q * np.abs(100.0 - p if col.startswith("cost_save") else p)
        elif col.startswith("best_model_x_vs_random"):
            tol = q / _positive(base["random_hit"])
        else:
            tol = 100.0 * q / _positive(_ratio_denominator(col, name, base))
        out[col] = (kind, tol)
    return out


def _ratio_denominator(column: str, name: str, base: dict[str, np.ndarray]) -> np.ndarray:
    """D of a ratio column in percent of a baseline quality (the module docstring's list)."""
    o, r, b = base["oracle_quality"], base["random_quality"], base["best_single_quality"]
    if column.startswith("gap_closed_random"):
        return o - r
    if column.startswith("gap_closed"):
        return o - r if Path(name).name in STRATEGY_TABLES else o - b
    if column.startswith("uplift_vs_random"):
        return r
    return b  # matched_quality_pct


def table_allowances(table: pd.DataFrame, name: str, folder: Path) -> tuple[np.ndarray, dict[str, tuple[str, np.ndarray]]]:
    """``(n per row, {column: (kind, allowance per row)})`` of a published table ``name`` (relative to its tables root)
    whose dataset folder is ``folder``."""
    base = row_baselines(table, folder_baselines(folder))
    return base["n"], allowances(table, name, base)


def _sign(v: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(v), 2, np.where(np.abs(v) <= ZERO, 0, np.sign(v)))  # 2: no value


def _interval_pairs(columns: list[str]) -> list[tuple[str, str]]:
    return [(c, c[:-3] + "high") for c in columns if c.endswith("ci_low") and c[:-3] + "high" in columns]


def _numeric_differences(f: str, col: str, x: pd.Series, y: pd.Series, kind: str, tol: np.ndarray, n: np.ndarray) -> list[str]:
    a, b = x.to_numpy(float), y.to_numpy(float)
    allowed = tol + ATOL
    bad = ~((np.isnan(a) & np.isnan(b)) | (np.abs(b - a) <= allowed * (1 + 1e-9)))  # the bound itself passes
    return [f"{f}: {col}, row {i}: published {x.iloc[i]}, produced {y.iloc[i]} "
            f"({'must match' if kind == 'exact' else f'{kind}, allowed {allowed[i]:.3g} on {n[i]:.0f} queries'})"
            for i in np.flatnonzero(bad)[:5]]


def table_differences(fresh: Path, published: Path) -> list[str]:
    """Every difference beyond the rule above between two folders of CSV tables, one line each (file, column, row, why)."""
    have = sorted(p.relative_to(fresh).as_posix() for p in fresh.rglob("*.csv"))
    want = sorted(p.relative_to(published).as_posix() for p in published.rglob("*.csv"))
    out = [f"{f}: published, not produced" for f in sorted(set(want) - set(have))]
    out += [f"{f}: produced, not published" for f in sorted(set(have) - set(want))]
    for f in sorted(set(want) & set(have)):
        a, b = pd.read_csv(published / f), pd.read_csv(fresh / f)
        if list(a.columns) != list(b.columns) or len(a) != len(b):
            out.append(f"{f}: columns/rows {list(a.columns)} x {len(a)} published, {list(b.columns)} x {len(b)} produced")
            continue
        n, tols = table_allowances(a, f, (published / f).parent)
        for col in a.columns:
            x, y = a[col], b[col]
            if col in tols and pd.api.types.is_numeric_dtype(y):
                out += _numeric_differences(f, col, x, y, *tols[col], n)
            else:
                bad = (x.fillna("<NA>").astype(str) != y.fillna("<NA>").astype(str)).to_numpy()
                out += [f"{f}: {col}, row {i}: published {x.iloc[i]}, produced {y.iloc[i]}" for i in np.flatnonzero(bad)[:5]]
        for lo, hi in _interval_pairs(list(a.columns)):
            for c in (lo, hi):
                if pd.api.types.is_numeric_dtype(a[c]) and pd.api.types.is_numeric_dtype(b[c]):
                    flip = np.flatnonzero(_sign(a[c].to_numpy(float)) != _sign(b[c].to_numpy(float)))
                    out += [f"{f}: {c}, row {i}: sign against 0 changed, published {a[c].iloc[i]}, produced {b[c].iloc[i]}"
                            for i in flip[:5]]
    return out
