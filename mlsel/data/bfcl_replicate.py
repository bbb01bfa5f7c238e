"""BFCL's independent 2024-07-25 run: the same requests timed again, to say how much of a latency repeats.

The 07-25 result files (``HuanzhiMao/BFCL-Result`` at the commit of
:mod:`mlsel.data.bfcl`) hold one line per prompt of each category, in the
prompt order of the 08-11 question files, named by ``idx`` (its position) or,
in ``java`` and ``javascript``, by ``id`` (``java_3``). Line *i* of a category
is matched to the 08-11 prompt *i* (the run preceded two small fixes of the
question files, so a few prompts were worded slightly differently then); a
line naming another position is an error naming the file and line. Only the
latency is used. A latency of 0 is no measurement and is left out (counted as
``dropped.bfcl_replicate_zero_latency``). Configurations not in that run
(:data:`mlsel.data.bfcl_pins.REPLICATE_MODELS` lists those that are) have no
rows.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from mlsel.data import bfcl_pins
from mlsel.data.bfcl import BFCL_CATEGORIES, BfclFiles, _jsonl, question_path, read_questions, replicate_path, request_latency
from mlsel.data.records import DataError, DataLog, query_id

REPLICATE_COLUMNS = ["query_id", "model", "latency_s"]


def _position(rec: dict, category: str) -> int | None:
    if isinstance(rec.get("idx"), int) and not isinstance(rec.get("idx"), bool):
        return rec["idx"]
    pid = rec.get("id")
    prefix = f"{category}_"
    if isinstance(pid, str) and pid.startswith(prefix) and pid[len(prefix):].isdigit():
        return int(pid[len(prefix):])
    return None


def read_replicate_latencies(data: bytes, where: str, category: str, n_prompts: int, dlog: DataLog) -> list[float]:
    """One category's 07-25 latencies in prompt order (NaN for a 0, counted)."""
    lines = _jsonl(data, where)
    if len(lines) != n_prompts:
        raise DataError(f"{where}: {len(lines)} results but the category has {n_prompts} prompts")
    out = []
    for i, (lineno, rec) in enumerate(lines):
        if _position(rec, category) != i:
            raise DataError(f"{where}:{lineno}: expected prompt {i} ('idx' {i} or 'id' {category}_{i}), got idx {rec.get('idx')!r}, "
                            f"id {rec.get('id')!r}")
        lat = request_latency(rec, f"{where}:{lineno}")
        if math.isnan(lat):
            dlog.dropped["bfcl_replicate_zero_latency"] += 1
        out.append(lat)
    return out


def read_bfcl_replicate(models: list[str], data_dir: Path | None = None, dlog: DataLog | None = None) -> pd.DataFrame:
    """The 07-25 latency of each (query, model) of ``models`` that was in that run (columns :data:`REPLICATE_COLUMNS`)."""
    dlog = dlog if dlog is not None else DataLog()
    files = BfclFiles(data_dir, dlog)
    replicated = [m for m in models if m in bfcl_pins.REPLICATE_MODELS]
    if not replicated:
        return pd.DataFrame(columns=REPLICATE_COLUMNS)
    questions = files.get("question", [question_path(c) for c in BFCL_CATEGORIES])
    results = files.get("replicate", [replicate_path(m, c) for m in replicated for c in BFCL_CATEGORIES])
    rows = []
    for cat in BFCL_CATEGORIES:
        _, texts = read_questions(questions[question_path(cat)], files.where("question", question_path(cat)))
        ids = [query_id(t) for t in texts]
        for model in replicated:
            path = replicate_path(model, cat)
            lats = read_replicate_latencies(results[path], files.where("replicate", path), cat, len(ids), dlog)
            rows += [(qid, model, lat) for qid, lat in zip(ids, lats) if not math.isnan(lat)]
    return pd.DataFrame(rows, columns=REPLICATE_COLUMNS)
