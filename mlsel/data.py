"""Outcome data: readers for the source formats, validation, and query splits.

Internal shape
--------------
An *outcome table* is a DataFrame with one row per (query, model)::

    query_id        16 hex digits of SHA-256 of the query text (content hash)
    query           the query text
    category        one of :data:`mlsel.CATEGORIES`
    model           model name
    quality         float in [0, 1]
    latency_s       measured response time in seconds, NaN where not measured
    response_chars  length of the model's answer text, NaN where unknown
    task            source task / sub-dataset, "" where unknown

:class:`OutcomeMatrix` is the query x model view with a fixed model order.

Sources
-------
``seed_jsonl``
    The reference system's JSONL records (``query``, ``category``,
    ``model_name``, ``performance``, ``response_time``, ...), from a local file
    or from the Hugging Face dataset ``abdallah1008/ml-selection-benchmark-data``.
    Records written by ``mlsel benchmark`` carry ``status``; rows whose status is
    not ``ok`` are failed or unscored calls, not outcomes: they are dropped and
    counted.
``mmlu_pro``
    The MMLU-Pro authors' per-model output zips. quality = 1 if the extracted
    prediction ``pred`` equals the answer key ``answer`` *in that model's file*
    (as the authors graded), else 0; a null ``pred`` (no answer could be
    extracted) is a wrong answer, counted as ``repaired.pred_null_scored_0``.
    response_chars = len(generated_text).
``llmrouter``
    LLMRouter's default routing data (``dcrouter_preprocessed/{train,test}.json``
    for scores, ``query_data/default_query_{train,test}.jsonl`` for the task
    name). Task -> category mapping: :data:`LLMROUTER_TASK_CATEGORY`.

Category policy
---------------
Names are lower-cased, stripped, and ``_``/``-`` become spaces, so
``computer_science`` and ``Computer-Science`` are ``computer science`` (counted as
``repaired.category_alias``). Anything else outside the 14 names is an error
naming the record, or, with ``unknown_category_policy="other"``, becomes
``other`` and is counted.

Duplicates and incomplete queries
---------------------------------
Duplicate (query, model) rows: ``duplicate_policy`` = ``error`` (default) |
``mean`` (average them) | ``first`` (keep the first). Queries not scored by every
model of a pool: ``incomplete_policy`` = ``drop`` (default) | ``error``. Every
dropped or repaired record is counted in a :class:`DataLog`, which the stage
writes to the run manifest.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import math
import os
import shutil
import tempfile
import urllib.request
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd

from mlsel import CATEGORIES
from mlsel import config

log = logging.getLogger(__name__)

OUTCOME_COLUMNS = ["query_id", "query", "category", "model", "quality", "latency_s", "response_chars", "task"]

SEED_HF_REPO = "abdallah1008/ml-selection-benchmark-data"
SEED_HF_FILES = ("benchmark_training_data.jsonl", "validation_benchmark_with_gt.jsonl")

LLMROUTER_TASK_CATEGORY: dict[str, str] = {
    # Quantitative reasoning.
    "gsm8k": "math",
    "math": "math",
    "agentverse-mgsm": "math",
    # Program synthesis.
    "mbpp": "computer science",
    "human_eval": "computer science",
    # Everything else spans several domains per task (MMLU, GPQA, ARC, open QA,
    # commonsense, logic grids, constrained generation); the task does not
    # name one domain, so they are "other" and the task is kept in `task`.
    "mmlu": "other",
    "gpqa": "other",
    "arc_challenge": "other",
    "openbook_qa": "other",
    "commonsense_qa": "other",
    "natural_qa": "other",
    "trivia_qa": "other",
    "agentverse-logicgrid": "other",
    "commongen": "other",
}
"""Documented LLMRouter task -> category mapping."""


class DataError(ValueError):
    """Bad input data; the message names the file, the record and the problem."""


# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class SourceFile:
    """One file of a public data source, with its pinned checksum.

    ``relpath`` is the path under the local mirror folder; ``sha256`` is the
    checksum of the file's *content* (for a ``.gz`` mirror copy, of the
    decompressed bytes, which is what the public source serves at ``url``).
    """

    relpath: str
    url: str
    sha256: str


_MMLU_COMMIT = "f418b116db00b065c2aea046518d8fcf74d39872"
_MMLU_SHA = {
    "Meta-Llama-3_1-70B-Instruct": "26573565138fcd27358a0945c9f525a7d9a75a756689058a0d5bfcbc64fa55cb",
    "Meta-Llama-3_1-8B-Instruct": "d5e76b2564b5baad90892c3664287a51f562a3be792a130acaec458b8560a1cf",
    "Mistral-7B-Instruct-v0.2": "ff1c5ae8a0f6412cca52537746f192476398c24590a3fb79e8f10c300ffa8248",
    "Phi-3-mini-4k-instruct": "7f45083108479ef586cc6c855325294c1220a9fcb614066abf22234a26d7037e",
    "Qwen1.5-7B-Chat": "e1819661f16044ee97734d292c9a7e40f38f9be0aae274642f07943ab69a37b5",
}
MMLU_PRO_MODELS: tuple[str, ...] = (
    "Phi-3-mini-4k-instruct",
    "Mistral-7B-Instruct-v0.2",
    "Meta-Llama-3.1-8B-Instruct",
    "Qwen1.5-7B-Chat",
    "Meta-Llama-3.1-70B-Instruct",
)
"""Model names as used in mlsel (the file names write ``3_1`` for ``3.1``)."""


def _mmlu_file_stem(model: str) -> str:
    return model.replace("3.1", "3_1")


def mmlu_pro_source(model: str) -> SourceFile:
    stem = _mmlu_file_stem(model)
    if stem not in _MMLU_SHA:
        raise DataError(f"mmlu_pro: no pinned source for model {model!r}; known: {list(MMLU_PRO_MODELS)}")
    name = f"model_outputs_{stem}_5shots.zip"
    return SourceFile(
        relpath=f"mmlu-pro-model-outputs/raw_model_outputs/{name}",
        url=f"https://raw.githubusercontent.com/TIGER-AI-Lab/MMLU-Pro/{_MMLU_COMMIT}/eval_results/{name}",
        sha256=_MMLU_SHA[stem],
    )


_LLMROUTER_COMMIT = "4e7a796942ce26e9d5f2b93191c7c2585c99c2e3"
_LLMROUTER_BASE = f"https://raw.githubusercontent.com/ulab-uiuc/LLMRouter/{_LLMROUTER_COMMIT}/data"
LLMROUTER_SOURCES: dict[str, SourceFile] = {
    "scores_train": SourceFile(
        "llmrouter-default-9models/raw/dcrouter_preprocessed/train.json.gz",
        f"{_LLMROUTER_BASE}/dcrouter_preprocessed/train.json",
        "ad3ae70149998f02cbf0dd4557ccb6afcf365ac9391b7371329ffc22201e90e3",
    ),
    "scores_test": SourceFile(
        "llmrouter-default-9models/raw/dcrouter_preprocessed/test.json.gz",
        f"{_LLMROUTER_BASE}/dcrouter_preprocessed/test.json",
        "fbb6d3e3f62c7018e5446d3154cc05812d3124381f774738e9f0bac5bff79c79",
    ),
    "queries_train": SourceFile(
        "llmrouter-default-9models/raw/query_data/default_query_train.jsonl.gz",
        f"{_LLMROUTER_BASE}/example_data/query_data/default_query_train.jsonl",
        "f1b2e3281dc3f9e082016812e1a778ca30e9828c7e58fa0a9f6dc52350ad4b8c",
    ),
    "queries_test": SourceFile(
        "llmrouter-default-9models/raw/query_data/default_query_test.jsonl.gz",
        f"{_LLMROUTER_BASE}/example_data/query_data/default_query_test.jsonl",
        "0fdf4b4236fb81c1a673a01950fb974e02599c83164b0e7832888aefaa490e27",
    ),
}


def sha256_file(path: Path, decompress: bool = False) -> str:
    """SHA-256 of a file's bytes (of the decompressed bytes if ``decompress``)."""
    h = hashlib.sha256()
    opener = gzip.open if decompress else open
    with opener(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def fetch(source: SourceFile, data_dir: Path | None = None, cache: Path | None = None) -> Path:
    """Return a verified local path for ``source``.

    With a mirror folder (``data_dir``), the file is read in place from
    ``data_dir / source.relpath`` and nothing is downloaded. Otherwise it is
    downloaded once from ``source.url`` into ``cache/downloads`` (default
    :func:`mlsel.config.cache_dir`). Either way its SHA-256 must match the
    pinned one.
    """
    if data_dir is not None:
        path = data_dir / source.relpath
        if not path.is_file():
            raise DataError(f"{path}: not found in the data mirror {data_dir} (expected {source.relpath})")
        got = sha256_file(path, decompress=path.suffix == ".gz")
    else:
        target = (cache or config.cache_dir()) / "downloads" / source.url.split("://", 1)[1]
        path = target
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            log.info("downloading %s", source.url)
            with tempfile.NamedTemporaryFile(dir=target.parent, delete=False) as tmp:
                try:
                    with urllib.request.urlopen(source.url, timeout=60) as resp:
                        shutil.copyfileobj(resp, tmp)
                except OSError as exc:
                    os.unlink(tmp.name)
                    raise DataError(
                        f"could not download {source.url}: {exc}. Offline? Point MLSEL_DATA_DIR "
                        "(or the data_dir parameter) at a local mirror folder."
                    ) from exc
            os.replace(tmp.name, target)
        got = sha256_file(target)
    if got != source.sha256:
        raise DataError(f"{path}: SHA-256 {got} does not match the pinned {source.sha256} for {source.url}")
    return path


def fetch_seed_hf(filename: str = SEED_HF_FILES[0], revision: str | None = None, cache: Path | None = None) -> Path:
    """Download one file of the seed's Hugging Face dataset (cached by huggingface_hub).

    Honors ``HF_HUB_OFFLINE=1`` and an existing Hugging Face cache under
    ``cache/hf`` (default :func:`mlsel.config.cache_dir`).
    """
    from huggingface_hub import hf_hub_download

    hf_cache = (cache or config.cache_dir()) / "hf"
    try:
        return Path(
            hf_hub_download(
                repo_id=SEED_HF_REPO, filename=filename, repo_type="dataset", revision=revision, cache_dir=hf_cache
            )
        )
    except Exception as exc:  # huggingface_hub raises several unrelated types offline
        raise DataError(
            f"could not get {filename} from the Hugging Face dataset {SEED_HF_REPO} (cache {hf_cache}): {exc}"
        ) from exc


# --------------------------------------------------------------------------- log


@dataclass
class DataLog:
    """Counts of dropped and repaired records, plus the input files and checksums."""

    inputs: dict[str, str] = field(default_factory=dict)
    n_records_read: int = 0
    dropped: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": dict(sorted(self.inputs.items())),
            "n_records_read": self.n_records_read,
            "dropped": dict(sorted(self.dropped.items())),
            "repaired": dict(sorted(self.repaired.items())),
        }


