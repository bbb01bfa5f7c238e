"""No leakage from the held-out split: perturbing the test queries' outcomes changes nothing chosen on the training split.

Two copies of the small real-data run folder (``smoke_run``): in one, every held-out (``split == "test"``) quality is
flipped (0 <-> 1, ``1 - q``); the tune stage runs in both. Everything the cross-validation decides (its scores per
combination and per fold, the chosen combinations and tuned parameters, the one-standard-error rule's tables) must be
identical; the held-out table must differ, so the perturbation did reach the test split.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mlsel import stages
from mlsel.params import apply_overrides, for_stage, stage_params
from mlsel.paths import run_paths

CHOSEN_ON_TRAINING = ["tune/cv_results.csv", "tune/cv_fold_scores.csv", "tune/cv_folds.csv", "tune/cv_frontier.csv",
                      "tables/choice.csv", "tables/choice_cost.csv", "tables/tune_heatmap.csv"]
"""The tune stage's outputs decided by the CV inside the training split alone (``tune/tuned_params.yaml`` is compared
apart: its comment header names the run folder)."""
TIMINGS = ["cpu_seconds"]
"""Columns that measure time, not what was chosen."""


def _flip_test_quality(run_dir: Path) -> int:
    """Replace every held-out quality q by 1 - q in ``data/outcomes.csv`` (written back as read); the rows changed."""
    data = run_paths(str(run_dir))["data"]
    split = pd.read_csv(data / "queries.csv", dtype={"query_id": str}).set_index("query_id")["split"]
    outcomes = pd.read_csv(data / "outcomes.csv", dtype={"query_id": str})
    test = outcomes["query_id"].map(split).eq("test") & outcomes["quality"].notna()
    outcomes.loc[test, "quality"] = 1.0 - outcomes.loc[test, "quality"]
    outcomes.to_csv(data / "outcomes.csv", index=False)
    return int(test.sum())


def _tune_params(smoke_run, run_dir: Path):
    """The tune stage's params (small grid, no peers) on a copy of the smoke run at ``run_dir``, with no tune outputs
    (another test may have tuned the smoke run in place): every file compared below is written by this run."""
    shutil.copytree(smoke_run.base.run_dir, run_dir)
    shutil.rmtree(run_dir / "tune", ignore_errors=True)
    for name in [*CHOSEN_ON_TRAINING, "tables/tuned_results.csv"]:
        (run_dir / name).unlink(missing_ok=True)
    p = stage_params(apply_overrides(smoke_run, {"run_dir": str(run_dir)}), "tune")
    return for_stage("tune", {**p.model_dump(), "tune_grid": "small", "tune_n_folds": 2, "tune_n_jobs": 1, "tune_n_bootstrap": 100,
                              "tune_peer_names": []})


def _csv(run_dir: Path, name: str) -> pd.DataFrame:
    return pd.read_csv(run_dir / name).drop(columns=TIMINGS, errors="ignore")


@pytest.mark.slow
def test_perturbed_held_out_outcomes_change_nothing_chosen_on_training(smoke_run, tmp_path):
    same, flipped = tmp_path / "same" / "run", tmp_path / "flipped" / "run"
    p_same, p_flipped = _tune_params(smoke_run, same), _tune_params(smoke_run, flipped)
    n_test = pd.read_csv(run_paths(str(same))["data"] / "queries.csv")["split"].eq("test").sum()
    assert n_test > 0 and _flip_test_quality(flipped) >= n_test  # every held-out query, each of its models' cells
    stages.tune_selectors(p_same)
    stages.tune_selectors(p_flipped)

    for name in CHOSEN_ON_TRAINING:
        a, b = _csv(same, name), _csv(flipped, name)
        assert len(a) > 0, name
        pd.testing.assert_frame_equal(a, b, obj=name)
    tuned_same, tuned_flipped = (yaml.safe_load((d / "tune" / "tuned_params.yaml").read_text()) for d in (same, flipped))
    assert tuned_same == tuned_flipped

    # The perturbation reached the held-out evaluation: every strategy's quality there is another.
    held_same, held_flipped = _csv(same, "tables/tuned_results.csv"), _csv(flipped, "tables/tuned_results.csv")
    assert held_same["strategy"].tolist() == held_flipped["strategy"].tolist()
    assert (held_same["avg_quality"] - held_flipped["avg_quality"]).abs().min() > 0.01
