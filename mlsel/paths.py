"""Where things live: project root, cache, data mirror, run-folder layout, hashing and atomic writes.

Environment variables (read at call time, never at import):

``MLSEL_ROOT``
    The project root. Default: the nearest folder upwards from the working
    directory that holds ``params.yaml``.
``MLSEL_DATA_DIR``
    A local mirror folder of the source data (e.g. ``../shared/data``). Wins
    over the ``data_dir`` parameter.
``MLSEL_CACHE_DIR``
    Downloads and embedding caches. Default ``~/.cache/mlsel``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

import mlsel

STAGES: tuple[str, ...] = ("prepare", "benchmark", "train", "evaluate", "tune", "report")
"""Stage names, in run order; each is a section of params.yaml."""


NOTEBOOKS: dict[str, str] = {
    "prepare": "00_prepare_data.ipynb",
    "benchmark": "10_benchmark_models.ipynb",
    "train": "20_train_selectors.ipynb",
    "evaluate": "30_evaluate_selectors.ipynb",
    "tune": "40_tune_selectors.ipynb",
    "report": "90_build_report.ipynb",
}


class ConfigError(ValueError):
    """A parameter file or override is invalid."""


def project_root() -> Path:
    """Return the project root folder (holds ``params.yaml``)."""
    env = os.environ.get("MLSEL_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "params.yaml").is_file():
            return folder
    pkg_parent = Path(__file__).resolve().parent.parent
    if (pkg_parent / "params.yaml").is_file():
        return pkg_parent
    return here


def resolve_path(path: str | os.PathLike[str]) -> Path:
    """Resolve ``path`` against the project root unless it is absolute."""
    p = Path(os.path.expanduser(str(path)))
    return p if p.is_absolute() else (project_root() / p).resolve()


def cache_dir() -> Path:
    """Folder for downloads and embedding caches, outside the package."""
    env = os.environ.get("MLSEL_CACHE_DIR")
    return Path(env).expanduser().resolve() if env else Path.home() / ".cache" / "mlsel"


def data_dir(param_value: str | None = None) -> Path | None:
    """The local data mirror: ``MLSEL_DATA_DIR`` if set, else the parameter, else None."""
    env = os.environ.get("MLSEL_DATA_DIR")
    value = env if env else param_value
    return resolve_path(value) if value else None


def read_yaml(path: str | os.PathLike[str], what: str, error: type[Exception] = ConfigError) -> Any:
    """Parse a YAML file; an unreadable or malformed file raises ``error`` naming the file."""
    p = Path(path)
    try:
        return yaml.safe_load(p.read_text())
    except OSError as exc:
        raise error(f"{p}: cannot read {what}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise error(f"{p}: {what} is not valid YAML: {exc}") from None


def params_path() -> Path:
    return project_root() / "params.yaml"


def params_hash(params: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON form of ``params`` (first 16 hex digits)."""
    text = json.dumps(params, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_paths(run_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """The fixed layout of a run folder (the run-folder convention)."""
    root = resolve_path(run_dir)
    return {
        "root": root,
        "data": root / "data",
        "models": root / "models",
        "tables": root / "tables",
        "figures": root / "figures",
        "notebooks": root / "notebooks",
        "benchmark": root / "benchmark",
        "tune": root / "tune",
        "manifest": root / "manifest.json",
    }


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
    from pathlib import Path

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(p, index=False, float_format="%.6f", lineterminator="\n")


PACKAGES = ("numpy", "pandas", "scikit-learn", "sentence-transformers", "torch", "papermill", "matplotlib", "seaborn", "huggingface-hub")


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_root(), capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=project_root(), capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "mlsel": mlsel.__version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def update_manifest(run_dir: str, stage: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Merge one stage's entry into ``<run_dir>/manifest.json`` and return the manifest."""
    path = run_paths(run_dir)["manifest"]
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = json.loads(path.read_text()) if path.is_file() else {"stages": {}}
    manifest["git_commit"] = _git_commit()
    manifest["package_versions"] = package_versions()
    manifest["stages"][stage] = entry
    write_atomic(path, json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return manifest


def read_manifest(run_dir: str) -> dict[str, Any]:
    path = run_paths(run_dir)["manifest"]
    return json.loads(path.read_text()) if path.is_file() else {"stages": {}}


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

