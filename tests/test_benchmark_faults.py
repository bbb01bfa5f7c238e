"""mlsel.llm.benchmark against a misbehaving loopback server: retries, failures, resume, config, secrets.

The server decides its behaviour from the requested model id:

==============  ====================================================
good            answers "The answer is (X)" with X the query's key
wrong           answers a wrong letter (an ok record with quality 0)
flaky429        429 + Retry-After: 1 on the first hit per query
flaky500        500 on the first two hits per query
badjson_once    a non-JSON 200 on the first hit per query
hang            sleeps past the client timeout, every time
reset           closes the socket without a reply, every time
malformed       200 with JSON lacking "choices", every time
echo401         401 whose body echoes the Authorization header
==============  ====================================================

Once ``healthy`` is set every model answers like ``good``.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import socket
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlsel.llm.benchmark import run_benchmark
from mlsel.llm.client import BenchmarkError, load_model_config
from mlsel.llm.commands import add_cli
from mlsel.llm.queries import load_queries

SECRET = "sk-FAKE-0123456789-secret"
HDR_SECRET = "hdr-FAKE-abcdef-secret"


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.healthy = False
        self.hits: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.bodies: dict[str, list[dict]] = defaultdict(list)
        self.headers: dict[str, list[dict]] = defaultdict(list)

    def total_hits(self) -> int:
        return sum(len(v) for v in self.hits.values())


def _letter(query: str) -> str:
    m = re.search(r"key=([A-J])", query)
    return m.group(1) if m else "A"


def _handler(state: _State):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, code: int, body: bytes, headers: dict | None = None) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)

        def _answer(self, text: str) -> None:
            body = {"choices": [{"message": {"role": "assistant", "content": text}}], "usage": {"completion_tokens": 5}}
            self._send(200, json.dumps(body).encode())

        def do_GET(self):
            self._send(200, b'{"data": []}')

        def do_POST(self):
            n = int(self.headers.get("Content-Length", 0))
            req = json.loads(self.rfile.read(n))
            model = req["model"]
            query = req["messages"][-1]["content"]
            with state.lock:
                hits = state.hits[(query, model)]
                hits.append(time.monotonic())
                k = len(hits)
                state.bodies[model].append(req)
                state.headers[model].append(dict(self.headers))
                healthy = state.healthy
            right = _letter(query)
            if query.startswith("Write f"):
                return self._answer("Here it is:\n```python\ndef f():\n    return 1\n```")
            if healthy or model in ("good", "cfg", "auth"):
                return self._answer(f"Thinking... the answer is ({right}).")
            if model == "wrong":
                return self._answer("The answer is (J).")
            if model == "flaky429" and k == 1:
                return self._send(429, b'{"error": "slow down"}', {"Retry-After": "1"})
            if model == "flaky500" and k <= 2:
                return self._send(500, b'{"error": "boom"}')
            if model == "badjson_once" and k == 1:
                return self._send(200, b"<html>not json</html>")
            if model == "hang":
                time.sleep(1.2)
                try:
                    return self._answer("too late")
                except OSError:
                    return None
            if model == "reset":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return None
            if model == "malformed":
                return self._send(200, b'{"id": "x", "object": "chat.completion"}')
            if model == "echo401":
                auth = self.headers.get("Authorization", "")
                return self._send(401, json.dumps({"error": f"bad key {auth} / {self.headers.get('X-Api-Token')}"}).encode())
            return self._answer(f"The answer is ({right}).")

    return H


@pytest.fixture()
def server():
    state = _State()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    state.endpoint = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()
    httpd.server_close()


FAST = dict(timeout_s=0.5, max_retries=2, backoff_initial_s=0.05, backoff_max_s=1.5, progress=False)


def _write_queries(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _queries(tmp_path: Path) -> Path:
    rows = [
        {"query": "Q1 key=B", "category": "math", "ground_truth": "B", "metric": "em_mc", "task_name": "t", "question_id": 1},
        {"query": "Q2 key=C", "category": "law", "ground_truth": "C", "choices": ["a", "b", "c"]},
        {"query": "Q1 key=B", "category": "other", "ground_truth": "A"},  # duplicate text: dropped
        {"query": "Q3 key=D", "category": "physics", "ground_truth": "D", "metric": "em_mc"},
        {"query": "Q4 key=E no truth", "category": "biology"},
    ]
    return _write_queries(tmp_path / "queries.jsonl", rows)


def _read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


MODELS = ["good", "wrong", "flaky429", "flaky500", "badjson_once", "hang", "reset", "malformed"]
BROKEN = {"hang", "reset", "malformed"}
QUERIES = ["Q1 key=B", "Q2 key=C", "Q3 key=D", "Q4 key=E no truth"]


def test_faults_are_failures_then_resume_completes(server, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="mlsel")
    out = tmp_path / "out.jsonl"
    t0 = time.monotonic()
    summary = run_benchmark(_queries(tmp_path), out, models=MODELS, endpoint=server.endpoint, concurrency=4, **FAST)
    assert time.monotonic() - t0 < 30
    assert "1 duplicate queries dropped" in caplog.text

    recs = _read(out)
    # every pair ends as a result or a recorded failure, in input x model order
    assert [(r["query"], r["model_name"]) for r in recs] == [(q, m) for q in QUERIES for m in MODELS]
    for r in recs:
        for k in ("query", "category", "model_name", "response", "ground_truth", "performance", "response_time", "status", "error", "attempts", "metric", "task_name"):
            assert k in r
        if r["model_name"] in BROKEN:
            assert r["status"] == "failed"
            assert r["performance"] is None  # never a quality 0
            assert r["response"] is None and r["error"]
            assert r["attempts"] == 3  # 1 + max_retries
        elif r["query"].endswith("no truth"):
            assert r["status"] == "unscored" and r["performance"] is None
        else:
            assert r["status"] == "ok" and r["error"] is None
            assert r["performance"] == (0.0 if r["model_name"] == "wrong" else 1.0)
            assert r["response_time"] > 0
    by = {(r["query"], r["model_name"]): r for r in recs}
    assert "ReadTimeout" in by[("Q1 key=B", "hang")]["error"]
    assert "RemoteProtocolError" in by[("Q1 key=B", "reset")]["error"] or "ConnectError" in by[("Q1 key=B", "reset")]["error"]
    assert "MalformedResponseError" in by[("Q1 key=B", "malformed")]["error"]
    assert by[("Q1 key=B", "flaky500")]["attempts"] == 3
    assert by[("Q1 key=B", "badjson_once")]["attempts"] == 2
    assert by[("Q1 key=B", "flaky429")]["attempts"] == 2
    # Retry-After: 1 was honoured: the retry came about a second after the 429
    gap = server.hits[("Q1 key=B", "flaky429")][1] - server.hits[("Q1 key=B", "flaky429")][0]
    assert 0.9 <= gap < 1.6
    # the successful attempt's time only: the 1 s wait is not in response_time
    assert by[("Q1 key=B", "flaky429")]["response_time"] < 0.5
    # passthrough and metadata
    q1 = by[("Q1 key=B", "good")]
    assert q1["category"] == "math" and q1["question_id"] == 1 and q1["task_name"] == "t" and q1["metric"] == "em_mc"
    assert by[("Q2 key=C", "good")]["metric"] == "em_mc" and by[("Q2 key=C", "good")]["choices"] == ["a", "b", "c"]
    assert by[("Q1 key=B", "good")]["ground_truth"] == "B"  # first occurrence of the duplicate wins

    s = summary.set_index("model")
    assert list(summary.columns) == ["model", "n", "n_ok", "n_failed", "n_unscored", "n_skipped_code_eval", "quality_mean", "response_time_s_mean", "share_quality_gt_0",
                                     "cost_usd_total", "cost_usd_mean", "n_usage_missing"]
    # unpriced models (a list of names): no cost, nothing counted as missing usage
    assert s["cost_usd_total"].isna().all() and s["cost_usd_mean"].isna().all() and s["n_usage_missing"].eq(0).all()
    assert all(r["cost_usd"] is None and r["prompt_tokens"] is None for r in recs)  # the stub's usage has completion_tokens only
    assert by[("Q1 key=B", "good")]["completion_tokens"] == 5
    assert s.loc["hang", "n_failed"] == 4 and s.loc["hang", "n_ok"] == 0
    assert s.loc["good", "n_ok"] == 3 and s.loc["good", "quality_mean"] == 1.0
    assert s.loc["wrong", "quality_mean"] == 0.0 and s.loc["wrong", "share_quality_gt_0"] == 0.0

    # second run, healthy server: only the failed pairs are called again
    server.healthy = True
    before = {k: len(v) for k, v in server.hits.items()}
    summary2 = run_benchmark(_queries(tmp_path), out, models=MODELS, endpoint=server.endpoint, concurrency=4, **FAST)
    called = {k for k, v in server.hits.items() if len(v) > before.get(k, 0)}
    assert called == {(q, m) for q in QUERIES for m in BROKEN}
    assert all(len(server.hits[k]) == before[k] + 1 for k in called)
    recs2 = _read(out)
    assert [(r["query"], r["model_name"]) for r in recs2] == [(q, m) for q in QUERIES for m in MODELS]  # latest record per pair only
    assert all(r["status"] in ("ok", "unscored") for r in recs2)
    assert summary2["n_failed"].sum() == 0
    # untouched pairs are byte-identical to the first run
    first = {(r["query"], r["model_name"]): r for r in recs}
    for r in recs2:
        if r["model_name"] not in BROKEN:
            assert r == first[(r["query"], r["model_name"])]

    # third run: nothing to do, no request, identical file
    content = out.read_bytes()
    n = server.total_hits()
    run_benchmark(_queries(tmp_path), out, models=MODELS, endpoint=server.endpoint, concurrency=4, **FAST)
    assert server.total_hits() == n
    assert out.read_bytes() == content


def test_killed_run_resumes_from_partial_file(server, tmp_path):
    q = _queries(tmp_path)
    out = tmp_path / "out.jsonl"
    run_benchmark(q, out, models=["good"], endpoint=server.endpoint, limit=2, **FAST)
    # simulate a kill: an appended record for Q3 and a line cut short mid-write
    good_q3 = dict(_read(out)[0], query="Q3 key=D", ground_truth="D", performance=1.0)
    with out.open("a") as fh:
        fh.write(json.dumps(good_q3) + "\n")
        fh.write('{"query": "Q4 key=E no truth", "model_na')
    n = server.total_hits()
    run_benchmark(q, out, models=["good"], endpoint=server.endpoint, **FAST)
    assert server.total_hits() == n + 1  # only Q4; Q1, Q2 (first run) and Q3 (appended) are done
    assert [r["query"] for r in _read(out)] == QUERIES


def test_limit_keeps_the_first_unique_queries_and_older_pairs_survive(server, tmp_path):
    q = _queries(tmp_path)
    out = tmp_path / "out.jsonl"
    run_benchmark(q, out, models=["good"], endpoint=server.endpoint, **FAST)
    run_benchmark(q, out, models=["good"], endpoint=server.endpoint, limit=1, **FAST)
    assert [r["query"] for r in _read(out)] == QUERIES  # kept, limit-1 pair first


def test_bad_input_names_file_and_line(tmp_path):
    p = tmp_path / "q.jsonl"
    p.write_text('{"query": "ok"}\n\n{"query": "broken"\n')
    with pytest.raises(BenchmarkError, match=r"q\.jsonl:3: malformed JSON"):
        load_queries(p)
    p.write_text('{"query": "ok"}\n{"category": "math"}\n')
    with pytest.raises(BenchmarkError, match=r"q\.jsonl:2: missing or empty 'query'"):
        load_queries(p)
    p.write_text('["not", "an", "object"]\n')
    with pytest.raises(BenchmarkError, match=r"q\.jsonl:1: expected a JSON object"):
        load_queries(p)
    with pytest.raises(BenchmarkError, match="no models"):
        run_benchmark(p, tmp_path / "o.jsonl")


def test_code_eval_skipped_unless_enabled_then_rescored(server, tmp_path):
    rows = [{"query": "Write f key=A", "category": "computer science", "metric": "code_eval", "ground_truth": "['assert f() == 1']"}]
    q = _write_queries(tmp_path / "q.jsonl", rows)
    out = tmp_path / "out.jsonl"
    run_benchmark(q, out, models=["good"], endpoint=server.endpoint, **FAST)
    (r,) = _read(out)
    assert r["status"] == "skipped_code_eval" and r["performance"] is None
    assert server.bodies["good"][-1]["max_tokens"] >= 256  # code_eval gets room for code
    n = server.total_hits()
    run_benchmark(q, out, models=["good"], endpoint=server.endpoint, enable_code_eval=True, **FAST)
    (r,) = _read(out)
    assert server.total_hits() == n  # re-scored from the stored response, not re-queried
    assert r["status"] == "ok" and r["performance"] == 1.0


def test_code_eval_refused_without_network_isolation_is_counted_and_rescored_later(server, tmp_path, monkeypatch):
    """Enabled code_eval on a machine that cannot isolate the network: the pair is skipped_code_eval with the reason,
    counted in the summary; a rerun where isolation works scores it from the stored response."""
    from mlsel.llm import sandbox

    rows = [{"query": "Write f key=A", "category": "computer science", "metric": "code_eval", "ground_truth": "['assert f() == 1']"},
            {"query": "Pick key=A", "category": "math", "ground_truth": "A", "choices": ["x", "y"]}]
    q = _write_queries(tmp_path / "q.jsonl", rows)
    out = tmp_path / "out.jsonl"
    real = sandbox._network_namespace
    monkeypatch.setattr(sandbox, "_network_namespace", lambda: ((), "the `unshare` command (util-linux) is not installed"))
    summary = run_benchmark(q, out, models=["good"], endpoint=server.endpoint, enable_code_eval=True, **FAST)
    code, mc = _read(out)
    assert code["status"] == "skipped_code_eval" and code["performance"] is None
    assert "no network isolation on this machine: the `unshare` command (util-linux) is not installed" in code["error"]
    assert mc["status"] == "ok" and mc["performance"] == 1.0  # the other records are scored as usual
    s = summary.set_index("model").loc["good"]
    assert (s["n_ok"], s["n_skipped_code_eval"]) == (1, 1)
    monkeypatch.setattr(sandbox, "_network_namespace", real)
    n = server.total_hits()
    run_benchmark(q, out, models=["good"], endpoint=server.endpoint, enable_code_eval=True, **FAST)
    code, _ = _read(out)
    assert server.total_hits() == n and code["status"] == "ok" and code["performance"] == 1.0


# --------------------------------------------------------------------------- models.yaml


def _yaml(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_env_expansion_anywhere_and_per_model_overrides(server, tmp_path, monkeypatch):
    port = server.endpoint.split(":")[2].split("/")[0]
    monkeypatch.setenv("MLSEL_TEST_PORT", port)
    monkeypatch.setenv("MLSEL_TEST_TOKEN", SECRET)
    cfg = _yaml(
        tmp_path / "models.yaml",
        """
