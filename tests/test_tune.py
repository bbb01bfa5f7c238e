"""The tune stage on the small real-data run folder (smoke grid)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from mlsel.data.outcomes import OutcomeMatrix, load_prepared
from mlsel.manifest import read_manifest
from mlsel.params import ROUTER_NAMES, ConfigError, for_stage, load_params, stage_params
from mlsel.paths import run_paths
from mlsel.selection.registry import make_selector
from mlsel.tuning import GRIDS, combo_params, selector_grid, tune_selectors
from mlsel.tuning.choice import operating_points
from mlsel.tuning.cv import PoolData


@pytest.fixture(scope="module")
def tuned(smoke_run):
    p = stage_params(smoke_run, "tune")
    p = for_stage("tune", {**p.model_dump(), "tune_grid": "small", "tune_n_folds": 2, "tune_n_seeds": 1, "tune_n_jobs": 1,
                           "tune_n_bootstrap": 100})
    result = tune_selectors(p)
    return p, result


def _pool_frames(p, pool: str) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(training quality, test quality, test response length) of a pool, query x model, read straight from the prepared
    CSVs with pandas (not through mlsel's matrices): the independent side of the checks below."""
    paths = run_paths(p.run_dir)
    split = pd.read_csv(paths["data"] / "queries.csv", dtype={"query_id": str}).set_index("query_id")["split"]
    long = pd.read_csv(paths["data"] / "outcomes.csv", dtype={"query_id": str})
    models = list(p.pools[pool])
    quality = long.pivot(index="query_id", columns="model", values="quality")[models].dropna()
    chars = long.pivot(index="query_id", columns="model", values="response_chars").loc[quality.index, models]
    test = split.reindex(quality.index).eq("test").to_numpy()
    return quality[~test], quality[test], chars[test]


def test_baselines_and_single_models_match_the_prepared_data(tuned):
    """The rows of tuned_results.csv, frontier.csv and aiq.csv that need no fitted model, recomputed from data/*.csv."""
    p, _ = tuned
    tables = run_paths(p.run_dir)["tables"]
    results, front, aiq = (pd.read_csv(tables / name) for name in ("tuned_results.csv", "frontier.csv", "aiq.csv"))
    for pool, models in p.pools.items():
        tr, te, chars = _pool_frames(p, pool)
        t = results[results["pool"] == pool].set_index("strategy")
        assert (t["n_queries"] == len(te)).all()
        # Oracle: each query's best quality; its answer length is the shortest among the tied best models.
        tied = te.to_numpy() >= te.to_numpy().max(axis=1, keepdims=True)
        oracle_chars = np.where(tied, chars.to_numpy(), np.inf).min(axis=1).mean()
        assert t.loc["Oracle (best possible)", ["avg_quality", "avg_response_chars"]].tolist() == pytest.approx(
            [te.max(axis=1).mean(), oracle_chars], abs=1e-6)
        assert t.loc["Random Selection (expected)", "avg_quality"] == pytest.approx(te.to_numpy().mean(), abs=1e-6)
        single = front[(front["pool"] == pool) & (front["kind"] == "single")].set_index("router")
        assert list(single.index) == [f"Always {m}" for m in models]
        for m in models:
            want = [te[m].mean(), chars[m].mean()]
            assert t.loc[f"Always {m}", ["avg_quality", "avg_response_chars"]].tolist() == pytest.approx(want, abs=1e-6)
            assert single.loc[f"Always {m}", ["avg_quality", "avg_response_chars"]].tolist() == pytest.approx(want, abs=1e-6)
        # Best single: the highest training mean (no latency measured, so utility is quality); every uplift is against it.
        best = tr.mean().idxmax()
        assert t[t["kind"] == "best_single"].index.tolist() == [f"Best single on train ({best})"]
        assert t.loc[f"Best single on train ({best})", "avg_quality"] == pytest.approx(te[best].mean(), abs=1e-6)
        np.testing.assert_allclose(t["uplift_vs_best_single"], t["avg_quality"] - te[best].mean(), atol=2e-6)
        # AIQ's budget range is the single models' test cost range; the zero router's best point is the best single's.
        a = aiq[aiq["pool"] == pool]
        assert a["cost_min"].tolist() == pytest.approx([chars.mean().min()] * len(a), abs=1e-6)
        assert a["cost_max"].tolist() == pytest.approx([chars.mean().max()] * len(a), abs=1e-6)
        assert a["best_single_quality"].tolist() == pytest.approx([te[best].mean()] * len(a), abs=1e-6)


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
    # Each heatmap cell is the best CV utility over the other keys at that parameter value and one-hot weight.
    for r in heat.itertuples():
        s = cv[(cv["pool"] == r.pool) & (cv["selector"] == r.selector) & (cv[r.param] == r.param_value)
               & (cv["onehot_weight"] == r.onehot_weight)]
        assert r.cv_utility_mean == s["cv_utility_mean"].max()


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
    # Each pool's entry per selector is its chosen cv_results.csv row: the same values and CV quality.
    cv = pd.read_csv(run_paths(p.run_dir)["tune"] / "cv_results.csv")
    for r in cv[cv["chosen"]].itertuples():
        entry = doc["pools"][r.pool]["selectors"][r.selector]
        assert entry["embedder"] == r.embedder
        assert entry["cv_quality_mean"] == pytest.approx(r.cv_quality_mean, abs=1e-6)
        assert entry["cv_quality_std"] == pytest.approx(r.cv_quality_std, abs=1e-6)
        for key in set(entry) - {"cv_quality_mean", "cv_quality_std", "embedder"}:
            assert entry[key] == pytest.approx(getattr(r, key)), (r.pool, r.selector, key)


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


