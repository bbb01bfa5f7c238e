"""Readers on real files, bad-input errors, policies, splits and downloads."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlsel import CATEGORIES
from mlsel.data.outcomes import kfold_queries, resolve_duplicates, restrict_to_pool, split_queries
from mlsel.data.readers import read_llmrouter, read_mmlu_pro, read_seed_jsonl
from mlsel.data.records import DataError, DataLog, query_id
from mlsel.data.sources import SourceFile, fetch, fetch_seed_hf, mmlu_pro_source


def _write_jsonl(path: Path, records: list) -> Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in records) + "\n")
    return path


def _rec(query="What is 2+2?", model="m1", perf=1.0, cat="math", **kw):
    return {"query": query, "category": cat, "model_name": model, "response": "4", "ground_truth": "4",
            "performance": perf, "response_time": 0.5, **kw}


# ---------------------------------------------------------------- real files


def test_mmlu_pro_reader_on_real_zips(data_dir):
    dlog = DataLog()
    models = ["Phi-3-mini-4k-instruct", "Meta-Llama-3.1-70B-Instruct"]
    df = read_mmlu_pro(models, data_dir=data_dir, dlog=dlog)
    assert set(df["model"]) == set(models)
    assert len(df) == 2 * 12032
    assert set(df["category"]) == set(CATEGORIES)
    assert df["quality"].isin([0.0, 1.0]).all()
    assert df["latency_s"].isna().all()  # MMLU-Pro has no measured latency: none invented
    assert (df["response_chars"] > 0).mean() > 0.99
    # Accuracy graded against each file's own answer key, as the authors did.
    acc = df.groupby("model")["quality"].mean()
    assert 0.40 < acc["Phi-3-mini-4k-instruct"] < 0.43
    assert 0.61 < acc["Meta-Llama-3.1-70B-Instruct"] < 0.64
    assert dlog.repaired["pred_null_scored_0"] > 0
    assert len(dlog.inputs) == 2 and all(len(v) == 64 for v in dlog.inputs.values())


def test_llmrouter_reader_on_real_files(data_dir):
    dlog = DataLog()
    df = read_llmrouter(data_dir=data_dir, dlog=dlog)
    assert df["query_id"].nunique() <= 6108
    assert df["model"].nunique() == 9
    assert df["quality"].between(0, 1).all()
    assert set(df["category"]) <= set(CATEGORIES)
    assert set(df.loc[df["task"] == "gsm8k", "category"]) == {"math"}
    assert set(df.loc[df["task"] == "mbpp", "category"]) == {"computer science"}
    assert dlog.n_records_read == 6108
    assert dlog.repaired["query_in_two_tasks"] == 6


def test_seed_reader_reads_seed_format(tmp_path):
    path = _write_jsonl(tmp_path / "seed.jsonl", [_rec(model="a"), _rec(model="b", perf=0.0, response_time=None),
                                                    _rec(model="c", cat="computer_science")])
    dlog = DataLog()
    df = read_seed_jsonl(path, dlog)
    assert list(df["model"]) == ["a", "b", "c"]
    assert df["latency_s"].iloc[0] == 0.5 and np.isnan(df["latency_s"].iloc[1])
    assert df["category"].iloc[2] == "computer science"
    assert dlog.repaired["category_alias"] == 1
    assert df["response_chars"].iloc[0] == 1


def test_seed_reader_drops_failed_benchmark_rows_and_counts_them(tmp_path):
    path = _write_jsonl(tmp_path / "b.jsonl", [_rec(model="a", status="ok"), _rec(model="b", status="failed", performance=None)])
    dlog = DataLog()
    df = read_seed_jsonl(path, dlog)
    assert list(df["model"]) == ["a"]
    assert dlog.dropped["status_failed"] == 1


@pytest.mark.parametrize(
    "bad, message",
    [
        ('{"query": "x", ', "malformed JSON"),
        (json.dumps({k: v for k, v in _rec().items() if k != "model_name"}), "missing required field 'model_name'"),
        (json.dumps({k: v for k, v in _rec().items() if k != "performance"}), "missing required field 'performance'"),
        (json.dumps(_rec(perf=1.5)), "quality must be in [0, 1]"),
        (json.dumps(_rec(perf="high")), "quality must be a number"),
        (json.dumps(_rec(cat="astrology")), "unknown category 'astrology'"),
        (json.dumps(_rec(response_time=-1)), "response_time"),
    ],
)
def test_seed_reader_bad_input_names_file_and_line(tmp_path, bad, message):
    path = _write_jsonl(tmp_path / "bad.jsonl", [_rec(model="ok"), bad])
    with pytest.raises(DataError) as err:
        read_seed_jsonl(path)
    assert f"{path}:2" in str(err.value)
    assert message in str(err.value)


def test_seed_reader_reads_cost_usd(tmp_path):
    path = _write_jsonl(tmp_path / "cost.jsonl", [_rec(model="a", cost_usd=0.00105), _rec(model="b", cost_usd=None), _rec(model="c"),
                                                    _rec(model="d", cost_usd=0)])
    df = read_seed_jsonl(path)
    assert df["cost_usd"].iloc[0] == 0.00105 and df["cost_usd"].iloc[3] == 0.0
    assert df["cost_usd"].iloc[1:3].isna().all()  # null or absent: unknown, never 0
    assert df["cost_usd"].dtype == float


@pytest.mark.parametrize("bad", [-0.01, "0.5", True, float("inf"), float("nan"), [1]])
def test_seed_reader_bad_cost_names_file_and_line(tmp_path, bad):
    path = _write_jsonl(tmp_path / "badcost.jsonl", [_rec(model="ok", cost_usd=0.1), _rec(model="x", cost_usd=bad)])
    with pytest.raises(DataError) as err:
        read_seed_jsonl(path)
    assert f"{path}:2: cost_usd must be a finite non-negative number" in str(err.value)


def test_unknown_category_policy_other_counts(tmp_path):
    path = _write_jsonl(tmp_path / "c.jsonl", [_rec(cat="astrology")])
    dlog = DataLog()
    df = read_seed_jsonl(path, dlog, unknown_category_policy="other")
    assert df["category"].iloc[0] == "other"
    assert dlog.repaired["unknown_category_to_other"] == 1


def test_duplicate_policies(tmp_path):
    path = _write_jsonl(tmp_path / "d.jsonl", [_rec(model="a", perf=1.0), _rec(model="a", perf=0.0), _rec(model="b")])
    df = read_seed_jsonl(path)
    with pytest.raises(DataError, match="duplicate"):
        resolve_duplicates(df, "error", DataLog())
    dlog = DataLog()
    mean = resolve_duplicates(df, "mean", dlog)
    assert mean.set_index("model").loc["a", "quality"] == 0.5
    assert dlog.repaired["duplicate_rows_averaged"] == 1
    dlog = DataLog()
    first = resolve_duplicates(df, "first", dlog)
    assert first.set_index("model").loc["a", "quality"] == 1.0
    assert dlog.dropped["duplicate_row"] == 1


def test_incomplete_policy(tmp_path):
    path = _write_jsonl(tmp_path / "i.jsonl", [_rec(query="q1", model="a"), _rec(query="q1", model="b"), _rec(query="q2", model="a")])
    df = read_seed_jsonl(path)
    with pytest.raises(DataError, match="not scored by every model"):
        restrict_to_pool(df, ["a", "b"], "error", DataLog())
    dlog = DataLog()
    kept = restrict_to_pool(df, ["a", "b"], "drop", dlog)
    assert set(kept["query"]) == {"q1"}
    assert dlog.dropped["incomplete_query"] == 1
    with pytest.raises(DataError, match=r"models \['zz'\] have no records"):
        restrict_to_pool(df, ["a", "zz"], "drop", DataLog())


# ---------------------------------------------------------------- splits


def _queries(n=700, seed=0):
    rng = np.random.default_rng(seed)
    cats = rng.choice(list(CATEGORIES), size=n)
    return pd.DataFrame({"query_id": [query_id(f"q{i}") for i in range(n)], "category": cats})


def test_split_is_by_query_deterministic_and_stratified():
    q = _queries()
    a = split_queries(q, 0.2, seed=1)
    b = split_queries(q.sample(frac=1, random_state=3), 0.2, seed=1)  # row order must not matter
    pd.testing.assert_series_equal(a.sort_index(), b.sort_index())
    c = split_queries(q, 0.2, seed=2)
    assert not a.sort_index().equals(c.sort_index())
    assert set(a.index) == set(q["query_id"]) and a.index.is_unique
    frac = q.assign(test=q["query_id"].map(a) == "test").groupby("category")["test"].mean()
    assert (frac.sub(0.2).abs() < 0.06).all()


def test_kfold_by_query_covers_each_query_once():
    q = _queries(300)
    folds = kfold_queries(q["query_id"].to_numpy(), q["category"].to_numpy(), 3, seed=0)
    valid = np.concatenate([v for _, v in folds])
    assert sorted(valid) == list(range(300))
    for tr, va in folds:
        assert not set(tr) & set(va)


# ---------------------------------------------------------------- downloads


def test_fetch_verifies_mirror_checksum(tmp_path, data_dir):
    src = mmlu_pro_source("Qwen1.5-7B-Chat")
    assert fetch(src, data_dir) == data_dir / src.relpath
    fake = tmp_path / src.relpath
    fake.parent.mkdir(parents=True)
    fake.write_bytes(b"not the zip")
    with pytest.raises(DataError, match="does not match the pinned"):
        fetch(src, tmp_path)
    with pytest.raises(DataError, match="not found in the data mirror"):
        fetch(mmlu_pro_source("Mistral-7B-Instruct-v0.2"), tmp_path)


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def test_fetch_downloads_once_from_loopback_and_checks_sha(tmp_path):
    served = tmp_path / "www"
    served.mkdir()
    payload = b'{"question": "q"}\n' * 100
    (served / "f.json").write_bytes(payload)
    handler = lambda *a, **k: _Files(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/f.json"
        good = SourceFile("x/f.json", url, hashlib.sha256(payload).hexdigest())
        path = fetch(good, None, cache=tmp_path / "cache")
        assert path.read_bytes() == payload and str(tmp_path / "cache") in str(path)
        (served / "f.json").unlink()  # a second fetch must use the cache
        assert fetch(good, None, cache=tmp_path / "cache") == path
        bad = SourceFile("x/g.json", url.replace("f.json", "g.json"), "0" * 64)
        (served / "g.json").write_bytes(b"tampered")
        with pytest.raises(DataError, match="does not match the pinned"):
            fetch(bad, None, cache=tmp_path / "cache")
        with pytest.raises(DataError, match="could not download"):
            fetch(SourceFile("x/h", url.replace("f.json", "missing.json"), "0" * 64), None, cache=tmp_path / "cache")
    finally:
        server.shutdown()


def test_seed_dataset_from_local_hugging_face_cache(tmp_path, monkeypatch):
    """The real hf_hub_download path, offline, against a Hugging Face cache layout."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    import huggingface_hub.constants as const

    monkeypatch.setattr(const, "HF_HUB_OFFLINE", True)
    commit = "a" * 40
    repo = tmp_path / "hf" / "datasets--abdallah1008--ml-selection-benchmark-data"
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    _write_jsonl(snap / "benchmark_training_data.jsonl", [_rec(model="llama-3.2-1b"), _rec(model="mistral-7b", perf=0.0)])
    path = fetch_seed_hf("benchmark_training_data.jsonl", cache=tmp_path)
    df = read_seed_jsonl(path)
    assert sorted(df["model"]) == ["llama-3.2-1b", "mistral-7b"]
    with pytest.raises(DataError, match="validation_benchmark_with_gt.jsonl"):
        fetch_seed_hf("validation_benchmark_with_gt.jsonl", cache=tmp_path)


