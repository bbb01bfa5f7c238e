"""Measured latency, checked by hand: the median and 90th percentile of the chosen answers, the latency columns of the
results table, and the latency-weighted utility's sweep over quality_weight."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mlsel.data.outcomes import OutcomeMatrix
from mlsel.metrics.evaluate import Strategy, evaluate, latency_quantile, oracle_proba
from mlsel.metrics.latency import SWEEP_COLUMNS, weight_sweep
from mlsel.report.tables import main_table
from mlsel.selection.base import utility

LAT = np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0], [4.0, 40.0]])


def test_latency_quantiles_by_hand():
    one = np.array([[1, 0], [0, 1], [1, 0], [1, 0]], dtype=float)  # chosen latencies 1, 20, 3, 4: sorted 1, 3, 4, 20
    assert latency_quantile(one, LAT, 0.5) == 3.0  # the 2nd of 4 (ceil(0.5 * 4))
    assert latency_quantile(one, LAT, 0.75) == 4.0  # the 3rd
    assert latency_quantile(one, LAT, 0.9) == 20.0  # the 4th (ceil(3.6))
    # Random over both: 8 answers of weight 1/2 each; the 50% share is reached at the 4th smallest (4), 90% at the 8th (40).
    half = np.full((4, 2), 0.5)
    assert latency_quantile(half, LAT, 0.5) == 4.0 and latency_quantile(half, LAT, 0.9) == 40.0
    # A model never chosen does not count, even with a missing latency; a chosen missing one makes the quantile unknown.
    holes = LAT.copy()
    holes[0, 1] = np.nan
    assert latency_quantile(one, holes, 0.5) == 3.0
    assert math.isnan(latency_quantile(half, holes, 0.5)) and math.isnan(latency_quantile(one, None, 0.5))


def _matrix(quality, latency, cost=None, categories=None) -> OutcomeMatrix:
    n = len(quality)
    cats = np.array(categories or ["math"] * n)
    return OutcomeMatrix(np.array([f"q{i}" for i in range(n)]), np.array([f"text {i}" for i in range(n)]), cats, ["a", "b"],
                         np.asarray(quality, dtype=float), None if latency is None else np.asarray(latency, dtype=float), None,
                         None if cost is None else np.asarray(cost, dtype=float))


def test_results_table_latency_columns_by_hand():
    te = _matrix([[1, 0], [1, 1], [0, 1], [1, 1]], LAT, cost=np.tile([0.002, 0.001], (4, 1)))
    picks = np.array([[1, 0], [0, 1], [1, 0], [1, 0]], dtype=float)  # a, b, a, a: latencies 1, 20, 3, 4
    strategies = [Strategy("Oracle", "oracle", oracle_proba(te)), Strategy("Sel", "selector", picks),
                  Strategy("Random", "random", np.full((4, 2), 0.5)), Strategy("Always b", "best_single", np.tile([0.0, 1.0], (4, 1)), model="b")]
    res = evaluate(te, strategies, "p", n_bootstrap=50, seed=0)["results"].set_index("strategy")
    assert res.loc["Sel", ["avg_latency_s", "median_latency_s", "p90_latency_s"]].tolist() == [7.0, 3.0, 20.0]  # mean of 1, 20, 3, 4
    assert res.loc["Random", ["avg_latency_s", "median_latency_s", "p90_latency_s"]].tolist() == [13.75, 4.0, 40.0]
    assert res.loc["Always b", ["median_latency_s", "p90_latency_s"]].tolist() == [20.0, 40.0]  # 10, 20, 30, 40
    table = main_table(res.reset_index())
    assert "USD" in table.columns[2]  # real cost first, then the three measured latencies
    assert table.columns[3:] == ["Best Model %", "vs best single [95% CI]", "Avg Latency", "Median latency", "p90 latency"]
    sel = next(r for r in table.rows if r[0][0] == "Sel")
    assert [c[0] for c in sel[5:8]] == ["7.00 s", "3.00 s", "20.00 s"]
    unmeasured = evaluate(_matrix(te.quality, None), strategies, "p", n_bootstrap=20, seed=0)["results"]
    assert unmeasured["median_latency_s"].isna().all() and "p90 latency" not in main_table(unmeasured).columns


def test_utility_by_hand():
    q, lat = np.array([[0.9, 0.6]]), np.array([[3.0, 0.25]])
    # w 0.9: a 0.81 + 0.1/4 = 0.835, b 0.54 + 0.1/1.25 = 0.62;  w 0.5: a 0.45 + 0.125 = 0.575, b 0.3 + 0.4 = 0.7
    assert utility(q, lat, 0.9)[0] == pytest.approx([0.835, 0.62])
    assert utility(q, lat, 0.5)[0] == pytest.approx([0.575, 0.7])
    assert (utility(q, None, 0.5) == q).all()


def test_weight_sweep_trades_quality_for_speed_by_hand():
    """Train: a is better (mean 0.9) and slow (3 s), b worse (0.6) and fast (0.25 s): the utility prefers a at w >= 0.9, b at w 0.5
    (see test_utility_by_hand). Test: a scores 1, 0 at 3 s, 5 s; b scores 1, 1 at 0.2 s, 0.4 s."""
    tr = _matrix([[1, 0.6], [1, 0.6], [1, 0.6], [0.6, 0.6]], np.tile([3.0, 0.25], (4, 1)))
    te = _matrix([[1, 1], [0, 1]], [[3.0, 0.2], [5.0, 0.4]])
    sw = weight_sweep([], tr, te, "p", [0.5, 1.0, 0.9], min_queries=1)
    assert list(sw.columns) == SWEEP_COLUMNS
    assert sorted(set(sw["strategy"])) == ["Best single (train)", "Per-category lookup on train"]
    best = sw[sw["strategy"] == "Best single (train)"].set_index("quality_weight")
    assert list(best.index) == [1.0, 0.9, 0.5]  # the highest weight first: the reference of fast_choice_pct
    assert best.loc[1.0, ["avg_quality", "avg_latency_s", "median_latency_s", "p90_latency_s"]].tolist() == [0.5, 4.0, 3.0, 5.0]
    assert best.loc[0.9, "avg_quality"] == 0.5 and best.loc[0.9, "fast_choice_pct"] == 0.0
    assert best.loc[0.5, ["avg_quality", "median_latency_s", "p90_latency_s", "fast_choice_pct"]].tolist() == [1.0, 0.2, 0.4, 100.0]
    assert best.loc[0.5, "avg_latency_s"] == pytest.approx(0.3) and best["avg_cost_usd"].isna().all()
    lookup = sw[sw["strategy"] == "Per-category lookup on train"].set_index("quality_weight")
    assert lookup["avg_quality"].tolist() == [0.5, 0.5, 1.0]
    assert weight_sweep([], _matrix(tr.quality, None), _matrix(te.quality, None), "p", [1.0], 1).empty


def test_sweep_section_in_the_report():
    from mlsel.report.latency import latency_section

    sw = pd.DataFrame([{"pool": "p", "quality_weight": 1.0, "strategy": "KNN", "avg_quality": 0.9, "avg_latency_s": 1.5,
                        "median_latency_s": 1.2, "p90_latency_s": 3.0, "avg_cost_usd": 0.002, "fast_choice_pct": 0.0}])
    sec = latency_section(sw)
    table = sec.blocks[1]
    assert table.columns == ["quality_weight", "Strategy", "Quality", "Mean s", "Median s", "p90 s", "USD per 1,000", "faster %"]
    assert [c[0] for c in table.rows[0]][1] == "KNN" and table.rows[0][6][0] == "2"  # USD per 1,000 queries


def test_repeatability_by_hand():
    """a: trained at 1 s and 4 s (geometric mean 2 s), tested at 1, 2, 4 s, timed again at 2, 4, 8 s (twice as slow, in the same
    order); b was not timed again. Pooled over a alone, in log2 units: again 1, 2, 3; predicted 1, 1, 1 (the training mean);
    R^2 = 1 - (0 + 1 + 4) / (1 + 0 + 1) = -1.5; the same request's first timing (0, 1, 2) predicts the order exactly but is
    off by 1 each, and on the one definition scores R^2 = 1 - 3 / 2 = -0.5 (a squared correlation would say 1)."""
    from mlsel.metrics.latency import ALL_MODELS, repeatability, repeatability_sentence

    tr = _matrix([[1, 1], [1, 1]], [[1.0, 2.0], [4.0, 2.0]])
    te = _matrix([[1, 1]] * 3, [[1.0, 3.0], [2.0, 3.0], [4.0, 3.0]])
    again = pd.DataFrame({"query_id": ["q0", "q1", "q2", "q9"], "model": ["a"] * 4, "latency_s": [2.0, 4.0, 8.0, 1.0]})
    rep = repeatability("p", tr, te, again).set_index("model")
    assert rep.loc["a", ["n_test", "mean_s_train", "median_ratio"]].tolist() == [3, 2.5, 2.0]
    assert rep.loc["a", "mean_s_test"] == pytest.approx(7 / 3) and rep.loc["a", "mean_s_replicate"] == pytest.approx(14 / 3)
    assert rep.loc["a", "log_corr_same_request"] == pytest.approx(1.0) and math.isnan(rep.loc["a", "r2_model_mean"])
    assert rep.loc["b", "n_test"] == 0 and math.isnan(rep.loc["b", "mean_s_replicate"]) and rep.loc["b", "mean_s_train"] == 2.0
    assert rep.loc[ALL_MODELS, "r2_model_mean"] == pytest.approx(-1.5)
    assert rep.loc[ALL_MODELS, "r2_same_request"] == pytest.approx(-0.5) and rep.loc[ALL_MODELS, "n_test"] == 3
    sentence = repeatability_sentence(rep.reset_index())
    assert "Over 1 models timed in both runs (3 held-out request-model pairs)" in sentence and "-150%" in sentence and "-50%" in sentence
    assert "2.00x the first" in sentence
    assert repeatability("p", _matrix(tr.quality, None), te, again).empty


def test_latency_prediction_by_hand():
    """The set-up of test_repeatability_by_hand (pairs: a on q0-q2, tested at 1, 2, 4 s, timed again at 2, 4, 8 s). In log2
    units the test split is 0, 1, 2 and the other run 1, 2, 3. The training mean predicts 1 everywhere: R^2 0 on the test
    split, -1.5 on the other run (as repeatability's r2_model_mean). A router predicting twice the test timing predicts the
    other run exactly (R^2 1) but misses the test split by 1 each: 1 - 3 / 2 = -0.5. A router predicting 0 s has each
    prediction raised to the 10 ms floor, counted."""
    from mlsel.metrics.latency import MODEL_MEAN, PREDICTION_COLUMNS, latency_prediction, prediction_sentence

    tr = _matrix([[1, 1], [1, 1]], [[1.0, 2.0], [4.0, 2.0]])
    te = _matrix([[1, 1]] * 3, [[1.0, 3.0], [2.0, 3.0], [4.0, 3.0]])
    again = pd.DataFrame({"query_id": ["q0", "q1", "q2", "q9"], "model": ["a"] * 4, "latency_s": [2.0, 4.0, 8.0, 1.0]})
    twice, zero = 2 * te.latency_s, np.zeros((3, 2))
    pred = latency_prediction("p", tr, te, again, {"KNN_REG (tuned)": twice, "MLP (tuned)": zero})
    assert list(pred.columns) == PREDICTION_COLUMNS and pred["predictor"].tolist() == [MODEL_MEAN, "KNN_REG (tuned)", "MLP (tuned)"]
    rows = pred.set_index("predictor")
    assert rows["n_pairs"].tolist() == [3, 3, 3] and rows["n_floored"].tolist() == [0, 0, 3]
    assert rows.loc[MODEL_MEAN, "r2_same_run"] == pytest.approx(0.0) and rows.loc[MODEL_MEAN, "r2_replicate"] == pytest.approx(-1.5)
    assert rows.loc["KNN_REG (tuned)", "r2_replicate"] == pytest.approx(1.0)
    assert rows.loc["KNN_REG (tuned)", "r2_same_run"] == pytest.approx(-0.5)
    # log(0.01 s) against log 1, 2, 4 s: far off, a large negative R^2.
    assert rows.loc["MLP (tuned)", "r2_replicate"] < -10
    sentence = prediction_sentence(pred)
    assert "KNN_REG (tuned)'s, predicts 100%" in sentence and "(-50% in this run's test split)" in sentence and "-150%" in sentence
    assert prediction_sentence(pred.iloc[:1]) == "No router of this pool predicts a per-query latency."
    assert latency_prediction("p", tr, te, again.iloc[:0], {}).empty and latency_prediction("p", _matrix(tr.quality, None), te, again, {}).empty


def test_router_predicted_cost_by_hand():
    """KNN_REG with k = 2 (uniform weights): the predicted latency of each model is the mean of the two nearest training
    queries' latencies, in seconds (the normalisation undone); the guarded router predicts none."""
    from mlsel.selection.cost_aware import KNNRegressorSelector
    from mlsel.selection.guarded import GuardedRouter
    from mlsel.selection.scoreboard import ClusterScoreboardSelector

    X = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]], dtype=np.float32)
    lat = np.array([[1.0, 4.0], [3.0, 8.0], [10.0, 0.5]])
    sel = KNNRegressorSelector(k=2, weights="uniform").fit(X, np.ones((3, 2)), lat, models=["a", "b"])
    assert sel.predicted_cost(np.array([[1.0, 0.05]])) == pytest.approx(np.array([[2.0, 6.0]]))  # q0 and q1
    assert KNNRegressorSelector(k=2).fit(X, np.ones((3, 2)), models=["a", "b"]).predicted_cost(X) is None
    assert GuardedRouter().fit(X, np.ones((3, 2)), lat, models=["a", "b"]).predicted_cost(X) is None
    # The scoreboard with 2 clusters ({q0, q1} and {q2}) and top_p 1: the nearest cluster's raw mean latency.
    board = ClusterScoreboardSelector(num_clusters=2, top_p=1, n_init=5).fit(X, np.ones((3, 2)), lat, models=["a", "b"])
    assert board.predicted_cost(np.array([[1.0, 0.05], [0.1, 0.9]])) == pytest.approx(np.array([[2.0, 6.0], [10.0, 0.5]]))


def test_prediction_table_in_the_report():
    from mlsel.metrics.latency import MODEL_MEAN
    from mlsel.report.latency import latency_sections

    rep = pd.DataFrame([{"pool": "p", "model": "a", "n_test": 3}])
    pred = pd.DataFrame([{"pool": "p", "predictor": MODEL_MEAN, "n_pairs": 3, "r2_same_run": 0.1, "r2_replicate": 0.2, "n_floored": 0},
                         {"pool": "p", "predictor": "KNN_REG (tuned)", "n_pairs": 3, "r2_same_run": 0.3, "r2_replicate": 0.4,
                          "n_floored": 0}])
    (sec,) = latency_sections(None, rep, pred)
    texts = [b.text for b in sec.blocks if getattr(b, "type", "") == "text"]
    assert any("KNN_REG (tuned)'s, predicts 40%" in t and "20% for the model's training mean" in t for t in texts)
    assert sum(1 for b in sec.blocks if getattr(b, "link", "") == "tables/latency_prediction.csv") == 1
    assert latency_sections(None, None, pred) == []
