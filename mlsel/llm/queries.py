"""The benchmark's input: the queries JSONL, and a real one drawn from MMLU-Pro.

Inputs
------
Queries JSONL, one object per line: ``query`` (required, non-empty string),
``category``, ``ground_truth``, ``metric``, ``choices``, ``task_name`` and any
extra fields, which are passed through to the output. Blank lines are
skipped; a malformed line or a missing ``query`` is a :class:`BenchmarkError`
naming the file and line. Queries are deduplicated by exact text, the first
occurrence wins; duplicates are counted and logged. ``limit`` keeps the first
N unique queries.
"""

from __future__ import annotations

import json
import logging
import os
import random
from pathlib import Path
from typing import Any

from mlsel.data.records import DataError
from mlsel.data.textfiles import iter_jsonl
from mlsel.llm.answers import LETTERS
from mlsel.llm.client import BenchmarkError

log = logging.getLogger(__name__)


def load_queries(path: str | os.PathLike[str], limit: int | None = None) -> list[dict[str, Any]]:
    """Read the queries JSONL, deduplicated by text (first wins), first ``limit`` kept.

    Raises
    ------
    BenchmarkError
        Unreadable file, malformed JSON or a record without a non-empty string
        ``query``, naming ``file:line``.
    """
    p = Path(path)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    n_dup = 0
    if not p.is_file():
        raise BenchmarkError(f"{p}: cannot read queries: file not found")
    try:
        for lineno, rec in iter_jsonl(p):
            q = rec.get("query")
            if not isinstance(q, str) or not q.strip():
                raise BenchmarkError(f"{p}:{lineno}: missing or empty 'query' (a non-empty string is required)")
            if q in seen:
                n_dup += 1
                continue
            seen.add(q)
            out.append(rec)
    except DataError as exc:  # malformed JSON or not an object, with file:line
        raise BenchmarkError(str(exc)) from None
    if n_dup:
        log.info("%s: %d duplicate queries dropped (first occurrence kept)", p, n_dup)
    if not out:
        raise BenchmarkError(f"{p}: no queries")
    if limit is not None and limit > 0:
        out = out[:limit]
    return out


# --------------------------------------------------------------------------- MMLU-Pro queries


def write_mmlu_pro_queries(
    path: str | os.PathLike[str],
    n: int = 20,
    zip_path: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> Path:
    """Write a queries JSONL of ``n`` real MMLU-Pro questions (em_mc).

    Questions are drawn with ``seed`` from one of the MMLU-Pro authors' output
    zips (default: the Phi-3-mini file of the data mirror). Each query holds
    the question and its lettered options; ``ground_truth`` is the answer
    letter, ``choices`` the option texts, ``metric`` em_mc, ``category`` the
    record's category, ``task_name`` ``mmlu_pro`` and ``question_id`` passes
    through.

    Parameters
    ----------
    path : path-like
        Output JSONL.
    n : int
        Number of questions.
    zip_path : path-like, optional
        One MMLU-Pro output zip; overrides ``data_dir``.
    data_dir : path-like, optional
        Data mirror root; default ``$MLSEL_DATA_DIR`` or ``../shared/data``
        beside the project.
    seed : int
        Sampling seed.
    """
    import ast
    import zipfile

    if zip_path is None:
        root = Path(data_dir or os.environ.get("MLSEL_DATA_DIR") or Path(__file__).resolve().parents[3] / "shared" / "data")
        raw = root / "mmlu-pro-model-outputs" / "raw_model_outputs"
        zips = sorted(raw.glob("*Phi-3*.zip")) or sorted(raw.glob("*.zip"))
        if not zips:
            raise BenchmarkError(f"{root}: no MMLU-Pro output zips under mmlu-pro-model-outputs/raw_model_outputs")
        zip_path = zips[0]
    with zipfile.ZipFile(zip_path) as zf:
        recs = json.loads(zf.read([m for m in zf.namelist() if m.endswith(".json")][0]))
    picked = random.Random(seed).sample(recs, n)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for r in picked:
            opts = r["options"]
            if isinstance(opts, str):
                opts = ast.literal_eval(opts)
            lettered = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(opts))
            rec = {
                "query": f"{r['question'].strip()}\n\nOptions:\n{lettered}",
                "category": r["category"],
                "ground_truth": r["answer"],
                "metric": "em_mc",
                "choices": [str(o) for o in opts],
                "task_name": "mmlu_pro",
                "question_id": r["question_id"],
            }
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return out