def test_operating_points_are_the_cheapest_cv_points_at_the_target(tuned):
    """Each router's operating point, recomputed from the CV files: the target is tune_match_quality_ratio x the best
    single model's CV quality (the mean over the CV folds of its mean on each validation fold, from cv_folds.csv and
    data/*.csv); the point is the cheapest of cv_frontier.csv at or above it (cost ties: the larger weight). The yaml,
    the manifest and the matched rows of tuned_results.csv all name that point."""
    p, _ = tuned
    paths = run_paths(p.run_dir)
    doc = yaml.safe_load((paths["tune"] / "tuned_params.yaml").read_text())
    sweep = pd.read_csv(paths["tune"] / "cv_frontier.csv")
    folds = pd.read_csv(paths["tune"] / "cv_folds.csv", dtype={"query_id": str})
    results = pd.read_csv(paths["tables"] / "tuned_results.csv")
    cv = pd.read_csv(paths["tune"] / "cv_results.csv")
    manifest = read_manifest(p.run_dir)["stages"]["tune"]
    n_points = 0
    for pool in p.pools:
        tr, _, _ = _pool_frames(p, pool)
        best = tr.mean().idxmax()
        f = folds[folds["pool"] == pool]
        cv_best = f.assign(q=tr[best].reindex(f["query_id"]).to_numpy()).groupby(["cv_seed", "fold"])["q"].mean().mean()
        target = p.tune_match_quality_ratio * cv_best
        ops = doc["pools"][pool]["operating_points"]
        for router in p.tune_router_names:
            s = sweep[(sweep["pool"] == pool) & (sweep["router"] == router)]
            assert s["cost_lambda"].tolist() == pytest.approx(list(p.tune_cost_lambdas))
            assert not ((s["cv_quality_mean"] - target).abs() < 1e-6).any()  # no point is on the target within CSV rounding
            ok = s[s["cv_quality_mean"] >= target]
            if ok.empty:
                assert router not in ops, (pool, router)
                continue
            pick = ok[ok["cv_avg_response_chars"] == ok["cv_avg_response_chars"].min()].sort_values("cost_lambda").iloc[-1]
            assert ops[router] == {"cost_lambda": pytest.approx(pick["cost_lambda"]),
                                   "cv_quality_mean": pytest.approx(pick["cv_quality_mean"], abs=1e-6),
                                   "cv_avg_response_chars": pytest.approx(pick["cv_avg_response_chars"], abs=1e-6),
                                   "target_cv_quality": pytest.approx(target, abs=1e-6), "best_single_on_train": best}
            assert manifest["operating_points"][f"{pool}/{router}"] == {k: pytest.approx(v, abs=1e-6) if isinstance(v, float) else v
                                                                        for k, v in ops[router].items()}
            n_points += 1
        matched = results[(results["pool"] == pool) & results["strategy"].str.contains("matched")]["strategy"]
        assert sorted(matched) == sorted(f"{r.upper()} (tuned, matched lambda={op['cost_lambda']:g})" for r, op in ops.items())
    assert n_points > 0 and len(manifest["operating_points"]) == n_points
    # The manifest's other counts and choices, from cv_results.csv.
    assert manifest["n_cv_fits"] == cv["n_fits"].sum()
    assert manifest["chosen"] == {f"{r.pool}/{r.selector}": r.params for r in cv[cv["chosen"]].itertuples()}
    assert manifest["cost_unit"] == {pool: "response_chars" for pool in p.pools}


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
    """The static and peer columns of every summary row agree with tuned_results.csv, and the verdict is the one the rule
    (:func:`mlsel.tuning.summary.static_columns`) gives: on the run's rows, and in each branch on hand-made tables."""
    from mlsel.tuning.summary import static_columns

    def rule(gain_low: float, vs_lookup_low: float, lookup_low: float) -> str:
        """The rule, written out: ML routing wins where the router beats both the best single model and the lookup; static
        routing is enough where the router or the lookup beats the best single model; else neither does."""
        if gain_low > 0 and vs_lookup_low > 0:
            return "ML routing beats static routing"
        if gain_low > 0 or lookup_low > 0:
            return "static routing is enough"
        return "neither beats the best single model"

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
        # The verdict is the rule's on the row's own interval bounds; a bound within the table's 6 decimals of 0 may have been
        # either side of it when the verdict was given.
        near = [(g + dg, v + dv, lk + dl) for g, v, lk in [(r.gain_at_b_ci_low, r.gain_vs_lookup_ci_low, r.lookup_gain_at_b_ci_low)]
                for dg in (-1e-6, 0.0, 1e-6) for dv in (-1e-6, 0.0, 1e-6) for dl in (-1e-6, 0.0, 1e-6)]
        assert r.verdict in {rule(*lows) for lows in near}, r
    # Each branch of the rule, on hand-made tuned tables: (router's gain over the best single, over the lookup, the
    # lookup's gain over the best single), lower bounds of their 95% intervals, and the verdict.
    cases = [(0.01, 0.005, -0.01, "ML routing beats static routing"),
             (0.01, 0.005, 0.02, "ML routing beats static routing"),  # the lookup beating the best single too changes nothing
             (0.01, -0.01, 0.02, "static routing is enough"),         # the router beats the best single, not the lookup
             (-0.01, 0.01, 0.02, "static routing is enough"),         # only the lookup beats the best single
             (-0.01, 0.01, -0.01, "neither beats the best single model"),  # the router beats the lookup only
             (0.0, 0.01, 0.0, "neither beats the best single model")]     # a bound at 0 is not above it
    for gain_low, vs_lookup_low, lookup_low, verdict in cases:
        hand = pd.DataFrame([
            {"strategy": "R (tuned)", "kind": "selector", "avg_quality": 0.6, "uplift_vs_best_single": 0.05,
             "uplift_vs_best_single_ci_low": gain_low, "uplift_vs_best_single_ci_high": 0.09, "uplift_vs_category_lookup": 0.02,
             "uplift_vs_category_lookup_ci_low": vs_lookup_low, "uplift_vs_category_lookup_ci_high": 0.04},
            {"strategy": "Per-category lookup on train", "kind": "category_lookup", "avg_quality": 0.58, "uplift_vs_best_single": 0.03,
             "uplift_vs_best_single_ci_low": lookup_low, "uplift_vs_best_single_ci_high": 0.05, "uplift_vs_category_lookup": 0.0,
             "uplift_vs_category_lookup_ci_low": 0.0, "uplift_vs_category_lookup_ci_high": 0.0}])
        cols = static_columns(hand, "R (tuned)", gain_low)
        assert cols["verdict"] == verdict == rule(gain_low, vs_lookup_low, lookup_low), (gain_low, vs_lookup_low, lookup_low)
        assert (cols["gain_vs_lookup_ci_low"], cols["lookup_gain_at_b_ci_low"]) == (vs_lookup_low, lookup_low)


