"""The BFCL reader: hand-written miniature result, score, question and price files (each error named, each
policy counted), the same files over a loopback download, and the real mirror's counts."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import math
import tarfile
import threading
from pathlib import Path

import pytest

from mlsel.data import bfcl, bfcl_pins
from mlsel.data.bfcl import (
    BFCL_DIR,
    BFCL_MIRROR,
    failed_prompts,
    model_prices,
    parse_price_module,
    price_values_sha256,
    question_path,
    read_bfcl,
    read_questions,
    read_results,
    request_text,
    result_path,
    score_path,
)
from mlsel.data.records import DataError, DataLog, query_id


def _lines(records: list) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode()


def _q(pid: str, question: str, name: str) -> dict:
    return {"id": pid, "question": question, "function": {"name": name, "description": f"does {name}", "parameters": {}}}


QUESTIONS = {
    "simple": [_q("simple_0", "Add 2 and 3", "add"), _q("simple_1", "Area of a circle of radius 2", "area"),
               _q("simple_2", "Weather in Paris", "weather")],
    "relevance": [_q("relevance_0", "Add 2 and 3", "weather"), _q("relevance_1", "Tell me a joke", "area")],
}
MODELS = ["m-a", "m-b"]
PRICES = {"INPUT_PRICE_PER_MILLION_TOKEN": {"m-a": 1.0, "m-b": 10, "m-c": 1, "m-free": 0},
          "OUTPUT_PRICE_PER_MILLION_TOKEN": {"m-a": 2.0, "m-b": 30, "m-c": 1, "m-free": 0}, "NO_COST_MODELS": ["m-free"]}
"""m-c is priced but has no pinned files; m-free is listed as having no cost."""


def _result(pid: str, lat: float, tin: int | None = 100, tout: int | None = 10, out: str = "[add(a=2, b=3)]") -> dict:
    rec = {"id": pid, "result": out, "latency": lat}
    if tin is not None:
        rec["input_token_count"] = tin
    if tout is not None:
        rec["output_token_count"] = tout
    return rec


def _files() -> dict[str, dict[str, bytes]]:
    """The miniature run: m-a fails simple_1 (both id forms) and relevance_0 (position only, as BFCL writes it);
    m-b fails nothing, has one latency of 0 and one result without token counts."""
    results = {
        ("m-a", "simple"): [_result("simple_0", 0.5), _result("simple_1", 1.5, 200, 20), _result("simple_2", 2.5)],
        ("m-a", "relevance"): [_result("relevance_0", 1.0), _result("relevance_1", 3.0, out="")],
        ("m-b", "simple"): [_result("simple_0", 0.0), _result("simple_1", 4.0), _result("simple_2", 5.0, None, 10)],
        ("m-b", "relevance"): [_result("relevance_0", 6.0), _result("relevance_1", 7.0)],
    }
    scores = {
        ("m-a", "simple"): [{"accuracy": 2 / 3, "correct_count": 2, "total_count": 3},
                            {"id": 2, "prompt": {"id": "simple_1"}, "error": ["wrong value"]}],
        ("m-a", "relevance"): [{"accuracy": 0.5, "correct_count": 1, "total_count": 2}, {"id": 1, "error": ["decoded"]}],
        ("m-b", "simple"): [{"accuracy": 1.0, "correct_count": 3, "total_count": 3}],
        ("m-b", "relevance"): [{"accuracy": 1.0, "correct_count": 2, "total_count": 2}],
    }
    return {
        "question": {question_path(c): _lines(qs) for c, qs in QUESTIONS.items()},
        "result": {result_path(m, c): _lines(r) for (m, c), r in results.items()},
        "score": {score_path(m, c): _lines(s) for (m, c), s in scores.items()},
    }


@pytest.fixture
def mini(monkeypatch):
    """The miniature files, pinned: BFCL's categories narrowed to the two the files hold."""
    files = _files()
    monkeypatch.setattr(bfcl, "BFCL_CATEGORIES", ("simple", "relevance"))
    monkeypatch.setattr(bfcl_pins, "FILES", {p: hashlib.sha256(b).hexdigest() for kind in files.values() for p, b in kind.items()})
    prices = json.dumps(PRICES).encode()
    monkeypatch.setattr(bfcl_pins, "PRICES_MIRROR_SHA256", hashlib.sha256(prices).hexdigest())
    monkeypatch.setattr(bfcl_pins, "PRICE_VALUES_SHA256", price_values_sha256(PRICES))
    return files, prices


