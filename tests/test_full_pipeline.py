"""One full real-data run of the default pipeline: every default dataset, all queries.

The run must reproduce the published tables (``reports/tables/**/*.csv``, which
the report and the README print) by the rule of :mod:`published_tables`: every
conclusion exactly (texts, counts, chosen routers and operating points, the
sign of every interval against 0), and every number within what two flipped
choices per thousand of its table's held-out queries (at least one) can move
it, the most that another CPU's float kernels have been seen to cause.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from published_tables import FLIPS_PER_1000, allowances, column_kind, row_baselines, table_allowances, table_differences

from mlsel.params import load_params

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "reports" / "tables"


def _write(folder: Path, name: str, df: pd.DataFrame) -> None:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(folder / name, index=False, float_format="%.6f")


def test_table_differences_finds_each_kind(tmp_path):
    """The comparison itself: text, a count, an operating point, a flag, a number beyond its allowance, a missing and an
    extra file."""
    pub, new = tmp_path / "pub", tmp_path / "new"
    base = pd.DataFrame({"router": ["knn", "svm"], "n_queries": [1000, 1000], "cost_lambda": [0.05, 0.1], "chosen": [True, False],
                         "avg_quality": [0.5, 0.9], "share_pct": [40.0, 60.0]})
    _write(pub, "d/t.csv", base)
    _write(new, "d/t.csv", base.assign(avg_quality=[0.502, 0.898], share_pct=[40.2, 59.8]))  # two flips in 1000 queries: noise
    assert table_differences(new, pub) == []
    _write(new, "d/t.csv", base.assign(router=["knn", "mlp"], n_queries=[1000, 999], cost_lambda=[0.05, 0.125], chosen=[True, True],
                                       avg_quality=[0.50201, 0.9], share_pct=[40.0, 60.21]))
    (pub / "gone.csv").write_text("a\n1\n")
    (new / "extra.csv").write_text("a\n1\n")
    assert table_differences(new, pub) == [
        "gone.csv: published, not produced", "extra.csv: produced, not published",
        "d/t.csv: router, row 1: published svm, produced mlp",
        "d/t.csv: n_queries, row 1: published 1000, produced 999 (must match)",
        "d/t.csv: cost_lambda, row 1: published 0.1, produced 0.125 (must match)",
        "d/t.csv: chosen, row 1: published False, produced True (must match)",
        "d/t.csv: avg_quality, row 0: published 0.5, produced 0.50201 (quality, allowed 0.002 on 1000 queries)",
        "d/t.csv: share_pct, row 1: published 60.0, produced 60.21 (share, allowed 0.2 on 1000 queries)"]


def test_an_interval_that_crosses_zero_is_a_changed_conclusion(tmp_path):
    """Within the numeric allowance, but the interval's lower bound crosses 0: the verdict changed, so it fails."""
    pub, new = tmp_path / "pub", tmp_path / "new"
    _write(pub, "s.csv", pd.DataFrame({"gain_at_b": [0.01], "gain_at_b_ci_low": [0.0005], "gain_at_b_ci_high": [0.02]}))
    _write(new, "s.csv", pd.DataFrame({"gain_at_b": [0.0095], "gain_at_b_ci_low": [-0.0005], "gain_at_b_ci_high": [0.0195]}))
    assert table_differences(new, pub) == ["s.csv: gain_at_b_ci_low, row 0: sign against 0 changed, published 0.0005, produced -0.0005"]
    _write(new, "s.csv", pd.DataFrame({"gain_at_b": [0.0095], "gain_at_b_ci_low": [0.0001], "gain_at_b_ci_high": [0.0195]}))
    assert table_differences(new, pub) == []


