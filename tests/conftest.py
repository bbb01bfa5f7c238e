"""Shared fixtures: the real-data mirror and a small real-data run folder.

The data mirror is found through MLSEL_DATA_DIR (CI sets it to ../shared/data)
or at ../shared/data beside the project. It is read in place, never copied.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from mlsel import runner, stages
from mlsel.params import apply_overrides, apply_smoke, load_params, stage_params

ROOT = Path(__file__).resolve().parent.parent


def _mirror() -> Path:
    env = os.environ.get("MLSEL_DATA_DIR")
    return Path(env).resolve() if env else (ROOT.parent / "shared" / "data").resolve()


RUN_TIMEOUTS_S = {"default_run": 3600, "smoke_runner_run": 1200}
"""Time limits (pytest-timeout) for a test that requests one of these shared runs: the limit covers fixture setup, and the
first test to request a run pays for it. Generous (a cold default run took 1755 s on an idle 2-core machine, twice that on
a busy one), so that a hang fails with the test's name long before CI's own limit, never a slow but healthy run."""


def pytest_collection_modifyitems(session, config, items):
    """Run the full-data test first. It embeds every default dataset's texts into the session's embedding cache, so
    the later real-data runs (600-query samples of the same texts, and nbval's) find their embeddings there.

    A test that requests a shared run (:data:`RUN_TIMEOUTS_S`) gets that run's time limit unless its own is longer."""
    items.sort(key=lambda item: item.path.name != "test_full_pipeline.py" or item.get_closest_marker("slow") is None)
    for item in items:
        limits = [s for name, s in RUN_TIMEOUTS_S.items() if name in getattr(item, "fixturenames", ())]
        own = item.get_closest_marker("timeout")
        own_s = (own.args[0] if own.args else own.kwargs.get("timeout")) if own else None
        if limits and (own_s is None or own_s < max(limits)):
            item.add_marker(pytest.mark.timeout(max(limits)), append=False)


@pytest.fixture(scope="session", autouse=True)
def _environment(tmp_path_factory):
    """Offline, isolated caches shared by the session; the project root is fixed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MLSEL_DATA_DIR", str(_mirror()))
    os.environ["MLSEL_ROOT"] = str(ROOT)
    if "MLSEL_CACHE_DIR" not in os.environ:
        os.environ["MLSEL_CACHE_DIR"] = str(tmp_path_factory.mktemp("mlsel-cache"))
    yield


@pytest.fixture
def embed_cache(tmp_path):
    """A factory of fresh cache folders (no embedding cached) whose exported ONNX graphs are the session cache's, so a
    test that needs a cold embedding cache does not export the embedder again (``onnx/`` is a link)."""

    def make(name: str = "cache") -> Path:
        shared = Path(os.environ["MLSEL_CACHE_DIR"]) / "onnx"
        shared.mkdir(parents=True, exist_ok=True)
        root = tmp_path / name
        root.mkdir(parents=True)
        (root / "onnx").symlink_to(shared, target_is_directory=True)
        return root

    return make


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = _mirror()
    if not (d / "mmlu-pro-model-outputs").is_dir():
        pytest.fail(f"real-data mirror not found at {d}; set MLSEL_DATA_DIR")
    return d


@pytest.fixture(scope="session")
def smoke_params(tmp_path_factory, data_dir):
    """params.yaml with the smoke profile, pointed at a temporary run folder (a validated ``Params``)."""
    run_dir = tmp_path_factory.mktemp("run-smoke")
    params = apply_smoke(load_params(ROOT / "params.yaml"))
    params = apply_overrides(params, {"run_dir": str(run_dir), "report_dir": str(run_dir / "report")})
    return params


@pytest.fixture(scope="session")
def smoke_run(smoke_params):
    """A run folder after prepare -> train -> evaluate on 600 real MMLU-Pro queries."""
    stages.prepare_data(stage_params(smoke_params, "prepare"))
    stages.train_selectors(stage_params(smoke_params, "train"))
    stages.evaluate_selectors(stage_params(smoke_params, "evaluate"))
    return smoke_params


class DefaultRun(NamedTuple):
    """The default pipeline's run: every default dataset, all queries, every stage through papermill (``runner.run``)."""

    run_dir: Path  # <run_dir>/<dataset>/ per dataset
    report_dir: Path  # the cross-dataset page, its tables and the notebook pages
    overrides: dict[str, str]  # what points the run at these folders
    done: dict[str, Any]  # runner.run's return value: {"<dataset>/<stage>" or "report": {"notebook", "seconds", "skipped"}}


@pytest.fixture(scope="session")
def default_run(tmp_path_factory) -> DefaultRun:
    """The one full cold run of the default pipeline in the session (tests/test_full_pipeline.py checks it against the
    published tables). Every slow test that only reads a full run's outputs reads this one; none may change it (the
    one that runs it again, tests/test_runner.py's up-to-date check, expects every stage skipped and no table rewritten)."""
    root = tmp_path_factory.mktemp("run-default")
    overrides = {"run_dir": str(root / "run"), "report_dir": str(root / "report")}
    done = runner.run(overrides=overrides)
    return DefaultRun(root / "run", root / "report", overrides, done)


SUMMARY_ROWS = {
    # Hand-written summary rows (the tune stage writes these; the report only reads them).
    "a": {"pool": "small4", "split": "seeded", "n_train": 480, "n_test": 120, "best_single": "Meta-Llama-3.1-8B-Instruct",
          "best_single_quality": 0.45, "oracle_quality": 0.62, "random_quality": 0.35, "router": "KNN_REG (tuned)", "router_quality": 0.50,
          "gain_at_b": 0.05, "gain_at_b_ci_low": 0.01, "gain_at_b_ci_high": 0.09, "gap_closed_pct": 29.4, "gap_closed_random_pct": 55.6,
          "cost_unit": "cost_usd", "best_single_cost": 0.002, "cost_router": "knn_reg", "cost_lambda": 0.5, "op_quality": 0.46,
          "op_cost": 0.001, "cost_save_at_b_pct": 50.0, "cost_save_at_b_ci_low": 40.0, "cost_save_at_b_ci_high": 60.0,
          "aiq_minus_zero": 0.02, "aiq_minus_zero_ci_low": 0.01, "aiq_minus_zero_ci_high": 0.03, "matched_target_pct": 97.0,
          "matched_router": "logreg", "matched_cost_lambda": 0.1, "matched_quality_pct": 98.9, "matched_quality_pct_ci_low": 97.3,
          "matched_quality_pct_ci_high": 100.4, "matched_cost_pct": 42.3, "matched_cost_pct_ci_low": 39.0, "matched_cost_pct_ci_high": 45.3},
    "b": {"pool": "all5", "split": "by_task", "n_train": 480, "n_test": 120, "best_single": "Meta-Llama-3.1-70B-Instruct",
          "best_single_quality": 0.62, "oracle_quality": 0.75, "random_quality": 0.40, "router": "KMEANS (tuned)", "router_quality": 0.62,
          "gain_at_b": 0.0, "gain_at_b_ci_low": -0.01, "gain_at_b_ci_high": 0.01, "gap_closed_pct": 0.0, "gap_closed_random_pct": 62.9,
          "cost_unit": "response_chars"},
}


@pytest.fixture(scope="session")
def cross_dataset_run(smoke_run, tmp_path_factory):
    """A run folder of two datasets ``a`` and ``b``: copies of the smoke run's tables and manifest plus a hand-written summary."""
    import shutil

    import pandas as pd

    from mlsel.tuning.summary import SUMMARY_COLUMNS

    root = tmp_path_factory.mktemp("run-cross")
    for ds, row in SUMMARY_ROWS.items():
        shutil.copytree(Path(smoke_run.base.run_dir) / "tables", root / ds / "tables")
        shutil.copy(Path(smoke_run.base.run_dir) / "manifest.json", root / ds / "manifest.json")
        pd.DataFrame([row]).reindex(columns=SUMMARY_COLUMNS).to_csv(root / ds / "tables" / "summary.csv", index=False)
    return root
