"""Reading and writing files: a YAML file with errors naming it, a file's checksum, a deterministic CSV, the atomic write."""

from __future__ import annotations

import gzip
import hashlib
import os
from pathlib import Path
from typing import Any

import pandas as pd
import yaml


def read_yaml(path: str | os.PathLike[str], what: str, error: type[Exception]) -> Any:
    """Parse a YAML file; an unreadable or malformed file raises ``error`` naming the file."""
    p = Path(path)
    try:
        return yaml.safe_load(p.read_text())
    except OSError as exc:
        raise error(f"{p}: cannot read {what}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise error(f"{p}: {what} is not valid YAML: {exc}") from None


def sha256_file(path: Path, decompress: bool = False) -> str:
    """SHA-256 of a file's bytes (of the decompressed bytes if ``decompress``)."""
    h = hashlib.sha256()
    opener = gzip.open if decompress else open
    with opener(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_csv(df: pd.DataFrame, path) -> None:
    """Write a tidy CSV deterministically (6 decimals, LF line ends)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(p, index=False, float_format="%.6f", lineterminator="\n")


def write_atomic(path: str | os.PathLike[str], data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8, or bytes) to ``path`` through a temporary file in the same folder and a rename.

    The one atomic write of the package: a reader never sees a half-written
    file, and a crash leaves the previous file whole.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data.encode("utf-8") if isinstance(data, str) else data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, p)
    return p
