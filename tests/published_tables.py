"""Does a fresh run reproduce the published tables? Real changes fail; float noise from another CPU passes.

Test helper, not part of the package (``from published_tables import ...``;
``tools/compare_tables.py`` puts ``tests/`` on ``sys.path``).

Why a tolerance at all: two CPUs of one machine kind run different float
kernels (AVX2 or AVX-512 in torch and the BLAS), and the same texts embed to
vectors up to ~2e-7 apart. That flips a near-tie now and then: one training
label in 9,313, one held-out choice in a few thousand. Every conclusion stays.

The rule, per cell of every ``reports/tables/**/*.csv``:

- **Conclusions match exactly**: every text cell (verdicts, chosen model,
  chosen router, cost unit, split), every count (``n_*``) and every chosen
  parameter or operating point (``*_lambda``, ``param_value``,
  ``onehot_weight``, ``matched_target_pct``).
- **The sign of each interval against 0 matches** (``X_ci_low``/``X_ci_high``
  and AIQ's ``ci_low``/``ci_high``; within 1e-6 of 0 counts as 0).
- **Numbers move by at most what** :data:`FLIPS_PER_1000` **flipped choices
  per thousand held-out queries can cause**. One flip on one of n queries moves
  a mean quality by at most 1/n (qualities are in [0, 1]), a share by 100/n
  percentage points; so with F flips per thousand a quality-unit column may
  move by ``F/1000``, a share by ``100 F/1000``. Figures relative to a
  baseline (gap closed, uplift over random, cost saved, matched quality and
  cost, all in percent of a baseline quantity at least a tenth of the
  scale) by ``1000 F/1000``; costs, latencies and sizes by ``10 F/1000`` of
  their value (a model's per-query cost is at most ~10 times a pool's mean
  cost); ``best_model_x_vs_random`` (a share over the random share, at least
  a fifth) by ``5 F/1000``. At least one unit of the 6th written decimal
  always passes.

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
ATOL = 1.01e-6
"""One unit of the 6th decimal the tables are written with."""
ZERO = 1e-6
"""An interval bound within this of 0 counts as 0 for its sign."""

EXACT = re.compile(r"^(n_.*|.*_lambda|param_value|onehot_weight|matched_target_pct)$")
RELATIVE = re.compile(r"^(gap_closed|uplift_vs_random|cost_save_at_b|matched_quality|matched_cost)")
COST = re.compile(r"(cost|latency|response_chars|list_price|size_mb)")
SHARE = re.compile(r"(share_pct|best_model_pct)")


def column_tolerance(column: str) -> tuple[str, float]:
    """``(kind, tolerance)`` of a numeric column: kind ``exact``, ``absolute`` or ``relative`` (of the published value)."""
    f = FLIPS_PER_1000 / 1000.0
    if EXACT.match(column):
        return "exact", 0.0
    if RELATIVE.match(column):
        return "absolute", 1000.0 * f
    if SHARE.search(column):
        return "absolute", 100.0 * f
    if column.startswith("best_model_x_vs_random"):
        return "absolute", 5.0 * f
    if COST.search(column):
        return "relative", 10.0 * f
    return "absolute", f  # quality units: qualities, gains, uplifts over the best single, AIQ, CV scores, agreement


def _sign(v: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(v), 2, np.where(np.abs(v) <= ZERO, 0, np.sign(v)))  # 2: no value


def _interval_pairs(columns: list[str]) -> list[tuple[str, str]]:
    return [(c, c[:-3] + "high") for c in columns if c.endswith("ci_low") and c[:-3] + "high" in columns]


def _numeric_differences(f: str, col: str, x: pd.Series, y: pd.Series) -> list[str]:
    a, b = x.to_numpy(float), y.to_numpy(float)
    kind, tol = column_tolerance(col)
    allowed = np.maximum(ATOL, tol * np.abs(a) if kind == "relative" else tol)
    bad = ~((np.isnan(a) & np.isnan(b)) | (np.abs(b - a) <= allowed * (1 + 1e-9)))  # the bound itself passes
    what = "must match" if kind == "exact" else f"tolerance {kind} {tol:g}"
    return [f"{f}: {col}, row {i}: published {x.iloc[i]}, produced {y.iloc[i]} ({what})" for i in np.flatnonzero(bad)[:5]]


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
        for col in a.columns:
            x, y = a[col], b[col]
            if pd.api.types.is_numeric_dtype(x) and pd.api.types.is_numeric_dtype(y):
                out += _numeric_differences(f, col, x, y)
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
