"""The README's numbers are the published tables' (which the full-data test checks against a fresh run)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from mlsel.report.overview import summary_markdown

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
TABLES = ROOT / "reports" / "tables"


def test_results_matrix_and_verdicts_are_mlsel_results_of_the_published_summary():
    assert summary_markdown(pd.read_csv(TABLES / "summary.csv")) in README


def test_mmlu_pro_reference_selectors_table_is_the_published_one():
    res = pd.read_csv(TABLES / "mmlu_pro" / "selection_results.csv")
    kinds = {"oracle": "Oracle (best possible)", "random": "Random Selection (expected)", "knn": "KNN Selection",
             "kmeans": "KMEANS Selection", "svm": "SVM Selection"}
    for pool in ("small4", "all5"):
        row = next(line for line in README.splitlines() if line.startswith(f"| {pool} ("))
        cells = [c.strip() for c in row.strip("|").split("|")]
        q = res[res["pool"] == pool].set_index("strategy")["avg_quality"]
        best = res[(res["pool"] == pool) & (res["kind"] == "best_single")].iloc[0]
        assert cells[1] == f"{q[kinds['oracle']]:.3f}"
        assert re.match(rf"{best['avg_quality']:.3f} \(", cells[2])
        assert cells[3] == f"{q[kinds['random']]:.3f}"
        assert cells[4:7] == [f"{q[kinds[k]]:.3f}" for k in ("knn", "kmeans", "svm")]
