"""Every number the report prints, checked against answers computed by hand on small cases.

One hand case serves the results table and the summary row: 4 held-out queries, 3 models (a, b, c),
the best single model ``b`` chosen on 3 training queries. The fractions in the comments are the hand
computation; the tests compare the code's numbers with them.

    quality (test)      a    b    c     best (ties credited)
    q0                  1    0    0.5   {a}
    q1                  1    1    0     {a, b}
    q2                  0    0    0     {a, b, c}  (all equal: any choice is a hit)
    q3                  0    1    1     {b, c}
    cost_usd per query  1    4    2     (the same on every query)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsel.data.outcomes import OutcomeMatrix
from mlsel.metrics.bootstrap import ci95, paired_difference, resample_indices
from mlsel.metrics.evaluate import Strategy, baseline_strategies, evaluate, oracle_proba
from mlsel.metrics.frontier import aiq_table
from mlsel.report.overview import summary_table as summary_matrix
from mlsel.report.overview import verdict
from mlsel.report.tables import benefit_table, main_table, verdicts
from mlsel.tuning.cv import PoolData, TunePlan
from mlsel.tuning.final import FinalFit
from mlsel.tuning.summary import SUMMARY_COLUMNS, CVChoices, SummarySettings, cv_router, summary_row, summary_table

MODELS = ["a", "b", "c"]
Q_TEST = np.array([[1, 0, 0.5], [1, 1, 0], [0, 0, 0], [0, 1, 1]], dtype=float)
Q_TRAIN = np.array([[0, 1, 0], [1, 1, 0], [0, 1, 1]], dtype=float)  # means a 1/3, b 1, c 1/3: best single b
COST = np.tile([1.0, 4.0, 2.0], (4, 1))
SEL = np.array([2, 0, 2, 2])  # the selector's picks: c, a, c, c


def outcomes(q: np.ndarray, cost: np.ndarray, categories: list[str]) -> OutcomeMatrix:
    n = len(q)
    return OutcomeMatrix(np.array([f"q{i}" for i in range(n)]), np.array([""] * n), np.array(categories), list(MODELS), q, None, None, cost)


def hand_split() -> tuple[OutcomeMatrix, OutcomeMatrix]:
    """(test, train) of the hand case; test queries q0, q1 are math, q2, q3 law."""
    return outcomes(Q_TEST, COST, ["math", "math", "law", "law"]), outcomes(Q_TRAIN, COST[:3], ["math"] * 3)


def one_hot(picks: np.ndarray, m: int = 3) -> np.ndarray:
    p = np.zeros((len(picks), m))
    p[np.arange(len(picks)), picks] = 1.0
    return p


@pytest.fixture(scope="module")
def table():
    te, tr = hand_split()
    strategies = [Strategy("Oracle", "oracle", oracle_proba(te)), Strategy("Sel", "selector", one_hot(SEL))]
    strategies += baseline_strategies(tr, te, quality_weight=1.0)
    out = evaluate(te, strategies, "p", n_bootstrap=200, seed=0)
    return out["results"].set_index("strategy"), out


def test_quality_and_the_baselines(table):
    r, _ = table
    assert r.loc["Sel", "avg_quality"] == pytest.approx((0.5 + 1 + 0 + 1) / 4)  # c, a, c, c
    assert r.loc["Oracle", "avg_quality"] == pytest.approx(3 / 4)
    assert r.loc["Random Selection (expected)", "avg_quality"] == pytest.approx((1.5 / 3 + 2 / 3 + 0 + 2 / 3) / 4)  # 11/24
    best = r[r["kind"] == "best_single"]
    assert best["model"].tolist() == ["b"] and best.index[0] == "Best single on train (b)"
    assert best["avg_quality"].iloc[0] == pytest.approx(2 / 4)
    assert r.loc["Always a", "avg_quality"] == pytest.approx(2 / 4)
    assert r.loc["Always c", "avg_quality"] == pytest.approx(1.5 / 4)
    # Oracle ties go to the cheapest model: q1 a (1 < 4), q2 a (all tie), q3 c (2 < 4).
    assert oracle_proba(hand_split()[0]).argmax(axis=1).tolist() == [0, 0, 0, 2]
    assert r.loc["Oracle", "avg_cost_usd"] == pytest.approx((1 + 1 + 1 + 2) / 4)
    assert r.loc["Sel", "avg_cost_usd"] == pytest.approx((2 + 1 + 2 + 2) / 4)
    assert r.loc["Random Selection (expected)", "avg_cost_usd"] == pytest.approx(7 / 3)
    assert np.isnan(r.loc["Sel", "avg_latency_s"]) and np.isnan(r.loc["Sel", "avg_response_chars"])


def test_best_model_pct_credits_ties_all_equal_queries_and_random_fractionally(table):
    r, _ = table
    # Sel: q0 c misses (a alone is best), q1 a ties, q2 all equal, q3 c ties: 3 of 4; decidable (q0, q1, q3): 2 of 3.
    assert r.loc["Sel", "best_model_pct"] == pytest.approx(75.0)
    assert r.loc["Sel", "best_model_pct_decidable"] == pytest.approx(200 / 3)
    # Best single b: q0 misses, q1, q2, q3 hit.
    assert r.loc["Best single on train (b)", "best_model_pct"] == pytest.approx(75.0)
    # Random: the expected share of best models per query, 1/3 + 2/3 + 1 + 2/3 = 8/3, over 4 queries.
    assert r.loc["Random Selection (expected)", "best_model_pct"] == pytest.approx(100 * 2 / 3)
    assert r.loc["Random Selection (expected)", "best_model_pct_decidable"] == pytest.approx(100 * (1 / 3 + 2 / 3 + 2 / 3) / 3)
    assert r.loc["Oracle", "best_model_pct"] == pytest.approx(100.0)
    assert r.loc["Sel", "best_model_x_vs_random"] == pytest.approx(0.75 / (2 / 3))  # 1.125


def test_uplifts_and_gap_closed(table):
    r, _ = table
    q, q_rand, q_best, q_oracle = 5 / 8, 11 / 24, 1 / 2, 3 / 4
    assert r.loc["Sel", "uplift_vs_random_pct"] == pytest.approx(100 * (q - q_rand) / q_rand)  # 400/11 = 36.36%
    assert r.loc["Sel", "uplift_vs_best_single"] == pytest.approx(q - q_best)  # +0.125
    assert r.loc["Sel", "gap_closed_pct"] == pytest.approx(100 * (q - q_rand) / (q_oracle - q_rand))  # 400/7 = 57.14%
    assert r.loc["Oracle", "gap_closed_pct"] == pytest.approx(100.0)
    assert r.loc["Random Selection (expected)", "uplift_vs_random_pct"] == pytest.approx(0.0)
    assert r.loc["Always c", "uplift_vs_best_single"] == pytest.approx(1.5 / 4 - 1 / 2)


def test_breakdowns_per_category_and_selection_share(table):
    _, out = table
    pc = out["per_category"].set_index(["strategy", "category"])["avg_quality"]
    assert pc[("Sel", "math")] == pytest.approx((0.5 + 1) / 2) and pc[("Sel", "law")] == pytest.approx((0 + 1) / 2)
    share = out["selection_share"]
    sel = share[share["strategy"] == "Sel"].set_index("model")["share_pct"]
    assert sel.tolist() == pytest.approx([25.0, 0.0, 75.0])


def test_printed_tables_show_the_hand_computed_numbers(table):
    r, _ = table
    df = r.reset_index()
    main = {row[0][0]: [c[0] for c in row[1:]] for row in main_table(df).rows}
    assert main["Sel"][0].startswith("0.625 [") and main["Sel"][2] == "75.0%" and main["Sel"][3].startswith("+0.125 [")
    assert main["Oracle"][1] == "$1.250000" and main["Sel"][1] == "$1.750000"
    benefit = benefit_table(df).rows[0]
    assert [c[0].split(" [")[0] for c in benefit] == ["Sel", "+36.4%", "1.12x more often", "+0.125", "57.1%"]


def one_query_apart(n: int = 20) -> tuple[OutcomeMatrix, OutcomeMatrix, np.ndarray]:
    """(test, train, picks): model a is best single; the picks are a's except on query 15, where b is right and a wrong."""
    q = np.zeros((n, 2))
    q[:10, 0] = 1.0  # model a: right on half the queries
    q[15, 1] = 1.0  # model b: right on query 15 only
    tr = OutcomeMatrix(np.array(["t0", "t1"]), np.array(["", ""]), np.array(["math"] * 2), ["a", "b"], np.array([[1.0, 0.0], [1.0, 0.0]]), None, None)
    te = OutcomeMatrix(np.array([f"q{i}" for i in range(n)]), np.array([""] * n), np.array(["math"] * n), ["a", "b"], q, None, None)
    picks = np.zeros(n, dtype=int)
    picks[15] = 1
    return te, tr, picks


