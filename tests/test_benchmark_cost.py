"""Per-call cost in USD: models.yaml ``pricing``, the server's ``usage``, the summary's cost columns.

The run against the real SmolLM2 server is in test_benchmark_llm.py (it shares
that module's session server); here a loopback stub returns fixed usage
numbers, so the costs are known answers.
"""

from __future__ import annotations

import json
import logging
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlsel.llm.benchmark import SUMMARY_COLUMNS, run_benchmark, summarize
from mlsel.llm.client import BenchmarkError, load_model_config
from mlsel.llm.pricing import Pricing, cost_usd, usage_tokens

ROOT = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- the cost function


def test_cost_known_answer():
    # 1200 * 0.5 / 1e6 + 300 * 1.5 / 1e6 = 0.0006 + 0.00045
    assert cost_usd(Pricing(0.5, 1.5), 1200, 300) == pytest.approx(0.00105, rel=1e-12)
    assert cost_usd(Pricing(3.0, 15.0), 1_000_000, 0) == pytest.approx(3.0)
    assert cost_usd(Pricing(0.0, 0.0), 10, 10) == 0.0
    assert cost_usd(None, 1200, 300) is None  # unpriced
    assert cost_usd(Pricing(0.5, 1.5), None, 300) is None  # no usage: never estimated
    assert cost_usd(Pricing(0.5, 1.5), 1200, None) is None