def _flipped(tmp_path: Path, n: int, moved: int) -> list[str]:
    """A results table on n held-out queries (n in the table's own column) against one where ``moved`` choices flipped
    from a wrong to a right answer: the mean quality moves by moved/n, the chosen model's share by 100 moved/n."""
    pub, new = tmp_path / f"pub{n}-{moved}", tmp_path / f"new{n}-{moved}"
    right, share = 300, 40.0
    _write(pub, "d/selection_results.csv", pd.DataFrame({"pool": ["p"], "n_queries": [n], "avg_quality": [right / n]}))
    _write(new, "d/selection_results.csv", pd.DataFrame({"pool": ["p"], "n_queries": [n], "avg_quality": [(right + moved) / n]}))
    _write(pub, "d/selection_share.csv", pd.DataFrame({"pool": ["p"], "model": ["m"], "share_pct": [share]}))  # n from the folder
    _write(new, "d/selection_share.csv", pd.DataFrame({"pool": ["p"], "model": ["m"], "share_pct": [share + 100 * moved / n]}))
    return table_differences(new, pub)


def test_one_flipped_choice_on_bfcl_sized_table_passes(tmp_path):
    """BFCL's 340 held-out queries: one flip moves a mean quality by 1/340 = 0.0029 (above a flat 0.002) and passes; two fail."""
    assert _flipped(tmp_path, 340, 1) == []
    assert [d.split(" (")[1] for d in _flipped(tmp_path, 340, 2)] == ["quality, allowed 0.00294 on 340 queries)",
                                                                     "share, allowed 0.294 on 340 queries)"]


def test_five_flips_on_mmlu_pro_sized_table_fail(tmp_path):
    """MMLU-Pro's 2,329 held-out queries: the budget is 2 x 2.329 = 4.66 flips, so four pass and five (5/2329) fail."""
    assert _flipped(tmp_path, 2329, 4) == []
    assert [d.split(" (")[1] for d in _flipped(tmp_path, 2329, 5)] == ["quality, allowed 0.002 on 2329 queries)",
                                                                      "share, allowed 0.2 on 2329 queries)"]


def test_a_ratio_over_a_small_gap_gets_a_proportionally_larger_allowance(tmp_path):
    """Gap closed in percent of oracle - best single, on 340 queries (one flip, 1/340 of quality): 100 (1/340) / 0.065 =
    4.52 points where the gap is BFCL's 0.065, 100 (1/340) / 0.26 = 1.13 points where it is four times that."""
    pub, new = tmp_path / "pub", tmp_path / "new"
    rows = pd.DataFrame({"pool": ["small", "large"], "n_test": [340, 340], "best_single_quality": [0.885, 0.5],
                         "oracle_quality": [0.95, 0.76], "gap_closed_pct": [10.0, 10.0]})
    _write(pub, "d/summary.csv", rows)
    n, tols = table_allowances(pd.read_csv(pub / "d/summary.csv"), "d/summary.csv", pub / "d")
    assert n.tolist() == [340, 340]
    assert tols["gap_closed_pct"][0] == "ratio"
    assert tols["gap_closed_pct"][1] == pytest.approx([100 / 340 / 0.065, 100 / 340 / 0.26])  # 4.525 and 1.131
    _write(new, "d/summary.csv", rows.assign(gap_closed_pct=[10.0 + 4.5, 10.0 + 1.1]))
    assert table_differences(new, pub) == []
    _write(new, "d/summary.csv", rows.assign(gap_closed_pct=[10.0 + 4.6, 10.0 + 1.2]))
    assert table_differences(new, pub) == [
        "d/summary.csv: gap_closed_pct, row 0: published 10.0, produced 14.6 (ratio, allowed 4.52 on 340 queries)",
        "d/summary.csv: gap_closed_pct, row 1: published 10.0, produced 11.2 (ratio, allowed 1.13 on 340 queries)"]


ROW = pd.DataFrame({"pool": ["p"], "n_test": [340], "best_single_quality": [0.8], "oracle_quality": [0.9], "random_quality": [0.5],
                    "op_cost": [0.5], "best_single_cost": [2.0], "cost_save_at_b_pct": [75.0], "matched_cost_pct": [40.0],
                    "avg_cost_usd": [3.0]})
