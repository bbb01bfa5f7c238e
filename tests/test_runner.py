"""The orchestrator end to end: every stage notebook through papermill on small real data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mlsel import runner
from mlsel.params import apply_overrides, load_params
from mlsel.paths import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def _tables(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.csv"))}


@pytest.fixture(scope="module")
def smoke_runner_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runner-smoke")
    overrides = {"run_dir": str(run_dir), "report_dir": str(run_dir / "report")}
    done = runner.run(smoke=True, overrides=overrides)
    return run_dir, overrides, done


def test_every_stage_runs_through_papermill(smoke_runner_run):
    run_dir, _, done = smoke_runner_run
    assert list(done) == ["prepare", "train", "evaluate", "tune", "report"]
    for info in done.values():
        nb = json.loads(Path(info["notebook"]).read_text())
        assert nb["metadata"]["papermill"]["exception"] is None or nb["metadata"]["papermill"].get("exception") is False
    html = (run_dir / "report" / "index.html").read_text()
    assert "small4" in html and "all5" in html
    results = pd.read_csv(run_dir / "report" / "tables" / "selection_results.csv")
    assert set(results["pool"]) == {"small4", "all5"}
    for col in ["pool", "strategy", "n_queries", "avg_quality", "avg_quality_ci_low", "avg_quality_ci_high",
                "best_model_pct", "uplift_vs_random_pct", "uplift_vs_best_single", "avg_response_chars"]:
        assert col in results.columns
    assert results["n_queries"].eq(120).all()


def test_manifest_records_parameters_versions_inputs_and_drops(smoke_runner_run):
    run_dir, _, _ = smoke_runner_run
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["git_commit"] and m["package_versions"]["scikit-learn"]
    prep = m["stages"]["prepare"]
    assert prep["params"]["max_queries"] == 600 and len(prep["params_hash"]) == 16
    assert all(len(sha) == 64 for sha in prep["data"]["inputs"].values()) and len(prep["data"]["inputs"]) == 5
    assert prep["data"]["dropped"]["subsampled_out_by_max_queries"] > 0
    assert "duplicate_rows_averaged" in prep["data"]["repaired"]
    for stage in ("train", "evaluate", "tune", "report"):
        assert m["stages"][stage]["executed_notebook"].endswith(".ipynb")


def test_rerun_gives_byte_identical_tables(smoke_runner_run):
    run_dir, overrides, _ = smoke_runner_run
    before = _tables(run_dir / "tables")
    report_before = _tables(run_dir / "report" / "tables")
    done = runner.run(smoke=True, overrides=overrides, stages=["prepare", "train", "evaluate", "report"], force=True)
    assert not any(info["skipped"] for info in done.values())
    assert _tables(run_dir / "tables") == before
    assert _tables(run_dir / "report" / "tables") == report_before


def test_single_stage_runs_directly_with_papermill_cli(smoke_runner_run, tmp_path):
    run_dir, _, _ = smoke_runner_run
    out = tmp_path / "train.ipynb"
    subprocess.run(
        [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "20_train_selectors.ipynb"), str(out),
         "-p", "run_dir", str(run_dir), "-p", "knn_k", "7", "-y", "selector_names: [knn]", "--cwd", str(ROOT / "notebooks")],
        check=True, capture_output=True, env={**os.environ},
    )
    manifest = json.loads((run_dir / "models" / "small4" / "knn.manifest.json").read_text())
    assert manifest["params"]["k"] == 7


def test_failed_stage_keeps_earlier_outputs(smoke_runner_run, tmp_path):
    import papermill as pm

    run_dir = tmp_path / "failing"
    # A bad value is refused before any stage runs ...
    with pytest.raises(ConfigError, match="svm_kernel: Input should be 'rbf' or 'linear'"):
        runner.run(smoke=True, overrides={"run_dir": str(run_dir), "svm_kernel": "poly"}, stages=["prepare", "train"])
    assert not run_dir.exists()
    # ... and a stage that fails while running leaves what earlier stages wrote.
    with pytest.raises(pm.PapermillExecutionError, match="no-such-embedder"):
        runner.run(smoke=True, overrides={"run_dir": str(run_dir), "embedder": "mlsel-tests/no-such-embedder"}, stages=["prepare", "train"])
    assert (run_dir / "data" / "queries.csv").is_file()
    assert (run_dir / "notebooks" / "20_train_selectors.ipynb").is_file()  # the partial notebook is kept


def test_secret_looking_parameters_are_refused():
    params = load_params(ROOT / "params.yaml")
    with pytest.raises(ConfigError, match="looks like a secret"):
        runner._check_no_secrets({"api_key": "sk-123"}, "benchmark")
    with pytest.raises(ConfigError, match="hf_token"):
        runner._check_no_secrets({"hf_token": "hf_abc"}, "benchmark")
    runner._check_no_secrets({"max_tokens": 64, "api_key": ""}, "benchmark")  # not secrets / empty
    assert runner.planned_stages(params) == ["prepare", "train", "evaluate", "tune", "report"]
    bench = apply_overrides(params, {"source": "benchmark"})
    assert runner.planned_stages(bench)[:2] == ["benchmark", "prepare"]


def test_up_to_date_stages_are_skipped_and_a_changed_parameter_reruns(smoke_runner_run):
    run_dir, overrides, _ = smoke_runner_run
    runner.run(smoke=True, overrides=overrides)  # up to date after this, whatever earlier tests did
    before = _tables(run_dir / "tables")
    done = runner.run(smoke=True, overrides=overrides)
    assert {s for s, info in done.items() if info["skipped"]} == {"train", "evaluate", "tune"}
    assert not done["prepare"]["skipped"] and not done["report"]["skipped"]
    assert _tables(run_dir / "tables") == before
    done = runner.run(smoke=True, overrides={**overrides, "knn_k": 9}, stages=["train", "evaluate"])
    assert not done["train"]["skipped"] and not done["evaluate"]["skipped"]  # evaluate reads the new models
    knn = json.loads((run_dir / "models" / "small4" / "knn.manifest.json").read_text())
    assert knn["params"]["k"] == 9