def test_bootstrap_is_paired_hand_computed_interval():
    """A strategy equal to the best single model except on one query, where it is right and the best single is wrong.

    The per-query difference is 1 on that query and 0 elsewhere, so a draw's mean difference is
    (times that query is drawn) / n. Over n = 20 queries that count is Binomial(20, 1/20):
    P(0) = 0.358 > 2.5%, so the low end is 0; P(<= 2) = 0.925 and P(<= 3) = 0.984, so the 97.5th
    percentile is 3 / 20. An unpaired bootstrap (strategies drawn separately) gives a low end below 0.
    """
    te, tr, picks = one_query_apart()
    strategies = [Strategy("Oracle", "oracle", oracle_proba(te)), Strategy("Almost a", "selector", np.eye(2)[picks])]
    strategies += baseline_strategies(tr, te, quality_weight=1.0)
    r = evaluate(te, strategies, "p", n_bootstrap=2000, seed=3)["results"].set_index("strategy")
    row = r.loc["Almost a"]
    assert row["uplift_vs_best_single"] == pytest.approx(1 / 20)
    assert row["uplift_vs_best_single_ci_low"] == 0.0
    assert row["uplift_vs_best_single_ci_high"] == pytest.approx(3 / 20)
    # The strategy's own quality interval is much wider than that of its paired difference.
    assert row["avg_quality_ci_high"] - row["avg_quality_ci_low"] > 2 * (3 / 20)
    # The same draws, by hand.
    counts = (resample_indices(20, 2000, 3) == 15).sum(axis=1)
    assert np.percentile(counts / 20, [2.5, 97.5]).tolist() == pytest.approx([0.0, 3 / 20])


