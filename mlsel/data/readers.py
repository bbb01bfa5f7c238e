"""Readers: each source format into an outcome table (:mod:`mlsel.data.records`).

``seed_jsonl``
    The reference system's JSONL records (``query``, ``category``,
    ``model_name``, ``performance``, ``response_time``, ...), from a local file
    or from the Hugging Face dataset ``abdallah1008/ml-selection-benchmark-data``.
    Records written by ``mlsel benchmark`` carry ``status``; rows whose status is
    not ``ok`` are failed or unscored calls, not outcomes: they are dropped and
    counted. A ``performance`` of ``null`` or ``NaN`` (Python's json writes NaN
    for a missing float) is a missing quality, for ``missing_quality_policy``.
``mmlu_pro``
    The MMLU-Pro authors' per-model output zips. quality = 1 if the extracted
    prediction ``pred`` equals the answer key ``answer`` *in that model's file*
    (as the authors graded), else 0; a null ``pred`` (no answer could be
    extracted) is a wrong answer, counted as ``repaired.pred_null_scored_0``.
    response_chars = len(generated_text).
``llmrouter``
    LLMRouter's default routing data (``dcrouter_preprocessed/{train,test}.json``
    for scores, ``query_data/default_query_{train,test}.jsonl`` for the task
    name). Task -> category mapping: :data:`LLMROUTER_TASK_CATEGORY`. A score
    of ``null`` or ``NaN`` is a missing quality, for ``missing_quality_policy``.

Missing quality means one thing in every source: the reader keeps the cell
with quality NaN and its ``source_row``, and the prepare stage's
``missing_quality_policy`` step (:func:`mlsel.data.outcomes.apply_missing_quality`)
stops with an error naming file, line (or record), model and query, or drops
the cell and counts it as ``dropped.missing_quality_cell`` (RouterBench's
empty cells: :mod:`mlsel.data.routerbench`; MMLU-Pro has no missing score, a
null ``pred`` being a graded wrong answer).
"""

from __future__ import annotations

import json
import logging
import math
import os
import zipfile
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from mlsel import paths
from mlsel.data.outcomes import REPLICATE_FILE
from mlsel.data.records import (
    OUTCOME_COLUMNS,
    DataError,
    DataLog,
    check_cost,
    check_latency,
    check_quality_or_missing,
    normalize_category,
    query_id,
)
from mlsel.data.sources import LLMROUTER_SOURCES, MMLU_PRO_MODELS, SEED_HF_FILES, fetch, fetch_seed_hf, mmlu_pro_source
from mlsel.data.textfiles import iter_jsonl, open_text
from mlsel.files import sha256_file
from mlsel.params import ConfigError

log = logging.getLogger(__name__)

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


