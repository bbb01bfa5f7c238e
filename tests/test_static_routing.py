"""Static routing: the per-category and per-task lookups, their table rows, the summary verdict and the exported config.

Every expected number is computed by hand in the comments.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from mlsel import CATEGORIES
from mlsel.data.outcomes import OutcomeMatrix
from mlsel.deploy.routing_config import STATIC, RouterConfigError, load_router_config, static_config
from mlsel.features import EmbedSettings
from mlsel.metrics.evaluate import (
    CATEGORY_LOOKUP,
    TASK_LOOKUP,
    Strategy,
    baseline_strategies,
    evaluate,
    fitted_lookups,
    lookup_table,
    oracle_proba,
)
from mlsel.selection.lookup import GroupLookup
from mlsel.tuning.summary import VERDICTS, static_columns

MODELS = ["a", "b", "c"]
# Training split: 7 queries in groups math (3), law (3), physics (1).
TR_GROUPS = np.array(["math", "math", "math", "law", "law", "law", "physics"])
TR_Q = np.array([
    [1.0, 0.0, 0.0],   # math: means a 2/3, b 1/3, c 0
    [1.0, 1.0, 0.0],
    [0.0, 0.0, 0.0],
    [0.0, 1.0, 1.0],   # law: means a 0, b 2/3, c 2/3 -> tie b/c, broken by the overall mean
    [0.0, 1.0, 1.0],
    [0.0, 0.0, 0.0],
    [0.0, 0.0, 1.0],   # physics: c alone
])
# Overall means: a 2/7, b 3/7, c 3/7 -> b and c tie; model order puts b first: best single b, rank b < c < a.


def test_lookup_known_answers_ties_small_and_unseen_groups():
    lk = GroupLookup.fit(TR_GROUPS, TR_Q, None, MODELS, quality_weight=1.0, min_queries=2)
    assert lk.fallback == 1  # b
    assert lk.model_table() == {"math": "a", "law": "b"}  # law's tie b/c goes to b (higher overall rank); physics too small
    assert lk.fallback_groups == ["physics"]
    assert lk.n_train == {"law": 3, "math": 3, "physics": 1}
    groups = np.array(["math", "law", "physics", "biology", "math"])
    assert lk.predict_index(groups).tolist() == [0, 1, 1, 1, 0]
    assert lk.n_fallback(groups) == 2  # physics (small) and biology (unseen)
    # With min_queries 1 physics gets its own model.
    assert GroupLookup.fit(TR_GROUPS, TR_Q, None, MODELS, 1.0, min_queries=1).model_table()["physics"] == "c"
    with pytest.raises(ValueError, match="min_queries"):
        GroupLookup.fit(TR_GROUPS, TR_Q, None, MODELS, 1.0, min_queries=0)


def test_lookup_tie_goes_to_the_overall_rank_not_model_order():
    # Group g ties a/b; overall b is better (query 3), so b wins although a is listed first.
    q = np.array([[1.0, 1.0], [0.0, 0.0], [0.0, 1.0]])
    lk = GroupLookup.fit(np.array(["g", "g", "h"]), q, None, ["a", "b"], 1.0, min_queries=1)
    assert lk.model_table() == {"g": "b", "h": "b"}


def test_lookup_uses_the_latency_weighted_utility():
    # Equal quality; a is slower. Utility 0.5*q + 0.5/(1+lat): a 0.5+0.5/11, b 0.5+0.5/2 -> b.
    q = np.ones((2, 2))
    lat = np.array([[10.0, 1.0], [10.0, 1.0]])
    assert GroupLookup.fit(np.array(["g", "g"]), q, lat, ["a", "b"], 0.5).model_table() == {"g": "b"}


def _matrix(groups, q, tasks=None) -> OutcomeMatrix:
    n = len(groups)
    return OutcomeMatrix(np.array([f"q{i}" for i in range(n)]), np.array([""] * n), np.array(groups), list(MODELS),
                         np.asarray(q, float), None, None, tasks=None if tasks is None else np.array(tasks))


def test_lookup_rows_in_the_results_table_with_the_uplift_over_the_lookup():
    tr = _matrix(TR_GROUPS, TR_Q, tasks=["t1"] * 3 + ["t2"] * 4)
    te_q = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 1.0, 0.0]]
    te = _matrix(["math", "law", "physics", "math"], te_q, tasks=["t1", "t2", "t2", "t1"])
    strategies = [Strategy("Oracle (best possible)", "oracle", oracle_proba(te)),
                  Strategy("always c", "selector", np.tile([0.0, 0.0, 1.0], (4, 1)))]
    strategies += baseline_strategies(tr, te, quality_weight=1.0, min_queries=2)
    kinds = [s.kind for s in strategies]
    assert kinds.count("category_lookup") == 1 and kinds.count("task_lookup") == 1
    res = evaluate(te, strategies, "p", n_bootstrap=200, seed=0)["results"].set_index("strategy")
    # Category lookup (min 2): math->a, law->b, physics->fallback b: qualities 1, 1, 0, 0 -> 0.5.
    assert res.loc[CATEGORY_LOOKUP, "avg_quality"] == pytest.approx(0.5)
    # Task lookup: t1 (math queries) means a 2/3, b 1/3 -> a; t2 (law+physics) a 0, b 2/4, c 3/4 -> c.
    # Test: q0 t1 a=1, q1 t2 c=0, q2 t2 c=1, q3 t1 a=0 -> 0.5.
    assert res.loc[TASK_LOOKUP, "avg_quality"] == pytest.approx(0.5)
    # Best single b: 0, 1, 0, 1 -> 0.5; always c: 0, 0, 1, 0 -> 0.25. Uplift of c over the lookup: -0.25.
    assert res.loc["always c", "uplift_vs_category_lookup"] == pytest.approx(-0.25)
    assert res.loc[CATEGORY_LOOKUP, "uplift_vs_category_lookup"] == 0.0
    assert res.loc[CATEGORY_LOOKUP, "uplift_vs_category_lookup_ci_low"] == 0.0
    lo, hi = res.loc["always c", ["uplift_vs_category_lookup_ci_low", "uplift_vs_category_lookup_ci_high"]]
    assert -1.0 <= lo < -0.25 < hi <= 1.0
    # No tasks: no task lookup row.
    kinds = [s.kind for s in baseline_strategies(_matrix(TR_GROUPS, TR_Q), _matrix(["math"], [[1, 0, 0]]), 1.0)]
    assert "task_lookup" not in kinds and "category_lookup" in kinds


def test_lookup_table_lists_every_category_and_counts_the_fallbacks():
    tr = _matrix(TR_GROUPS, TR_Q)
    te = _matrix(["math", "biology"], [[1, 0, 0], [0, 1, 0]])
    t = lookup_table(fitted_lookups(tr, te, quality_weight=1.0, min_queries=2), "p").set_index("group")
    assert sorted(t.index) == sorted(CATEGORIES) and (t["lookup"] == "category").all()
    assert t.loc["math", ["n_train", "n_test", "model", "source"]].tolist() == [3, 1, "a", "train"]
    assert t.loc["physics", ["model", "source"]].tolist() == ["b", "fallback: n_train < 2"]
    assert t.loc["biology", ["n_train", "n_test", "model", "source"]].tolist() == [0, 1, "b", "fallback: unseen"]


def test_static_config_round_trip_routes_each_category_to_its_model(tmp_path):
    tr = _matrix(TR_GROUPS, TR_Q)
    rows = lookup_table(fitted_lookups(tr, _matrix(["math"], [[1, 0, 0]]), 1.0, 2), "p").to_dict("records")
    path = tmp_path / "static.yaml"
    path.write_text(yaml.safe_dump(static_config(rows, "test")))
    cfg = load_router_config(path, MODELS)
    assert {d.algorithm for d in cfg.decisions} == {STATIC}
    routed = {c: cfg.route(c).model_refs for c in CATEGORIES}
    assert routed["math"] == ("a",) and routed["law"] == ("b",) and routed["physics"] == ("b",)
    assert all(refs == ("b",) for c, refs in routed.items() if c != "math")
    assert cfg.decision(cfg.default_decision).model_refs == ("b",)


def test_a_static_decision_needs_exactly_one_model(tmp_path):
    raw = {"decisions": [{"name": "d", "priority": 1, "rules": {"conditions": [{"type": "domain", "name": "math"}]},
                          "modelRefs": [{"model": "a"}, {"model": "b"}]}]}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(RouterConfigError, match=r"decision 'd'.*exactly one modelRef"):
        load_router_config(path)


def _tuned(router_low: float, lookup_low: float) -> pd.DataFrame:
    return pd.DataFrame([
        {"strategy": "R (tuned)", "kind": "selector", "avg_quality": 0.6, "uplift_vs_best_single": 0.05,
         "uplift_vs_best_single_ci_low": 0.01, "uplift_vs_best_single_ci_high": 0.09,
         "uplift_vs_category_lookup": 0.02, "uplift_vs_category_lookup_ci_low": router_low, "uplift_vs_category_lookup_ci_high": 0.04},
        {"strategy": CATEGORY_LOOKUP, "kind": "category_lookup", "avg_quality": 0.58, "uplift_vs_best_single": 0.03,
         "uplift_vs_best_single_ci_low": lookup_low, "uplift_vs_best_single_ci_high": 0.05,
         "uplift_vs_category_lookup": 0.0, "uplift_vs_category_lookup_ci_low": 0.0, "uplift_vs_category_lookup_ci_high": 0.0},
    ])


@pytest.mark.parametrize("gain_low, router_low, lookup_low, verdict", [
    (0.01, 0.001, 0.01, VERDICTS[0]),    # beats both
    (0.01, -0.01, -0.01, VERDICTS[1]),   # beats the best single, not the lookup
    (-0.01, -0.01, 0.01, VERDICTS[1]),   # only the lookup beats the best single
    (-0.01, 0.01, -0.01, VERDICTS[2]),   # nothing beats the best single
])
def test_summary_verdict_from_the_intervals(gain_low, router_low, lookup_low, verdict):
    cols = static_columns(_tuned(router_low, lookup_low), "R (tuned)", gain_low)
    assert cols["verdict"] == verdict
    assert cols["category_lookup_quality"] == 0.58 and cols["gain_vs_lookup"] == 0.02
    assert cols["gain_vs_lookup_ci_low"] == router_low and np.isnan(cols["task_lookup_quality"])


def test_exported_static_config_scores_exactly_the_lookup_row_offline(smoke_run, tmp_path):
    """The evaluate stage's static_routing_<pool>.yaml, read back by the offline config evaluation, routes every
    held-out query as the per-category lookup row did: the same quality (to the 6 decimals the table is written with)."""
    from mlsel.deploy.evaluate_config import evaluate_router_config
    from mlsel.params import stage_values
    from mlsel.paths import run_paths

    tables = run_paths(smoke_run.base.run_dir)["tables"]
    res = pd.read_csv(tables / "selection_results.csv")
    pool = max(smoke_run.base.pools, key=lambda p: len(smoke_run.base.pools[p]))  # the pool holding every model of the run
    lookup = res[(res["pool"] == pool) & (res["kind"] == "category_lookup")]
    assert len(lookup) == 1
    static = tables / f"static_routing_{pool}.yaml"
    cfg = load_router_config(static)
    assert {d.algorithm for d in cfg.decisions} == {STATIC}
    table = pd.read_csv(tables / "static_lookup.csv")
    seen = table[(table["pool"] == pool) & (table["lookup"] == "category") & (table["n_test"] > 0)]
    assert all(cfg.route(r.group).model_refs == (r.model,) for r in seen.itertuples())
    flat = stage_values(smoke_run, "ship") | {"router_config": str(static), "n_bootstrap": 20}
    ev = evaluate_router_config(**flat, embed=EmbedSettings(flat["embed_batch_size"], flat["device"]))
    overall = ev.result[(ev.result["decision"] == "overall") & (ev.result["kind"] == "router_config")]
    assert overall["avg_quality"].iloc[0] == pytest.approx(lookup["avg_quality"].iloc[0], abs=5e-7)
    assert overall["uplift_vs_category_lookup"].iloc[0] == 0.0  # per query the same choice: exactly 0 on every draw
    assert overall["uplift_vs_category_lookup_ci_low"].iloc[0] == 0.0
    assert ev.best_single_algorithm.startswith("Best single on train")  # no ML decision: compared with the best single model
