"""The orchestrator end to end: every stage notebook through papermill on real data.

What a run leaves behind is read from the session's default run (``default_run`` in conftest.py, the full-data test's
run); what needs a run of its own to change (forced reruns, skipping, a stage run by hand) works on a smoke run of
MMLU-Pro through the runner."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from mlsel import runner
from mlsel.manifest import params_hash
from mlsel.params import STAGES, ConfigError, Params, apply_overrides, dataset_params, load_params, stage_values
from mlsel.publish import is_secret_name

ROOT = Path(__file__).resolve().parent.parent


def _evaluates_config(dataset: str) -> bool:
    """Whether the dataset's definition names a routing config for the ship stage (RouterBench's sets router_config "")."""
    return bool(dataset_params(Params(), dataset).ship.router_config)


def _tables(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.csv"))}


@pytest.fixture(scope="module")
def smoke_runner_run(tmp_path_factory):
    """A smoke run of MMLU-Pro (600 queries) through the runner, every stage and the report; the tests below rerun it."""
    run_dir = tmp_path_factory.mktemp("runner-smoke")
    overrides = {"run_dir": str(run_dir), "report_dir": str(run_dir / "report"), "datasets": ["mmlu_pro"]}
    done = runner.run(smoke=True, overrides=overrides)
    return run_dir, overrides, done


RUN_STAGES = ["prepare", "train", "evaluate", "tune", "ship"]
DATASETS = load_params().base.datasets


@pytest.mark.slow
def test_every_stage_runs_through_papermill_per_dataset(default_run):
    run_dir, report, done = default_run.run_dir, default_run.report_dir, default_run.done
    assert list(done) == [f"{ds}/{s}" for ds in DATASETS for s in RUN_STAGES] + ["report"]
    assert not [key for key, info in done.items() if info["skipped"]]
    for key, info in done.items():
        nb = json.loads(Path(info["notebook"]).read_text())
        assert nb["metadata"]["papermill"]["exception"] is None or nb["metadata"]["papermill"].get("exception") is False
        assert Path(info["notebook"]).parent == (run_dir / key.split("/")[0] / "notebooks" if "/" in key else run_dir / "notebooks")
    html = (report / "index.html").read_text()
    assert "small4" in html and "all5" in html and "all11" in html
    summary = pd.read_csv(report / "tables" / "summary.csv")
    assert summary[["dataset", "pool"]].values.tolist() == [[ds, pool] for ds in DATASETS for pool in dataset_params(Params(), ds).base.pools]
    assert summary["dataset"].tolist()[:2] == ["mmlu_pro", "mmlu_pro"] and "all11" in summary["pool"].tolist()
    for col in ["dataset", "pool", "n_test", "best_single", "best_single_quality", "oracle_quality", "router", "router_quality",
                "gain_at_b", "gain_at_b_ci_low", "gain_at_b_ci_high", "gap_closed_pct", "cost_unit", "cost_save_at_b_pct",
                "cost_save_at_b_ci_low", "cost_save_at_b_ci_high"]:
        assert col in summary.columns, col
    by_dataset = summary.set_index(["dataset", "pool"])
    assert by_dataset.loc[("mmlu_pro", "small4"), "cost_unit"] == by_dataset.loc[("mmlu_pro", "all5"), "cost_unit"] == "response_chars"
    assert by_dataset.loc[("routerbench", "all11"), "cost_unit"] == "cost_usd"
    assert by_dataset.loc[("mmlu_pro", "small4"), "split"] == by_dataset.loc[("mmlu_pro", "all5"), "split"] == "seeded"
    assert by_dataset.loc[("routerbench", "all11"), "split"] == "source"
    assert (summary["oracle_quality"] >= summary["best_single_quality"]).all()
    assert (summary["router_quality"] - summary["best_single_quality"] - summary["gain_at_b"]).abs().max() < 1e-5
    rb = pd.read_csv(report / "tables" / "routerbench" / "selection_results.csv")
    assert rb["avg_cost_usd"].notna().all() and rb["avg_latency_s"].isna().all()
    results = pd.read_csv(report / "tables" / "mmlu_pro" / "selection_results.csv")
    assert set(results["pool"]) == {"small4", "all5"}
    for col in ["pool", "strategy", "n_queries", "avg_quality", "avg_quality_ci_low", "avg_quality_ci_high",
                "best_model_pct", "uplift_vs_random_pct", "uplift_vs_best_single", "avg_response_chars"]:
        assert col in results.columns
    n_test = json.loads((run_dir / "mmlu_pro" / "manifest.json").read_text())["stages"]["prepare"]["n_test"]
    assert results["n_queries"].eq(n_test).all()


@pytest.mark.slow
def test_manifest_records_parameters_versions_inputs_and_drops(smoke_runner_run, default_run):
    run_dir, _, _ = smoke_runner_run
    m = json.loads((run_dir / "mmlu_pro" / "manifest.json").read_text())
    assert m["git_commit"] and m["package_versions"]["scikit-learn"]
    prep = m["stages"]["prepare"]
    assert prep["params"]["max_queries"] == 600 and len(prep["params_hash"]) == 16
    assert all(len(sha) == 64 for sha in prep["data"]["inputs"].values()) and len(prep["data"]["inputs"]) == 5
    assert prep["data"]["dropped"]["subsampled_out_by_max_queries"] > 0
    assert "duplicate_rows_averaged" in prep["data"]["repaired"]
    for stage in ("train", "evaluate", "tune", "ship"):
        assert m["stages"][stage]["executed_notebook"].endswith(".ipynb")
    assert json.loads((run_dir / "manifest.json").read_text())["stages"]["report"]["executed_notebook"].endswith(".ipynb")
    rb = json.loads((default_run.run_dir / "routerbench" / "manifest.json").read_text())["stages"]["prepare"]
    # RouterBench has empty quality cells: the drop policy removes them and counts them.
    assert rb["data"]["dropped"]["missing_quality_cell"] > 0


@pytest.mark.slow
def test_rerun_gives_byte_identical_tables(smoke_runner_run):
    run_dir, overrides, _ = smoke_runner_run
    before = _tables(run_dir / "mmlu_pro" / "tables")
    report_before = _tables(run_dir / "report" / "tables" / "mmlu_pro")
    done = runner.run(smoke=True, overrides={**overrides, "datasets": ["mmlu_pro"]}, stages=["prepare", "train", "evaluate", "ship"], force=True)
    assert not any(info["skipped"] for info in done.values())
    assert _tables(run_dir / "mmlu_pro" / "tables") == before
    assert _tables(run_dir / "report" / "tables" / "mmlu_pro") == report_before


@pytest.mark.slow
def test_single_stage_runs_directly_with_papermill_cli(smoke_runner_run, tmp_path):
    run_dir, _, _ = smoke_runner_run
    folder = tmp_path / "mmlu_pro"  # a copy: the module's run stays up to date for the tests that rerun it
    shutil.copytree(run_dir / "mmlu_pro", folder)
    out = tmp_path / "train.ipynb"
    subprocess.run(
        [sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "20_train_selectors.ipynb"), str(out),
         "-p", "run_dir", str(folder), "-p", "knn_k", "7", "-y", "selector_names: [knn]", "--cwd", str(ROOT / "notebooks")],
        check=True, capture_output=True, env={**os.environ},
    )
    manifest = json.loads((folder / "models" / "small4" / "knn.manifest.json").read_text())
    assert manifest["params"]["k"] == 7


@pytest.mark.slow
def test_failed_stage_keeps_earlier_outputs(smoke_runner_run, tmp_path):
    import papermill as pm

    run_dir = tmp_path / "failing"
    # A bad value is refused before any stage runs ...
    with pytest.raises(ConfigError, match="svm_kernel: Input should be 'rbf' or 'linear'"):
        runner.run(smoke=True, overrides={"run_dir": str(run_dir), "svm_kernel": "poly"}, stages=["prepare", "train"])
    assert not run_dir.exists()
    # ... and a stage that fails while running leaves what earlier stages wrote.
    with pytest.raises(pm.PapermillExecutionError, match="no-such-embedder"):
        runner.run(smoke=True, overrides={"run_dir": str(run_dir), "embedder": "mlsel-tests/no-such-embedder"}, stages=["prepare", "train"])
    assert (run_dir / "mmlu_pro" / "data" / "queries.csv").is_file()
    assert (run_dir / "mmlu_pro" / "notebooks" / "20_train_selectors.ipynb").is_file()  # the partial notebook is kept
    # The run stops at the first failure: the datasets already running side by side (parallel_datasets) end too, and no
    # other starts.
    params = load_params()
    waiting = params.base.datasets[params.base.parallel_datasets:]
    assert waiting and not [ds for ds in waiting if (run_dir / ds).exists()]


def test_a_credential_in_the_endpoint_parameter_is_warned_about_and_published_masked(tmp_path, caplog):
    """``benchmark.endpoint`` is the parameter that can hold a secret (a URL with user info or an ``api_key=`` query).
    The runner lets it through with a warning (papermill records it in the run folder's notebook), and both places it is
    published from, the report's provenance table of the manifest's stage parameters and the notebook page of the
    executed notebook's injected parameters cell, show it masked."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    from mlsel.report.notebook_pages import notebook_page
    from mlsel.report.provenance import provenance_section

    params = load_params(ROOT / "params.yaml")
    # No parameter is named like a secret, so the refusal by name cannot fire on a real parameter ...
    assert not [(s, k) for s in STAGES for k in stage_values(params, s) if is_secret_name(k)]
    runner._check_no_secrets(stage_values(params, "benchmark"), "benchmark")  # the default endpoint: nothing to say
    assert not caplog.records
    # ... the endpoint's value is where a credential goes.
    endpoint = "https://alice:s3cr3t-pw@llm.example.com/v1?api_key=sk-SECRET-42&model=m"
    sp = stage_values(apply_overrides(params, {"benchmark.endpoint": endpoint}), "benchmark")
    assert sp["endpoint"] == endpoint  # what run_stage injects and records in the manifest
    with caplog.at_level(logging.WARNING, logger="mlsel.runner"):
        runner._check_no_secrets(sp, "benchmark")  # not refused: the run needs it
    assert [r.getMessage().split(";")[0] for r in caplog.records] == ["stage benchmark: parameter 'endpoint' holds a credential"]
    masked = "https://***@llm.example.com/v1?api_key=***&model=m"
    # The report's provenance table of the manifest entry run_stage writes.
    section = provenance_section({"stages": {"benchmark": {"params": sp, "params_hash": params_hash(sp)}}}, [], tmp_path, ())
    table = next(b for b in section.blocks if getattr(b, "id", "") == "prov-params-benchmark")
    shown = {row[0][0]: row[1][0] for row in table.rows}
    assert shown["endpoint"] == masked
    assert shown["max_tokens"] == "1024" and shown["models"] == '""'  # the rest as recorded
    # The published page of the executed notebook: papermill's injected parameters cell, as run_stage has it.
    nb = parameterize_notebook(load_notebook_node(str(ROOT / "notebooks" / "10_benchmark_models.ipynb")), sp,
                               kernel_name="python3", language="python")
    ipynb = tmp_path / "10_benchmark_models.ipynb"
    nbformat.write(nb, ipynb)
    assert endpoint in ipynb.read_text()  # the run folder's notebook has it
    page = notebook_page(ipynb, "benchmark", "../index.html")
    assert masked.replace("&", "&amp;") in page
    assert not [s for s in ("alice", "s3cr3t-pw", "sk-SECRET-42") if s in page]


def test_planned_stages_put_benchmark_first_only_when_prepare_reads_it():
    params = load_params(ROOT / "params.yaml")
    assert runner.planned_stages(params) == ["prepare", "train", "evaluate", "tune", "ship", "report"]
    bench = apply_overrides(params, {"source": "benchmark"})
    assert runner.planned_stages(bench)[:2] == ["benchmark", "prepare"]


@pytest.mark.slow
def test_up_to_date_stages_are_skipped_and_a_changed_parameter_reruns(smoke_runner_run, default_run):
    # The default run again, nothing changed: every stage of every dataset is skipped and no table is rewritten.
    before = {ds: _tables(default_run.run_dir / ds / "tables") for ds in DATASETS}
    done = runner.run(overrides=default_run.overrides)
    assert {s for s, info in done.items() if info["skipped"]} == {f"{ds}/{s}" for ds in DATASETS for s in RUN_STAGES} | {"report"}
    assert {ds: _tables(default_run.run_dir / ds / "tables") for ds in DATASETS} == before
    # The smoke run, which earlier tests reran.
    run_dir, overrides, _ = smoke_runner_run
    runner.run(smoke=True, overrides=overrides)  # up to date after this, whatever earlier tests did
    before = _tables(run_dir / "mmlu_pro" / "tables")
    done = runner.run(smoke=True, overrides=overrides)
    assert {s for s, info in done.items() if info["skipped"]} == {f"mmlu_pro/{s}" for s in RUN_STAGES} | {"report"}
    assert _tables(run_dir / "mmlu_pro" / "tables") == before
    # A changed parameter reruns the stages that read it.
    done = runner.run(smoke=True, overrides={**overrides, "knn_k": 9}, stages=["train", "evaluate"])
    assert not done["mmlu_pro/train"]["skipped"] and not done["mmlu_pro/evaluate"]["skipped"]  # evaluate reads the new models
    knn = json.loads((run_dir / "mmlu_pro" / "models" / "small4" / "knn.manifest.json").read_text())
    assert knn["params"]["k"] == 9


def _stage_params(stage: str, run_dir: Path) -> dict:
    return stage_values(apply_overrides(load_params(), {"run_dir": str(run_dir), "report_dir": str(run_dir / "report")}), stage)


def test_prepare_reruns_when_a_source_file_it_read_changes(tmp_path):
    """prepare has no fingerprint before its first run; then it names the source files its data log recorded, by size and
    modification time (as make compares them)."""
    notebook = ROOT / "notebooks" / "00_prepare_data.ipynb"
    sp = _stage_params("prepare", tmp_path)
    assert runner.fingerprint("prepare", sp, tmp_path, notebook) is None
    source = tmp_path / "source.jsonl"
    source.write_text("{}\n")
    os.utime(source, ns=(1_000_000_000, 1_000_000_000))
    (tmp_path / "manifest.json").write_text(json.dumps({"stages": {"prepare": {"data": {"inputs": {str(source): "sha"}}}}}))
    fp = runner.fingerprint("prepare", sp, tmp_path, notebook)
    assert fp is not None and fp == runner.fingerprint("prepare", sp, tmp_path, notebook)
    os.utime(source, ns=(2_000_000_000, 2_000_000_000))
    assert runner.fingerprint("prepare", sp, tmp_path, notebook) != fp
    touched = runner.fingerprint("prepare", sp, tmp_path, notebook)
    source.write_text("{}\n{}\n")
    os.utime(source, ns=(2_000_000_000, 2_000_000_000))  # same time, other size
    assert runner.fingerprint("prepare", sp, tmp_path, notebook) != touched
    assert runner.fingerprint("prepare", {**sp, "max_queries": 7}, tmp_path, notebook) != runner.fingerprint("prepare", sp, tmp_path, notebook)


def test_report_fingerprint_reads_the_datasets_folders_not_its_own_output(tmp_path):
    notebook = ROOT / "notebooks" / "90_build_report.ipynb"
    sp = {**_stage_params("report", tmp_path), "datasets": ["a"]}
    (tmp_path / "a" / "tables").mkdir(parents=True)
    (tmp_path / "a" / "tables" / "selection_results.csv").write_text("x\n1\n")
    fp = runner.fingerprint("report", sp, tmp_path, notebook)
    for own in (tmp_path / "tables" / "summary.csv", tmp_path / "report" / "tables" / "a" / "selection_results.csv",
                tmp_path / "notebooks" / "90_build_report.ipynb", tmp_path / "b" / "tables" / "other.csv"):
        own.parent.mkdir(parents=True, exist_ok=True)
        own.write_text("changed\n")
    assert runner.fingerprint("report", sp, tmp_path, notebook) == fp
    (tmp_path / "a" / "tables" / "selection_results.csv").write_text("x\n2\n")
    assert runner.fingerprint("report", sp, tmp_path, notebook) != fp
    (tmp_path / "a" / "manifest.json").write_text("{}")
    changed = runner.fingerprint("report", sp, tmp_path, notebook)
    (tmp_path / "a" / "manifest.json").write_text('{"stages": {}}')
    assert runner.fingerprint("report", sp, tmp_path, notebook) != changed


FIGURES = {"00_prepare_data": 1, "20_train_selectors": 1, "30_evaluate_selectors": "pools", "40_tune_selectors": "2 x pools",
           "50_ship_selector": "config", "90_build_report": 1}
"""Figures each executed stage notebook shows after its "Result" heading: per pool for evaluate (quality vs cost) and tune
(CV curves and the frontier); for ship one where the dataset evaluates a routing config (the config's quality vs cost)."""


@pytest.mark.slow
def test_each_stage_notebook_ends_with_its_table_figure_and_story(default_run):
    """Every executed notebook shows, after its "## Result" heading, a table (HTML), its figure(s) as PNG drawn by the report's
    functions and the sentences (Markdown) computed from them; no cell failed."""
    import base64
    import io

    from PIL import Image

    done = default_run.done
    pools = {ds: len(dataset_params(Params(), ds).base.pools) for ds in DATASETS}
    assert pools["mmlu_pro"] == 2 and pools["routerbench"] == 1
    configs = {ds: int(_evaluates_config(ds)) for ds in pools}  # one figure per evaluated config
    for key, info in done.items():
        nb = json.loads(Path(info["notebook"]).read_text())
        stem = Path(info["notebook"]).stem
        start = next(i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "markdown" and "".join(c["source"]).startswith("## Result"))
        outputs = [o for c in nb["cells"][start:] if c["cell_type"] == "code" for o in c["outputs"]]
        assert not [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"] if o["output_type"] == "error"], key
        pngs = [base64.b64decode(o["data"]["image/png"]) for o in outputs if "image/png" in o.get("data", {})]
        n_pools = pools.get(key.split("/")[0], 0)
        want = {"pools": n_pools, "2 x pools": 2 * n_pools, "config": configs.get(key.split("/")[0], 0)}.get(FIGURES[stem], FIGURES[stem])
        assert len(pngs) == want, (key, len(pngs), want)
        for png in pngs:
            with Image.open(io.BytesIO(png)) as im:
                assert im.format == "PNG" and im.width > 300 and im.height > 150, key
        stories = ["".join(o["data"]["text/markdown"]) for o in outputs if "text/markdown" in o.get("data", {})]
        assert stories and all(len(s) > 80 for s in stories), key
        if stem not in ("30_evaluate_selectors", "50_ship_selector"):  # their tables come before the figure, under the steps' headings
            assert any("text/html" in o.get("data", {}) for o in outputs), key


@pytest.mark.slow
def test_executed_notebooks_are_published_beside_the_report_and_linked(default_run):
    """The runner publishes a page per executed notebook (the report's own too) under <report_dir>/notebooks/, each with its
    figures as data: images (every ship page has at least the shipped config's gains), and the report page links every one
    of them."""
    report, done = default_run.report_dir, default_run.done
    html = (report / "index.html").read_text()
    pages = sorted(str(p.relative_to(report)) for p in (report / "notebooks").rglob("*.html"))
    want = sorted(f"notebooks/{k.split('/')[0]}/{Path(v['notebook']).stem}.html" if "/" in k else f"notebooks/{Path(v['notebook']).stem}.html"
                  for k, v in done.items())
    assert pages == want
    for page in pages:
        assert f'href="{page}"' in html, page
        text = (report / page).read_text()
        assert "<script" not in text, page
        assert "data:image/png;base64," in text, page
