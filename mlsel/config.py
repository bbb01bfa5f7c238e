"""Paths and parameters: the one place that knows where things live.

``params.yaml`` at the project root is the single source of parameters. It has
a ``base`` section shared by every stage and one section per stage; every key
is a lower_snake name that is also the notebook parameter name. Key names are
unique across the whole file, so an override can name a key alone
(``knn_k=7``) or with its section (``train.knn_k=7``).

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

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import yaml

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


def load_params(path: str | os.PathLike[str] | None = None) -> dict[str, dict[str, Any]]:
    """Read params.yaml into ``{section: {key: value}}`` and check its shape."""
    p = Path(path) if path else params_path()
    raw = read_yaml(p, "the parameter file")
    if not isinstance(raw, dict) or "base" not in raw:
        raise ConfigError(f"{p}: expected a mapping with a 'base' section")
    seen: dict[str, str] = {}
    for section, values in raw.items():
        if section not in ("base", "smoke", *STAGES):
            raise ConfigError(f"{p}: unknown section {section!r}; expected base, smoke or one of {STAGES}")
        if not isinstance(values, dict):
            raise ConfigError(f"{p}: section {section!r} must be a mapping")
        if section == "smoke":
            continue
        for key in values:
            if key in seen:
                raise ConfigError(f"{p}: key {key!r} appears in both {seen[key]!r} and {section!r}")
            seen[key] = section
    return raw


def _section_of(params: dict[str, dict[str, Any]], key: str) -> str:
    for section, values in params.items():
        if section != "smoke" and key in values:
            return section
    raise ConfigError(f"unknown parameter {key!r}")


def apply_overrides(
    params: dict[str, dict[str, Any]], overrides: dict[str, Any] | list[str] | None
) -> dict[str, dict[str, Any]]:
    """Return a copy of ``params`` with overrides applied.

    ``overrides`` is a mapping or a list of ``"key=value"`` /
    ``"section.key=value"`` strings; values are parsed as YAML scalars
    (``7`` -> int, ``true`` -> bool, ``[a, b]`` -> list).
    """
    out = copy.deepcopy(params)
    if not overrides:
        return out
    items: list[tuple[str, Any]]
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for text in overrides:
            if "=" not in text:
                raise ConfigError(f"override {text!r}: expected key=value")
            key, value = text.split("=", 1)
            items.append((key.strip(), yaml.safe_load(value)))
    for key, value in items:
        if "." in key:
            section, name = key.split(".", 1)
            if section not in out or name not in out[section]:
                raise ConfigError(f"override {key!r}: no such parameter in params.yaml")
        else:
            section, name = _section_of(out, key), key
        old = out[section][name]
        if old is not None and value is not None and isinstance(old, (int, float)) and not isinstance(old, bool):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"override {key!r}: expected a number, got {value!r}")
            value = type(old)(value) if isinstance(old, float) else value
        out[section][name] = value
    return out


def apply_smoke(params: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Apply the ``smoke`` profile (small, fast values) on top of ``params``."""
    return apply_overrides(params, dict(params.get("smoke", {})))


STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "prepare": ("prepare",),
    "benchmark": ("benchmark",),
    "train": ("train",),
    "evaluate": ("evaluate",),
    "tune": ("train", "tune"),  # tuning searches around the train stage's values
    "report": ("report",),
}
"""The params.yaml sections each stage reads, besides ``base``."""


def stage_params(params: dict[str, dict[str, Any]], stage: str) -> dict[str, Any]:
    """The flat parameters one stage's notebook takes: ``base`` plus the sections it reads."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; expected one of {STAGES}")
    out = dict(params["base"])
    for section in STAGE_SECTIONS[stage]:
        out.update(params.get(section, {}))
    return out


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
