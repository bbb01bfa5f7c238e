"""Reading and validating parameters: parameter files, overrides, the smoke profile, one stage's values, :class:`ConfigError`.

A parameter file may list only the keys it changes; every key it names must
exist, and wrong types are errors naming the file and the key.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import yaml
from pydantic import ValidationError

from mlsel.files import read_yaml
from mlsel.params.model import KEY_SECTION, SECTIONS, STAGE_BASE_KEYS, STAGE_MODELS, STAGE_SECTIONS, STAGES, Params, Section, keys_of
from mlsel.paths import params_path


class ConfigError(ValueError):
    """A parameter file, an override or a parameter value is invalid."""


def _explain(exc: ValidationError, where: str, section: str | None = None) -> ConfigError:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"])
        if section and not loc.startswith(section):
            loc = f"{section}.{loc}" if loc else section
        what = "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{loc}: {what} (got {err.get('input')!r})" if err["type"] != "extra_forbidden" else f"{loc}: {what}")
    return ConfigError(f"{where}: " + "; ".join(parts))


def _validate(raw: Mapping[str, Any], where: str) -> Params:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of sections ({', '.join(SECTIONS)}, smoke)")
    for section, values in raw.items():
        if section not in (*SECTIONS, "smoke", "dataset_defs"):
            raise ConfigError(f"{where}: unknown section {section!r}; expected base, smoke, dataset_defs or one of {STAGES}")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: section {section!r} must be a mapping")
        for key in values:
            if section not in ("smoke", "dataset_defs") and key in KEY_SECTION and KEY_SECTION[key] != section:
                raise ConfigError(f"{where}: key {key!r} belongs in section {KEY_SECTION[key]!r}, not {section!r}")
    try:
        params = Params.model_validate({k: dict(v) for k, v in raw.items()})
    except ValidationError as exc:
        raise _explain(exc, where) from None
    if "smoke" in raw:
        apply_overrides(params, params.smoke, where=f"{where}: smoke")
    check_datasets(params, where)
    return params


RUN_KEYS = ("run_dir", "datasets", "report_dir")
"""Keys that belong to the whole run, never to one dataset's definition."""


def check_datasets(params: Params, where: str) -> None:
    """Every dataset named in ``datasets`` is defined; every definition names known keys with valid values."""
    for name, values in params.dataset_defs.items():
        if not re.fullmatch(r"[a-z0-9][a-z0-9_]*", name):
            raise ConfigError(f"{where}: dataset_defs.{name}: a dataset name is lower-case letters, digits and '_' (it names a folder)")
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: dataset_defs.{name}: expected a mapping of parameters")
        for key in values:
            if key in RUN_KEYS:
                raise ConfigError(f"{where}: dataset_defs.{name}.{key}: {key} belongs to the whole run, not to one dataset")
        apply_overrides(params, values, where=f"{where}: dataset_defs.{name}:")
    missing = [d for d in params.base.datasets if d not in params.dataset_defs]
    if missing:
        raise ConfigError(f"{where}: base.datasets names {missing}, not defined under dataset_defs ({sorted(params.dataset_defs)})")
    if len(set(params.base.datasets)) != len(params.base.datasets):
        raise ConfigError(f"{where}: base.datasets lists a dataset twice: {params.base.datasets}")


def dataset_params(params: Params, name: str, smoke: bool = False, overrides: Mapping[str, Any] | list[str] | None = None) -> Params:
    """One dataset's parameters: the file's sections, then the smoke profile, then its definition, then ``overrides``.

    ``params`` is the parameter file as loaded (no smoke, no overrides). The
    dataset's run folder is ``<run_dir>/<name>`` of the run (after the smoke
    profile and the overrides).
    """
    if name not in params.dataset_defs:
        raise ConfigError(f"dataset {name!r} is not defined under dataset_defs ({sorted(params.dataset_defs)})")
    run = apply_overrides(apply_smoke(params) if smoke else params, overrides)
    p = apply_overrides(apply_smoke(params) if smoke else params, params.dataset_defs[name], where=f"dataset_defs.{name}:")
    p = apply_overrides(p, overrides)
    return apply_overrides(p, {"run_dir": str(Path(run.base.run_dir) / name)})