def _percentile(draws: np.ndarray, p: float) -> float:
    """The p-th percentile by hand: linear interpolation between the order statistics at rank (B - 1) p / 100."""
    s = np.sort(draws)
    h = (len(s) - 1) * p / 100
    i = int(np.floor(h))
    return float(s[i] + (h - i) * (s[min(i + 1, len(s) - 1)] - s[i]))


def test_intervals_are_95_percent_not_90_or_99():
    """The level of every interval: the 2.5th and 97.5th percentiles of the bootstrap statistics.

    Statistics 0, 1, ..., 1000 (any order): the p-th percentile is exactly 10 p, so the 95% interval is [25, 975]; a 90%
    one would be [50, 950] and a 99% one [5, 995]. Then through the evaluation and the paired difference, on 50 test
    queries whose values 0, 1/49, ..., 1 are all distinct, so the means of 2000 draws spread smoothly and the three
    levels' ends differ by far more than the tolerance.
    """
    stats = np.random.default_rng(0).permutation(np.arange(1001.0))
    assert ci95(stats) == pytest.approx((25.0, 975.0))
    assert ci95(np.r_[stats, np.nan, np.nan]) == pytest.approx((25.0, 975.0))  # a NaN draw (0 / 0) is left out
    n, n_boot, seed = 50, 2000, 5
    v = np.arange(n) / (n - 1)
    draws = v[resample_indices(n, n_boot, seed)].mean(axis=1)
    want = (_percentile(draws, 2.5), _percentile(draws, 97.5))
    for other in ((5.0, 95.0), (0.5, 99.5)):  # the case tells the levels apart
        assert abs(_percentile(draws, other[0]) - want[0]) > 0.005 and abs(_percentile(draws, other[1]) - want[1]) > 0.005
    # A strategy answering with model a (quality v); the best single model on train is b, 0.25 on every test query.
    q = np.column_stack([v, np.full(n, 0.25)])
    te = OutcomeMatrix(np.array([f"q{i}" for i in range(n)]), np.array([""] * n), np.array(["math"] * n), ["a", "b"], q, None, None)
    tr = OutcomeMatrix(np.array(["t0"]), np.array([""]), np.array(["math"]), ["a", "b"], np.array([[0.0, 1.0]]), None, None)
    strategies = [Strategy("Oracle", "oracle", oracle_proba(te)), Strategy("Sel", "selector", np.tile([1.0, 0.0], (n, 1)))]
    strategies += baseline_strategies(tr, te, quality_weight=1.0)
    row = evaluate(te, strategies, "p", n_bootstrap=n_boot, seed=seed)["results"].set_index("strategy").loc["Sel"]
    assert (row["avg_quality_ci_low"], row["avg_quality_ci_high"]) == pytest.approx(want, abs=1e-9)
    # Paired with b's constant 0.25, the uplift's interval is Sel's shifted by 0.25.
    assert (row["uplift_vs_best_single_ci_low"], row["uplift_vs_best_single_ci_high"]) == pytest.approx(
        (want[0] - 0.25, want[1] - 0.25), abs=1e-9)
    assert paired_difference(v, np.full(n, 0.25), n_boot, seed) == pytest.approx((0.25, want[0] - 0.25, want[1] - 0.25), abs=1e-9)