def test_usage_tokens_from_reply():
    assert usage_tokens({"usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}}) == (12, 3)
    assert usage_tokens({"choices": []}) == (None, None)
    assert usage_tokens({"usage": None}) == (None, None)
    assert usage_tokens({"usage": {"prompt_tokens": "12", "completion_tokens": -1}}) == (None, None)
    assert usage_tokens({"usage": {"prompt_tokens": True, "completion_tokens": 4}}) == (None, 4)


# --------------------------------------------------------------------------- models.yaml pricing


def _yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_pricing_is_read_per_model(tmp_path):
    cfg = _yaml(
        tmp_path / "models.yaml",
        "models:\n  - name: paid\n    pricing: {prompt_per_1m: 0.5, completion_per_1m: 2}\n  - name: free\n"
        "  - name: nullpriced\n    pricing: null\n",
    )
    paid, free, nullpriced = load_model_config(cfg)
    assert paid.pricing == Pricing(0.5, 2.0) and isinstance(paid.pricing.completion_per_1m, float)
    assert free.pricing is None and nullpriced.pricing is None


@pytest.mark.parametrize(
    "block, message",
    [
        ("{prompt_per_1m: 0.5}", "pricing.completion_per_1m is missing"),
        ("{completion_per_1m: 0.5}", "pricing.prompt_per_1m is missing"),
        ("{}", "pricing.prompt_per_1m is missing"),
        ("{prompt_per_1m: 0.5, completion_per_1m: }", "pricing.completion_per_1m is missing"),
        ('{prompt_per_1m: "0.5", completion_per_1m: 1}', "pricing.prompt_per_1m must be a finite number >= 0"),
        ("{prompt_per_1m: 0.5, completion_per_1m: -1}", "pricing.completion_per_1m must be a finite number >= 0"),
        ("{prompt_per_1m: true, completion_per_1m: 1}", "pricing.prompt_per_1m must be a finite number >= 0"),
        ("{prompt_per_1m: .inf, completion_per_1m: 1}", "pricing.prompt_per_1m must be a finite number >= 0"),
        ("{prompt_per_1m: 0.5, completion_per_1m: 1, per_request: 0.01}", "unknown keys in pricing: ['per_request']"),
        ("0.5", "pricing must be a mapping"),
    ],
)
def test_bad_pricing_names_file_and_model(tmp_path, block, message):
    cfg = _yaml(tmp_path / "models.yaml", f"models:\n  - name: ok\n  - name: x\n    pricing: {block}\n")
    with pytest.raises(BenchmarkError) as e:
        load_model_config(cfg)
    msg = str(e.value)
    assert str(cfg) in msg and "model entry 1 (x)" in msg, msg
    assert message in msg, msg


def test_pricing_is_per_model_not_a_default(tmp_path):
    cfg = _yaml(tmp_path / "models.yaml", "defaults:\n  pricing: {prompt_per_1m: 1, completion_per_1m: 1}\nmodels:\n  - name: a\n")
    with pytest.raises(BenchmarkError, match=r"models\.yaml: unknown keys in defaults: \['pricing'\]"):
        load_model_config(cfg)


def test_example_models_yaml_has_a_priced_model(monkeypatch):
    for var in ("OPENAI_API_KEY", "HF_TOKEN", "CUSTOM_API_KEY"):
        monkeypatch.setenv(var, "x" * 8)
    specs = {s.name: s for s in load_model_config(ROOT / "examples" / "models.yaml")}
    assert specs["gpt-4o-mini"].pricing == Pricing(0.15, 0.6)
    assert specs["smollm2-135m"].pricing is None


# --------------------------------------------------------------------------- a run with fixed usage

USAGE = {"usage": {"prompt_tokens": 1200, "completion_tokens": 300, "total_tokens": 1500}, "nousage": None,
         "halfusage": {"completion_tokens": 7}}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        reply = {"choices": [{"message": {"role": "assistant", "content": "The answer is (B)."}}]}
        usage = USAGE[req["model"]]
        if usage is not None:
            reply["usage"] = usage
        body = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture()
def endpoint():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()
    httpd.server_close()


def test_run_records_usage_cost_and_counts_missing_usage(endpoint, tmp_path, caplog):
    cfg = _yaml(
        tmp_path / "models.yaml",
        f"""
defaults:
  endpoint: {endpoint}
models:
  - name: priced
    model: usage
    pricing: {{prompt_per_1m: 0.5, completion_per_1m: 1.5}}
  - name: unpriced
    model: usage
  - name: priced-nousage
    model: nousage
    pricing: {{prompt_per_1m: 0.5, completion_per_1m: 1.5}}
  - name: priced-halfusage
    model: halfusage
    pricing: {{prompt_per_1m: 0.5, completion_per_1m: 1.5}}
""",
    )
    q = tmp_path / "q.jsonl"
    q.write_text("".join(json.dumps({"query": f"Q{i}", "category": "math", "ground_truth": "B", "metric": "em_mc"}) + "\n" for i in range(3)))
    out = tmp_path / "out.jsonl"
    with caplog.at_level(logging.WARNING, logger="mlsel.llm.benchmark"):
        summary = run_benchmark(q, out, model_config=cfg, timeout_s=5.0, max_retries=0, progress=False)
    recs = {(r["query"], r["model_name"]): r for r in map(json.loads, out.read_text().splitlines())}
    for i in range(3):
        p, u = recs[(f"Q{i}", "priced")], recs[(f"Q{i}", "unpriced")]
        assert (p["prompt_tokens"], p["completion_tokens"]) == (1200, 300)
        assert p["cost_usd"] == pytest.approx(0.00105, rel=1e-12)
        assert (u["prompt_tokens"], u["completion_tokens"], u["cost_usd"]) == (1200, 300, None)
        n = recs[(f"Q{i}", "priced-nousage")]
        assert (n["status"], n["prompt_tokens"], n["completion_tokens"], n["cost_usd"]) == ("ok", None, None, None)
        h = recs[(f"Q{i}", "priced-halfusage")]
        assert (h["prompt_tokens"], h["completion_tokens"], h["cost_usd"]) == (None, 7, None)

    assert list(summary.columns) == SUMMARY_COLUMNS
    s = summary.set_index("model")
    assert s.loc["priced", "cost_usd_total"] == pytest.approx(3 * 0.00105, rel=1e-12)
    assert s.loc["priced", "cost_usd_mean"] == pytest.approx(0.00105, rel=1e-12)
    assert s.loc["priced", "n_usage_missing"] == 0
    assert math.isnan(s.loc["unpriced", "cost_usd_total"]) and math.isnan(s.loc["unpriced", "cost_usd_mean"])
    assert s.loc["unpriced", "n_usage_missing"] == 0
    for m in ("priced-nousage", "priced-halfusage"):
        assert math.isnan(s.loc[m, "cost_usd_total"]) and s.loc[m, "n_usage_missing"] == 3
    warn = [r.getMessage() for r in caplog.records if "no usage" in r.getMessage()]
    assert len(warn) == 1 and "6 answers" in warn[0] and "'priced-nousage': 3" in warn[0], warn

    # summarize on records alone: a model is priced when a record has a cost
    again = summarize(list(recs.values())).set_index("model")
    assert again.loc["priced", "cost_usd_total"] == pytest.approx(3 * 0.00105, rel=1e-12)
    assert math.isnan(again.loc["unpriced", "cost_usd_total"])
