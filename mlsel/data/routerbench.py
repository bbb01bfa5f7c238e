"""Reader for the RouterBench 0-shot subset as re-split by RouterDC (``routerbench-subset-routerdc``).

Six CSVs, ``{arc_challenge,mbpp,winograde}_{train,test}.csv`` (pinned in
:data:`mlsel.data.sources.ROUTERBENCH_SOURCES`), one row per prompt: an unnamed
index, ``sample_id``, ``prompt``, ``eval_name``, one 0/1 performance column per
model, ``<model>|model_response``, ``<model>|total_cost`` and
``oracle_model_to_route_to``. :func:`read_routerbench` returns an outcome table
(:data:`mlsel.data.records.OUTCOME_COLUMNS`) plus ``source_split``, one row per
(prompt row, model).

Query text
----------
``prompt`` is a string-encoded Python list of strings (``ast.literal_eval``);
anything else is a :class:`DataError` naming file, line and sample_id. In the
pinned files 14 ARC rows hold the same text twice (``[p, p]``: the row that
scored gpt-3.5 only, at about twice the cost); identical repeats are one text
(``repaired.routerbench_prompt_repeated``), different texts are an error.

Every ARC prompt starts with the same 5 answered exemplars (1,653 characters,
391 word pieces) and every Winogrande prompt with the same 5 (1,221
characters, 287 word pieces). all-MiniLM-L6-v2 truncates at 256 word pieces,
so on the whole prompt the router would embed only the shared preamble, the
same for every query of the task, and never see the question. The query is
therefore :func:`strip_few_shot` of the prompt: the text after the last
answered exemplar, i.e. after the last ``"Answer:\n<capital letter>\n\n"``.
For ARC and Winogrande that is the question (sentence), its options, the
answer instruction and ``Answer:`` (at most 221 word pieces); MBPP prompts
(one instruction sentence) have no exemplar and are kept whole. Stripping
merges no two prompts of a file. The text is the same deterministic function
of the prompt in every file, so ``query_id`` (its content hash) joins
duplicates.

Columns
-------
- ``task`` = ``eval_name``; ``category`` via :data:`ROUTERBENCH_TASK_CATEGORY`
  (same choices as ``LLMROUTER_TASK_CATEGORY``); an unknown ``eval_name`` is an error.
- ``quality``: the model's performance cell, 0 or 1. An empty cell stays NaN
  (the ``missing_quality_policy`` step handles it); any other value is an
  error naming file, line and model.
- ``cost_usd``: ``<model>|total_cost``, which must be a finite number >= 0.
  Cost rule: an empty cost cell is allowed only where the quality cell is
  also empty (then NaN); an empty cost for a scored cell is an error. A cost
  present beside an empty quality is kept as read. (The pinned files have no
  empty cost cell.)
- ``response_chars``: characters of ``<model>|model_response`` (itself a
  string-encoded list of strings; total length of its strings), NaN if empty.
- ``latency_s``: NaN. RouterBench has no latency and none is derived from cost.

Model columns: a column with no ``|`` that is not a metadata column
(:data:`METADATA_COLUMNS`). Every model needs its ``|total_cost`` and
``|model_response`` column, and every ``|`` column must belong to a model
(else "unknown model column"); all files must have the same models.
A malformed CSV (unreadable gzip, wrong number of fields, missing required
column) is an error naming the file and the line.

Duplicates and the train/test split
-----------------------------------
A ``sample_id`` repeated inside a file is kept as rows (same text, so the same
``query_id``; ``duplicate_policy`` decides later) and counted as
``repaired.routerbench_duplicate_sample_id``. ``source_split`` comes from the
file name, except that a query text found in any test file is ``test`` in every
row, train rows included: the test file wins, so no test query is ever trained
on. Such texts are logged with their sample_ids and counted (one per text) as
``repaired.routerbench_query_in_train_and_test``.

Pinned data (checked by tests/test_routerbench.py): 3,178 prompt rows
(ARC 1,039 + 445, MBPP 299 + 128, Winogrande 887 + 380), 11 models, 34,958
rows, 3,162 unique query texts; 8 repeated sample_ids in files; 8 texts in a
train and a test file (6 ARC, 2 MBPP); 14 empty quality cells per model.
"""

