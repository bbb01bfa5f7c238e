"""Where things live: the project root, the cache, the data mirror, the stage notebooks, the run-folder layout.

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

import os
from pathlib import Path

NOTEBOOKS: dict[str, str] = {
    "prepare": "00_prepare_data.ipynb",
    "benchmark": "10_benchmark_models.ipynb",
    "train": "20_train_selectors.ipynb",
    "evaluate": "30_evaluate_selectors.ipynb",
    "tune": "40_tune_selectors.ipynb",
    "ship": "50_ship_selector.ipynb",
    "report": "90_build_report.ipynb",
}
"""The notebook of each stage, under ``notebooks/``."""


PUBLISHED_REPORT_DIR = "reports"
"""The published report (relative to the project root): written only by the default run or ``mlsel run --publish``."""


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


def params_path() -> Path:
    return project_root() / "params.yaml"


def run_paths(run_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """The fixed layout of a run folder (the run-folder convention)."""
    root = resolve_path(run_dir)
    return {
        "root": root,
        "data": root / "data",
        "models": root / "models",
        "tables": root / "tables",
        "notebooks": root / "notebooks",
        "benchmark": root / "benchmark",
        "tune": root / "tune",
        "tuned_models": root / "tune" / "models",  # the tuned selectors the router runtime can run, one folder per pool
        "ship": root / "ship",
        "manifest": root / "manifest.json",
    }
