"""One full real-data run of the default pipeline (all 12,032 MMLU-Pro questions)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from mlsel import runner


@pytest.mark.slow
def test_default_pipeline_on_full_mmlu_pro(tmp_path):
    overrides = {"run_dir": str(tmp_path / "run"), "report_dir": str(tmp_path / "report")}
    done = runner.run(overrides=overrides)
    assert list(done) == ["prepare", "train", "evaluate", "tune", "report"]
    res = pd.read_csv(tmp_path / "report" / "tables" / "selection_results.csv")
    m = json.loads((tmp_path / "run" / "manifest.json").read_text())
    n_test = m["stages"]["prepare"]["n_test"]
    assert 2200 < n_test < 2500 and res["n_queries"].eq(n_test).all()
    small = res[res["pool"] == "small4"].set_index("kind")
    # Oracle >> best single >> expected random, on held-out queries.
    assert small.loc["oracle", "avg_quality"] > 0.6
    assert 0.40 < small.loc["best_single", "avg_quality"] < 0.48
    assert small.loc["random", "avg_quality"] < small.loc["best_single", "avg_quality"]
    big = res[res["pool"] == "all5"]
    assert big[big["kind"] == "best_single"]["model"].tolist() == ["Meta-Llama-3.1-70B-Instruct"]  # the model as data
    assert (tmp_path / "report" / "index.html").stat().st_size > 10_000