def test_summary_gain_interval_is_paired():
    """Gain@B of the same case in the summary row: +1/20 with the hand-computed interval [0, 3/20]."""
    te, tr, picks = one_query_apart()
    d = PoolData("p", ["a", "b"], te, tr, te, None)
    cv = pd.DataFrame({"pool": "p", "selector": ["r"], "chosen": True, "cv_utility_mean": [1.0]})
    row = summary_row(d, {("p", "r"): FinalFit("p", "r", np.eye(2)[picks])}, TunePlan(["r"], ["r"], ["e"], [0.0]),
                      CVChoices(cv_router(cv, "p", ["r"])), None, None, SummarySettings(1.0, 2000, 3))
    assert row["best_single"] == "a" and row["gain_at_b"] == pytest.approx(1 / 20)
    assert (row["gain_at_b_ci_low"], row["gain_at_b_ci_high"]) == (0.0, pytest.approx(3 / 20))
    # Gap@O: the oracle gains over a on query 15 only, as the router does: 100% on every draw that holds it.
    assert row["gap_closed_pct"] == pytest.approx(100.0)
    assert (row["gap_closed_pct_ci_low"], row["gap_closed_pct_ci_high"]) == pytest.approx((100.0, 100.0))


def _pool() -> tuple[PoolData, dict, TunePlan, pd.DataFrame]:
    te, tr = hand_split()
    d = PoolData("p", list(MODELS), te, tr, te, "cost_usd")
    # The CV chose "knn" (higher CV utility than "knn_reg"); knn_reg's cost sweep over lambdas 0 and 1.
    fitted = {("p", "knn"): FinalFit("p", "knn", one_hot(SEL)),
              ("p", "knn_reg"): FinalFit("p", "knn_reg", one_hot(np.array([1, 1, 1, 2])), [np.array([1, 1, 1, 2]), np.array([0, 1, 2, 2])])}
    plan = TunePlan(["knn", "knn_reg"], ["knn_reg"], ["e"], [0.0, 1.0])
    cv = pd.DataFrame({"pool": "p", "selector": ["knn", "knn_reg"], "chosen": True, "cv_utility_mean": [0.7, 0.6]})
    return d, fitted, plan, cv


