"""The ship stage: the one-standard-error choice among what the router runtime can run, exported with its tuned files."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from mlsel import CATEGORIES, stages
from mlsel.data.outcomes import load_prepared, pool_matrix, split_masks
from mlsel.deploy.routing_config import load_router_config
from mlsel.deploy.ship import ship_run
from mlsel.features import EmbedSettings, features_for
from mlsel.params import apply_overrides, for_stage, stage_params
from mlsel.paths import run_paths
from mlsel.selection.registry import load_selector
from mlsel.tuning import GRIDS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def shipped(smoke_run, tmp_path_factory):
    """A copy of the smoke run, tuned (small grid) and shipped."""
    run_dir = tmp_path_factory.mktemp("ship") / "run"
    shutil.copytree(smoke_run.base.run_dir, run_dir)
    params = apply_overrides(smoke_run, {"run_dir": str(run_dir)})
    p = stage_params(params, "tune")
    p = for_stage("tune", {**p.model_dump(), "tune_grid": "small", "tune_n_folds": 3, "tune_n_jobs": 1, "tune_n_bootstrap": 100,
                           "tune_peer_names": []})
    with pytest.MonkeyPatch.context() as mp:  # KMeans on the runtime's one-hot weight, so that it is a ship candidate
        mp.setitem(GRIDS["small"]["selectors"], "kmeans", {**GRIDS["small"]["selectors"]["kmeans"], "onehot_weight": [1.0]})
        stages.tune_selectors(p)
    ship = stage_params(params, "ship")
    return ship, stages.ship_selector(ship)


def _held_out(p, pool):
    queries, outcomes = load_prepared(p.run_dir)
    matrix = pool_matrix(queries, outcomes, list(p.pools[pool]))
    train, test = split_masks(queries, matrix)
    return matrix.subset(train), matrix.subset(test)


def test_the_shipped_config_is_the_rule_choice_and_routes_every_held_out_query_as_evaluated(shipped):
    p, table = shipped
    choice = pd.read_csv(run_paths(p.run_dir)["tables"] / "ship_choice.csv")
    assert list(table["pool"]) == list(p.pools)
    for row in table.itertuples():
        rule = choice[choice["pool"] == row.pool]
        assert rule.loc[rule["chosen"], "candidate"].tolist() == [row.shipped]
        assert rule["candidate"].tolist()[:2] == ["best_single", "category_lookup"]  # simplest first
        assert row.runtime_agreement == 1.0
        cfg = load_router_config(run_paths(p.run_dir)["ship"] / row.pool / "router_config.yaml", list(p.pools[row.pool]))
        assert all(cfg.route(c) is not None for c in CATEGORIES)
        # The held-out quality and the gain over the best single model, recomputed from the data.
        tr, te = _held_out(p, row.pool)
        best = list(p.pools[row.pool]).index(row.best_single)
        assert row.best_single_quality == pytest.approx(te.quality[:, best].mean())
        assert row.gain_vs_best_single == pytest.approx(row.quality - te.quality[:, best].mean())


def test_a_router_that_wins_every_fold_is_shipped_with_its_tuned_model_file(shipped):
    """Scores rewritten so the tuned KMeans beats every other candidate by 0.1 on every fold: it is shipped, its file
    holds the tuned clusters (not the reference's 8), and the runtime's rule on the written file picks what it picks."""
    p, _ = shipped
    tune = run_paths(p.run_dir)["tune"]
    scores = pd.read_csv(tune / "cv_fold_scores.csv")
    cv = pd.read_csv(tune / "cv_results.csv")
    pool = "small4"
    combo = int(cv[(cv["pool"] == pool) & (cv["selector"] == "kmeans") & cv["chosen"]]["combo"].iloc[0])
    rows = (scores["pool"] == pool) & (scores["selector"] == "kmeans") & (scores["combo"] == combo)
    scores.loc[rows, "utility"] = scores["utility"].max() + 0.1
    forced = tune / "forced"
    shutil.copytree(run_paths(p.run_dir)["root"], forced / "run", ignore=shutil.ignore_patterns("forced"))
    run = str(forced / "run")
    scores.to_csv(run_paths(run)["tune"] / "cv_fold_scores.csv", index=False)
    sel, manifest = load_selector(run_paths(run)["tuned_models"] / pool, "kmeans")
    assert sel.num_clusters == int(cv[(cv["pool"] == pool) & (cv["selector"] == "kmeans") & cv["chosen"]]["kmeans_num_clusters"].iloc[0])
    table, _ = ship_run(run, {pool: list(p.pools[pool])}, p.quality_weight, p.lookup_min_queries, 100, p.seed,
                        EmbedSettings.from_params(p))
    row = table.iloc[0]
    assert row["shipped"] == "kmeans" and row["runtime_agreement"] == 1.0
    out = run_paths(run)["ship"] / pool
    artifact = json.loads((out / "kmeans_model.json").read_text())
    assert len(artifact["centroids"]) == sel.num_clusters
    runtime = yaml.safe_load((out / "runtime_config.yaml").read_text())
    assert runtime["global"]["router"]["model_selection"]["ml"]["kmeans"]["num_clusters"] == sel.num_clusters
    config = yaml.safe_load((out / "router_config.yaml").read_text())
    assert [d["algorithm"]["type"] for d in config["routing"]["decisions"]] == ["kmeans"]
    # Its held-out quality is the tuned selector's, recomputed here.
    _, te = _held_out(p, pool)
    pick = sel.predict_index(features_for(te, manifest["embedder"], float(manifest["onehot_weight"]), EmbedSettings.from_params(p)))
    assert row["quality"] == pytest.approx(te.quality[np.arange(len(te)), pick].mean())
