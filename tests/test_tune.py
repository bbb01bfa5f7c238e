"""The tune stage on the small real-data run folder (smoke grid)."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from mlsel.data.outcomes import load_prepared
from mlsel.params import ROUTER_NAMES, for_stage, load_params, stage_params
from mlsel.paths import ConfigError, read_manifest, run_paths
from mlsel.selection.registry import make_selector
from mlsel.tuning import GRIDS, combo_params, selector_grid, tune_selectors


@pytest.fixture(scope="module")
def tuned(smoke_run):
    p = stage_params(smoke_run, "tune")
    p = for_stage("tune", {**p.model_dump(), "tune_grid": "small", "tune_n_folds": 2, "tune_n_seeds": 1, "tune_n_jobs": 1,
                           "tune_n_bootstrap": 100})
    result = tune_selectors(p)
    return p, result


def test_files_exist(tuned):
    p, _ = tuned
    paths = run_paths(p.run_dir)
    for path in (paths["tune"] / "cv_results.csv", paths["tune"] / "cv_folds.csv", paths["tune"] / "cv_frontier.csv",
                 paths["tune"] / "tuned_params.yaml", paths["tables"] / "tuned_results.csv", paths["tables"] / "frontier.csv",
                 paths["tables"] / "aiq.csv", paths["tables"] / "tune_heatmap.csv"):
        assert path.is_file(), path


def test_cv_used_only_training_queries(tuned):
    p, _ = tuned
    queries, _ = load_prepared(p.run_dir)
    split = queries.set_index("query_id")["split"]
    folds = pd.read_csv(run_paths(p.run_dir)["tune"] / "cv_folds.csv", dtype={"query_id": str})
    assert set(folds["query_id"]) <= set(split[split == "train"].index)
    # Every training query is validated exactly once per pool and CV seed.
    n_train = int((split == "train").sum())
    for (_, _), g in folds.groupby(["pool", "cv_seed"]):
        assert len(g) == n_train and g["query_id"].is_unique
        assert g["fold"].nunique() == p.tune_n_folds


def test_cv_results_and_heatmap(tuned):
    p, _ = tuned
    paths = run_paths(p.run_dir)
    cv = pd.read_csv(paths["tune"] / "cv_results.csv")
    assert list(p.tune_router_names) == list(ROUTER_NAMES)  # the default: every router is tuned
    names = set(p.selector_names) | set(p.tune_router_names)
    assert set(cv["selector"]) == names
    assert set(cv["pool"]) == set(p.pools)
    # Exactly one chosen combination per pool and selector, the best by CV utility.
    chosen = cv[cv["chosen"]]
    assert len(chosen) == len(names) * len(p.pools)
    best = cv.groupby(["pool", "selector"])["cv_utility_mean"].max()
    for _, r in chosen.iterrows():
        assert r["cv_utility_mean"] == pytest.approx(best[(r["pool"], r["selector"])])
    assert (cv["n_fits"] == p.tune_n_folds * p.tune_n_seeds).all()
    assert cv["cv_avg_response_chars"].notna().all() and cv["cv_avg_latency_s"].isna().all()
    heat = pd.read_csv(paths["tables"] / "tune_heatmap.csv")
    knn = heat[(heat["selector"] == "knn") & (heat["pool"] == "small4")]
    assert set(knn["param"]) == {"knn_k"} and len(knn) == len(GRIDS["small"]["selectors"]["knn"]["knn_k"]) * len(GRIDS["small"]["onehot_weight"])


def test_tuned_params_yaml(tuned):
    p, _ = tuned
    doc = yaml.safe_load((run_paths(p.run_dir)["tune"] / "tuned_params.yaml").read_text())
    train_keys = set(load_params().section_values("train"))
    assert set(doc["train"]) <= train_keys and {"onehot_weight", "knn_k"} <= set(doc["train"])
    assert set(doc["pools"]) == set(p.pools)
    for pool in p.pools:
        assert "knn_reg" in doc["pools"][pool]["selectors"]
    tune_keys = set(load_params().section_values("tune"))
    assert set(doc["tune"]) <= tune_keys


def test_tuned_results_have_baselines(tuned):
    p, result = tuned
    table = pd.read_csv(run_paths(p.run_dir)["tables"] / "tuned_results.csv")
    selection = pd.read_csv(run_paths(p.run_dir)["tables"] / "selection_results.csv")
    assert list(table.columns) == list(selection.columns)
    assert len(table) == len(result)
    for pool, models in p.pools.items():
        t = table[table["pool"] == pool]
        kinds = set(t["kind"])
        assert {"oracle", "best_single", "random", "always", "selector", "category_lookup", "peer"} <= kinds
        assert (t["kind"] == "always").sum() == len(models)
        assert (t["kind"] == "peer").sum() == len(p.tune_peer_names) and "GUARDED (tuned)" in set(t["strategy"])
        assert "KNN_REG (tuned)" in set(t["strategy"]) and "KNN (tuned)" in set(t["strategy"])
        oracle = t[t["kind"] == "oracle"]["avg_quality"].iloc[0]
        assert (t["avg_quality"] <= oracle + 1e-9).all()
        assert t["n_queries"].iloc[0] == int((pd.read_csv(run_paths(p.run_dir)["data"] / "queries.csv")["split"] == "test").sum())


def test_frontier_and_aiq(tuned):
    p, _ = tuned
    tables = run_paths(p.run_dir)["tables"]
    front = pd.read_csv(tables / "frontier.csv")
    aiq = pd.read_csv(tables / "aiq.csv")
    assert set(front["kind"]) == {"router", "selector", "single", "zero_router"}
    r = front[(front["kind"] == "router") & (front["router"] == "knn_reg") & (front["pool"] == "small4")].sort_values("cost_lambda")
    assert len(r) == len(p.tune_cost_lambdas) > 0
    # The largest cost weight routes to the cheapest answers: no more expensive than lambda = 0.
    assert r["avg_response_chars"].iloc[-1] <= r["avg_response_chars"].iloc[0] + 1e-9
    for pool in p.pools:
        a = aiq[aiq["pool"] == pool]
        assert "Zero router" in set(a["router"]) and "knn_reg" in set(a["router"])
        assert (a["cost_unit"] == "response_chars").all()
        assert ((a["ci_low"] <= a["aiq"] + 1e-9) & (a["aiq"] <= a["ci_high"] + 1e-9)).all()
        assert ((a["aiq"] >= 0) & (a["aiq"] <= 1)).all()
    manifest = read_manifest(p.run_dir)
    assert manifest["stages"]["tune"]["grid"] == "small"
    assert manifest["stages"]["tune"]["params"] == p.model_dump()
    assert "final evaluation only" in manifest["stages"]["tune"]["test_split_used_by"]


def test_unknown_grid_is_an_error(smoke_run):
    p = stage_params(smoke_run, "tune")
    with pytest.raises(ConfigError, match="tune_grid"):
        for_stage("tune", {**p.model_dump(), "tune_grid": "huge"})
    # An object that bypassed validation is still refused by the stage itself.
    with pytest.raises(ConfigError, match="tune_grid"):
        tune_selectors(p.model_copy(update={"tune_grid": "huge"}))


def test_combo_params_builds_the_grid_values():
    """Each grid combination reaches the selector with its values; a scalar grid value of a list key is wrapped."""
    values = for_stage("tune", {}).model_dump()
    for grid in GRIDS:
        for name in GRIDS[grid]["selectors"]:
            for combo in selector_grid(grid, name, ["e"], True, 0.9):
                q = combo_params(values, combo)
                assert q.quality_weight == combo["quality_weight"] and q.embedder == "e"
                assert make_selector(name, q).quality_weight == combo["quality_weight"]
    q = combo_params(values, {"mlp_hidden": 32, "mlp_alpha": 0.01})
    assert q.mlp_hidden == [32] and make_selector("mlp", q).get_params()["hidden"] == (32,)
    with pytest.raises(ConfigError, match="no_such_key"):
        combo_params(values, {"no_such_key": 1})


def test_summary_has_the_static_and_peer_columns(tuned):
    p, _ = tuned
    summary = pd.read_csv(run_paths(p.run_dir)["tables"] / "summary.csv")
    table = pd.read_csv(run_paths(p.run_dir)["tables"] / "tuned_results.csv")
    for r in summary.itertuples(index=False):
        t = table[table["pool"] == r.pool].set_index("strategy")
        assert r.category_lookup_quality == t.loc["Per-category lookup on train", "avg_quality"]
        assert r.gain_vs_lookup == pytest.approx(t.loc[r.router, "uplift_vs_category_lookup"], abs=2e-6)
        peers = t[t["kind"] == "peer"]
        assert r.best_peer == peers["avg_quality"].idxmax() and r.best_peer_quality == pytest.approx(peers["avg_quality"].max(), abs=2e-6)
        assert r.gain_vs_peer == pytest.approx(t.loc[r.router, "avg_quality"] - r.best_peer_quality, abs=2e-6)
        assert r.verdict in ("ML routing beats static routing", "static routing is enough", "neither beats the best single model")