from __future__ import annotations

import ast
import csv
import gzip
import io
import logging
import math
import re
import zlib
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd

from mlsel.data.records import OUTCOME_COLUMNS, DataError, DataLog, query_id
from mlsel.data.sources import ROUTERBENCH_SOURCES, fetch
from mlsel.files import sha256_file

log = logging.getLogger(__name__)

ROUTERBENCH_TASK_CATEGORY: dict[str, str] = {
    # Program synthesis, as "mbpp" in LLMROUTER_TASK_CATEGORY.
    "mbpp": "computer science",
    # Grade-school science across several domains, as "arc_challenge" there.
    "arc-challenge": "other",
    # Commonsense pronoun resolution, as "commonsense_qa" there: no single domain.
    "winogrande": "other",
}
"""Documented RouterBench ``eval_name`` -> category mapping."""

METADATA_COLUMNS: tuple[str, ...] = ("", "sample_id", "prompt", "eval_name", "oracle_model_to_route_to")
"""Columns that are not models (``""`` is the unnamed index)."""

REQUIRED_COLUMNS: tuple[str, ...] = ("sample_id", "prompt", "eval_name")

MODEL_SUFFIXES: tuple[str, ...] = ("total_cost", "model_response")

ROUTERBENCH_COLUMNS: list[str] = [*OUTCOME_COLUMNS, "source_split", "source_row"]
"""The outcome columns, the source file's split and the row's location (``file:line (sample_id ...)``, for error messages)."""

_ANSWERED_EXEMPLAR = re.compile(r"\bAnswer:\n[A-Z]\n\n")


def strip_few_shot(prompt: str) -> str:
    """The text after the last answered few-shot exemplar (``"\\nAnswer:\\n<letter>\\n\\n"``); the prompt if it has none."""
    end = 0
    for m in _ANSWERED_EXEMPLAR.finditer(prompt):
        end = m.end()
    return prompt[end:]


def _decode_str_list(cell: str, what: str, where: str) -> list[str]:
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise DataError(f"{where}: {what} is not a string-encoded Python list ({type(exc).__name__}: {exc})") from exc
    if not isinstance(value, list) or not value or not all(isinstance(s, str) for s in value):
        raise DataError(f"{where}: {what} must be a non-empty list of strings, got {type(value).__name__}")
    return value


def decode_prompt(cell: str, where: str) -> tuple[str, bool]:
    """The prompt text of a ``prompt`` cell and whether it was repeated (``[p, p]``); see the module docstring."""
    texts = _decode_str_list(cell, "prompt", where)
    if any(t != texts[0] for t in texts[1:]):
        raise DataError(f"{where}: prompt list holds {len(texts)} different texts; expected one (identical repeats allowed)")
    return texts[0], len(texts) > 1


def _query_text(cell: str, where: str) -> tuple[str, bool]:
    prompt, repeated = decode_prompt(cell, where)
    text = strip_few_shot(prompt)
    if not text.strip():
        raise DataError(f"{where}: empty query text after removing the few-shot exemplars")
    return text, repeated


def routerbench_query_text(cell: str, where: str = "prompt") -> str:
    """The query text a router sees for a ``prompt`` cell: the decoded prompt without its few-shot exemplars."""
    return _query_text(cell, where)[0]