"""A summary-like row on 340 held-out queries: one flip (q = 1/340) by the budget of 2 per 1000."""


@pytest.mark.parametrize("column, kind, allowed", [
    ("avg_quality", "quality", 1 / 340), ("uplift_vs_best_single_ci_low", "quality", 1 / 340), ("aiq_minus_zero", "quality", 1 / 340),
    ("best_model_pct", "share", 100 / 340), ("share_pct", "share", 100 / 340), ("fast_choice_pct", "share", 100 / 340),
    ("gap_closed_pct_ci_high", "ratio", 100 / 340 / (0.9 - 0.8)), ("gap_closed_random_pct", "ratio", 100 / 340 / (0.9 - 0.5)),
    ("uplift_vs_random_pct", "ratio", 100 / 340 / 0.5), ("matched_quality_pct", "ratio", 100 / 340 / 0.8),
    ("avg_cost_usd", "cost", 10 / 340 * 3.0), ("cost_save_at_b_ci_low", "cost_ratio", 10 / 340 * 25.0),
    ("matched_cost_pct_ci_high", "cost_ratio", 10 / 340 * 40.0), ("n_test", "exact", 0.0), ("matched_cost_lambda", "exact", 0.0),
    ("param_value", "exact", 0.0)])
def test_column_allowances_follow_the_documented_flip_budget(column, kind, allowed):
    """By hand, with 2 flips per 1000 queries and at least one: on 340 queries one flip, q = 1/340 of quality, 100 q points of
    a share, 100 q / D points of a percent of a baseline D, 10 q of a cost (cost saved: of the 25% of it still paid)."""
    assert FLIPS_PER_1000 == 2.0
    assert column_kind(column) == kind
    row = ROW.assign(**{column: [1.0]}) if column not in ROW.columns else ROW
    base = row_baselines(row, {})
    assert allowances(row, "summary.csv", base)[column][1] == pytest.approx([allowed])