def _mirror(root: Path, files: dict[str, dict[str, bytes]], prices: bytes) -> Path:
    folder = root / BFCL_DIR
    folder.mkdir(parents=True)
    for kind in ("question", "result", "score"):
        tarball, prefix = BFCL_MIRROR[kind]
        members = {p: b for k, f in files.items() for p, b in f.items() if k == kind or BFCL_MIRROR[k][0] == tarball}
        with tarfile.open(folder / tarball, "w:gz") as tar:
            for path, data in members.items():
                info = tarfile.TarInfo(prefix + path)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    (folder / BFCL_MIRROR["prices"][0]).write_bytes(prices)
    return root


def _expected_cost(tin: int, tout: int, model: str) -> float:
    return (tin * PRICES["INPUT_PRICE_PER_MILLION_TOKEN"][model] + tout * PRICES["OUTPUT_PRICE_PER_MILLION_TOKEN"][model]) / 1e6


def test_mini_mirror_read_by_hand(mini, tmp_path):
    files, prices = mini
    dlog = DataLog()
    df = read_bfcl(MODELS, _mirror(tmp_path, files, prices), dlog)
    assert len(df) == 10 and df["query_id"].nunique() == 5
    # "Add 2 and 3" is asked in both categories with other tools: two queries, told apart by their tools.
    add = df[(df["model"] == "m-a") & df["query"].str.startswith("Add 2 and 3")].set_index("task")
    assert add.loc["simple", "query"] == "Add 2 and 3\n\nTools: add: does add"
    assert add.loc["relevance", "query"] == "Add 2 and 3\n\nTools: weather: does weather"
    assert add.loc["simple", "query_id"] == query_id("Add 2 and 3\n\nTools: add: does add")
    cell = df.set_index(["model", "task", "query"]).sort_index()
    quality = {(m, t): list(g["quality"]) for (m, t), g in df.groupby(["model", "task"], sort=False)}
    assert quality == {("m-a", "simple"): [1.0, 0.0, 1.0], ("m-a", "relevance"): [0.0, 1.0],
                       ("m-b", "simple"): [1.0, 1.0, 1.0], ("m-b", "relevance"): [1.0, 1.0]}
    a = df[df["model"] == "m-a"].reset_index(drop=True)
    assert list(a["latency_s"]) == [0.5, 1.5, 2.5, 1.0, 3.0]
    assert a.loc[1, "cost_usd"] == pytest.approx(_expected_cost(200, 20, "m-a")) == pytest.approx(240e-6)
    assert a.loc[0, "cost_usd"] == pytest.approx(120e-6) and a.loc[4, "response_chars"] == 0
    b = df[df["model"] == "m-b"].reset_index(drop=True)
    assert b.loc[0, "latency_s"] == 5.5 and b.loc[1, "latency_s"] == 4.0  # a 0 is no measurement: the median of 4, 5, 6, 7
    assert math.isnan(b.loc[2, "cost_usd"]) and b.loc[1, "cost_usd"] == pytest.approx(1300e-6)  # 100*10 + 10*30 per 1M
    assert dlog.repaired == {"bfcl_zero_latency_filled": 1, "bfcl_missing_token_count": 1}
    assert dlog.n_records_read == 10
    assert set(df["category"]) == {"other"} and cell.index.is_unique
    assert b.loc[0, "source_row"].endswith("2024-08-11/result/m-b/gorilla_openfunctions_v1_test_simple_result.json line 1")


