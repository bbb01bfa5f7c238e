"""What the stage notebooks show at their end (mlsel.report.views): tables and sentences checked against hand-computed values."""

from __future__ import annotations

import base64
import json

import numpy as np
import pandas as pd
import pytest

from mlsel.files import write_csv
from mlsel.metrics.shares import TRAINING_LABELS, label_share_rows, share_rows
from mlsel.report import views
from mlsel.report.blocks import Story

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run(tmp_path):
    """A prepared run folder by hand: 5 queries (3 train, 2 test) in 2 categories, models A and B."""
    data = tmp_path / "data"
    queries = pd.DataFrame({"query_id": ["q1", "q2", "q3", "q4", "q5"], "query": list("abcde"),
                            "category": ["math", "math", "law", "law", "math"], "task": "",
                            "split": ["train", "train", "train", "test", "test"]})
    quality = {"A": [1.0, 0.0, 1.0, 1.0, 0.0], "B": [1.0, 1.0, 0.0, 0.0, 1.0]}
    outcomes = pd.DataFrame([{"query_id": q, "model": m, "quality": quality[m][i], "latency_s": np.nan, "response_chars": 10.0}
                             for i, q in enumerate(queries["query_id"]) for m in ("A", "B")])
    write_csv(queries, data / "queries.csv")
    write_csv(outcomes, data / "outcomes.csv")
    (tmp_path / "manifest.json").write_text(json.dumps({"stages": {"prepare": {"data": {
        "dropped": {"missing_quality": 2, "none": 0}, "repaired": {"duplicate_rows_averaged": 1}}}}}))
    return str(tmp_path)


def test_category_quality_by_hand(run):
    """Counts per split, and each model's mean quality over the training queries only (test queries q4, q5 are unseen)."""
    t = views.category_quality(run, {"pool": ["B", "A"]})
    assert list(t.columns) == ["n_train", "n_test", "B", "A"]  # the pools' model order
    assert t.loc["math"].tolist() == [2, 1, 1.0, 0.5]  # q1, q2: B 1+1, A 1+0
    assert t.loc["law"].tolist() == [1, 1, 0.0, 1.0]  # q3 only
    assert t.loc[views.ALL].tolist() == [3, 2, 2 / 3, 2 / 3]


def test_prepare_story_says_what_the_table_says(run):
    story = views.prepare_story(views.category_quality(run, {"pool": ["A", "B"]}), run)
    assert isinstance(story, Story) and story._repr_markdown_() == str(story)
    assert "**5 queries** in 2 categories" in story and "3 training and 2 held-out" in story
    # A and B tie overall (2/3 each): idxmax keeps the first, A; A leads in law, B in math.
    assert "best model overall is **A** (0.667); it leads in 1 of 2 categories with training queries, and other models lead in math (B)." in story
    assert "Models differ most in law (mean quality from 0.000 to 1.000) and least in math (a spread of 0.500)." in story
    assert "Dropped records: missing_quality 2." in story and "Repaired: duplicate_rows_averaged 1." in story


def test_category_quality_figure_is_a_png(run):
    fig = views.category_quality_figure(views.category_quality(run))
    assert fig._repr_png_().startswith(PNG) and base64.b64decode(fig.png_b64) == fig._repr_png_()


def test_training_shares_by_hand(tmp_path):
    """share_rows counts each chosen model index; the view pivots pools x strategies into rows."""
    rows = share_rows("p", TRAINING_LABELS, ["A", "B", "C"], np.array([0, 0, 2, 0]))
    assert [r["share_pct"] for r in rows] == [75.0, 0.0, 25.0]
    rows += share_rows("p", "knn", ["A", "B", "C"], np.array([1, 1, 1, 0]))
    write_csv(pd.DataFrame(rows), tmp_path / "tables" / "train_share.csv")
    share = views.training_share(str(tmp_path))
    assert share.index.tolist() == [f"p · {TRAINING_LABELS}", "p · knn"]
    assert share.loc["p · knn"].tolist() == [25.0, 75.0, 0.0]
    fitted = pd.DataFrame({"pool": ["p"], "selector": ["knn"], "n_train_queries": [4], "feature_dim": [398], "fit_seconds": [0.25]})
    story = views.train_story(fitted, share)
    assert "Fitted 1 selectors on each of 1 pools, on 4 training queries with 398 features each, in 0.2 s" in story
    assert "Pool p: A is the best model on 75.0% of the training queries; the share of training queries each selector routes to it: knn 25.0%." in story


