"""Opening the sources' text files: a UTF-8 file or its ``.gz`` mirror copy, and JSON Lines records."""

from __future__ import annotations

import gzip
import io
import json
from pathlib import Path
from typing import Any, Iterator

from mlsel.data.records import DataError


def open_text(path: Path) -> io.TextIOBase:
    """Open a UTF-8 text file for reading, decompressing a ``.gz`` mirror copy."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8")
    return open(path, encoding="utf-8")


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)``; malformed lines raise :class:`DataError`."""
    with open_text(path) as fh:
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