def _open_csv_text(path: Path) -> io.TextIOBase:
    # newline="" as the csv module requires (quoted fields may hold line breaks).
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def iter_csv(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Yield ``(line, fields)`` per CSV record (``line`` = physical line where it starts; the header is line 1).

    A record with a different number of fields than the header, a CSV syntax
    error, an unreadable gzip or non-UTF-8 text is a :class:`DataError` naming
    the file and the line.
    """
    start = 1
    try:
        with _open_csv_text(path) as fh:
            reader = csv.reader(fh, strict=True)
            n_fields = None
            for fields in reader:
                if n_fields is None:
                    n_fields = len(fields)
                elif len(fields) != n_fields:
                    raise DataError(f"{path}:{start}: malformed CSV: {len(fields)} fields, the header has {n_fields}")
                yield start, fields
                start = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}:{start}: malformed CSV: {exc}") from exc
    except (OSError, EOFError, zlib.error, UnicodeDecodeError) as exc:
        raise DataError(f"{path}:{start}: unreadable file ({type(exc).__name__}: {exc})") from exc


def model_columns(header: list[str], path: Path) -> list[str]:
    """The model names of a header, checked as described in the module docstring."""
    where = f"{path}:1"
    if len(set(header)) != len(header):
        dups = sorted({c for c in header if header.count(c) > 1})
        raise DataError(f"{where}: duplicate column names {dups}")
    for name in REQUIRED_COLUMNS:
        if name not in header:
            raise DataError(f"{where}: missing required column {name!r}")
    models = [c for c in header if "|" not in c and c not in METADATA_COLUMNS]
    if not models:
        raise DataError(f"{where}: no model columns")
    for col in header:
        if "|" in col:
            model, kind = col.split("|", 1)
            if model not in models or kind not in MODEL_SUFFIXES:
                raise DataError(f"{where}: unknown model column {col!r} (no model column {model!r} or unknown suffix {kind!r})")
    for model in models:
        for kind in MODEL_SUFFIXES:
            if f"{model}|{kind}" not in header:
                raise DataError(f"{where}: model column {model!r} has no {model + '|' + kind!r} column")
    return models


def parse_quality(cell: str, where: str) -> float:
    """A performance cell: 0 or 1 as float, NaN if empty; anything else is a :class:`DataError`."""
    if not cell.strip():
        return float("nan")
    try:
        value = float(cell)
    except ValueError:
        value = None
    if value not in (0.0, 1.0):
        raise DataError(f"{where}: performance must be 0 or 1 (or empty), got {cell!r}")
    return value


def parse_cost(cell: str, quality: float, where: str) -> float:
    """A ``total_cost`` cell in USD (finite, >= 0); empty only where the quality is empty too (the cost rule)."""
    if not cell.strip():
        if math.isnan(quality):
            return float("nan")
        raise DataError(f"{where}: empty total_cost for a scored cell (quality {quality:g})")
    try:
        value = float(cell)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise DataError(f"{where}: total_cost must be a finite number >= 0 (USD), got {cell!r}")
    return value


def _response_chars(cell: str, where: str) -> float:
    if not cell.strip():
        return float("nan")
    return float(sum(len(s) for s in _decode_str_list(cell, "model_response", where)))


def split_of(path: Path) -> str:
    """``train`` or ``test`` from a file name ``<task>_{train,test}.csv[.gz]``."""
    stem = path.name.removesuffix(".gz").removesuffix(".csv")
    for split in ("train", "test"):
        if stem.endswith(f"_{split}"):
            return split
    raise DataError(f"{path}: file name does not end in _train.csv or _test.csv, so its split is unknown")


def _read_file(path: Path, dlog: DataLog) -> tuple[list[str], list[tuple]]:
    """The models of one file and its rows (OUTCOME_COLUMNS + source_split + sample_id)."""
    split = split_of(path)
    records = iter_csv(path)
    first = next(records, None)
    if first is None:
        raise DataError(f"{path}:1: empty file, no header")
    header = first[1]
    models = model_columns(header, path)
    col = {name: i for i, name in enumerate(header)}
    seen: set[str] = set()
    rows: list[tuple] = []
    for lineno, fields in records:
        dlog.n_records_read += 1
        sid = fields[col["sample_id"]]
        where = f"{path}:{lineno} (sample_id {sid!r})"
        if not sid.strip():
            raise DataError(f"{path}:{lineno}: empty sample_id")
        if sid in seen:
            dlog.repaired["routerbench_duplicate_sample_id"] += 1
        seen.add(sid)
        task = fields[col["eval_name"]]
        if task not in ROUTERBENCH_TASK_CATEGORY:
            raise DataError(f"{where}: unknown eval_name {task!r}; known: {sorted(ROUTERBENCH_TASK_CATEGORY)}")
        text, repeated = _query_text(fields[col["prompt"]], where)
        dlog.repaired["routerbench_prompt_repeated"] += int(repeated)
        qid = query_id(text)
        for model in models:
            at = f"{where} model {model!r}"
            quality = parse_quality(fields[col[model]], at)
            rows.append((
                qid, text, ROUTERBENCH_TASK_CATEGORY[task], model, quality, float("nan"),
                _response_chars(fields[col[f"{model}|model_response"]], at), task,
                parse_cost(fields[col[f"{model}|total_cost"]], quality, at), split, where, sid,
            ))
    if not rows:
        raise DataError(f"{path}: no data rows")
    return models, rows


def _test_wins(df: pd.DataFrame, dlog: DataLog) -> pd.DataFrame:
    """Mark every row of a query text that is in a test file as ``test`` (see the module docstring)."""
    test_ids = set(df.loc[df["source_split"] == "test", "query_id"])
    moved = (df["source_split"] == "train") & df["query_id"].isin(test_ids)
    if moved.any():
        both = df[df["query_id"].isin(set(df.loc[moved, "query_id"]))]
        for qid, grp in both.groupby("query_id", sort=True):
            log.warning(
                "routerbench: query %s is in train and test (sample_ids %s, task %s); all its rows are source_split=test",
                qid, sorted(set(grp["sample_id"])), grp["task"].iloc[0],
            )
        dlog.repaired["routerbench_query_in_train_and_test"] += int(df.loc[moved, "query_id"].nunique())
        df.loc[moved, "source_split"] = "test"
    return df


def read_routerbench_files(paths: Iterable[Path], dlog: DataLog | None = None) -> pd.DataFrame:
    """Read RouterBench CSVs (``<task>_{train,test}.csv[.gz]``) into an outcome table plus ``source_split``.

    The files need not be pinned (tests use hand-written ones); every file must
    have the same models. ``dlog.inputs`` gets each file's SHA-256 (of the
    decompressed bytes for ``.gz``).
    """
    dlog = dlog if dlog is not None else DataLog()
    rows: list[tuple] = []
    first: tuple[Path, list[str]] | None = None
    for path in map(Path, paths):
        models, file_rows = _read_file(path, dlog)
        if first is None:
            first = (path, models)
        elif set(models) != set(first[1]):
            missing, extra = sorted(set(first[1]) - set(models)), sorted(set(models) - set(first[1]))
            raise DataError(f"{path}: models differ from {first[0]}: missing {missing}, extra {extra}")
        dlog.inputs[str(path)] = sha256_file(path, decompress=path.suffix == ".gz")
        rows.extend(file_rows)
    if first is None:
        raise DataError("routerbench: no input files")
    df = pd.DataFrame(rows, columns=[*ROUTERBENCH_COLUMNS, "sample_id"])
    return _test_wins(df, dlog).drop(columns="sample_id")


def read_routerbench(data_dir: Path | None = None, dlog: DataLog | None = None) -> pd.DataFrame:
    """Read the pinned RouterBench subset (RouterDC re-split; 11 models, 3 tasks) into an outcome table.

    Columns: :data:`mlsel.data.records.OUTCOME_COLUMNS` plus ``source_split``
    (``train``/``test``). Files come from the mirror folder ``data_dir`` or are
    downloaded (:func:`mlsel.data.sources.fetch`). Rules: the module docstring.
    """
    paths = [fetch(src, data_dir) for src in ROUTERBENCH_SOURCES.values()]
    return read_routerbench_files(paths, dlog)
