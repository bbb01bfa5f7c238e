"""The report: self-contained, complete, deterministic, honest about units."""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import time
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from mlsel.params import stage_values
from mlsel.report.page import build_report, report_sections
from mlsel.report.provenance import MASK, mask_secrets
from mlsel.report.tables import LATENCY_LABEL, PROXY_LABEL, best_single_model, seed_tables_markdown, verdicts
from mlsel.report.tuned import frontier_blocks, tune_heatmap_blocks

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def built(smoke_run, tmp_path_factory):
    """The smoke run's report, built twice into two folders."""
    sp = stage_values(smoke_run, "report")
    out1 = tmp_path_factory.mktemp("report1")
    out2 = tmp_path_factory.mktemp("report2")
    (out1 / "tables").mkdir()
    (out1 / "tables" / "stale_from_another_run.csv").write_text("x\n1\n")
    t0 = time.perf_counter()
    p1 = build_report(sp["run_dir"], str(out1))
    seconds = time.perf_counter() - t0
    p2 = build_report(sp["run_dir"], str(out2))
    return {"params": sp, "html1": p1, "html2": p2, "text": p1.read_text(encoding="utf-8"), "seconds": seconds}


def test_build_is_fast(built):
    # The page's size depends on pools x strategies x categories, not on the number of queries.
    assert built["seconds"] < 30


def _images(text: str) -> list[str]:
    return re.findall(r"<img\b[^>]*\bsrc=\"([^\"]*)\"", text)


def _check_png_data_uri(src: str) -> None:
    assert src.startswith("data:image/png;base64,"), src[:60]
    raw = base64.b64decode(src.split(",", 1)[1], validate=True)
    assert raw.startswith(PNG_MAGIC)
    from PIL import Image

    with Image.open(io.BytesIO(raw)) as im:
        im.load()
        assert im.width > 100 and im.height > 100


def test_report_files_and_content(built):
    sp = built["params"]
    html_path, text = built["html1"], built["text"]
    assert html_path.name == "index.html" and html_path.is_file()
    res = pd.read_csv(Path(sp["run_dir"]) / "tables" / "selection_results.csv")
    for pool in res["pool"].unique():
        assert f"Pool {html.escape(pool)}" in text
    for name in res["strategy"].unique():
        assert html.escape(name) in text, name
    for title in ("Headline", "Per-category quality", "Which models the strategies choose", "Quality vs efficiency",
                  "Data provenance and parameters", "ML routing benefit over random", "Random → oracle gap closed"):
        assert title in text, title
    # Verdicts are generated from the CIs: every selector is named in a sentence about the best single model (its own, or one
    # shared with the selectors of the same verdict).
    for name in res.loc[res["kind"] == "selector", "strategy"]:
        pattern = re.escape(html.escape(name)) + r"(, [^.,]+)*( and [^.,]+)? (beats|each beat|does not beat|do not beat) the best single model"
        assert re.search(pattern, text), name
    # Provenance: input checksums, counts, parameter hashes, versions, commit.
    manifest = json.loads((Path(sp["run_dir"]) / "manifest.json").read_text())
    for path, sha in manifest["stages"]["prepare"]["data"]["inputs"].items():
        assert sha in text
    assert f'{manifest["stages"]["prepare"]["data"]["n_records_read"]}' in text
    for stage in ("prepare", "train", "evaluate"):
        assert manifest["stages"][stage]["params_hash"] in text
    assert "git commit" in text and "scikit-learn" in text


def test_report_is_self_contained(built):
    text = built["text"]
    assert "<script" not in text.lower()
    for tag, attr in (("script", "src"), ("link", "href"), ("img", "src"), ("iframe", "src"), ("source", "src")):
        for value in re.findall(rf"<{tag}\b[^>]*\b{attr}=\"([^\"]*)\"", text, flags=re.I):
            assert value.startswith("data:"), f"<{tag} {attr}={value[:80]}>"
    assert not re.search(r"url\(\s*['\"]?https?:", text), "CSS must not load remote resources"
    assert "@import" not in text and "@font-face" not in text
    # Only relative links to the copied tables and in-page anchors.
    for href in re.findall(r"<a\b[^>]*\bhref=\"([^\"]*)\"", text):
        assert href.startswith("#") or href.startswith("tables/"), href
    imgs = _images(text)
    assert len(imgs) >= 5  # per pool: heatmap, stacked bars, scatter
    for src in imgs:
        _check_png_data_uri(src)