def test_mini_files_tampered_missing_or_unpinned_are_errors(mini, tmp_path):
    files, prices = mini
    files["score"][score_path("m-b", "simple")] += b"\n"  # one byte more than the pinned file
    with pytest.raises(DataError, match=r"score.tar.gz:BFCL-Result/2024-08-11/score/m-b/simple_score.json: SHA-256 .* pinned"):
        read_bfcl(MODELS, _mirror(tmp_path / "a", files, prices))
    with pytest.raises(DataError, match="no pinned SHA-256 for 2024-08-11/result/m-c/"):
        read_bfcl(["m-a", "m-c"], _mirror(tmp_path / "b", _files(), prices), DataLog())
    with pytest.raises(DataError, match="the price values' SHA-256"):
        changed = dict(PRICES, INPUT_PRICE_PER_MILLION_TOKEN={"m-a": 0.5, "m-b": 10})
        bfcl_pins.PRICES_MIRROR_SHA256 = hashlib.sha256(json.dumps(changed).encode()).hexdigest()
        read_bfcl(MODELS, _mirror(tmp_path / "c", _files(), json.dumps(changed).encode()))
    with pytest.raises(DataError, match="not found in the data mirror"):
        read_bfcl(MODELS, tmp_path / "empty")


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_mini_files_downloaded_from_loopback_match_the_mirror(mini, tmp_path, monkeypatch):
    """The download path: each file by its URL (cached after its SHA-256 check), the price table parsed from Python."""
    files, prices = mini
    www = tmp_path / "www"
    for kind, f in files.items():
        for path, data in f.items():
            (www / kind / path).parent.mkdir(parents=True, exist_ok=True)
            (www / kind / path).write_bytes(data)
    module = "".join(f"{k} = {v!r}\n" for k, v in PRICES.items())
    (www / "prices" / bfcl.PRICE_PATH).parent.mkdir(parents=True)
    (www / "prices" / bfcl.PRICE_PATH).write_text(f"import os\n\n{module}\ndef f():\n    return 1\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a, **k: _Files(*a, directory=str(www), **k))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(bfcl, "url_of", lambda kind, path: f"http://127.0.0.1:{server.server_port}/{kind}/{path}")
    monkeypatch.setenv("MLSEL_CACHE_DIR", str(tmp_path / "cache"))
    try:
        got = read_bfcl(MODELS, None, DataLog())
    finally:
        server.shutdown()
    want = read_bfcl(MODELS, _mirror(tmp_path / "m", files, prices), DataLog())
    cols = ["query_id", "model", "quality", "latency_s", "cost_usd", "response_chars", "task"]
    assert got[cols].equals(want[cols])
    assert (tmp_path / "cache" / "downloads").is_dir()


def test_score_file_errors_name_file_and_line():
    ids = ["simple_0", "simple_1", "simple_2"]
    head = {"correct_count": 2, "total_count": 3}
    cases = [
        ([head, {"id": 1, "prompt": {"id": "simple_1"}}], r"f.json:2: the two ids disagree: 'id' 1 but prompt 'simple_1' is number 2"),
        ([head, {"id": 4}], r"f.json:2: 'id' must be a prompt's position 1..3, got 4"),
        ([head, {"id": 2, "prompt": {"id": "simple_9"}}], r"f.json:2: prompt id 'simple_9' is not a prompt"),
        ([head, {"id": 2}, {"id": 2}], r"f.json:3: prompt 'simple_1' \(number 2\) is listed twice"),
        ([{"correct_count": 2, "total_count": 4}, {"id": 2}], r"f.json:1: total_count 4 but the category has 3"),
        ([{"correct_count": 3, "total_count": 3}, {"id": 2}], r"f.json:1: correct_count 3 but .* 1 listed failures is 2"),
        ([{"accuracy": 1.0}], r"f.json:1: expected the summary line"),
    ]
    for records, message in cases:
        with pytest.raises(DataError, match=message):
            failed_prompts(_lines(records), "f.json", ids)
    assert failed_prompts(_lines([head, {"id": 3, "prompt": {"id": "simple_2"}}]), "f.json", ids) == {2}
    with pytest.raises(DataError, match="f.json:2: malformed JSON"):
        failed_prompts(_lines([head]) + b"{oops\n", "f.json", ids)


def test_result_and_question_errors_name_file_and_line():
    ids = ["simple_0", "simple_1"]
    with pytest.raises(DataError, match=r"r.json:2: result for 'simple_2' where prompt 'simple_1' was expected"):
        read_results(_lines([_result("simple_0", 1.0), _result("simple_2", 1.0)]), "r.json", ids, DataLog())
    with pytest.raises(DataError, match=r"r.json: 1 results but the category has 2"):
        read_results(_lines([_result("simple_0", 1.0)]), "r.json", ids, DataLog())
    for bad in (-0.1, None, "1.0", float("inf")):
        with pytest.raises(DataError, match=r"r.json:1: 'latency' must be a number of seconds >= 0"):
            read_results(_lines([_result("simple_0", bad), _result("simple_1", 1.0)]).replace(b"Infinity", b"1e999"), "r.json",
                         ids, DataLog())
    with pytest.raises(DataError, match=r"q.json:1: 'question' must be a non-empty string"):
        read_questions(_lines([{"id": "simple_0", "question": "", "function": {"name": "f"}}]), "q.json")
    with pytest.raises(DataError, match=r"q.json:1: 'function' must be a function specification"):
        read_questions(_lines([{"id": "simple_0", "question": "q", "function": [{"description": "no name"}]}]), "q.json")
    with pytest.raises(DataError, match="q.json: a prompt id appears twice"):
        read_questions(_lines([_q("simple_0", "a", "f"), _q("simple_0", "b", "g")]), "q.json")
    two = request_text("Both", [{"name": "f", "description": "one "}, {"name": "g"}], "w")
    assert two == "Both\n\nTools: f: one; g: "
    assert request_text(" Both ", [{"name": "f"}], "w", tools=False) == "Both"
    with pytest.raises(DataError, match=r"q.json:1: 'function' must be a function specification"):  # checked with or without tools
        read_questions(_lines([{"id": "simple_0", "question": "q", "function": []}]), "q.json", tools=False)
    assert read_questions(_lines([_q("simple_0", "a", "f")]), "q.json", tools=False) == (["simple_0"], ["a"])


def test_prices_unpriced_models_and_the_python_table():
    assert model_prices(PRICES, "p", ["m-b"]) == {"m-b": (10.0, 30.0)}
    for model in ("m-free", "m-d"):
        with pytest.raises(DataError, match=f"p: model '{model}' has no price"):
            model_prices(PRICES, "p", ["m-a", model])
    text = "X = 1\nINPUT_PRICE_PER_MILLION_TOKEN = {'a': 1}\nOUTPUT_PRICE_PER_MILLION_TOKEN = {'a': 2}\nNO_COST_MODELS = ['b']\n"
    assert parse_price_module(text, "h.py") == {"INPUT_PRICE_PER_MILLION_TOKEN": {"a": 1}, "OUTPUT_PRICE_PER_MILLION_TOKEN": {"a": 2},
                                                "NO_COST_MODELS": ["b"]}
    with pytest.raises(DataError, match=r"h.py: no literal assignment of \['NO_COST_MODELS'\]"):
        parse_price_module(text.replace("NO_COST_MODELS", "OTHER"), "h.py")
    with pytest.raises(DataError, match="h.py: not valid Python"):
        parse_price_module("X = (", "h.py")


def test_real_mirror_counts(data_dir):
    """The 2024-08-11 run for the pool api8: 1,700 prompts, 8 configurations, the figures PROVENANCE.md states."""
    from mlsel.params.model import DATASET_DEFS

    models = DATASET_DEFS["bfcl"]["pools"]["api8"]
    dlog = DataLog()
    df = read_bfcl(models, data_dir, dlog)
    assert df.shape[0] == 8 * 1700 and df["query_id"].nunique() == 1700 and dlog.n_records_read == 13600
    assert dict(dlog.repaired) == {} and not df[["latency_s", "cost_usd"]].isna().any().any()
    per_task = df[df["model"] == models[0]].groupby("task").size().to_dict()
    assert per_task == {"simple": 400, "multiple_function": 200, "parallel_function": 200, "parallel_multiple_function": 200,
                        "relevance": 240, "java": 100, "javascript": 50, "rest": 70, "executable_simple": 100,
                        "executable_multiple_function": 50, "executable_parallel_function": 50,
                        "executable_parallel_multiple_function": 40}
    correct = df.groupby("model")["quality"].sum()
    assert correct["claude-3-5-sonnet-20240620"] == 1539 and correct["gpt-4o-mini-2024-07-18"] == 1485  # 0.905, 0.874
    assert df.groupby("query_id")["quality"].max().sum() == 1624  # oracle 0.955
    sonnet = df[df["model"] == "claude-3-5-sonnet-20240620"]
    assert sonnet["cost_usd"].mean() * 1000 == pytest.approx(2.205, abs=5e-4)
    assert sonnet["latency_s"].mean() == pytest.approx(1.655, abs=5e-4)


def test_replicate_lines_match_prompts_by_position():
    from mlsel.data.bfcl_replicate import read_replicate_latencies

    dlog = DataLog()
    lines = _lines([{"idx": 0, "latency": 1.5}, {"idx": 1, "latency": 0}, {"id": "java_2", "latency": 2.0}])
    got = read_replicate_latencies(lines, "r.json", "java", 3, dlog)
    assert got[0] == 1.5 and math.isnan(got[1]) and got[2] == 2.0 and dlog.dropped == {"bfcl_replicate_zero_latency": 1}
    with pytest.raises(DataError, match=r"r.json:2: expected prompt 1 \('idx' 1 or 'id' java_1\), got idx 2"):
        read_replicate_latencies(_lines([{"idx": 0, "latency": 1}, {"idx": 2, "latency": 1}]), "r.json", "java", 2, DataLog())
    with pytest.raises(DataError, match="r.json: 1 results but the category has 2"):
        read_replicate_latencies(_lines([{"idx": 0, "latency": 1}]), "r.json", "java", 2, DataLog())
    with pytest.raises(DataError, match=r"r.json:1: 'latency' must be a number"):
        read_replicate_latencies(_lines([{"idx": 0, "latency": -1}]), "r.json", "java", 1, DataLog())


def test_real_replicate_run(data_dir):
    """The 2024-07-25 run timed 5 of the pool's 8 configurations again, on all 1,700 prompts."""
    from mlsel.data.bfcl_replicate import read_bfcl_replicate
    from mlsel.params.model import DATASET_DEFS

    dlog = DataLog()
    rep = read_bfcl_replicate(DATASET_DEFS["bfcl"]["pools"]["api8"], data_dir, dlog)
    assert rep.groupby("model").size().to_dict() == dict.fromkeys(bfcl_pins.REPLICATE_MODELS, 1700)
    assert "gpt-4o-mini-2024-07-18" not in bfcl_pins.REPLICATE_MODELS and dict(dlog.dropped) == {}
    assert rep[rep["model"] == "gpt-4-turbo-2024-04-09"]["latency_s"].mean() == pytest.approx(2.532, abs=5e-4)
    assert set(rep["query_id"]) == set(read_bfcl(["command-r-plus"], data_dir)["query_id"])