def test_training_label_shares_by_hand():
    """Each training query's label is its best model by utility; ties go to the lower rank (here B before A)."""
    from types import SimpleNamespace

    train = SimpleNamespace(models=["A", "B", "C"], quality=np.array([[1, 0, 0], [1, 1, 0], [0, 0, 1], [0, 1, 0.5]], dtype=float),
                            latency_s=np.array([[1, 1, 1], [3, 1, 1], [1, 1, 1], [1, 9, 0]], dtype=float))
    rank = np.array([1, 0, 2])
    assert [r["share_pct"] for r in label_share_rows("p", train, 1.0, rank)] == [25.0, 50.0, 25.0]  # query 2 is a tie: B
    # quality_weight 0.5: query 2's A (0.5 + 0.5/4) loses to B (0.5 + 0.5/2); query 4: B 0.5 + 0.05 < C 0.25 + 0.5
    assert [r["share_pct"] for r in label_share_rows("p", train, 0.5, rank)] == [25.0, 25.0, 50.0]
    assert [r["strategy"] for r in label_share_rows("p", train, 1.0, rank)] == [TRAINING_LABELS] * 3


def test_training_share_names_the_missing_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="train_share.csv: not found; run the train stage first"):
        views.training_share(str(tmp_path))


def test_benchmark_story():
    assert "no endpoint was called" in views.benchmark_story(pd.DataFrame(columns=["model"]), "")
    summary = pd.DataFrame({"model": ["m1", "m2"], "n": [4, 4], "n_ok": [4, 3], "n_failed": [0, 1], "quality_mean": [0.5, 0.75],
                            "response_time_s_mean": [0.2, 1.5], "cost_usd_total": [0.01, 0.02]})
    story = views.benchmark_story(summary, "q.jsonl")
    assert "Asked 4 queries of 2 models: 7 answers, 1 failed calls" in story
    assert "Best mean quality: **m2** (0.750); fastest: m1 (0.20 s per answer)." in story and "Total cost: 0.0300 USD." in story


def test_report_story_counts_rows_and_links_the_page(tmp_path):
    summary = pd.DataFrame({"dataset": ["mmlu_pro", "routerbench", "llmrouter"], "pool": ["a", "b", "c"],
                            "gain_at_b_ci_low": [-0.01, 0.02, 0.0], "cost_save_at_b_ci_low": [1.0, np.nan, -2.0]})
    story = views.report_story(summary, tmp_path / "index.html")
    assert story.startswith("Routing beats the best single model in quality on **1 of 3** dataset-pool rows (RouterBench / b); "
                            "at the best single model's quality it saves cost on 1 of the 3.")
    assert f"[Open the report]({(tmp_path / 'index.html').resolve().as_posix()})" in story


def test_benchmark_figure_only_when_something_was_benchmarked():
    assert views.benchmark_figure(pd.DataFrame(columns=["model", "n", "n_ok", "quality_mean", "response_time_s_mean"])) is None
    summary = pd.DataFrame({"model": ["m1", "m2"], "n": [4, 4], "n_ok": [4, 3], "quality_mean": [0.5, 0.75],
                            "response_time_s_mean": [0.2, 1.5]})
    fig = views.benchmark_figure(summary)
    assert fig.id == "fig-benchmark" and fig._repr_png_().startswith(PNG) and "mean response time" in fig.caption


def test_prepare_story_with_a_category_of_held_out_queries_only(run):
    """A category whose queries all fell into the test split has no training mean: it is named, not compared."""
    queries = pd.read_csv(f"{run}/data/queries.csv", dtype=str, keep_default_na=False)
    queries.loc[queries["query_id"] == "q5", "category"] = "history"
    write_csv(queries, f"{run}/data/queries.csv")
    table = views.category_quality(run)
    assert table.loc["history", ["n_train", "n_test"]].tolist() == [0, 1] and table.loc["history", ["A", "B"]].isna().all()
    story = views.prepare_story(table, run)
    assert "it leads in 1 of 2 categories with training queries" in story and "Held-out queries only (nothing to learn from): history." in story
    assert views.category_quality_figure(table)._repr_png_().startswith(PNG)


def test_report_views_before_any_tune_stage(tmp_path):
    """Without a summary row (no tune stage has run) the report notebook shows no figure and says why."""
    empty = pd.DataFrame(columns=["dataset", "pool"])
    assert views.gain_summary_figure(empty) is None
    assert views.report_story(empty, tmp_path / "index.html").startswith("No dataset has a headline row yet")
    assert views.summary_frame(empty).empty
