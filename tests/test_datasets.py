"""Datasets as first-class: their parameters, splits, holes in the data, and the cross-dataset summary (known answers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsel.data.costs import cost_matrix
from mlsel.data.outcomes import OutcomeMatrix, apply_missing_quality, assign_split
from mlsel.data.records import DataError, DataLog
from mlsel.metrics.bootstrap import resample_indices
from mlsel.params import ConfigError, Params, apply_overrides, dataset_params, load_params
from mlsel.report.overview import verdict
from mlsel.tuning.cv import PoolData, TunePlan
from mlsel.tuning.final import FinalFit
from mlsel.tuning.summary import SUMMARY_COLUMNS, CVChoices, SummarySettings, cheapest_point, cv_router, summary_row

# --------------------------------------------------------------------------- parameters


def test_dataset_parameters_layer_sections_smoke_definition_then_overrides():
    params = Params()
    d = dataset_params(params, "routerbench", smoke=True, overrides={"knn_k": 7, "run_dir": "runs/x"})
    assert d.base.run_dir == "runs/x/routerbench"  # the run's folder (after overrides), then the dataset
    assert d.prepare.source == "routerbench" and d.prepare.split == "source"  # the definition
    assert d.prepare.max_queries == 600  # the smoke profile
    assert d.train.knn_k == 7  # the override wins over everything
    assert list(d.base.pools) == ["all11"] and d.ship.export_pools == []  # the definition wins over the smoke profile
    plain = dataset_params(params, "mmlu_pro")
    assert plain.base.run_dir == "runs/default/mmlu_pro" and plain.prepare.max_queries == 0 and list(plain.base.pools) == ["small4", "all5"]
    # An override of the definition's own key wins too.
    assert dataset_params(params, "llmrouter_by_task", overrides=["test_tasks=[gpqa]"]).prepare.test_tasks == ["gpqa"]


@pytest.mark.parametrize("defs, message", [
    ({"x": {"knn_kk": 3}}, r"dataset_defs\.x: 'knn_kk': unknown parameter"),
    ({"x": {"run_dir": "elsewhere"}}, r"dataset_defs\.x\.run_dir: run_dir belongs to the whole run"),
    ({"x": {"split": "random"}}, r"dataset_defs\.x:.*split"),
    ({"Bad Name": {}}, r"dataset_defs\.Bad Name: a dataset name is lower-case"),
])
def test_bad_dataset_definitions_name_the_file_and_the_dataset(tmp_path, defs, message):
    import yaml

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"base": {"datasets": list(defs)}, "dataset_defs": defs}))
    with pytest.raises(ConfigError, match=message):
        load_params(path)
    assert str(path) in str(pytest.raises(ConfigError, load_params, path).value)


def test_a_dataset_not_defined_is_an_error(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("base:\n  datasets: [mmlu_pro, nope]\n")
    with pytest.raises(ConfigError, match=r"base.datasets names \['nope'\], not defined under dataset_defs"):
        load_params(path)
    assert apply_overrides(Params(), {"datasets": ["llmrouter"]}).base.datasets == ["llmrouter"]


# --------------------------------------------------------------------------- splits and holes


def _queries() -> tuple[pd.DataFrame, pd.DataFrame]:
    queries = pd.DataFrame({"query_id": ["a", "b", "c", "d"], "query": list("ABCD"), "category": ["math"] * 4,
                            "task": ["t1", "t2", "t1", "t3"]})
    df = pd.DataFrame({"query_id": ["a", "a", "b", "c", "d", "d"], "source_split": ["train", "test", "train", "test", "train", "train"]})
    return queries, df


def test_source_split_keeps_the_source_files_and_a_query_in_both_is_a_test_query():
    queries, df = _queries()
    assert assign_split(queries, df, "source", 0.2, [], 0).tolist() == ["test", "train", "test", "train"]
    with pytest.raises(ConfigError, match="split: source needs a source with its own train/test files"):
        assign_split(queries, df.drop(columns="source_split"), "source", 0.2, [], 0)


def test_by_task_split_holds_out_whole_tasks():
    queries, df = _queries()
    assert assign_split(queries, df, "by_task", 0.2, ["t1"], 0).tolist() == ["test", "train", "test", "train"]
    with pytest.raises(ConfigError, match=r"by_task needs test_tasks from the data's tasks \['t1', 't2', 't3'\]; got \['t9'\]"):
        assign_split(queries, df, "by_task", 0.2, ["t9"], 0)
    with pytest.raises(ConfigError, match="leave no task to train on"):
        assign_split(queries, df, "by_task", 0.2, ["t1", "t2", "t3"], 0)


def _outcomes_with_hole() -> pd.DataFrame:
    return pd.DataFrame({
        "query_id": ["a", "a", "b", "b", "c", "c"], "query": ["A", "A", "B", "B", "C", "C"], "model": ["m1", "m2"] * 3,
        "quality": [1.0, 0.0, np.nan, 1.0, 0.0, np.nan],
        "source_row": ["f.csv:2", "f.csv:2", "f.csv:3", "f.csv:3", "f.csv:4", "f.csv:4"],
    })


def test_missing_quality_error_names_the_row_and_drop_counts_what_it_removes():
    df = _outcomes_with_hole()
    with pytest.raises(DataError, match=r"^f\.csv:3: model 'm1' has no quality on query 'B' \(2 empty quality cells in all\)"):
        apply_missing_quality(df, "error", DataLog())
    dlog = DataLog()
    kept = apply_missing_quality(df, "drop", dlog)
    assert list(zip(kept["query_id"], kept["model"])) == [("a", "m1"), ("a", "m2"), ("b", "m2"), ("c", "m1")]
    assert dlog.dropped == {"missing_quality_cell": 2}
    # The queries left incomplete then leave the pool by incomplete_policy, counted there.
    from mlsel.data.outcomes import restrict_to_pool

    assert restrict_to_pool(kept, ["m1", "m2"], "drop", dlog)["query_id"].tolist() == ["a", "a"]
    assert dlog.dropped == {"missing_quality_cell": 2, "incomplete_query": 2}
    complete = df[df["query_id"] == "a"]
    assert apply_missing_quality(complete, "error", DataLog()) is complete


# --------------------------------------------------------------------------- the summary row, by hand


def _matrix(quality, cost) -> OutcomeMatrix:
    q = np.asarray(quality, float)
    n = len(q)
    ids = np.array([f"q{i}" for i in range(n)])
    return OutcomeMatrix(ids, ids, np.array(["math"] * n), ["m0", "m1"], q, None, None, np.asarray(cost, float))


def _pool() -> PoolData:
    # Training: m0 is the better model (best single); test: 4 queries.
    tr = _matrix([[1, 0], [1, 1], [1, 0], [0, 0]], [[2, 1]] * 4)
    te = _matrix([[1, 0], [0, 1], [1, 1], [0, 0]], [[2, 1]] * 4)
    return PoolData("p", ["m0", "m1"], tr, tr, te, cost_matrix(tr)[1])


def test_summary_row_known_answers():
    d = _pool()
    assert d.unit == "cost_usd"
    plan = TunePlan(names=["knn", "knn_reg"], router_names=["knn_reg"], embedders=["e"], lambdas=[0.0, 1.0])
    cv = pd.DataFrame({"pool": ["p", "p", "p"], "selector": ["knn", "knn_reg", "knn_reg"], "chosen": [True, True, False],
                       "cv_utility_mean": [0.60, 0.70, 0.99]})  # the unchosen combination's score must not count
    one_hot = np.eye(2)
    fitted = {("p", "knn"): FinalFit("p", "knn", one_hot[[0, 0, 0, 0]]),
              ("p", "knn_reg"): FinalFit("p", "knn_reg", one_hot[[0, 1, 0, 0]], [np.array([0, 1, 0, 0]), np.array([1, 1, 1, 1])])}
    operating = {("p", "knn_reg"): {"cost_lambda": 1.0, "cv_quality_mean": 0.5, "cv_avg_cost_usd": 1.0}}
    point = cheapest_point(operating, "p", d.unit)
    assert point == ("knn_reg", 1.0)
    row = summary_row(d, fitted, plan, CVChoices(cv_router(cv, "p", plan.names), point, point), d.te.cost_usd, None,
                      SummarySettings(quality_weight=1.0, n_bootstrap=500, seed=3, match_ratio=0.97))
    assert row["matched_target_pct"] == pytest.approx(97.0) and row["matched_router"] == "knn_reg"
    assert set(row) <= set(SUMMARY_COLUMNS)
    # By hand: best single m0 -> [1, 0, 1, 0] = 0.5; oracle [1, 1, 1, 0] = 0.75 (ties to the cheaper m1);
    # router (KNN_REG, highest chosen CV utility) picks [m0, m1, m0, m0] -> [1, 1, 1, 0] = 0.75; random = [.5, .5, 1, 0] = 0.5.
    assert row["best_single"] == "m0" and row["router"] == "KNN_REG (tuned)"
    assert row["best_single_quality"] == pytest.approx(0.5) and row["oracle_quality"] == pytest.approx(0.75)
    assert row["router_quality"] == pytest.approx(0.75) and row["random_quality"] == pytest.approx(0.5)
    assert row["gain_at_b"] == pytest.approx(0.25)
    assert row["gap_closed_pct"] == pytest.approx(100.0) and row["gap_closed_random_pct"] == pytest.approx(100.0)
    # Operating point lambda=1 picks m1 everywhere: cost 1 against the best single's 2 -> 50% saved, quality [0, 1, 1, 0] = 0.5.
    assert row["cost_save_at_b_pct"] == pytest.approx(50.0) and row["op_quality"] == pytest.approx(0.5)
    assert row["matched_quality_pct"] == pytest.approx(100.0) and row["matched_cost_pct"] == pytest.approx(50.0)
    # Costs are constant per model, so every draw saves exactly 50%.
    assert row["cost_save_at_b_ci_low"] == pytest.approx(50.0) and row["cost_save_at_b_ci_high"] == pytest.approx(50.0)
    # The gain's CI is paired: the per-query differences [0, 1, 0, 0] on the same draws.
    draws = np.array([0.0, 1.0, 0.0, 0.0])[resample_indices(4, 500, 3)].mean(axis=1)
    assert (row["gain_at_b_ci_low"], row["gain_at_b_ci_high"]) == pytest.approx(tuple(np.percentile(draws, [2.5, 97.5])))
    assert row["gain_at_b_ci_low"] == 0.0 and row["gain_at_b_ci_high"] > 0.25


def test_no_operating_point_means_no_claimed_saving():
    d = _pool()
    plan = TunePlan(names=["knn"], router_names=[], embedders=["e"], lambdas=[])
    cv = pd.DataFrame({"pool": ["p"], "selector": ["knn"], "chosen": [True], "cv_utility_mean": [0.6]})
    fitted = {("p", "knn"): FinalFit("p", "knn", np.eye(2)[[0, 0, 0, 0]])}
    row = summary_row(d, fitted, plan, CVChoices(cv_router(cv, "p", plan.names), cheapest_point({}, "p", d.unit)), d.te.cost_usd, None,
                      SummarySettings(1.0, 100, 0))
    assert row["gain_at_b"] == 0.0 and "cost_save_at_b_pct" not in row and row["best_single_cost"] == pytest.approx(2.0)


# --------------------------------------------------------------------------- the verdict sentence


def _row(**kw) -> pd.Series:
    base = {"dataset": "routerbench", "pool": "all11", "router": "KNN_REG (tuned)", "best_single": "gpt-4", "best_single_quality": 0.8,
            "gain_at_b": 0.01, "gain_at_b_ci_low": -0.01, "gain_at_b_ci_high": 0.03, "gap_closed_pct": 10.0, "cost_unit": "cost_usd",
            "cost_save_at_b_pct": 60.0, "cost_save_at_b_ci_low": 50.0, "cost_save_at_b_ci_high": 70.0, "op_quality": 0.81}
    base.update(kw)
    return pd.Series(base)


def test_verdicts_follow_the_intervals():
    s = verdict(_row())
    assert "routing did not pay off in quality" in s and "the interval includes 0" in s and "for quality alone, gpt-4 does as well" in s
    assert "routing saves 60.0% [50.0%, 70.0%] of the cost in USD" in s
    assert "routing paid off" in verdict(_row(gain_at_b=0.04, gain_at_b_ci_low=0.02, gain_at_b_ci_high=0.06))
    assert "is worse than always using gpt-4" in verdict(_row(gain_at_b=-0.04, gain_at_b_ci_low=-0.06, gain_at_b_ci_high=-0.02))
    assert "not shown to be above 0" in verdict(_row(cost_save_at_b_ci_low=-5.0))
    assert "no cost saving (USD) is claimed" in verdict(_row(cost_save_at_b_pct=np.nan))
    proxy = verdict(_row(cost_unit="response_chars"))
    assert "response chars (proxy)" in proxy and "USD" not in proxy
    assert "no per-query cost" in verdict(_row(cost_unit=np.nan))


# --------------------------------------------------------------------------- LLMRouter's list-price proxy


def test_list_prices_are_the_mean_of_input_and_output_price_and_bad_ones_name_the_model(tmp_path):
    import json

    from mlsel.data.readers import read_list_prices

    path = tmp_path / "llm.json"
    path.write_text(json.dumps({"a": {"input_price": 0.2, "output_price": 0.6}, "b": {"input_price": 0, "output_price": 0}}))
    assert read_list_prices(path) == {"a": pytest.approx(0.4), "b": 0.0}
    for bad in ({"input_price": -1, "output_price": 1}, {"input_price": "0.2", "output_price": 1}, {"output_price": 1}):
        path.write_text(json.dumps({"ok": {"input_price": 1, "output_price": 1}, "x": bad}))
        with pytest.raises(DataError, match=r"llm\.json: model 'x': input_price and output_price must be numbers >= 0"):
            read_list_prices(path)


def test_a_scored_model_without_a_price_is_an_error(data_dir, monkeypatch):
    from mlsel.data import readers

    real = readers.read_list_prices
    monkeypatch.setattr(readers, "read_list_prices", lambda path: {k: v for k, v in real(path).items() if k != "gemma-2-9b-it"})
    with pytest.raises(DataError, match=r"default_llm\.json: no price for model 'gemma-2-9b-it', which .*train\.json\.gz record 0 scores"):
        readers.read_llmrouter(data_dir)
    monkeypatch.undo()
    df = readers.read_llmrouter(data_dir)
    prices = df.groupby("model")["list_price"].agg(["min", "max"])
    assert (prices["min"] == prices["max"]).all() and prices.loc["gemma-2-9b-it", "min"] == pytest.approx(0.1)
    assert prices.loc["llama-3.3-nemotron-super-49b-v1", "min"] == pytest.approx(0.9)
    assert df.groupby("source_split")["query_id"].nunique().to_dict()["test"] == 500


def test_the_best_single_models_cv_quality_is_scored_on_the_routers_folds():
    from mlsel.tuning.choice import cv_single_quality

    d = _pool()  # training quality of m0: [1, 1, 1, 0]
    folds = pd.DataFrame({"pool": "p", "query_id": ["q0", "q1", "q2", "q3"], "cv_seed": 42, "fold": [0, 1, 1, 1]})
    # Fold means 1.0 and 2/3: their mean is 5/6, not the training mean 3/4.
    assert cv_single_quality(d, folds, 0) == pytest.approx(5 / 6)
    assert cv_single_quality(d, None, 0) == pytest.approx(0.75)
    assert cv_single_quality(d, folds.assign(pool="other"), 0) == pytest.approx(0.75)


def test_the_aiq_router_is_chosen_on_its_cv_sweep():
    from mlsel.tuning.summary import cv_aiq_router

    d = _pool()  # training costs: m0 2, m1 1 -> the budget range is [1, 2]
    sweep = pd.DataFrame({"pool": "p", "router": ["a", "a", "b", "b"], "cost_lambda": [0.0, 1.0] * 2,
                          "cv_quality_mean": [0.7, 0.6, 0.9, 0.5], "cv_avg_cost_usd": [2.0, 1.0, 2.0, 1.0]})
    # AIQ by hand: a = (0.6 + 0.7) / 2 = 0.65, b = (0.5 + 0.9) / 2 = 0.70.
    assert cv_aiq_router(d, sweep, None, ["a", "b"]) == "b"
    assert cv_aiq_router(d, sweep.assign(cv_quality_mean=[0.95, 0.6, 0.9, 0.5]), None, ["a", "b"]) == "a"  # a: 0.775
    assert cv_aiq_router(d, sweep, None, []) is None