# --------------------------------------------------------------------------- helpers


def query_id(text: str) -> str:
    """Content hash of a query text (16 hex digits of SHA-256)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def normalize_category(value: Any, where: str, policy: str, dlog: DataLog) -> str:
    """Map a raw category to one of the 14 names (see the module's category policy)."""
    if not isinstance(value, str) or not value.strip():
        raise DataError(f"{where}: missing or empty category")
    if value in CATEGORIES:
        return value
    alias = value.strip().lower().replace("_", " ").replace("-", " ")
    alias = " ".join(alias.split())
    if alias in CATEGORIES:
        dlog.repaired["category_alias"] += 1
        return alias
    if policy == "other":
        dlog.repaired["unknown_category_to_other"] += 1
        return "other"
    raise DataError(
        f"{where}: unknown category {value!r}; expected one of {list(CATEGORIES)} "
        "(set unknown_category_policy: other to map it to 'other')"
    )


def _check_quality(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise DataError(f"{where}: quality must be a number in [0, 1], got {value!r}")
    q = float(value)
    if math.isnan(q) or q < 0.0 or q > 1.0:
        raise DataError(f"{where}: quality must be in [0, 1], got {value!r}")
    return q


def _check_latency(value: Any, where: str) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(float(value)) or value < 0:
        raise DataError(f"{where}: response_time must be a non-negative number of seconds or null, got {value!r}")
    return float(value)


def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)``; malformed lines raise :class:`DataError`."""
    with _open_text(path) as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: malformed JSON: {exc.msg} (column {exc.colno})") from exc
            if not isinstance(rec, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
            yield lineno, rec


# --------------------------------------------------------------------------- readers


def read_seed_jsonl(
    path: str | os.PathLike[str], dlog: DataLog | None = None, unknown_category_policy: str = "error"
) -> pd.DataFrame:
    """Read the seed's JSONL records (or ``mlsel benchmark`` output) into an outcome table.

    Required fields: ``query``, ``model_name``, ``performance``, ``category``.
    ``response_time`` (seconds, may be null) becomes ``latency_s``.
    ``response_chars`` is taken from the field of that name or from
    ``len(response)``. Records with ``status`` other than ``ok`` are dropped and
    counted as ``dropped.status_<status>``.
    """
    dlog = dlog if dlog is not None else DataLog()
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{p}: file not found")
    dlog.inputs[str(p)] = sha256_file(p)
    rows = []
    for lineno, rec in iter_jsonl(p):
        dlog.n_records_read += 1
        where = f"{p}:{lineno}"
        status = rec.get("status", "ok")
        if status != "ok":
            dlog.dropped[f"status_{status}"] += 1
            continue
        for name in ("query", "model_name", "performance", "category"):
            if rec.get(name) is None or rec.get(name) == "":
                raise DataError(f"{where}: missing required field {name!r}")
        if not isinstance(rec["query"], str):
            raise DataError(f"{where}: field 'query' must be a string")
        response = rec.get("response")
        chars = rec.get("response_chars")
        if chars is None and isinstance(response, str):
            chars = len(response)
        rows.append(
            (
                query_id(rec["query"]),
                rec["query"],
                normalize_category(rec["category"], where, unknown_category_policy, dlog),
                str(rec["model_name"]),
                _check_quality(rec["performance"], where),
                _check_latency(rec.get("response_time"), where),
                float(chars) if chars is not None else float("nan"),
                str(rec.get("task_name") or ""),
            )
        )
    if not rows:
        raise DataError(f"{p}: no usable records")
    return pd.DataFrame(rows, columns=OUTCOME_COLUMNS)


def _mmlu_records(path: Path) -> list[Any]:
    with zipfile.ZipFile(path) as zf:
        names = [n for n in zf.namelist() if n.endswith(".json")]
        if len(names) != 1:
            raise DataError(f"{path}: expected one JSON file in the zip, found {names}")
        try:
            data = json.loads(zf.read(names[0]))
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}!{names[0]}: malformed JSON: {exc.msg} (line {exc.lineno})") from exc
    if not isinstance(data, list):
        raise DataError(f"{path}: expected a JSON list of records")
    return data


def read_mmlu_pro(
    models: Iterable[str] = MMLU_PRO_MODELS,
    data_dir: Path | None = None,
    dlog: DataLog | None = None,
    paths: dict[str, Path] | None = None,
) -> pd.DataFrame:
    """Read the MMLU-Pro authors' per-model output zips into an outcome table.

    Questions are joined across models by ``question_id``; the query text is
    the first text seen in ``models`` order (texts that differ across files are
    counted as ``repaired.question_text_differs``). ``paths`` maps a model to
    an explicit zip path (tests); otherwise :func:`fetch` finds it.
    """
    dlog = dlog if dlog is not None else DataLog()
    text_by_id: dict[str, str] = {}
    rows = []
    for model in models:
        path = Path(paths[model]) if paths and model in paths else fetch(mmlu_pro_source(model), data_dir)
        dlog.inputs[str(path)] = sha256_file(path)
        for i, rec in enumerate(_mmlu_records(path)):
            dlog.n_records_read += 1
            where = f"{path} record {i}"
            if not isinstance(rec, dict):
                dlog.dropped["not_a_record"] += 1
                log.warning("%s: not a JSON object, skipped", where)
                continue
            for name in ("question_id", "question", "answer", "category"):
                if rec.get(name) in (None, ""):
                    raise DataError(f"{where}: missing required field {name!r}")
            qid = str(rec["question_id"])
            where = f"{path} record {i} (question_id {qid})"
            text = text_by_id.setdefault(qid, rec["question"])
            if text != rec["question"]:
                dlog.repaired["question_text_differs"] += 1
            pred = rec.get("pred")
            if pred is None:
                dlog.repaired["pred_null_scored_0"] += 1
            out = rec.get("generated_text", rec.get("model_outputs", rec.get("response")))
            rows.append(
                (
                    qid,
                    text,
                    normalize_category(rec["category"], where, "error", dlog),
                    model,
                    1.0 if pred is not None and pred == rec["answer"] else 0.0,
                    float("nan"),
                    float(len(out)) if isinstance(out, str) else float("nan"),
                    str(rec.get("src") or ""),
                )
            )
    df = pd.DataFrame(rows, columns=["question_id", *OUTCOME_COLUMNS[1:]])
    # The content hash is taken on the canonical (first-seen) text, so a
    # question keeps one id across model files.
    # Distinct question_ids with identical text are one query for a router;
    # they surface as duplicate (query, model) rows for duplicate_policy.
    df.insert(0, "query_id", df["query"].map(query_id))
    return df.drop(columns="question_id")


def _read_json_any(path: Path) -> Any:
    with _open_text(path) as fh:
        try:
            return json.load(fh)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: malformed JSON: {exc.msg} (line {exc.lineno})") from exc


def read_llmrouter(data_dir: Path | None = None, dlog: DataLog | None = None) -> pd.DataFrame:
    """Read LLMRouter's default routing data (9 models, 14 tasks) into an outcome table.

    The category comes from the task via :data:`LLMROUTER_TASK_CATEGORY`; the
    task (found by exact query-text match in the query files) is kept in
    ``task``. A text listed under two tasks keeps the first one found
    (``repaired.query_in_two_tasks``).
    """
    dlog = dlog if dlog is not None else DataLog()
    paths = {}
    for key, src in LLMROUTER_SOURCES.items():
        path = fetch(src, data_dir)
        dlog.inputs[str(path)] = sha256_file(path, decompress=path.suffix == ".gz")
        paths[key] = path
    task_of: dict[str, str] = {}
    for key in ("queries_train", "queries_test"):
        for lineno, rec in iter_jsonl(paths[key]):
            q, task = rec.get("query"), rec.get("task_name")
            if not q or not task:
                raise DataError(f"{paths[key]}:{lineno}: missing 'query' or 'task_name'")
            if q in task_of and task_of[q] != task:
                dlog.repaired["query_in_two_tasks"] += 1
                continue
            task_of.setdefault(q, task)
    rows = []
    for key in ("scores_train", "scores_test"):
        data = _read_json_any(paths[key])
        for i, rec in enumerate(data):
            dlog.n_records_read += 1
            where = f"{paths[key]} record {i}"
            q, scores = rec.get("question"), rec.get("scores")
            if not isinstance(q, str) or not isinstance(scores, dict):
                raise DataError(f"{where}: expected 'question' (string) and 'scores' (mapping)")
            task = task_of.get(q)
            if task is None:
                raise DataError(f"{where}: query text not found in the query files, so its task is unknown")
            if task not in LLMROUTER_TASK_CATEGORY:
                raise DataError(f"{where}: task {task!r} has no category mapping")
            for model, score in scores.items():
                rows.append(
                    (
                        query_id(q),
                        q,
                        LLMROUTER_TASK_CATEGORY[task],
                        model,
                        _check_quality(score, f"{where} model {model!r}"),
                        float("nan"),
                        float("nan"),
                        task,
                    )
                )
    return pd.DataFrame(rows, columns=OUTCOME_COLUMNS)


# --------------------------------------------------------------------------- cleaning


def resolve_duplicates(df: pd.DataFrame, policy: str, dlog: DataLog) -> pd.DataFrame:
    """Apply ``duplicate_policy`` to repeated (query_id, model) rows."""
    dup = df.duplicated(["query_id", "model"], keep=False)
    if not dup.any():
        return df
    n_extra = int(df.duplicated(["query_id", "model"]).sum())
    first = df[dup].iloc[0]
    if policy == "error":
        raise DataError(
            f"{n_extra} duplicate (query, model) rows, e.g. model {first['model']!r} on query "
            f"{first['query'][:80]!r} (query_id {first['query_id']}); set duplicate_policy to mean or first"
        )
    if policy == "first":
        dlog.dropped["duplicate_row"] += n_extra
        return df.drop_duplicates(["query_id", "model"], keep="first").reset_index(drop=True)
    if policy == "mean":
        dlog.repaired["duplicate_rows_averaged"] += n_extra
        keys = ["query_id", "model"]
        agg = df.groupby(keys, sort=False).agg(
            query=("query", "first"),
            category=("category", "first"),
            quality=("quality", "mean"),
            latency_s=("latency_s", "mean"),
            response_chars=("response_chars", "mean"),
            task=("task", "first"),
        )
        return agg.reset_index()[OUTCOME_COLUMNS]
    raise DataError(f"unknown duplicate_policy {policy!r}; expected error, mean or first")


def restrict_to_pool(df: pd.DataFrame, models: list[str], policy: str, dlog: DataLog) -> pd.DataFrame:
    """Keep the pool's models and queries scored by all of them (``incomplete_policy``)."""
    missing = sorted(set(models) - set(df["model"]))
    if missing:
        raise DataError(f"models {missing} have no records; the data has {sorted(df['model'].unique())}")
    sub = df[df["model"].isin(models)]
    counts = sub.groupby("query_id")["model"].nunique()
    incomplete = counts[counts < len(models)].index
    if len(incomplete):
        if policy == "error":
            q = sub[sub["query_id"] == incomplete[0]].iloc[0]
            raise DataError(
                f"{len(incomplete)} queries are not scored by every model of the pool, e.g. {q['query'][:80]!r}; "
                "set incomplete_policy: drop to leave them out"
            )
        if policy != "drop":
            raise DataError(f"unknown incomplete_policy {policy!r}; expected drop or error")
        dlog.dropped["incomplete_query"] += len(incomplete)
        sub = sub[~sub["query_id"].isin(incomplete)]
    return sub.reset_index(drop=True)


# --------------------------------------------------------------------------- matrix


@dataclass
class OutcomeMatrix:
    """Query x model view of an outcome table.

    Attributes
    ----------
    query_ids, queries, categories : ndarray of str, shape (n,)
    models : list of str, length m, the fixed model order
    quality : ndarray of float, shape (n, m), in [0, 1]
    latency_s : ndarray of float, shape (n, m), or None when nothing was measured
    response_chars : ndarray of float, shape (n, m), or None when unknown
    """

    query_ids: np.ndarray
    queries: np.ndarray
    categories: np.ndarray
    models: list[str]
    quality: np.ndarray
    latency_s: np.ndarray | None
    response_chars: np.ndarray | None

    def __len__(self) -> int:
        return len(self.query_ids)

    def subset(self, mask_or_index: np.ndarray) -> "OutcomeMatrix":
        idx = np.asarray(mask_or_index)
        return OutcomeMatrix(
            self.query_ids[idx],
            self.queries[idx],
            self.categories[idx],
            list(self.models),
            self.quality[idx],
            None if self.latency_s is None else self.latency_s[idx],
            None if self.response_chars is None else self.response_chars[idx],
        )

    def select_models(self, models: list[str]) -> "OutcomeMatrix":
        cols = [self.models.index(m) for m in models]
        return OutcomeMatrix(
            self.query_ids,
            self.queries,
            self.categories,
            list(models),
            self.quality[:, cols],
            None if self.latency_s is None else self.latency_s[:, cols],
            None if self.response_chars is None else self.response_chars[:, cols],
        )


def to_matrix(df: pd.DataFrame, models: list[str]) -> OutcomeMatrix:
    """Pivot a complete outcome table to an :class:`OutcomeMatrix` (queries sorted by id)."""
    sub = df[df["model"].isin(models)]
    meta = sub.drop_duplicates("query_id").set_index("query_id").sort_index()
    def pivot(col: str) -> np.ndarray:
        wide = sub.pivot(index="query_id", columns="model", values=col).reindex(index=meta.index, columns=models)
        return wide.to_numpy(dtype=float)
    quality = pivot("quality")
    if np.isnan(quality).any():
        raise DataError("outcome table is incomplete for this pool; run restrict_to_pool first")
    lat = pivot("latency_s")
    chars = pivot("response_chars")
    return OutcomeMatrix(
        meta.index.to_numpy(dtype=str),
        meta["query"].to_numpy(dtype=str),
        meta["category"].to_numpy(dtype=str),
        list(models),
        quality,
        None if np.isnan(lat).all() else lat,
        None if np.isnan(chars).all() else chars,
    )


# --------------------------------------------------------------------------- splits


def split_queries(queries: pd.DataFrame, test_size: float, seed: int) -> pd.Series:
    """Assign each query to ``train`` or ``test``, stratified by category.

    Parameters
    ----------
    queries : DataFrame with columns ``query_id`` and ``category``, one row per query
    test_size : fraction of queries held out, in (0, 1)
    seed : random seed; the same (queries, seed) always gives the same split

    Returns
    -------
    Series indexed by query_id with values ``"train"`` / ``"test"``.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    q = queries.drop_duplicates("query_id").sort_values("query_id").reset_index(drop=True)
    try:
        _, te = train_test_split(q["query_id"], test_size=test_size, random_state=seed, stratify=q["category"])
    except ValueError:
        # Too few queries per category to stratify (tiny data): a plain seeded split.
        log.warning("split: too few queries per category to stratify; using an unstratified seeded split")
        _, te = train_test_split(q["query_id"], test_size=test_size, random_state=seed)
    out = pd.Series("train", index=q["query_id"].to_numpy(), name="split")
    out.loc[te.to_numpy()] = "test"
    return out


def kfold_queries(query_ids: np.ndarray, categories: np.ndarray, n_splits: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified K-fold by query: a list of (train_index, valid_index) pairs."""
    from sklearn.model_selection import KFold, StratifiedKFold

    counts = pd.Series(categories).value_counts()
    if (counts >= n_splits).all():
        cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        return list(cv.split(query_ids, categories))
    cv = KFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(cv.split(query_ids))


def subsample_queries(df: pd.DataFrame, max_queries: int, seed: int, dlog: DataLog) -> pd.DataFrame:
    """Keep a seeded, category-stratified sample of ``max_queries`` queries (0 = all)."""
    qids = df.drop_duplicates("query_id")[["query_id", "category"]]
    if not max_queries or max_queries >= len(qids):
        return df
    keep = split_queries(qids, test_size=max_queries / len(qids), seed=seed)
    kept = set(keep[keep == "test"].index)
    dlog.dropped["subsampled_out_by_max_queries"] += len(qids) - len(kept)
    return df[df["query_id"].isin(kept)].reset_index(drop=True)
