"""The README's numbers are the published tables' (which the full-data test checks against a fresh run)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from mlsel.report.overview import summary_markdown

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
TABLES = ROOT / "reports" / "tables"


def test_results_matrix_and_verdicts_are_mlsel_results_of_the_published_summary():
    assert summary_markdown(pd.read_csv(TABLES / "summary.csv")) in README


def test_mmlu_pro_reference_selectors_table_is_the_published_one():
    res = pd.read_csv(TABLES / "mmlu_pro" / "selection_results.csv")
    kinds = {"oracle": "Oracle (best possible)", "random": "Random Selection (expected)", "knn": "KNN Selection",
             "kmeans": "KMEANS Selection", "svm": "SVM Selection"}
    for pool in ("small4", "all5"):
        row = next(line for line in README.splitlines() if line.startswith(f"| {pool} ("))
        cells = [c.strip() for c in row.strip("|").split("|")]
        q = res[res["pool"] == pool].set_index("strategy")["avg_quality"]
        best = res[(res["pool"] == pool) & (res["kind"] == "best_single")].iloc[0]
        assert cells[1] == f"{q[kinds['oracle']]:.3f}"
        assert re.match(rf"{best['avg_quality']:.3f} \(", cells[2])
        assert cells[3] == f"{q[kinds['random']]:.3f}"
        assert cells[4:7] == [f"{q[kinds[k]]:.3f}" for k in ("knn", "kmeans", "svm")]

def _bench_test_times():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_test_times", ROOT / "benchmarks" / "bench_test_times.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_speed_table_is_written_by_the_benchmark_script_and_quoted_verbatim():
    import json

    bench = _bench_test_times()
    results = ROOT / "benchmarks" / "results"
    table = bench.speed_table(json.loads((results / "test_times.json").read_text()), json.loads((results / "datasets.json").read_text()))
    assert (results / "speed.md").read_text() == table
    assert table in README


def test_pytest_summary_line_is_read():
    bench = _bench_test_times()
    out = "....\n==== 380 passed, 2 skipped in 1458.38s (0:24:18) ====\n"
    assert bench.pytest_summary(out) == {"counts": {"passed": 380, "skipped": 2}, "pytest_seconds": 1458.38}
    assert bench.pytest_summary("== 367 passed, 17 deselected in 92.42s (0:01:32) ==") == {
        "counts": {"passed": 367, "deselected": 17}, "pytest_seconds": 92.42}


def test_targets_table_is_the_dataset_benchmarks_own():
    md = (ROOT / "benchmarks" / "results" / "datasets.md").read_text()
    table = md[md.index("| target | measured | reached |"):].split("\n\n")[0].strip()
    assert table in README


def test_static_routing_targets_are_the_benchmarks_own_on_the_published_summary():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_static_routing", ROOT / "benchmarks" / "bench_static_routing.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    summary = pd.read_csv(TABLES / "summary.csv")
    measured = mod.targets(summary) + mod.ship_targets(TABLES, list(dict.fromkeys(summary["dataset"])))
    assert sum(t["target"].split(":")[1].startswith(" shipped") for t in measured) == len(summary)  # one per dataset and pool
    md = (ROOT / "benchmarks" / "results" / "static_routing.md").read_text()
    assert [f"| {t['target']} | {t['measured']} | {'yes' if t['reached'] else '**no**'} |" for t in measured] == md.splitlines()[2:]
    assert md in README


def test_latency_targets_are_the_benchmarks_own_on_the_published_tables():
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_latency", ROOT / "benchmarks" / "bench_latency.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    measured = mod.targets(pd.read_csv(TABLES / "summary.csv"))
    assert {t["target"].split(":")[0] for t in measured} == {"bfcl api8", "bfcl_latency api8"}
    md = (ROOT / "benchmarks" / "results" / "latency.md").read_text()
    assert [f"| {t['target']} | {t['measured']} | {'yes' if t['reached'] else '**no**'} |" for t in measured] == md.splitlines()[2:6]
    assert mod.sweep_lines(pd.read_csv(TABLES / "bfcl" / "latency_weight_sweep.csv")) == md.split("\n\n")[2].splitlines()
    assert md in README


def test_embed_text_results_are_the_benchmarks_own_and_quoted_verbatim():
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("bench_embed_text", ROOT / "benchmarks" / "bench_embed_text.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    result = json.loads((ROOT / "benchmarks" / "results" / "embed_text.json").read_text())
    assert result["conclusion"] == mod.conclusion(result)
    md = (ROOT / "benchmarks" / "results" / "embed_text.md").read_text()
    assert md == mod.markdown(result)
    assert md in README
    # the shipped text's held-out rows are the published run's: the utility-weight sweep refits the same selectors on it
    sweep = pd.read_csv(TABLES / "bfcl" / "latency_weight_sweep.csv").set_index(["strategy", "quality_weight"])["avg_quality"]
    for r in result["rows"]:
        assert round(r["test_tools"], 6) == round(sweep[r["selector"], r["quality_weight"]], 6)


def test_embedding_backends_are_the_benchmarks_own_and_quoted_verbatim():
    """The README quotes benchmarks/results/embed.md (bench_embed.py's output) whole, below its heading."""
    md = (ROOT / "benchmarks" / "results" / "embed.md").read_text()
    assert md.splitlines()[0].lstrip("# ") in README and md.split("\n", 2)[2].strip() in README