def _serve(folder: Path, handler=_Files):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a, **k: handler(*a, directory=str(folder), **k))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def _cached_files(cache: Path) -> list[Path]:
    return sorted(p for p in cache.rglob("*") if p.is_file()) if cache.exists() else []


def test_corrupt_download_never_enters_the_cache(tmp_path):
    """A download whose SHA-256 is wrong raises naming URL and both digests, leaves nothing cached; a later good one succeeds."""
    served, cache = tmp_path / "www", tmp_path / "cache"
    served.mkdir()
    good = b'{"question": "q"}\n' * 100
    corrupt = good[:-5] + b"XXXXX"
    (served / "f.json").write_bytes(corrupt)
    server = _serve(served)
    try:
        url = f"http://127.0.0.1:{server.server_port}/f.json"
        src = SourceFile("x/f.json", url, hashlib.sha256(good).hexdigest())
        actual = hashlib.sha256(corrupt).hexdigest()
        with pytest.raises(DataError, match="does not match the pinned") as err:
            fetch(src, None, cache=cache)
        assert url in str(err.value) and src.sha256 in str(err.value) and actual in str(err.value)
        assert _cached_files(cache) == []  # no partial, temporary or bad file left behind
        (served / "f.json").write_bytes(good)  # the server is fixed: the next run downloads and succeeds
        path = fetch(src, None, cache=cache)
        assert path.read_bytes() == good and _cached_files(cache) == [path]
    finally:
        server.shutdown()