def test_summary_row_gain_gap_cost_save_and_matched_point():
    d, fitted, plan, cv = _pool()
    aiq = pd.DataFrame([{"router": "knn_reg", "aiq_minus_zero_router": 0.04, "aiq_minus_zero_router_ci_low": 0.01,
                         "aiq_minus_zero_router_ci_high": 0.07}])
    row = summary_row(d, fitted, plan, CVChoices(cv_router(cv, "p", plan.names), ("knn_reg", 1.0), ("knn_reg", 0.0), "knn_reg"), COST,
                      aiq, SummarySettings(1.0, 200, 0, 0.97))
    assert set(row) <= set(SUMMARY_COLUMNS)
    assert row["best_single"] == "b" and row["router"] == "KNN (tuned)"
    assert row["router_quality"] == pytest.approx(5 / 8)
    assert row["gain_at_b"] == pytest.approx(5 / 8 - 1 / 2)  # Gain@B = +0.125
    assert row["gain_at_b_ci_low"] <= row["gain_at_b"] <= row["gain_at_b_ci_high"]
    assert row["gap_closed_pct"] == pytest.approx(100 * (5 / 8 - 1 / 2) / (3 / 4 - 1 / 2))  # Gap@O: best single -> oracle, 50%
    # Per query the router gains .5 over b where the oracle gains 1 (q0) and 0 elsewhere: every draw that holds q0 closes 50%.
    assert (row["gap_closed_pct_ci_low"], row["gap_closed_pct_ci_high"]) == pytest.approx((50.0, 50.0))
    assert row["gap_closed_random_pct"] == pytest.approx(100 * (5 / 8 - 11 / 24) / (3 / 4 - 11 / 24))  # 57.14%
    # CostSave@B: the operating point (knn_reg at lambda 1) picks a, b, c, c: cost (1 + 4 + 2 + 2) / 4 against b's 4.
    assert row["best_single_cost"] == pytest.approx(4.0)
    assert row["op_cost"] == pytest.approx(9 / 4)
    assert row["cost_save_at_b_pct"] == pytest.approx(100 * (1 - (9 / 4) / 4))  # 43.75%
    assert row["op_quality"] == pytest.approx((1 + 1 + 0 + 1) / 4)
    # Cost is the same on every query, so every draw's saving lies between the cheapest and dearest possible mixes.
    assert 0 < row["cost_save_at_b_ci_low"] <= row["cost_save_at_b_pct"] <= row["cost_save_at_b_ci_high"] < 75
    # The matched point (lambda 0) picks b, b, b, c: quality 2/4 = 100% of b's, cost 3.5 = 87.5% of b's.
    assert row["matched_quality_pct"] == pytest.approx(100.0) and row["matched_cost_pct"] == pytest.approx(87.5)
    # Its quality equals b's on every query, so on every draw: [100%, 100%].
    assert (row["matched_quality_pct_ci_low"], row["matched_quality_pct_ci_high"]) == pytest.approx((100.0, 100.0))
    assert row["matched_target_pct"] == pytest.approx(97.0)
    assert (row["aiq_router"], row["aiq_minus_zero"]) == ("knn_reg", 0.04)


def test_summary_row_cost_save_interval_by_hand():
    """Two queries, the operating point saves 3 of 4 on one and nothing on the other: draws give 0%, 37.5% or 75%."""
    q = np.array([[1.0, 1.0], [0.0, 1.0]])
    te = OutcomeMatrix(np.array(["q0", "q1"]), np.array(["", ""]), np.array(["math"] * 2), ["a", "b"], q, None, None, np.array([[1.0, 4.0], [1.0, 4.0]]))
    tr = OutcomeMatrix(np.array(["t0"]), np.array([""]), np.array(["math"]), ["a", "b"], np.array([[0.0, 1.0]]), None, None, np.array([[1.0, 4.0]]))
    d = PoolData("p", ["a", "b"], te, tr, te, "cost_usd")
    fitted = {("p", "r"): FinalFit("p", "r", np.eye(2)[[1, 1]], [np.array([0, 1])])}
    cv = pd.DataFrame({"pool": "p", "selector": ["r"], "chosen": True, "cv_utility_mean": [1.0]})
    row = summary_row(d, fitted, TunePlan(["r"], ["r"], ["e"], [1.0]), CVChoices(cv_router(cv, "p", ["r"]), ("r", 1.0)), te.cost_usd, None,
                      SummarySettings(1.0, 2000, 0))
    assert row["cost_save_at_b_pct"] == pytest.approx(37.5)
    # P(both draws are q1) = 1/4 > 2.5% and P(both are q0) = 1/4: the interval spans the extremes 0% and 75%.
    assert (row["cost_save_at_b_ci_low"], row["cost_save_at_b_ci_high"]) == pytest.approx((0.0, 75.0))
    assert row["gain_at_b"] == 0.0 and (row["gain_at_b_ci_low"], row["gain_at_b_ci_high"]) == (0.0, 0.0)