def test_figures_are_compact_and_shown_pixel_for_pixel(built):
    """Every figure is a palette PNG under 0.09 bytes a pixel (these plots take about 0.05; matplotlib's own RGBA PNG about
    0.15), its <img> as wide as the image: the page grows with the figures' area, not faster, and is not rescaled."""
    from PIL import Image

    imgs = re.findall(r'<img src="data:image/png;base64,([^"]+)"[^>]*\bwidth="(\d+)"', built["text"])
    assert imgs
    for b64, width in imgs:
        raw = base64.b64decode(b64)
        with Image.open(io.BytesIO(raw)) as im:
            assert im.mode == "P" and im.width == int(width)
            assert len(raw) < 0.09 * im.width * im.height, (len(raw), im.size)


def test_tables_copied_byte_identical(built):
    src = Path(built["params"]["run_dir"]) / "tables"
    dst = built["html1"].parent / "tables"
    csvs = sorted(p.name for p in src.glob("*.csv"))
    assert {"selection_results.csv", "per_category.csv", "selection_share.csv"} <= set(csvs)
    for name in csvs:
        assert (dst / name).read_bytes() == (src / name).read_bytes(), name
    assert sorted(p.name for p in dst.glob("*.csv")) == csvs  # the stale CSV is gone


def test_two_builds_byte_identical(built):
    assert built["html1"].read_bytes() == built["html2"].read_bytes()


def test_proxy_label_without_latency(built):
    text = built["text"]
    assert PROXY_LABEL in text
    assert LATENCY_LABEL not in text
    proxy_cells = re.findall(r'<td class="num eff proxy">([^<]*)</td>', text)
    assert proxy_cells
    for cell in proxy_cells:
        assert re.fullmatch(r"[0-9,]+|—", cell), cell  # a character count: never seconds
    assert not re.search(r'class="num eff proxy">[^<]*s</td>', text)


def _fake_results(latency: bool) -> pd.DataFrame:
    rows = []
    spec = [("Oracle (best possible)", "oracle", "", 0.80, 2.0), ("KNN Selection", "selector", "", 0.60, 5.5),
            ("Best single on train (model-a)", "best_single", "model-a", 0.55, 6.0), ("Always model-a", "always", "model-a", 0.55, 6.0),
            ("Always model-b", "always", "model-b", 0.40, 1.25), ("Random Selection (expected)", "random", "", 0.475, 3.625)]
    for name, kind, model, q, lat in spec:
        rows.append({
            "pool": "tiny", "strategy": name, "kind": kind, "model": model, "n_queries": 40, "avg_quality": q,
            "avg_quality_ci_low": q - 0.05, "avg_quality_ci_high": q + 0.05,
            "avg_latency_s": lat if latency else float("nan"), "avg_response_chars": 100 * lat,
            "best_model_pct": 100 * q, "best_model_pct_ci_low": 100 * q - 5, "best_model_pct_ci_high": 100 * q + 5,
            "best_model_pct_decidable": 100 * q, "best_model_x_vs_random": q / 0.475,
            "uplift_vs_random_pct": 100 * (q - 0.475) / 0.475, "uplift_vs_random_pct_ci_low": 100 * (q - 0.5) / 0.475,
            "uplift_vs_random_pct_ci_high": 100 * (q - 0.45) / 0.475,
            "uplift_vs_best_single": q - 0.55, "uplift_vs_best_single_ci_low": q - 0.55 - 0.03,
            "uplift_vs_best_single_ci_high": q - 0.55 + 0.03,
            "gap_closed_pct": 100 * (q - 0.475) / 0.325, "gap_closed_pct_ci_low": 0.0, "gap_closed_pct_ci_high": 100.0,
        })
    return pd.DataFrame(rows)


def _fake_run(root: Path, latency: bool, manifest: dict | None = None) -> Path:
    run = root / "run"
    (run / "tables").mkdir(parents=True)
    _fake_results(latency).to_csv(run / "tables" / "selection_results.csv", index=False)
    if manifest is not None:
        (run / "manifest.json").write_text(json.dumps(manifest))
    return run