def read_seed_jsonl(
    path: str | os.PathLike[str], dlog: DataLog | None = None, unknown_category_policy: str = "error"
) -> pd.DataFrame:
    """Read the seed's JSONL records (or ``mlsel benchmark`` output) into an outcome table.

    Required fields: ``query``, ``model_name``, ``performance``, ``category``.
    ``performance`` null or NaN is a missing quality (NaN, then
    ``missing_quality_policy``); an absent ``performance`` key is a malformed record.
    ``source_row`` is ``<file>:<line>``.
    ``response_time`` (seconds, may be null) becomes ``latency_s``.
    ``response_chars`` is taken from the field of that name or from
    ``len(response)``. ``cost_usd`` (US dollars, optional, null or a finite
    number >= 0) becomes ``cost_usd``, NaN where absent. Records with ``status``
    other than ``ok`` are dropped and counted as ``dropped.status_<status>``.
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
        for name in ("query", "model_name", "category"):
            if rec.get(name) is None or rec.get(name) == "":
                raise DataError(f"{where}: missing required field {name!r}")
        if "performance" not in rec:
            raise DataError(f"{where}: missing required field 'performance' (null or NaN for a missing score)")
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
                check_quality_or_missing(rec["performance"], where),
                check_latency(rec.get("response_time"), where),
                float(chars) if chars is not None else float("nan"),
                str(rec.get("task_name") or ""),
                check_cost(rec.get("cost_usd"), where),
                where,
            )
        )
    if not rows:
        raise DataError(f"{p}: no usable records")
    return pd.DataFrame(rows, columns=[*OUTCOME_COLUMNS, "source_row"])


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
                    float("nan"),
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
    with open_text(path) as fh:
        try:
            return json.load(fh)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: malformed JSON: {exc.msg} (line {exc.lineno})") from exc


def read_list_prices(path: Path) -> dict[str, float]:
    """LLMRouter's ``default_llm.json``: each model's list price per 1M tokens, the mean of its input and output price.

    Both prices must be numbers >= 0; otherwise a :class:`DataError` naming the file and the model.
    """
    data = _read_json_any(path)
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping of model name to its description and prices")
    prices = {}
    for model, entry in data.items():
        values = [entry.get(k) if isinstance(entry, dict) else None for k in ("input_price", "output_price")]
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in values):
            raise DataError(f"{path}: model {model!r}: input_price and output_price must be numbers >= 0, got {values}")
        prices[model] = (values[0] + values[1]) / 2
    return prices


def read_llmrouter(data_dir: Path | None = None, dlog: DataLog | None = None) -> pd.DataFrame:
    """Read LLMRouter's default routing data (9 models, 14 tasks) into an outcome table.

    The category comes from the task via :data:`LLMROUTER_TASK_CATEGORY`; the
    task (found by exact query-text match in the query files) is kept in
    ``task``. A text listed under two tasks keeps the first one found
    (``repaired.query_in_two_tasks``). The data has no per-query cost: each
    model's list price (:func:`read_list_prices`) is the cost proxy
    ``list_price``; a scored model without a price is an error. ``source_split``
    is the scores file a query comes from (``split: source``). A null or NaN
    score is a missing quality (NaN, then ``missing_quality_policy``);
    ``source_row`` is ``<file> record <i>``.
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
    prices = read_list_prices(paths["prices"])
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
                if model not in prices:
                    raise DataError(f"{paths['prices']}: no price for model {model!r}, which {where} scores")
                quality = check_quality_or_missing(score, f"{where} model {model!r}")
                rows.append((query_id(q), q, LLMROUTER_TASK_CATEGORY[task], model, quality, float("nan"), float("nan"), task,
                             float("nan"), prices[model], key.removeprefix("scores_"), where))
    return pd.DataFrame(rows, columns=[*OUTCOME_COLUMNS, "list_price", "source_split", "source_row"])


def read_source(source: str, source_path: str, data_dir: str, run_dir: str, models: list[str], dlog: DataLog,
                unknown_category_policy: str) -> pd.DataFrame:
    """Read the configured source (``prepare.source``) into an outcome table."""
    mirror = paths.data_dir(data_dir)
    if source == "mmlu_pro":
        return read_mmlu_pro(list(models), data_dir=mirror, dlog=dlog)
    if source == "llmrouter":
        return read_llmrouter(data_dir=mirror, dlog=dlog)
    if source == "routerbench":
        from mlsel.data.routerbench import read_routerbench

        return read_routerbench(data_dir=mirror, dlog=dlog)
    if source == "bfcl":
        from mlsel.data.bfcl import read_bfcl

        return read_bfcl(list(models), data_dir=mirror, dlog=dlog)
    if source == "seed_jsonl":
        path = fetch_seed_hf(source_path[3:] or SEED_HF_FILES[0]) if source_path.startswith("hf:") else paths.resolve_path(source_path)
        return read_seed_jsonl(path, dlog, unknown_category_policy)
    if source == "benchmark":
        path = paths.resolve_path(source_path) if source_path else paths.run_paths(run_dir)["benchmark"] / "output.jsonl"
        return read_seed_jsonl(path, dlog, unknown_category_policy)
    raise ConfigError(f"unknown source {source!r}; expected mmlu_pro, llmrouter, routerbench, bfcl, seed_jsonl or benchmark")


SIDE_TABLES = {"bfcl": REPLICATE_FILE}
"""The tables a source has besides its outcomes, by the file name the prepare stage writes them to."""


def read_side_tables(source: str, data_dir: str, models: list[str], dlog: DataLog) -> dict[str, pd.DataFrame]:
    """A source's side tables by file name (:data:`SIDE_TABLES`); empty for a source without any.

    BFCL has one: ``latency_replicate.csv``, the same requests timed again in an
    independent run (:mod:`mlsel.data.bfcl_replicate`).
    """
    if source == "bfcl":
        from mlsel.data.bfcl_replicate import read_bfcl_replicate

        return {SIDE_TABLES[source]: read_bfcl_replicate(list(models), paths.data_dir(data_dir), dlog)}
    return {}