@pytest.mark.slow
@pytest.mark.timeout(3600)  # the cold run itself (the session's default_run, which this test runs first): 1755 s idle
def test_default_pipeline_on_every_dataset(default_run):
    run, report, done = default_run.run_dir, default_run.report_dir, default_run.done
    datasets = load_params().base.datasets
    assert datasets == ["mmlu_pro", "llmrouter", "llmrouter_by_task", "routerbench", "bfcl", "bfcl_latency"]
    assert list(done) == [f"{ds}/{s}" for ds in datasets for s in ("prepare", "train", "evaluate", "tune", "ship")] + ["report"]

    # MMLU-Pro: oracle >> best single >> expected random, on held-out queries.
    res = pd.read_csv(report / "tables" / "mmlu_pro" / "selection_results.csv")
    m = json.loads((run / "mmlu_pro" / "manifest.json").read_text())
    n_test = m["stages"]["prepare"]["n_test"]
    assert 2200 < n_test < 2500 and res["n_queries"].eq(n_test).all()
    small = res[res["pool"] == "small4"].set_index("kind")
    assert small.loc["oracle", "avg_quality"] > 0.6
    assert 0.40 < small.loc["best_single", "avg_quality"] < 0.48
    assert small.loc["random", "avg_quality"] < small.loc["best_single", "avg_quality"]
    big = res[res["pool"] == "all5"]
    assert big[big["kind"] == "best_single"]["model"].tolist() == ["Meta-Llama-3.1-70B-Instruct"]  # the model as data

    # The cross-dataset matrix: one row per dataset x pool, each dataset's own cost axis and split.
    summary = pd.read_csv(report / "tables" / "summary.csv")
    assert summary[["dataset", "pool"]].values.tolist() == [
        ["mmlu_pro", "small4"], ["mmlu_pro", "all5"], ["llmrouter", "all9"], ["llmrouter_by_task", "all9"], ["routerbench", "all11"],
        ["bfcl", "api8"], ["bfcl_latency", "api8"]]
    assert summary["cost_unit"].tolist() == ["response_chars", "response_chars", "list_price", "list_price", "cost_usd", "cost_usd", "latency_s"]
    assert summary["split"].tolist() == ["seeded", "seeded", "seeded", "by_task", "source", "seeded", "seeded"]
    assert ((summary["gain_at_b_ci_low"] <= summary["gain_at_b"]) & (summary["gain_at_b"] <= summary["gain_at_b_ci_high"])).all()
    assert (summary["oracle_quality"] > summary["best_single_quality"]).all()
    # LLMRouter: the tuned router beats its best single model (+0.04 with the data; the CI is above 0).
    assert summary.set_index("dataset").loc["llmrouter", "gain_at_b_ci_low"] > 0
    # RouterBench: the held-out split is the source's test files (its empty quality cells dropped).
    rb = json.loads((run / "routerbench" / "manifest.json").read_text())["stages"]["prepare"]
    assert rb["data"]["dropped"]["missing_quality_cell"] == 154  # 14 repeated ARC rows with no score at all (11 models each)
    assert summary.set_index("dataset").loc["routerbench", "n_test"] == rb["n_test"]
    # BFCL: measured latency in every results table, the quality_weight sweep and the second run's timings.
    bfcl = pd.read_csv(report / "tables" / "bfcl" / "selection_results.csv")
    assert bfcl[["avg_latency_s", "median_latency_s", "p90_latency_s", "avg_cost_usd"]].notna().all().all()
    assert (report / "tables" / "bfcl" / "latency_weight_sweep.csv").is_file()
    assert (report / "tables" / "bfcl" / "latency_repeatability.csv").is_file()
    html = (report / "index.html").read_text()
    assert (html.index('id="answer"') < html.index('id="overview"') < html.index('id="mmlu_pro-headline"')
            < html.index('id="routerbench-headline"'))

    # The shipped router files (MMLU-Pro small4, the default export): every file exact on all held-out queries, the
    # runtime rule's quality equal to the evaluated selector's published quality, the KNN file within 100 MB.
    ex = pd.read_csv(report / "tables" / "mmlu_pro" / "router_export.csv").set_index("algorithm")
    assert list(ex.index) == ["knn", "kmeans", "svm"] and (ex["pool"] == "small4").all()
    assert (ex["rule"] == "exact").all() and (ex["agreement_rate"] == 1.0).all() and (ex["n_test"] == n_test).all()
    assert (ex["runtime_quality"] == ex["selector_quality"]).all()
    for alg, lab in (("knn", "KNN Selection"), ("kmeans", "KMEANS Selection"), ("svm", "SVM Selection")):
        assert ex.loc[alg, "runtime_quality"] == pytest.approx(small[small["strategy"] == lab]["avg_quality"].iloc[0], abs=1e-6)
    assert ex.loc["knn", "size_mb"] <= 100.0
    assert 'id="mmlu_pro-router-export"' in html

    # What is shipped, per dataset and pool: the one-SE rule's choice, routed as evaluated on every held-out query.
    for ds in datasets:
        ship = pd.read_csv(report / "tables" / ds / "ship.csv")
        choice = pd.read_csv(report / "tables" / ds / "ship_choice.csv")
        assert ship["pool"].tolist() == summary[summary["dataset"] == ds]["pool"].tolist()
        assert (ship["runtime_agreement"] == 1.0).all()
        assert ship["shipped"].tolist() == choice[choice["chosen"]]["candidate"].tolist()
        assert (run / ds / "ship" / ship["pool"].iloc[0] / "router_config.yaml").is_file()
    assert 'id="mmlu_pro-ship"' in html and 'id="mmlu_pro-choice"' in html

    # The published tables (and with them the report and the README's results) are what this run produced.
    diff = table_differences(report / "tables", PUBLISHED)
    assert not diff, f"{len(diff)} differences from the published reports/tables:\n" + "\n".join(diff[:40])