def test_measured_latency_shown_in_seconds(tmp_path):
    run = _fake_run(tmp_path, latency=True)
    text = build_report(str(run), str(tmp_path / "out")).read_text()
    assert LATENCY_LABEL in text and PROXY_LABEL not in text
    cells = re.findall(r'<td class="num eff latency">([^<]*)</td>', text)
    assert "5.50 s" in cells and "1.25 s" in cells
    assert all(c.endswith(" s") for c in cells)
    # KNN is +0.05 [+0.02, +0.08] over the best single model: the verdict says it beats it.
    assert "KNN Selection beats the best single model (model-a)" in text
    assert len(_images(text)) == 1  # the quality vs latency scatter
    for src in _images(text):
        _check_png_data_uri(src)


def test_missing_latency_in_fake_run_uses_proxy(tmp_path):
    run = _fake_run(tmp_path, latency=False)
    text = build_report(str(run), str(tmp_path / "out")).read_text()
    assert PROXY_LABEL in text and LATENCY_LABEL not in text
    assert re.findall(r'<td class="num eff proxy">([^<]*)</td>', text) == ["200", "550", "600", "600", "362", "125"]
    assert "no manifest.json" in text


def test_verdict_when_selector_is_worse(tmp_path):
    df = _fake_results(latency=False)
    df.loc[df["strategy"] == "KNN Selection", ["uplift_vs_best_single", "uplift_vs_best_single_ci_low", "uplift_vs_best_single_ci_high"]] = [-0.1, -0.15, -0.05]
    text = " ".join(verdicts(df))
    assert "does not beat the best single model (model-a); it is worse" in text


def test_best_single_model_is_read_from_the_model_column():
    df = _fake_results(latency=False)
    df.loc[df["kind"] == "best_single", "strategy"] = "Best single on train"  # the label is not parsed
    assert best_single_model(df) == "model-a"
    assert "KNN Selection beats the best single model (model-a)" in " ".join(verdicts(df))


def test_seed_tables_markdown_shows_both_tables_per_pool():
    md = seed_tables_markdown(_fake_results(latency=True))
    lines = md.splitlines()
    assert lines[0] == "### Pool `tiny` — 40 held-out queries"
    assert f"| Strategy | Avg Quality [95% CI] | {LATENCY_LABEL} | Best Model % | vs best single [95% CI] |" in lines
    assert "| KNN Selection | 0.600 [0.550, 0.650] | 5.50 s | 60.0% | +0.050 [+0.020, +0.080] |" in lines
    assert "**ML routing benefit over random (expected)**" in lines
    assert any(line.startswith("| KNN Selection | +26.3% [") and "1.26x more often" in line for line in lines)


def test_secrets_masked_and_no_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLSEL_TEST_SECRET_VALUE", "env-value-must-not-appear")
    manifest = {
        "git_commit": "abc123", "package_versions": {"numpy": "2.0"},
        "stages": {"benchmark": {"params": {"api_key": "sk-verysecret", "hf_token": "hf_abc", "nested": {"client_secret": "s3"},
                                            "endpoint": "http://localhost:8000/v1", "model_config": ""},
                                 "params_hash": "0123456789abcdef"}},
    }
    run = _fake_run(tmp_path, latency=False, manifest=manifest)
    text = build_report(str(run), str(tmp_path / "out")).read_text()
    for secret in ("sk-verysecret", "hf_abc", "&#34;s3&#34;", '"s3"', "env-value-must-not-appear"):
        assert secret not in text
    assert "api_key" in text and MASK in text and "0123456789abcdef" in text


