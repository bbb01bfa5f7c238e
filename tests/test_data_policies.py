"""One meaning of each data policy for every source: missing quality, incomplete queries per pool, missing costs.

Every expected number is worked out by hand in the comments.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsel import stages
from mlsel.data.costs import fill_missing_cost
from mlsel.data.outcomes import OutcomeMatrix, apply_missing_quality, load_prepared, pool_matrix, restrict_to_pool, restrict_to_pools
from mlsel.data.readers import read_seed_jsonl
from mlsel.data.records import DataError, DataLog
from mlsel.manifest import read_manifest
from mlsel.params import for_stage


def _rec(query: str, model: str, perf) -> dict:
    return {"query": query, "category": "math", "model_name": model, "performance": perf, "response_time": None}


def _write(path: Path, records: list[dict]) -> Path:
    # json.dumps writes a float NaN as the bare token NaN, as Python's json does in real result files.
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


# --------------------------------------------------------------------------- 1. missing quality in JSONL


@pytest.mark.parametrize("hole", [float("nan"), None], ids=["NaN", "null"])
def test_jsonl_nan_and_null_performance_follow_missing_quality_policy(tmp_path, hole):
    path = _write(tmp_path / "r.jsonl", [_rec("q1", "a", 1.0), _rec("q1", "b", hole), _rec("q2", "a", hole), _rec("q2", "b", 0.0)])
    assert ("NaN" if hole is not None else "null") in path.read_text().splitlines()[1]
    df = read_seed_jsonl(path)
    assert df["quality"].isna().tolist() == [False, True, True, False]
    assert df["source_row"].tolist() == [f"{path}:{i}" for i in (1, 2, 3, 4)]
    # error: the first hole is line 2 (model b, query q1); 2 holes in all.
    with pytest.raises(DataError) as err:
        apply_missing_quality(df, "error", DataLog())
    assert str(err.value).startswith(f"{path}:2: model 'b' has no quality on query 'q1' (2 empty quality cells in all)")
    # drop: the two holes go and are counted, as RouterBench's empty cells are.
    dlog = DataLog()
    kept = apply_missing_quality(df, "drop", dlog)
    assert list(zip(kept["query"], kept["model"], kept["quality"])) == [("q1", "a", 1.0), ("q2", "b", 0.0)]
    assert dlog.dropped == {"missing_quality_cell": 2}


def test_jsonl_without_a_performance_key_is_still_a_malformed_record(tmp_path):
    bad = {k: v for k, v in _rec("q1", "b", 1.0).items() if k != "performance"}
    path = _write(tmp_path / "r.jsonl", [_rec("q1", "a", 1.0), bad])
    with pytest.raises(DataError, match=rf"^{path}:2: missing required field 'performance'"):
        read_seed_jsonl(path)


def test_llmrouter_null_and_nan_scores_follow_missing_quality_policy(data_dir, monkeypatch):
    from mlsel.data import readers

    real = readers._read_json_any

    def with_holes(path):
        data = real(path)
        if "train" in Path(path).name and isinstance(data, list):
            first = sorted(data[0]["scores"])[:2]  # the first two models, alphabetically
            data[0]["scores"][first[0]], data[0]["scores"][first[1]] = None, float("nan")
        return data

    monkeypatch.setattr(readers, "_read_json_any", with_holes)
    df = readers.read_llmrouter(data_dir)
    holes = df[df["quality"].isna()]
    assert len(holes) == 2 and holes["query_id"].nunique() == 1
    assert holes["source_row"].str.endswith("train.json.gz record 0").all()
    with pytest.raises(DataError, match=r"train\.json\.gz record 0: model '(codegemma-7b|gemma-2-9b-it)' has no quality on .* \(2 empty"):
        apply_missing_quality(df, "error", DataLog())
    dlog = DataLog()
    assert len(apply_missing_quality(df, "drop", dlog)) == len(df) - 2
    assert dlog.dropped == {"missing_quality_cell": 2}


# --------------------------------------------------------------------------- 2. incomplete queries, pool by pool


def _outcomes() -> pd.DataFrame:
    # q1: a b c scored; q2: a b; q3: a c (b missing). Pools small = [a, b], big = [a, b, c], ac = [a, c].
    rows = [("q1", "a"), ("q1", "b"), ("q1", "c"), ("q2", "a"), ("q2", "b"), ("q3", "a"), ("q3", "c")]
    return pd.DataFrame({"query_id": [q for q, _ in rows], "query": [q.upper() for q, _ in rows], "model": [m for _, m in rows],
                         "quality": 1.0})


def test_a_query_leaves_only_the_pools_missing_one_of_its_scores():
    df, dlog = _outcomes(), DataLog()
    kept = restrict_to_pools(df, {"small": ["a", "b"], "big": ["a", "b", "c"]}, "drop", dlog)
    # small keeps q1, q2; big keeps q1; q3 is in neither. q1's c row stays (big), q3's rows go.
    assert list(zip(kept["query_id"], kept["model"])) == [("q1", "a"), ("q1", "b"), ("q1", "c"), ("q2", "a"), ("q2", "b")]
    # small leaves out q3 (1), big leaves out q2 and q3 (2); one query (q3) leaves the data.
    assert dlog.dropped == {"incomplete_query_in_pool_small": 1, "incomplete_query_in_pool_big": 2, "incomplete_query": 1}
    dlog = DataLog()
    kept = restrict_to_pools(df, {"small": ["a", "b"], "ac": ["a", "c"]}, "drop", dlog)
    # small: q1 q2; ac: q1 q3. Every query stays somewhere; q2 has no c row and q3's a, c rows are ac's.
    assert sorted(set(kept["query_id"])) == ["q1", "q2", "q3"] and len(kept) == 7
    assert dlog.dropped == {"incomplete_query_in_pool_small": 1, "incomplete_query_in_pool_ac": 1}
    # error: the first pool with an incomplete query (small: q3); without q3, big (q2).
    with pytest.raises(DataError, match=r"^pool 'small': 1 of 3 queries not scored by every model of the pool \['a', 'b'\], e\.g\. 'Q3'"):
        restrict_to_pools(df, {"small": ["a", "b"], "big": ["a", "b", "c"]}, "error", DataLog())
    with pytest.raises(DataError, match=r"^pool 'big': 1 of 2 queries not scored by every model of the pool .*, e\.g\. 'Q2'"):
        restrict_to_pools(df[df["query_id"] != "q3"], {"small": ["a", "b"], "big": ["a", "b", "c"]}, "error", DataLog())
    # One pool: the old count alone.
    dlog = DataLog()
    assert restrict_to_pool(df, ["a", "b", "c"], "drop", dlog)["query_id"].unique().tolist() == ["q1"]
    assert dlog.dropped == {"incomplete_query": 2}


@pytest.mark.parametrize("hole", ["absent", "NaN and null"])
def test_prepare_keeps_each_query_in_every_pool_that_scored_it_and_counts_per_pool(tmp_path, hole):
    # q1..q4: a, b, c scored. q5, q6: c's score is missing (no record, or performance NaN / null, which the
    # drop policy removes); q7: no record for b. Pools small = [a, b], big = [a, b, c].
    recs = [_rec(f"q{i}", m, float(i % 2)) for i in range(1, 5) for m in "abc"]
    recs += [_rec("q5", "a", 1.0), _rec("q5", "b", 0.0), _rec("q6", "a", 0.0), _rec("q6", "b", 1.0)]
    if hole != "absent":
        recs += [_rec("q5", "c", float("nan")), _rec("q6", "c", None)]
    recs += [_rec("q7", "a", 1.0), _rec("q7", "c", 1.0)]
    path = _write(tmp_path / "r.jsonl", recs)
    pools = {"small": ["a", "b"], "big": ["a", "b", "c"]}
    p = for_stage("prepare", {"run_dir": str(tmp_path / "run"), "source": "seed_jsonl", "source_path": str(path), "pools": pools,
                              "missing_quality_policy": "drop", "test_size": 0.5})
    stages.prepare_data(p)
    queries, outcomes = load_prepared(p.run_dir)
    # q1..q6 stay (q5, q6 in small only); q7 is complete in no pool. Rows: 4 x 3 + 2 x 2 = 16.
    assert sorted(queries["query"]) == ["q1", "q2", "q3", "q4", "q5", "q6"]
    assert len(outcomes) == 16
    small, big = pool_matrix(queries, outcomes, pools["small"]), pool_matrix(queries, outcomes, pools["big"])
    assert sorted(small.queries) == ["q1", "q2", "q3", "q4", "q5", "q6"] and small.quality.shape == (6, 2)
    assert sorted(big.queries) == ["q1", "q2", "q3", "q4"] and big.quality.shape == (4, 3)
    assert small.quality[list(small.queries).index("q5")].tolist() == [1.0, 0.0]
    data = read_manifest(p.run_dir)["stages"]["prepare"]["data"]
    # small leaves out q7 (1); big leaves out q5, q6, q7 (3); q7 leaves the data (1); the empty quality cells (2).
    assert data["dropped"] == {"incomplete_query": 1, "incomplete_query_in_pool_big": 3, "incomplete_query_in_pool_small": 1,
                               **({"missing_quality_cell": 2} if hole != "absent" else {})}


# --------------------------------------------------------------------------- 3. missing costs: one rule


def test_fill_missing_cost_takes_each_models_mean_known_cost():
    cost = np.array([[1.0, 10.0], [3.0, np.nan], [np.nan, 20.0]])
    # Model 0: mean(1, 3) = 2; model 1: mean(10, 20) = 15. (One mean over all: 34 / 4 = 8.5.)
    assert fill_missing_cost(cost).tolist() == [[1.0, 10.0], [3.0, 15.0], [2.0, 20.0]]
    assert np.isnan(cost).sum() == 2  # the input is left as it was
    # From a reference (the training rows): model 1 -> mean(4, 8) = 6.
    assert fill_missing_cost(np.array([[np.nan, np.nan]]), reference=np.array([[1.0, 4.0], [3.0, 8.0]])).tolist() == [[2.0, 6.0]]
    with pytest.raises(ValueError, match="cost has a model with no values at all"):
        fill_missing_cost(np.array([[1.0, np.nan], [2.0, np.nan]]))
    complete = np.array([[1.0, 2.0]])
    assert fill_missing_cost(complete, reference=np.full((1, 2), np.nan)).tolist() == [[1.0, 2.0]]  # nothing to fill


def _two_models(quality, cost) -> OutcomeMatrix:
    q = np.asarray(quality, float)
    ids = np.array([f"q{i}" for i in range(len(q))])
    return OutcomeMatrix(ids, ids, np.array(["math"] * len(q)), ["m0", "m1"], q, None, None, np.asarray(cost, float))


def test_cv_scores_a_missing_cost_at_the_models_training_mean():
    from mlsel.params import load_params, stage_params
    from mlsel.tuning.cv import CVTask, cv_task

    # Training split of 4 queries; m1 is always right, m0 never. Fit on q0, q1; validate on q2, q3, where m1's cost is missing.
    quality = np.array([[0.0, 1.0]] * 4)
    cost = np.array([[1.0, 10.0], [1.0, 20.0], [1.0, np.nan], [1.0, np.nan]])
    X = np.array([[0.0, 1.0], [1.0, 0.0], [0.1, 0.9], [0.9, 0.1]])
    values = stage_params(load_params(Path(__file__).resolve().parent.parent / "params.yaml"), "tune").model_dump()
    combo = {"embedder": "e", "onehot_weight": 1.0, "quality_weight": 0.9, "knn_reg_k": 1}
    t = CVTask(X, quality, None, cost, ["m0", "m1"], np.array([0, 1]), np.array([2, 3]), "knn_reg", [(0, combo)], values,
               [0.0, 100.0], 0.9, {"pool": "p", "cv_seed": 42, "fold": 0})
    row = cv_task(t)[0]
    # At cost weight 0 the router picks m1 on both validation queries: their cost is m1's training mean, (10 + 20) / 2 = 15
    # (one mean over the whole training matrix would give (4 x 1 + 10 + 20) / 6 = 5.67).
    assert row["quality"] == 1.0 and row["cost"] == pytest.approx(15.0)
    # At cost weight 100 it picks m0, whose cost is known: 1.
    assert row["sweep_cost"] == [pytest.approx(15.0), pytest.approx(1.0)]


def test_test_split_and_router_fits_use_the_same_rule():
    from mlsel.selection.cost_aware import KNNRegressorSelector
    from mlsel.tuning.cv import PoolData
    from mlsel.tuning.final import test_cost

    tr = _two_models([[1, 0], [0, 1]], [[1.0, 10.0], [3.0, 20.0]])
    te = _two_models([[1, 0], [0, 1]], [[np.nan, 30.0], [5.0, np.nan]])
    d = PoolData("p", ["m0", "m1"], tr, tr, te, "cost_usd")
    # Training means: m0 (1 + 3) / 2 = 2, m1 (10 + 20) / 2 = 15.
    assert test_cost(d).tolist() == [[2.0, 30.0], [5.0, 15.0]]
    X = np.array([[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]])
    sel = KNNRegressorSelector(k=1).fit(X, np.ones((3, 2)), cost=np.array([[1.0, 10.0], [3.0, 20.0], [np.nan, np.nan]]))
    # The third query's costs become 2 and 15, so the per-model means stay 2 and 15.
    assert sel.cost_mean_.tolist() == [2.0, 15.0]
    assert not math.isnan(sel.cost_scale_) and sel.cost_scale_ == 15.0


def test_the_cv_aiq_choice_charges_a_missing_cost_at_the_models_training_mean():
    """The budget range of the CV AIQ choice (:func:`mlsel.tuning.summary.cv_aiq_router`) is the single models' CV cost
    range, with a missing training cost filled by the model's mean known training cost before the fold means are taken.

    m0 costs 1 on every query. m1 costs 1, ?, 7, 7: its mean known cost is (1 + 7 + 7) / 3 = 5, so q1 is charged 5.
    Folds {q0, q1} and {q2, q3}: m1's fold means are (1 + 5) / 2 = 3 and 7, its CV cost (3 + 7) / 2 = 5; the budget
    range is [1, 5]. (Leaving the hole out of its fold's mean would give fold means 1 and 7, CV cost 4, range [1, 4];
    charging it 0, CV cost (0.5 + 7) / 2 = 3.75.)
    AIQ by hand (the average over the range of the quality reachable at each budget): router "flat" has one point,
    quality .7 at cost 1, so .7 everywhere; router "steep" goes from .5 at cost 1 to 1.0 at cost 5.
    On [1, 5]: steep averages (.5 + 1) / 2 = .75 > .7: steep is chosen.
    On [1, 4]: steep reaches .5 + .5 x 3/4 = .875 at 4 and averages (.5 + .875) / 2 = .6875 < .7: flat would be chosen.
    """
    from mlsel.tuning.cv import PoolData
    from mlsel.tuning.summary import cv_aiq_router

    tr = _two_models([[1, 0], [1, 1], [0, 1], [0, 1]], [[1.0, 1.0], [1.0, np.nan], [1.0, 7.0], [1.0, 7.0]])
    d = PoolData("p", ["m0", "m1"], tr, tr, tr, "cost_usd")
    assert fill_missing_cost(tr.cost_usd)[:, 1].tolist() == [1.0, 5.0, 7.0, 7.0]
    folds = pd.DataFrame({"pool": "p", "query_id": ["q0", "q1", "q2", "q3"], "cv_seed": 42, "fold": [0, 0, 1, 1]})
    sweep = pd.DataFrame({"pool": "p", "router": ["flat", "steep", "steep"], "cost_lambda": [0.0, 0.0, 1.0],
                          "cv_quality_mean": [0.7, 1.0, 0.5], "cv_avg_cost_usd": [1.0, 5.0, 1.0]})
    assert cv_aiq_router(d, sweep, folds, ["flat", "steep"]) == "steep"
    # The same sweep on a pool whose m1 costs 1, 1, 7, 7 with no hole (CV cost 4, range [1, 4]): flat.
    full = _two_models(tr.quality, [[1.0, 1.0], [1.0, 1.0], [1.0, 7.0], [1.0, 7.0]])
    assert cv_aiq_router(PoolData("p", ["m0", "m1"], full, full, full, "cost_usd"), sweep, folds, ["flat", "steep"]) == "flat"