def test_bad_file_already_in_the_cache_is_replaced(tmp_path):
    """A cached file with the wrong SHA-256 (left by an older version) is not trusted: it is removed and downloaded again."""
    served, cache = tmp_path / "www", tmp_path / "cache"
    served.mkdir()
    good = b"good bytes\n" * 50
    (served / "f.json").write_bytes(good)
    server = _serve(served)
    try:
        url = f"http://127.0.0.1:{server.server_port}/f.json"
        src = SourceFile("x/f.json", url, hashlib.sha256(good).hexdigest())
        stale = cache / "downloads" / url.split("://", 1)[1]
        stale.parent.mkdir(parents=True)
        stale.write_bytes(b"a bad copy from an older run")
        assert fetch(src, None, cache=cache) == stale
        assert stale.read_bytes() == good and _cached_files(cache) == [stale]
    finally:
        server.shutdown()


class _Truncated(_Files):
    """Announces more bytes than it sends, then closes the connection."""

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "1000")
        self.end_headers()
        self.wfile.write(b"only ten b")
        self.wfile.flush()
        self.close_connection = True


def test_truncated_download_never_enters_the_cache(tmp_path):
    cache = tmp_path / "cache"
    server = _serve(tmp_path, _Truncated)
    try:
        url = f"http://127.0.0.1:{server.server_port}/f.json"
        with pytest.raises(DataError, match=f"{url} is truncated: 10 of 1000 bytes"):
            fetch(SourceFile("x/f.json", url, "0" * 64), None, cache=cache)
        assert _cached_files(cache) == []
    finally:
        server.shutdown()


