"""One full real-data run of the default pipeline: every default dataset, all queries.

The run must reproduce the published tables (``reports/tables/**/*.csv``, which
the report and the README print): the same files, columns, rows and text, and
every number to the last decimal written (tables are written with 6 decimals;
:data:`ATOL` allows one unit of that last decimal, so floating-point noise
across machines that tips a rounding still passes). Any different choice on a
query does not: one query of MMLU-Pro's 2,329 held-out queries moves a quality
by 4e-4, one of RouterBench's 952 by 1e-3.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsel import runner
from mlsel.params import load_params

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "reports" / "tables"
RTOL, ATOL = 0.0, 1.01e-6  # one unit of the 6th decimal


def table_differences(fresh: Path, published: Path) -> list[str]:
    """Every difference between two folders of CSV tables, one line each (file, column, row, published vs fresh)."""
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
                bad = ~np.isclose(y.to_numpy(float), x.to_numpy(float), rtol=RTOL, atol=ATOL, equal_nan=True)
            else:
                bad = (x.fillna("<NA>").astype(str) != y.fillna("<NA>").astype(str)).to_numpy()
            out += [f"{f}: {col}, row {i}: published {x.iloc[i]}, produced {y.iloc[i]}" for i in np.flatnonzero(bad)[:5]]
    return out


def test_table_differences_finds_each_kind(tmp_path):
    """The comparison itself: a number beyond the tolerance, changed text, a missing and an extra file are each named."""
    pub, new = tmp_path / "pub", tmp_path / "new"
    (pub / "d").mkdir(parents=True)
    (new / "d").mkdir(parents=True)
    pd.DataFrame({"k": ["x", "y"], "v": [0.5, 1.0]}).to_csv(pub / "d" / "t.csv", index=False)
    pd.DataFrame({"k": ["x", "y"], "v": [0.500001, 1.0]}).to_csv(new / "d" / "t.csv", index=False)
    assert table_differences(new, pub) == []  # a rounding tipped by noise: within the tolerance
    pd.DataFrame({"k": ["x", "z"], "v": [0.500002, 1.0]}).to_csv(new / "d" / "t.csv", index=False)
    (pub / "gone.csv").write_text("a\n1\n")
    (new / "extra.csv").write_text("a\n1\n")
    assert table_differences(new, pub) == [
        "gone.csv: published, not produced", "extra.csv: produced, not published",
        "d/t.csv: k, row 1: published y, produced z", "d/t.csv: v, row 0: published 0.5, produced 0.500002"]


@pytest.mark.slow
def test_default_pipeline_on_every_dataset(tmp_path):
    overrides = {"run_dir": str(tmp_path / "run"), "report_dir": str(tmp_path / "report")}
    done = runner.run(overrides=overrides)
    datasets = load_params().base.datasets
    assert datasets == ["mmlu_pro", "llmrouter", "llmrouter_by_task", "routerbench"]
    assert list(done) == [f"{ds}/{s}" for ds in datasets for s in ("prepare", "train", "evaluate", "tune")] + ["report"]

    # MMLU-Pro: oracle >> best single >> expected random, on held-out queries.
    res = pd.read_csv(tmp_path / "report" / "tables" / "mmlu_pro" / "selection_results.csv")
    m = json.loads((tmp_path / "run" / "mmlu_pro" / "manifest.json").read_text())
    n_test = m["stages"]["prepare"]["n_test"]
    assert 2200 < n_test < 2500 and res["n_queries"].eq(n_test).all()
    small = res[res["pool"] == "small4"].set_index("kind")
    assert small.loc["oracle", "avg_quality"] > 0.6
    assert 0.40 < small.loc["best_single", "avg_quality"] < 0.48
    assert small.loc["random", "avg_quality"] < small.loc["best_single", "avg_quality"]
    big = res[res["pool"] == "all5"]
    assert big[big["kind"] == "best_single"]["model"].tolist() == ["Meta-Llama-3.1-70B-Instruct"]  # the model as data

    # The cross-dataset matrix: one row per dataset x pool, each dataset's own cost axis and split.
    summary = pd.read_csv(tmp_path / "report" / "tables" / "summary.csv")
    assert summary[["dataset", "pool"]].values.tolist() == [
        ["mmlu_pro", "small4"], ["mmlu_pro", "all5"], ["llmrouter", "all9"], ["llmrouter_by_task", "all9"], ["routerbench", "all11"]]
    assert summary["cost_unit"].tolist() == ["response_chars", "response_chars", "list_price", "list_price", "cost_usd"]
    assert summary["split"].tolist() == ["seeded", "seeded", "seeded", "by_task", "source"]
    assert ((summary["gain_at_b_ci_low"] <= summary["gain_at_b"]) & (summary["gain_at_b"] <= summary["gain_at_b_ci_high"])).all()
    assert (summary["oracle_quality"] > summary["best_single_quality"]).all()
    # LLMRouter: the tuned router beats its best single model (+0.04 with the data; the CI is above 0).
    assert summary.set_index("dataset").loc["llmrouter", "gain_at_b_ci_low"] > 0
    # RouterBench: the held-out split is the source's test files (its empty quality cells dropped).
    rb = json.loads((tmp_path / "run" / "routerbench" / "manifest.json").read_text())["stages"]["prepare"]
    assert rb["data"]["dropped"]["missing_quality_cell"] == 154  # 14 repeated ARC rows with no score at all (11 models each)
    assert summary.set_index("dataset").loc["routerbench", "n_test"] == rb["n_test"]
    html = (tmp_path / "report" / "index.html").read_text()
    assert html.index('id="overview"') < html.index('id="mmlu_pro-headline"') < html.index('id="routerbench-headline"')

    # The shipped router files (MMLU-Pro small4, the default export): every file exact on all held-out queries, the
    # runtime rule's quality equal to the evaluated selector's published quality, the KNN file within 100 MB.
    ex = pd.read_csv(tmp_path / "report" / "tables" / "mmlu_pro" / "router_export.csv").set_index("algorithm")
    assert list(ex.index) == ["knn", "kmeans", "svm"] and (ex["pool"] == "small4").all()
    assert (ex["rule"] == "exact").all() and (ex["agreement_rate"] == 1.0).all() and (ex["n_test"] == n_test).all()
    assert (ex["runtime_quality"] == ex["selector_quality"]).all()
    for alg, lab in (("knn", "KNN Selection"), ("kmeans", "KMEANS Selection"), ("svm", "SVM Selection")):
        assert ex.loc[alg, "runtime_quality"] == pytest.approx(small[small["strategy"] == lab]["avg_quality"].iloc[0], abs=1e-6)
    assert ex.loc["knn", "size_mb"] <= 100.0
    assert 'id="mmlu_pro-router-export"' in html

    # The published tables (and with them the report and the README's results) are what this run produced.
    diff = table_differences(tmp_path / "report" / "tables", PUBLISHED)
    assert not diff, f"{len(diff)} differences from the published reports/tables:\n" + "\n".join(diff[:40])
