"""Known answers for the one-standard-error choice rule (mlsel.metrics.one_se)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mlsel.data.outcomes import OutcomeMatrix
from mlsel.metrics.one_se import BEST_SINGLE, CATEGORY_LOOKUP, one_se_rule, per_fold, static_fold_scores


def _folds(**cols) -> pd.DataFrame:
    return pd.DataFrame(cols, index=pd.MultiIndex.from_tuples([(42, f) for f in range(len(next(iter(cols.values()))))],
                                                              names=["cv_seed", "fold"]))


def test_standard_error_worked_out_by_hand():
    # best_single 0.45 0.60 0.65; knn (the CV-best, mean 0.60) 0.50 0.60 0.70.
    # d = best_single - knn = -0.05, 0.00, -0.05: mean -1/30; sd (ddof 1) = sqrt((1/60^2 + 2/60^2 ... )):
    # deviations +1/60, -2/60, +1/60 -> sd = sqrt((1 + 4 + 1) / 3600 / 2) = sqrt(1/1200); se = sd / sqrt(3) = 1/60.
    r = one_se_rule(_folds(best_single=[0.45, 0.60, 0.65], knn=[0.50, 0.60, 0.70]))
    row = r.table.set_index("candidate").loc["best_single"]
    assert row["diff_to_best"] == pytest.approx(-1 / 30)
    assert row["se"] == pytest.approx(1 / 60)
    assert not row["within_one_se"]  # -1/30 < -1/60
    assert (r.chosen, r.argmax) == ("knn", "knn")


def test_folds_with_no_signal_choose_the_static_candidate():
    # The router wins two folds and loses one: mean +0.01, differences 0.04, 0.04, -0.05 -> se about 0.03.
    r = one_se_rule(_folds(best_single=[0.50, 0.50, 0.55], category_lookup=[0.49, 0.52, 0.53], guarded=[0.54, 0.54, 0.50]))
    assert r.argmax == "guarded"
    assert r.chosen == "best_single"
    assert list(r.table["chosen"]) == [True, False, False]
    assert list(r.table["argmax"]) == [False, False, True]


def test_a_strong_consistent_signal_chooses_the_router():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.4, 0.6, size=10)
    r = one_se_rule(_folds(best_single=base, category_lookup=base + 0.001, knn=base + 0.03 + rng.normal(0, 0.002, 10)))
    assert r.chosen == r.argmax == "knn"


def test_the_simplest_of_several_within_one_se_wins_and_ties_go_to_the_simpler():
    r = one_se_rule(_folds(best_single=[0.3, 0.3, 0.3], category_lookup=[0.5, 0.6, 0.7], knn=[0.5, 0.6, 0.7]))
    assert r.argmax == "category_lookup"  # equal means: the simpler is the CV-best
    assert r.chosen == "category_lookup"


def test_a_missing_fold_is_an_error():
    with pytest.raises(ValueError, match="knn"):
        one_se_rule(_folds(best_single=[0.5, 0.5], knn=[0.6, np.nan]))


def test_static_fold_scores_fit_on_the_fold_and_score_on_its_validation_queries():
    # Two categories; model a is right on math, b on law. Fold 0 fits on rows 0-3 and validates on 4-7.
    cats = np.array(["math", "law"] * 4)
    q = np.array([[1.0, 0.0], [0.0, 1.0]] * 4)
    q[4] = [0.0, 0.0]  # a validation math query no model answers
    m = OutcomeMatrix(np.array([f"q{i}" for i in range(8)]), np.array([""] * 8), cats, ["a", "b"], q, None, None)
    folds = [(0, 0, np.arange(4), np.arange(4, 8))]
    s = static_fold_scores("p", m, folds, 42, 1.0, 1, None).set_index("selector")
    # Best single on rows 0-3: a and b tie at 0.5 -> a (model order). On rows 4-7 a is right on row 6 only: 1/4.
    assert s.loc[BEST_SINGLE, "quality"] == pytest.approx(0.25)
    # The lookup sends math to a and law to b: right on rows 5, 6, 7.
    assert s.loc[CATEGORY_LOOKUP, "quality"] == pytest.approx(0.75)
    pf = per_fold(s.reset_index(), {BEST_SINGLE: 0, CATEGORY_LOOKUP: 0})
    assert list(pf.columns) == [BEST_SINGLE, CATEGORY_LOOKUP] and pf.shape == (1, 2)


def test_ship_rule_keeps_the_headline_reference_and_ships_the_simplest_runnable_within_one_se():
    from mlsel.deploy.ship import ship_rule

    # guarded (not runnable) is the CV-best; the best single model is 0.04 below it on every fold (outside one SE), the
    # lookup 0.01 below give or take 0.01 (within): the lookup is shipped, as the headline's rule would choose it.
    scores = _folds(best_single=[0.50, 0.52, 0.54], category_lookup=[0.53, 0.57, 0.57], knn=[0.53, 0.55, 0.57],
                    guarded=[0.54, 0.56, 0.58])
    name, rule, reference = ship_rule(scores, {"best_single", "category_lookup", "knn"})
    assert name == "category_lookup" and reference == "the CV-best of all candidates"
    assert rule.table.set_index("candidate")["chosen"].to_dict() == {"best_single": False, "category_lookup": True, "knn": False,
                                                                     "guarded": False}
    # Only the best single model is runnable and it is outside one SE of guarded: the rule runs on the runnable alone.
    name, rule, reference = ship_rule(scores, {"best_single"})
    assert name == "best_single" and reference.startswith("the CV-best of the runnable candidates")