def test_aiq_difference_to_the_zero_router_is_paired():
    """A router whose operating points are the single models themselves is the zero router: its AIQ difference
    is 0 on every draw (an unpaired bootstrap of the two would spread around 0)."""
    rng = np.random.default_rng(0)
    quality = rng.integers(0, 2, size=(50, 3)).astype(float)
    cost = np.tile([1.0, 2.0, 5.0], (50, 1))
    t = aiq_table("p", quality, cost, {"R": quality.T}, {"R": cost.T}, best_single=0, n_bootstrap=300, seed=1)
    r = t.set_index("router").loc["R"]
    assert r["aiq_minus_zero_router"] == pytest.approx(0.0, abs=1e-12)
    assert r["aiq_minus_zero_router_ci_low"] == pytest.approx(0.0, abs=1e-12)
    assert r["aiq_minus_zero_router_ci_high"] == pytest.approx(0.0, abs=1e-12)
    assert r["ci_high"] - r["ci_low"] > 0.05  # the AIQ itself varies across draws


def test_summary_verdict_and_matrix_print_the_hand_numbers():
    d, fitted, plan, cv = _pool()
    row = summary_row(d, fitted, plan, CVChoices(cv_router(cv, "p", plan.names), ("knn_reg", 1.0), ("knn_reg", 0.0)), COST, None,
                      SummarySettings(1.0, 200, 0, 0.97))
    row.update({"category_lookup_quality": 0.55, "lookup_gain_at_b": 0.05, "lookup_gain_at_b_ci_low": -0.1, "lookup_gain_at_b_ci_high": 0.2,
                "gain_vs_lookup": 0.075, "gain_vs_lookup_ci_low": -0.05, "gain_vs_lookup_ci_high": 0.2, "verdict": "static routing is enough"})
    df = summary_table([row], "source")
    df.insert(0, "dataset", "routerbench")
    cells = [c[0] for c in summary_matrix(df).rows[0]]
    assert cells[3] == "4" and cells[4] == "b (0.500)" and cells[5] == "0.750" and cells[6] == "KNN (tuned) (0.625)"
    assert cells[7].startswith("+0.125 [") and cells[8].startswith("KNN (tuned): +0.125 [")  # the CV arg-max is the rule's choice here
    assert cells[9] == "0.550" and cells[10] == "+0.075 [-0.050, +0.200]"
    assert cells[11] == "static routing is enough" and cells[12] == "—" and cells[13] == "—"  # no peer in this row
    assert cells[14] == "50.0%" and cells[15] == "57.1%" and cells[17].startswith("43.8% [")
    assert cells[18] == "100.0% / 87.5%"
    s = verdict(next(df.itertuples(index=False)))
    assert s.startswith("RouterBench, pool p: routing did not pay off in quality. KNN (tuned) is not distinguishable from always "
                        f"using b (+0.125 [{row['gain_at_b_ci_low']:+.3f}, {row['gain_at_b_ci_high']:+.3f}]; the interval includes 0)")
    assert (" Static routing, each category to its best model on train, scores 0.550 (+0.050 [-0.100, +0.200] over b); the "
            "router's gain over it is +0.075 [-0.050, +0.200]: static routing is enough.") in s
    assert (" At the operating point chosen on CV to keep its quality, routing saves 43.8% "
            f"[{row['cost_save_at_b_ci_low']:.1f}%, {row['cost_save_at_b_ci_high']:.1f}%] of the cost in USD "
            "(held-out quality 0.750 against 0.500).") in s
    assert s.endswith(" Chosen on CV to keep 97% of its quality, knn_reg keeps 100.0% [100.0%, 100.0%] of it at 87.5% "
                      f"[{row['matched_cost_pct_ci_low']:.1f}%, {row['matched_cost_pct_ci_high']:.1f}%] of its cost in USD.")