defaults:
  max_tokens: 77
models:
  - name: first
    model: cfg
    endpoint: "http://127.0.0.1:${MLSEL_TEST_PORT}/v1"
    headers:
      Authorization: "Bearer ${MLSEL_TEST_TOKEN}"
      X-Route: "r-${MLSEL_TEST_PORT}-x"
    max_tokens: 33
    temperature: 0.7
    system_prompt: "You are terse."
  - name: second
    model: cfg
    endpoint: "http://127.0.0.1:${MLSEL_TEST_PORT}/v1"
    api_key: ${MLSEL_TEST_TOKEN}
    prompt_template: "Question: {query}\\nAnswer:"
""",
    )
    q = _write_queries(tmp_path / "q.jsonl", [{"query": "Q key=B", "ground_truth": "B", "metric": "em_mc", "category": "math"}])
    out = tmp_path / "out.jsonl"
    summary = run_benchmark(q, out, model_config=cfg, temperature=0.3, max_tokens=500, **FAST)
    assert summary["n_ok"].tolist() == [1, 1]
    bodies = server.bodies["cfg"]
    heads = server.headers["cfg"]
    first = next(b for b in bodies if b["messages"][0]["role"] == "system")
    second = next(b for b in bodies if b["messages"][0]["role"] == "user")
    assert (first["max_tokens"], first["temperature"]) == (33, 0.7)  # entry wins
    assert (second["max_tokens"], second["temperature"]) == (77, 0.3)  # file defaults, then the function value
    assert first["messages"][0]["content"] == "You are terse."
    assert second["messages"][0]["content"] == "Question: Q key=B\nAnswer:"
    assert all(h["Authorization"] == f"Bearer {SECRET}" for h in heads)  # "Bearer ${VAR}" expanded
    assert any(h.get("X-Route") == f"r-{port}-x" for h in heads)
    assert SECRET not in out.read_text()
    assert [r["model_name"] for r in _read(out)] == ["first", "second"]


def test_missing_variable_names_file_entry_and_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("MLSEL_NOPE", raising=False)
    cfg = _yaml(tmp_path / "models.yaml", "models:\n  - name: a\n  - name: b\n    headers:\n      Authorization: \"Bearer ${MLSEL_NOPE}\"\n")
    with pytest.raises(BenchmarkError) as e:
        load_model_config(cfg)
    msg = str(e.value)
    assert "models.yaml" in msg and "model entry 1 (b)" in msg and "MLSEL_NOPE" in msg


def test_config_errors(tmp_path):
    with pytest.raises(BenchmarkError, match="top-level 'models' list"):
        load_model_config(_yaml(tmp_path / "m.yaml", "foo: 1\n"))
    with pytest.raises(BenchmarkError, match="duplicate model names"):
        load_model_config(_yaml(tmp_path / "m.yaml", "models:\n  - name: a\n  - name: a\n"))
    with pytest.raises(BenchmarkError, match="unknown keys"):
        load_model_config(_yaml(tmp_path / "m.yaml", "models:\n  - name: a\n    max_token: 3\n"))
    with pytest.raises(BenchmarkError, match="needs a 'name'"):
        load_model_config(_yaml(tmp_path / "m.yaml", "models:\n  - endpoint: x\n"))


def test_example_models_yaml_loads(monkeypatch):
    root = Path(__file__).resolve().parent.parent
    for var in ("OPENAI_API_KEY", "HF_TOKEN", "CUSTOM_API_KEY"):
        monkeypatch.setenv(var, "x" * 8)
    specs = load_model_config(root / "examples" / "models.yaml")
    assert len(specs) >= 2 and len({s.name for s in specs}) == len(specs)
    assert "x" * 8 not in repr(specs)  # secrets are not in the repr


# --------------------------------------------------------------------------- secrets


def test_secrets_never_reach_outputs_or_logs(server, tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("MLSEL_FAKE_KEY", SECRET)
    monkeypatch.setenv("MLSEL_FAKE_HDR", HDR_SECRET)
    cfg = _yaml(
        tmp_path / "models.yaml",
        f"""
