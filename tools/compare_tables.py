"""Compare a run's tables with the published ones by the rule of tests/published_tables.py.

    python tools/compare_tables.py RUN_REPORT_DIR/tables [reports/tables]

Prints every difference beyond the rule (exit 1 if any), and how many numeric
cells moved within it (float noise), with the largest move per column kind.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from published_tables import ATOL, table_allowances, table_differences  # noqa: E402


def moved_cells(fresh: Path, published: Path) -> dict[str, tuple[int, int, float]]:
    """Per column kind: (cells compared, cells that moved beyond the 6th decimal, largest move in units of its allowance)."""
    out: dict[str, list[float]] = {}
    for p in sorted(published.rglob("*.csv")):
        q = fresh / p.relative_to(published)
        if not q.is_file():
            continue
        a, b = pd.read_csv(p), pd.read_csv(q)
        if list(a.columns) != list(b.columns) or len(a) != len(b):
            continue
        _, tols = table_allowances(a, p.relative_to(published).as_posix(), p.parent)
        for col, (kind, tol) in tols.items():
            if not pd.api.types.is_numeric_dtype(b[col]):
                continue
            x, y = a[col].to_numpy(float), b[col].to_numpy(float)
            ok = ~(np.isnan(x) | np.isnan(y))
            moves = np.abs(y[ok] - x[ok])
            out.setdefault(kind, []).extend(np.where(moves > ATOL, moves / np.maximum(tol[ok] + ATOL, 1e-300), 0.0).tolist())
    return {k: (len(v), int(np.count_nonzero(v)), float(max(v, default=0.0))) for k, v in out.items()}


def main(argv: list[str]) -> int:
    fresh = Path(argv[0])
    published = Path(argv[1]) if len(argv) > 1 else Path(__file__).resolve().parent.parent / "reports" / "tables"
    diff = table_differences(fresh, published)
    for kind, (n, moved, worst) in sorted(moved_cells(fresh, published).items()):
        print(f"{kind}: {n} cells, {moved} moved beyond the 6th decimal, largest move {worst:.3f} of its allowance")
    print(f"{len(diff)} differences beyond the rule")
    print("\n".join(diff))
    return 1 if diff else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