def load_params(path: str | os.PathLike[str] | None = None) -> Params:
    """Read and validate a parameter file (default: params.yaml at the project root).

    Keys it leaves out take the model's defaults; unknown sections or keys and
    wrong types raise :class:`ConfigError` naming the file and the key.
    """
    p = Path(path) if path else params_path()
    raw = read_yaml(p, "the parameter file", ConfigError)
    return _validate(raw if raw is not None else {}, str(p))


def parse_overrides(overrides: Mapping[str, Any] | list[str]) -> list[tuple[str, Any]]:
    """``(key, value)`` pairs of overrides given as a mapping or as ``key=value`` strings (values parsed as YAML)."""
    if isinstance(overrides, Mapping):
        return list(overrides.items())
    items = []
    for text in overrides:
        if "=" not in text:
            raise ConfigError(f"override {text!r}: expected key=value")
        key, value = text.split("=", 1)
        items.append((key.strip(), yaml.safe_load(value)))
    return items


def apply_overrides(params: Params, overrides: Mapping[str, Any] | list[str] | None, where: str = "override") -> Params:
    """Return a copy of ``params`` with overrides applied and validated.

    ``overrides`` is a mapping or a list of ``"key=value"`` /
    ``"section.key=value"`` strings; values are parsed as YAML
    (``7`` -> int, ``true`` -> bool, ``[a, b]`` -> list), then checked by the model.
    """
    data = params.as_dict()
    for key, value in parse_overrides(overrides or []):
        section, name = key.split(".", 1) if "." in key else (KEY_SECTION.get(key), key)
        if section is None or section not in SECTIONS or KEY_SECTION.get(name) != section:
            raise ConfigError(f"{where} {key!r}: unknown parameter {key!r}")
        data[section][name] = value
    try:
        return Params.model_validate(data)
    except ValidationError as exc:
        raise _explain(exc, where) from None


def apply_smoke(params: Params) -> Params:
    """Apply the ``smoke`` profile (small, fast values) on top of ``params``."""
    return apply_overrides(params, params.smoke, where="smoke profile")


def stage_params(params: Params, stage: str) -> Section:
    """The flat, validated parameters of one stage (the base keys it reads + the sections it reads)."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; expected one of {STAGES}")
    base = params.section_values("base")
    values: dict[str, Any] = {k: base[k] for k in STAGE_BASE_KEYS[stage]}
    for section in STAGE_SECTIONS[stage]:
        values.update(params.section_values(section))
    return STAGE_MODELS[stage].model_validate(values)


def stage_values(params: Params, stage: str) -> dict[str, Any]:
    """A stage's parameters as a plain ``{key: value}`` dict, in params.yaml order (papermill's injection)."""
    return stage_params(params, stage).model_dump(by_alias=True)


def for_stage(stage: str, values: Mapping[str, Any], where: str = "stage parameters") -> Section:
    """Validate one stage's values (e.g. a notebook's parameters) into its model.

    Missing keys take their defaults; unknown keys and wrong types are errors naming the key.
    """
    if stage not in STAGE_MODELS:
        raise ConfigError(f"unknown stage {stage!r}; expected one of {STAGES}")
    try:
        return STAGE_MODELS[stage].model_validate(dict(values))
    except ValidationError as exc:
        raise _explain(exc, where) from None


def from_notebook(stage: str, namespace: Mapping[str, Any]) -> Section:
    """A stage's parameters from a notebook's variables (its parameters cell, after papermill's injection)."""
    keys = keys_of(STAGE_MODELS[stage])
    missing = [k for k in keys if k not in namespace]
    if missing:
        raise ConfigError(f"notebook of stage {stage}: parameters {missing} are not defined; the parameters cell must define them")
    return for_stage(stage, {k: namespace[k] for k in keys}, where=f"notebook of stage {stage}")