def _hand_pool(unit: str | None = "cost_usd") -> PoolData:
    """Training split of 4 queries: m0 right on q1, q3 (mean 1/2), m1 right on q0, q1, q2 (mean 3/4, the best single)."""
    quality = np.array([[0, 1], [1, 1], [0, 1], [1, 0]], dtype=float)
    ids = np.array(["q0", "q1", "q2", "q3"])
    tr = OutcomeMatrix(ids, ids, np.array(["math"] * 4), ["m0", "m1"], quality, None, None, np.tile([1.0, 3.0], (4, 1)))
    return PoolData("p", ["m0", "m1"], tr, tr, tr, unit)


def test_operating_points_known_answer():
    """The cheapest CV sweep point at >= match_ratio x the best single model's CV quality; ties in cost to the larger weight.

    Best single by training mean: m1 (3/4). Without folds its CV quality is its training mean, so the target is
    0.96 x 3/4 = 0.72. Router r's sweep (lambda: quality, cost): 0: .80, 4 | 0.5: .74, 3 | 1: .74, 2 | 2: .72, 2 |
    4: .60, 1. At or above .72: lambdas 0, 0.5, 1, 2; cheapest cost 2 at lambdas 1 and 2, the tie goes to the larger
    weight: lambda 2 (quality .72, exactly on the target, counts). Router s never reaches .72: no point.
    With folds {q0} and {q1, q2, q3}, m1's CV quality is the mean of its fold means, (1 + 2/3) / 2 = 5/6, the target
    0.96 x 5/6 = 0.8: only lambda 0 (.80, cost 4) reaches it. A pool without a cost unit has no operating points.
    """
    sweep = pd.DataFrame({"pool": "p", "router": ["r"] * 5 + ["s"] * 2, "cost_lambda": [0.0, 0.5, 1.0, 2.0, 4.0, 0.0, 1.0],
                          "cv_quality_mean": [0.80, 0.74, 0.74, 0.72, 0.60, 0.71, 0.50],
                          "cv_avg_cost_usd": [4.0, 3.0, 2.0, 2.0, 1.0, 3.0, 1.0]})
    got = operating_points({"p": _hand_pool()}, sweep, ["r", "s"], 1.0, 0.96)
    assert list(got) == [("p", "r")]
    assert got[("p", "r")] == {"cost_lambda": 2.0, "cv_quality_mean": 0.72, "cv_avg_cost_usd": 2.0,
                               "target_cv_quality": pytest.approx(0.72), "best_single_on_train": "m1"}
    folds = pd.DataFrame({"pool": "p", "query_id": ["q0", "q1", "q2", "q3"], "cv_seed": 42, "fold": [0, 1, 1, 1]})
    got = operating_points({"p": _hand_pool()}, sweep, ["r", "s"], 1.0, 0.96, folds)
    assert got == {("p", "r"): {"cost_lambda": 0.0, "cv_quality_mean": 0.80, "cv_avg_cost_usd": 4.0,
                                "target_cv_quality": pytest.approx(0.8), "best_single_on_train": "m1"}}
    assert operating_points({"p": _hand_pool(None)}, sweep, ["r", "s"], 1.0, 0.96) == {}


def test_the_grid_does_not_count_latency_twice():
    """Where latency is measured the default grid searches quality_weight 0.5, 0.9 and 1.0; where latency is also the cost
    axis (bfcl_latency) the routers pay cost_lambda x latency, so their target is quality alone: 1.0 only."""
    both = {c["quality_weight"] for c in selector_grid("default", "knn_reg", ["e"], True, 0.9)}
    assert both == {0.5, 0.9, 1.0}
    assert {c["quality_weight"] for c in selector_grid("default", "knn_reg", ["e"], True, 0.9, latency_cost=True)} == {1.0}
    assert {c["quality_weight"] for c in selector_grid("default", "knn_reg", ["e"], False, 0.7)} == {0.7}