models:
  - name: leaky
    model: echo401
    endpoint: {server.endpoint}
    api_key: ${{MLSEL_FAKE_KEY}}
    headers:
      X-Api-Token: "Token ${{MLSEL_FAKE_HDR}}"
  - name: slow
    model: hang
    endpoint: {server.endpoint}
    api_key: ${{MLSEL_FAKE_KEY}}
""",
    )
    q = _write_queries(tmp_path / "q.jsonl", [{"query": "Q key=B", "ground_truth": "B", "category": "math"}])
    out = tmp_path / "out.jsonl"
    summary = run_benchmark(q, out, model_config=cfg, **FAST)
    assert summary["n_failed"].tolist() == [1, 1]
    text = out.read_text()
    recs = _read(out)
    assert "HTTPStatusError: HTTP 401" in recs[0]["error"] and "***" in recs[0]["error"]  # the echoed key was redacted
    assert recs[0]["attempts"] == 1  # 401 is not retried
    for r in recs:
        assert "api_key" not in r and "headers" not in r
    for blob in (text, caplog.text, summary.to_string()):
        assert SECRET not in blob and HDR_SECRET not in blob
    assert server.headers["echo401"][0]["Authorization"] == f"Bearer {SECRET}"  # it was really sent


# --------------------------------------------------------------------------- CLI


def test_cli_subcommand(server, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="mlsel")
    sub = parser.add_subparsers(dest="command", required=True)
    add_cli(sub)
    q = _queries(tmp_path)
    out = tmp_path / "cli.jsonl"
    args = parser.parse_args(
        ["benchmark", "--queries", str(q), "--models", "good,wrong", "--endpoint", server.endpoint, "--output", str(out), "--concurrency", "2", "--limit", "2", "--max-tokens", "16", "--timeout", "5", "--max-retries", "1", "--no-progress"]
    )
    assert args.func(args) == 0
    assert (args.max_tokens, args.temperature, args.concurrency) == (16, 0.0, 2)
    assert len(_read(out)) == 4
    assert "quality_mean" in capsys.readouterr().out
    assert server.bodies["good"][0]["max_tokens"] == 16


def test_records_appended_after_a_torn_line_start_on_their_own_line(tmp_path):
    """A second kill after resuming must not lose the first new record glued to the torn line."""
    from mlsel.llm.benchmark import _appender, _read_existing

    out = tmp_path / "out.jsonl"
    out.write_text('{"query": "Q1", "model_name": "good", "status": "ok"}\n{"query": "Q2", "model_na')
    with _appender(out, {}) as emit:
        emit({"query": "Q3", "model_name": "good", "status": "ok"})
    # killed again here, before the final rewrite: the file is what the appender left
    assert [r["query"] for r in _read_existing(out)] == ["Q1", "Q3"]
    assert out.read_text().splitlines()[1] == '{"query": "Q2", "model_na'