def _hf_cache_with_blob(tmp_path: Path, name: str, content: bytes, blob_name: str) -> Path:
    commit = "a" * 40
    repo = tmp_path / "hf" / "datasets--abdallah1008--ml-selection-benchmark-data"
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    blob = repo / "blobs" / blob_name
    blob.write_bytes(content)
    (repo / "snapshots" / commit / name).symlink_to(Path("..") / ".." / "blobs" / blob_name)
    return blob


def test_seed_dataset_blob_with_wrong_digest_is_removed_and_reported(tmp_path, monkeypatch):
    """huggingface_hub names a blob by its SHA-256: a cached blob whose content differs is removed and reported, not read."""
    import huggingface_hub.constants as const

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(const, "HF_HUB_OFFLINE", True)
    name = "benchmark_training_data.jsonl"
    good = (json.dumps(_rec(model="llama-3.2-1b")) + "\n").encode()
    pinned = hashlib.sha256(good).hexdigest()
    blob = _hf_cache_with_blob(tmp_path, name, b"truncated", pinned)
    with pytest.raises(DataError, match=name) as err:
        fetch_seed_hf(name, cache=tmp_path)
    assert pinned in str(err.value) and hashlib.sha256(b"truncated").hexdigest() in str(err.value)
    assert not blob.exists()
    blob.write_bytes(good)  # a fresh, good copy (what the next download writes)
    (blob.parent.parent / "snapshots" / ("a" * 40) / name).symlink_to(Path("..") / ".." / "blobs" / pinned)
    assert read_seed_jsonl(fetch_seed_hf(name, cache=tmp_path))["model"].tolist() == ["llama-3.2-1b"]


def test_only_bfcl_has_a_side_table(tmp_path):
    """The prepare stage writes a source's side tables by name; sources without one give none (and read nothing)."""
    from mlsel.data.readers import SIDE_TABLES, read_side_tables
    from mlsel.data.records import DataLog

    assert SIDE_TABLES == {"bfcl": "latency_replicate.csv"}
    for source in ("mmlu_pro", "llmrouter", "routerbench", "seed_jsonl", "benchmark"):
        assert read_side_tables(source, str(tmp_path / "absent"), ["m"], DataLog()) == {}