def test_optional_tables_rendered(smoke_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(Path(smoke_run.base.run_dir) / "tables", run / "tables")
    shutil.copy(Path(smoke_run.base.run_dir) / "manifest.json", run / "manifest.json")
    res = pd.read_csv(run / "tables" / "selection_results.csv")
    tuned = res[res["kind"] == "selector"].assign(strategy=lambda d: d["strategy"] + " (tuned)")
    tuned.to_csv(run / "tables" / "tuned_results.csv", index=False)
    frontier = pd.DataFrame([
        {"pool": pool, "router": r, "cost_lambda": lam, "avg_quality": 0.4 + 0.1 * i - 0.05 * lam, "avg_response_chars": 900 - 300 * lam}
        for pool in res["pool"].unique() for i, r in enumerate(["knn", "svm"]) for lam in (0.0, 0.5, 1.0)
    ])
    frontier.to_csv(run / "tables" / "frontier.csv", index=False)
    pd.DataFrame({"pool": ["small4"], "router": ["knn"], "aiq": [0.42]}).to_csv(run / "tables" / "aiq.csv", index=False)
    pd.DataFrame([{"selector": "knn", "knn_k": k, "onehot_weight": w, "score": 0.3 + 0.01 * k + w / 10}
                  for k in (3, 5, 7) for w in (0.5, 1.0)]).to_csv(run / "tables" / "tune_heatmap.csv", index=False)
    pd.DataFrame({"fold": range(50), "score": [0.5] * 50}).to_csv(run / "tables" / "cv_results.csv", index=False)
    pd.DataFrame({"decision": ["math", "default"], "model": ["a", "b"], "avg_quality": [0.6, 0.5]}).to_csv(
        run / "tables" / "router_config_results.csv", index=False)
    pd.DataFrame({"x": [1]}).to_csv(run / "tables" / "something_new.csv", index=False)
    EXPORT_TABLE.to_csv(run / "tables" / "router_export.csv", index=False)

    titles = report_sections(str(run))
    for t in ("Tuned selectors (held-out)", "Cost-quality frontier", "AIQ: area under the cost-quality curve",
              "Hyper-parameter tuning", "Cross-validation results", "Per-decision routing config", "The reference parameters as router model files (not what is shipped)",
              "Other tables"):
        assert t in titles, t
    out = tmp_path / "out"
    text = build_report(str(run), str(out)).read_text()
    assert 'href="tables/something_new.csv"' in text
    assert (out / "tables" / "something_new.csv").read_bytes() == (run / "tables" / "something_new.csv").read_bytes()
    n_pools = res["pool"].nunique()
    assert len(re.findall(r'<figure id="fig-frontier-', text)) == n_pools
    assert len(re.findall(r'<figure id="fig-tune-heatmap-', text)) == 1
    assert "First 20 of 50 rows" in text
    assert 'href="tables/router_export.csv"' in text and "svm agrees on 99.5% (quality 0.441 shipped vs 0.443 evaluated)" in text
    assert "Knn Selection (tuned)" in text or "KNN Selection (tuned)" in text
    for src in _images(text):
        _check_png_data_uri(src)


EXPORT_TABLE = pd.DataFrame([
    {"pool": "small4", "algorithm": a, "file": f"{a}_model.json", "rule": "exact", "size_mb": 1.0, "n_test": 200,
     "agreement_rate": r, "selector_quality": 0.443, "runtime_quality": q}
    for a, r, q in (("knn", 1.0, 0.443), ("kmeans", 1.0, 0.443), ("svm", 0.995, 0.441))
] + [{"pool": "all5", "algorithm": "knn", "file": "knn_model.json", "rule": "exact", "size_mb": 1.0, "n_test": 200,
      "agreement_rate": 1.0, "selector_quality": 0.6, "runtime_quality": 0.6}])


def test_export_sentences_say_whether_shipped_files_choose_what_was_evaluated():
    from mlsel.report.tables import export_sentences

    small4, all5 = export_sentences(EXPORT_TABLE)
    assert small4 == ("Pool small4: the shipped files differ from the evaluated selectors on some held-out queries: "
                      "svm agrees on 99.5% (quality 0.441 shipped vs 0.443 evaluated).")
    assert all5.startswith("Pool all5: on all 200 held-out queries the runtime's rule on each exported file (knn) picks the model")


def test_tune_heatmap_falls_back_to_table():
    df = pd.DataFrame({"knn_k": [3, 5], "score": [0.1, 0.2]})
    blocks = tune_heatmap_blocks(df)
    assert [b.type for b in blocks] == ["table"]


def test_mask_secrets_nested():
    out = mask_secrets({"API_KEY": "x", "a": {"token": "y", "b": [{"password": "z"}]}, "empty_key": ""})
    assert out == {"API_KEY": MASK, "a": {"token": MASK, "b": [{"password": MASK}]}, "empty_key": ""}


# --------------------------------------------------------------------------- the cross-dataset page


def test_cross_dataset_page_opens_with_the_answer_and_scopes_each_dataset(cross_dataset_run, tmp_path):
    from mlsel.report.overview import build_run_report

    out = tmp_path / "site"
    (out / "tables" / "old").mkdir(parents=True)
    (out / "tables" / "old" / "stale.csv").write_text("x\n1\n")
    text = build_run_report(str(cross_dataset_run), ["a", "b"], str(out)).read_text()
    sections = re.findall(r'<section id="([^"]+)"', text)
    assert sections[:4] == ["answer", "overview", "glossary", "methods"] and "a-headline" in sections and "b-headline" in sections
    assert sections.index("a") < sections.index("a-headline") < sections.index("b") < sections.index("b-headline")
    assert len(set(re.findall(r'id="([^"]+)"', text))) == len(re.findall(r'id="([^"]+)"', text)), "ids are unique"
    # One verdict per row, from the intervals: a pays (CI above 0, saving above 0), b does not.
    assert "a, pool small4: routing paid off" in text and "saves 50.0% [40.0%, 60.0%] of the cost in USD" in text
    assert ("Chosen on CV to keep 97% of its quality, logreg keeps 98.9% [97.3%, 100.4%] of it at 42.3% [39.0%, 45.3%] of its "
            "cost in USD.") in text
    assert "b, pool all5: routing did not pay off in quality" in text and "for quality alone, Meta-Llama-3.1-70B-Instruct does as well" in text
    # Every table link resolves to a published file; the stale one is gone.
    for href in re.findall(r'href="(tables/[^"]+)"', text):
        assert (out / href).is_file(), href
    assert 'href="tables/a/selection_results.csv"' in text and 'href="tables/summary.csv"' in text
    assert not (out / "tables" / "old" / "stale.csv").exists()
    summary = pd.read_csv(out / "tables" / "summary.csv")
    assert summary["dataset"].tolist() == ["a", "b"] and summary["gain_at_b"].tolist() == [0.05, 0.0]
    assert (out / "tables" / "b" / "selection_results.csv").read_bytes() == (cross_dataset_run / "b" / "tables" / "selection_results.csv").read_bytes()
    # The proxy is named as such in the matrix, never as USD.
    row_b = re.search(r"<tr><td class=\"name\">b</td>.*?</tr>", text).group(0)
    assert "response chars (proxy)" in row_b and "USD" not in row_b


def test_cross_dataset_page_says_which_dataset_has_no_row(cross_dataset_run, tmp_path):
    from mlsel.report.overview import build_run_report

    with pytest.raises(FileNotFoundError, match=r"run-cross\d*/c: no run folder for dataset 'c'"):
        build_run_report(str(cross_dataset_run), ["a", "c"], str(tmp_path / "site"))
    root = tmp_path / "run"
    shutil.copytree(cross_dataset_run, root)
    (root / "b" / "tables" / "summary.csv").unlink()  # b's tune stage has not run
    text = build_run_report(str(root), ["a", "b"], str(tmp_path / "site2")).read_text()
    assert "No cross-dataset row for b: its tune stage" in text and 'id="b-headline"' in text
    assert pd.read_csv(tmp_path / "site2" / "tables" / "summary.csv")["dataset"].tolist() == ["a"]


def test_cross_dataset_page_of_a_relative_run_folder(cross_dataset_run, tmp_path, monkeypatch):
    """A relative run folder is relative to the project root (as `make run`'s runs/default), not to the working directory."""
    import os

    from mlsel.report.overview import build_run_report

    root = Path(os.environ["MLSEL_ROOT"])
    monkeypatch.chdir(tmp_path)  # the report notebook runs in notebooks/
    rel = os.path.relpath(cross_dataset_run, root)
    text = build_run_report(rel, ["a", "b"], str(tmp_path / "site")).read_text()
    assert 'id="a-headline"' in text and (tmp_path / "site" / "tables" / "a" / "selection_results.csv").is_file()


def test_mask_secrets_by_name_words_and_inside_urls():
    """max_tokens is a number, not a secret; Authorization headers, apiKey and credentials inside endpoint URLs are secrets."""
    params = {"max_tokens": 1024, "tokenizer": "gpt2", "headers": {"Authorization": "Bearer sk-live-123", "X-Api-Key": "abc"},
              "apiKey": "k1", "endpoint": "https://user:pw@llm.example.com/v1?api_key=sk-9&model=m1",
              "models": [{"name": "a", "endpoint": "http://h:8000/v1?token=t0k&x=1"}], "note": "Bearer sk-abc in a string"}
    out = mask_secrets(params)
    assert out["max_tokens"] == 1024 and out["tokenizer"] == "gpt2"
    assert out["headers"] == {"Authorization": MASK, "X-Api-Key": MASK} and out["apiKey"] == MASK
    assert out["endpoint"] == f"https://{MASK}@llm.example.com/v1?api_key={MASK}&model=m1"
    assert out["models"][0]["endpoint"] == f"http://h:8000/v1?token={MASK}&x=1"
    assert out["note"] == f"Bearer {MASK} in a string"


def test_tune_heatmap_drawn_from_the_tune_stage_table():
    """The tune stage's long table (param, param_value, onehot_weight, cv_*): one heatmap per pool and selector whose grid
    varies both axes, the axis named by the parameter; selectors with one one-hot weight get none."""
    rows = [{"pool": pool, "selector": "knn", "param": "knn_k", "param_value": k, "onehot_weight": w,
             "cv_quality_mean": 0.4 + 0.001 * k + w / 100, "cv_quality_std": 0.01, "cv_utility_mean": 0.4 + 0.001 * k + w / 100}
            for pool in ("small4", "all5") for k in (50, 200) for w in (0.0, 1.0)]
    rows += [{"pool": "small4", "selector": "svm", "param": "svm_c", "param_value": 1.0, "onehot_weight": 1.0,
              "cv_quality_mean": 0.44, "cv_quality_std": 0.01, "cv_utility_mean": 0.44}]
    blocks = tune_heatmap_blocks(pd.DataFrame(rows))
    figs = [b for b in blocks if b.type == "figure"]
    assert [f.id for f in figs] == ["fig-cv-curves-small4", "fig-cv-curves-all5",  # the CV curves of every selector, per pool
                                    "fig-tune-heatmap-pool-small4-selector-knn", "fig-tune-heatmap-pool-all5-selector-knn"]
    assert "knn_k x onehot_weight" in figs[2].caption and "cv_utility_mean" in figs[2].caption
    assert "cv_utility_mean" in figs[0].caption and "training split only" in figs[0].caption
    assert blocks[-1].type == "table"


def test_frontier_without_any_cost_says_why():
    fr = pd.DataFrame({"pool": ["p", "p"], "router": ["knn", "knn"], "cost_lambda": [0.0, 1.0], "avg_quality": [0.5, 0.4],
                       "avg_latency_s": [float("nan")] * 2, "avg_response_chars": [float("nan")] * 2})
    blocks = frontier_blocks(fr, None)
    assert [b.type for b in blocks] == ["text", "table"]
    assert "no cost column has a value in this run" in blocks[0].text


def test_no_efficiency_measure_reads_as_such_never_nan():
    """Results with neither cost, latency, answer length nor price: the column says none was measured and shows dashes."""
    res = _fake_results(latency=False).assign(avg_response_chars=float("nan"))
    md = seed_tables_markdown(res)
    assert "Efficiency (none measured)" in md and PROXY_LABEL not in md
    assert "nan" not in md.lower() and "| — |" in md


def test_frontier_curves_are_the_cost_aware_routers_only():
    """Only rows of kind "router" are curves over cost_lambda (sorted by it); selectors, single models and the zero router
    (whose rows have no cost_lambda) are drawn as points or a segment, never as a curve."""
    from mlsel.report.figures import frontier_curves

    fr = pd.read_csv(io.StringIO(
        "pool,kind,router,cost_lambda,avg_quality,avg_response_chars\n"
        "p,selector,knn,,0.44,816\n"
        "p,single,Always A,,0.41,398\n"
        "p,single,Always B,,0.44,927\n"
        "p,zero_router,Zero router,,0.41,398\n"
        "p,zero_router,Zero router,,0.44,927\n"
        "p,router,mlp,1.0,0.40,400\n"
        "p,router,mlp,0.0,0.44,900\n"
        "p,router,logreg,0.0,0.45,850\n"))
    curves = frontier_curves(fr)
    assert list(curves) == ["mlp", "logreg"]
    assert curves["mlp"]["cost_lambda"].tolist() == [0.0, 1.0] and curves["mlp"]["avg_quality"].tolist() == [0.44, 0.40]
    assert frontier_curves(fr[fr["kind"] != "router"]) == {}


def test_selectors_with_the_same_verdict_share_one_sentence():
    """Three more selectors: SVM and KMEANS tie the best single model (interval includes 0) and beat random, LOGREG is worse
    than it and does not beat random; KNN (beats both) keeps its own sentence. Three sentences, not five."""
    base = _fake_results(latency=False)
    knn = base[base["strategy"] == "KNN Selection"].iloc[0]
    extra = []
    for name, q, lo, hi, rlo in (("SVM Selection", 0.56, -0.01, 0.03, 5.0), ("KMEANS Selection", 0.55, -0.02, 0.02, 4.0),
                                 ("LOGREG Selection", 0.45, -0.15, -0.05, -10.0)):
        extra.append(knn.copy().to_dict() | {"strategy": name, "avg_quality": q, "uplift_vs_best_single": q - 0.55,
                                             "uplift_vs_best_single_ci_low": lo, "uplift_vs_best_single_ci_high": hi,
                                             "uplift_vs_random_pct": 100 * (q - 0.475) / 0.475, "uplift_vs_random_pct_ci_low": rlo,
                                             "gap_closed_pct": 100 * (q - 0.475) / 0.325})
    text = verdicts(pd.concat([base, pd.DataFrame(extra)], ignore_index=True))
    assert len(text) == 3
    assert text[0].startswith("KNN Selection beats the best single model (model-a)")
    assert text[1] == ("SVM Selection and KMEANS Selection do not beat the best single model (model-a): each interval includes 0, so "
                       "no difference is shown (+0.000 to +0.010 quality). Each beats random selection (+15.8% to +17.9% quality) and "
                       "closes 23.1% to 26.2% of the random → oracle gap.")
    assert text[2].startswith("LOGREG Selection does not beat the best single model (model-a); it is worse")


def _paragraphs(text: str) -> list[str]:
    """The text of every paragraph, list item, definition, figure caption and table caption of a page, spaces collapsed."""
    from html.parser import HTMLParser

    blocks = ("p", "li", "dd", "figcaption", "caption")

    class Paragraphs(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.open: list[list[str]] = []
            self.done: list[str] = []

        def handle_starttag(self, tag, attrs):
            if tag in blocks:
                self.open.append([])

        def handle_endtag(self, tag):
            if tag in blocks and self.open:
                self.done.append(" ".join("".join(self.open.pop()).split()))

        def handle_data(self, data):
            if self.open:
                self.open[-1].append(data)

    p = Paragraphs()
    p.feed(text)
    return p.done


@pytest.fixture(scope="module")
def two_datasets(cross_dataset_run, tmp_path_factory):
    """The cross-dataset run with b's numbers made its own (the fixture copies one run's tables into both datasets), and
    its page."""
    from mlsel.report.overview import build_run_report

    tmp = tmp_path_factory.mktemp("two-datasets")
    run = tmp / "run"
    shutil.copytree(cross_dataset_run, run)
    for csv in sorted((run / "b" / "tables").glob("*.csv")):
        if csv.name != "summary.csv":
            df = pd.read_csv(csv)
            floats = df.select_dtypes("float").columns
            df[floats] = df[floats] * 0.97 + 0.0013
            df.to_csv(csv, index=False)
    index = build_run_report(str(run), ["a", "b"], str(tmp / "site"))
    return {"run": run, "index": index, "text": index.read_text(encoding="utf-8")}


def test_no_long_paragraph_said_twice(two_datasets):
    """Two datasets with their own numbers: no paragraph of 40 words or more appears twice on the page. What every dataset
    shares (the baselines and intervals, static routing, the software table) is said once, in the Methods section."""
    paragraphs = [p for p in _paragraphs(two_datasets["text"]) if len(p.split()) >= 40]
    assert paragraphs
    twice = {p: n for p, n in Counter(paragraphs).items() if n > 1}
    assert not twice, twice
    text = two_datasets["text"]
    assert text.count("Random is the exact expectation over the pool") == 1
    assert text.count('id="methods-software"') == 1 and "As in the Methods section&#39;s software table." in text


def test_the_answer_table_says_what_to_do(two_datasets):
    """a's router beats the best single model (no verdict column: its interval decides); b's interval includes 0. The saving
    is at the matched point, named with its unit; the headers link to the glossary, whose targets exist."""
    text = two_datasets["text"]
    table = re.search(r'<table id="answer-table".*?</table>', text, flags=re.S).group(0)
    rows = re.findall(r"<tr>(.*?)</tr>", table.split("<tbody>")[1], flags=re.S)
    cells = [[html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)] for row in rows]
    assert cells[0] == ["a, small4", "Route with KNN_REG (tuned)", "KNN_REG (tuned)", "+0.050 [+0.010, +0.090]", "—",
                        "57.7% [54.7%, 61.0%]", "LOGREG: 98.9% of the quality", "USD per query"]
    assert cells[1][:3] == ["b, all5", "Use Meta-Llama-3.1-70B-Instruct", "KMEANS (tuned)"]
    assert cells[1][3] == "+0.000 [-0.010, +0.010]" and cells[1][5:] == ["—", "none reached the target on CV", "answer length (proxy)"]
    for target in re.findall(r'<th scope="col"><a href="#([^"]+)">', table):
        assert f'id="{target}"' in text, target
    assert re.findall(r'<td class="name"><a href="#([^"]+)">', table) == ["a", "b"]


def test_do_this_follows_the_verdict():
    from types import SimpleNamespace

    from mlsel.report.answer import do_this

    def row(**kw):
        base = {"router": "KNN (tuned)", "best_single": "M", "verdict": None, "gain_at_b_ci_low": 0.01}
        return SimpleNamespace(**(base | kw))

    assert do_this(row(verdict="ML routing beats static routing")) == "Route with KNN (tuned)"
    assert do_this(row(verdict="static routing is enough")) == "Use the per-category lookup"
    assert do_this(row(verdict="neither beats the best single model")) == "Use M"
    assert do_this(row(router="Best single on train (M)", verdict="static routing is enough")) == "Use M"
    assert do_this(row()) == "Route with KNN (tuned)" and do_this(row(gain_at_b_ci_low=-0.01)) == "Use M"
    assert do_this(row(router="Per-category lookup on train")) == "Use the per-category lookup"


def test_negative_zero_prints_as_zero():
    from mlsel.report.tables import fmt_ci, fmt_num

    assert fmt_num(-0.0004) == "0.000" and fmt_num(-0.0004, sign=True) == "+0.000" and fmt_num(-0.0006) == "-0.001"
    assert fmt_ci(-0.0001, -0.02, -0.00001, 3, True) == "+0.000 [-0.020, +0.000]"
    assert fmt_num(-0.04, 1, suffix="%") == "0.0%"


def test_a_paragraph_two_datasets_share_word_for_word_is_said_once():
    """The same data seen twice (BFCL's latency, tuned for two cost axes): the second dataset's long paragraph points to the
    first; a short one, a method note and a different one stay."""
    from mlsel.report.blocks import Section, Text
    from mlsel.report.shared import take_repeated

    long = " ".join(["word"] * 40)
    parts = {ds: [Section("latency-repeat", "t", [Text(text=long), Text(text="short"), Text(items=[long + " " + ds]),
                                                 Text(text=long + " note", shared="A note")])] for ds in ("x", "y")}
    take_repeated(parts, {"x": "X", "y": "Y"})
    assert [b.text for b in parts["x"][0].blocks] == [long, "short", "", long + " note"]
    assert [b.text for b in parts["y"][0].blocks] == ["As in the X section, from the same data.", "short", "", long + " note"]
    assert parts["y"][0].blocks[2].items == [long + " y"]