def test_summary_row_when_the_rule_keeps_the_best_single_model():
    """The one-SE rule chose the best single model (b) over the arg-max knn, and kept b as the CostSave@B point: the headline
    gain is exactly 0 on every draw, the arg-max's gain is knn's, and nothing is saved."""
    d, fitted, plan, _ = _pool()
    row = summary_row(d, fitted, plan, CVChoices("best_single", ("best_single", float("nan")), ("knn_reg", 0.0), argmax="knn"), COST,
                      None, SummarySettings(1.0, 200, 0, 0.97, min_queries=1))
    assert row["router"] == "Best single on train (b)" and row["router_quality"] == pytest.approx(0.5)
    assert (row["gain_at_b"], row["gain_at_b_ci_low"], row["gain_at_b_ci_high"]) == (0.0, 0.0, 0.0)
    assert row["argmax_router"] == "KNN (tuned)" and row["argmax_gain_at_b"] == pytest.approx(5 / 8 - 1 / 2)
    assert (row["cost_router"], row["op_cost"], row["cost_save_at_b_pct"]) == ("best_single", pytest.approx(4.0), 0.0)
    assert (row["cost_save_at_b_ci_low"], row["cost_save_at_b_ci_high"]) == (0.0, 0.0)


@pytest.mark.parametrize("lo, hi, expected", [
    (0.01, 0.2, "Sel beats the best single model (b): +0.125 quality, 95% CI [+0.010, +0.200]; the whole interval is above 0."),
    (-0.05, 0.2, "Sel does not beat the best single model (b): +0.125 quality, 95% CI [-0.050, +0.200]; the interval includes 0, "
                 "so no difference is shown."),
    (-0.3, -0.1, "Sel does not beat the best single model (b); it is worse: +0.125 quality, 95% CI [-0.300, -0.100]; the whole "
                 "interval is below 0."),
])
def test_selector_verdict_follows_the_interval(table, lo, hi, expected):
    r, _ = table
    df = r.reset_index()
    df.loc[df["strategy"] == "Sel", ["uplift_vs_best_single_ci_low", "uplift_vs_best_single_ci_high"]] = [lo, hi]
    (s,) = verdicts(df)
    assert s.startswith(expected)
    assert s.endswith("and closes 57.1% of the random → oracle gap.")


@pytest.mark.parametrize("lo, hi, phrase", [
    (0.01, 0.2, "routing paid off. KNN (tuned) beats always using b by +0.125 [+0.010, +0.200] quality and closes 50.0% of the gap"),
    (-0.05, 0.2, "routing did not pay off in quality. KNN (tuned) is not distinguishable from always using b (+0.125 [-0.050, +0.200]; "
                 "the interval includes 0)"),
    (-0.3, -0.1, "routing did not pay off. KNN (tuned) is worse than always using b: +0.125 [-0.300, -0.100] quality."),
])
def test_summary_verdict_follows_the_interval(lo, hi, phrase):
    d, fitted, plan, cv = _pool()
    row = summary_row(d, fitted, plan, CVChoices(cv_router(cv, "p", plan.names)), None, None, SummarySettings(1.0, 200, 0))
    row.update({"gain_at_b_ci_low": lo, "gain_at_b_ci_high": hi, "cost_unit": ""})
    df = summary_table([row], "source")
    df.insert(0, "dataset", "routerbench")
    s = verdict(next(df.itertuples(index=False)))
    assert phrase in s and s.endswith("The data has no per-query cost, so no saving is computed.")


def test_best_single_index_is_the_best_single_selectors_pick():
    """The one definition of the best single model: highest mean training utility, ties to the listed order."""
    from mlsel.selection.base import best_single_index
    from mlsel.selection.baselines import BestSingleSelector

    tied = np.array([[1, 1, 0], [0, 0, 1]], dtype=float)  # every mean 1/2: the first listed model
    assert best_single_index(tied, None, 0.9) == 0
    lat = np.array([[3.0, 1.0, 1.0], [3.0, 1.0, 1.0]])  # w 0.5: a 0.25 + 0.125, b and c 0.25 + 0.25: b, listed before c
    assert best_single_index(tied, lat, 0.5) == 1
    for q, la, w in ((tied, None, 0.9), (tied, lat, 0.5), (Q_TRAIN, None, 1.0)):
        sel = BestSingleSelector(quality_weight=w).fit(np.zeros((len(q), 1)), q, la, models=list("abc"))
        assert sel.model_ == "abc"[best_single_index(q, la, w)]
    assert best_single_index(Q_TRAIN, None, 1.0) == 1  # the hand case's b
