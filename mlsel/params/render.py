"""Rendering the model: params.yaml and the notebooks' parameters cells (tests keep both equal to this)."""

from __future__ import annotations

from typing import Any

import yaml

from mlsel.params.files import apply_overrides, apply_smoke, dataset_params, stage_values
from mlsel.params.model import DATASET_DEFS, SECTIONS, SMOKE, STAGE_SECTIONS, Params, describe


def _yaml_value(value: Any) -> str:
    if value == "":
        return '""'
    return yaml.safe_dump(value, default_flow_style=True, width=10_000, sort_keys=False).strip().removesuffix("...").strip()


def render_params_yaml() -> str:
    """params.yaml as the model defines it: every key with its default and its description."""
    lines = [
        "# The parameters of the default run, rendered from mlsel/params/model.py (the one definition",
        "# of every parameter: default, type, allowed values, description): `python -m mlsel.params > params.yaml`.",
        "# `base` holds keys shared by stages (each stage is passed only those it reads); each other",
        "# section belongs to one stage. Every key is also the notebook parameter name (unique across",
        "# the file), so `mlsel run -p knn_k=7` or `-p train.knn_k=7`. A parameter file of your own",
        "# (`mlsel run --params my.yaml`) may list only the keys it changes. Paths are relative to this",
        "# folder. Every stage but the report runs once per dataset (dataset_defs, at the end).",
    ]
    for section, cls in SECTIONS.items():
        lines += ["", f"{section}:"]
        for key, value, doc in describe(cls):
            if key == "pools":
                lines.append(f"  {key}:{'':<25}# {doc}")
                lines += [f"    {pool}: {_yaml_value(models)}" for pool, models in value.items()]
                continue
            text = f"  {key}: {_yaml_value(value)}"
            lines.append(f"{text:<33}# {doc}" if len(text) < 33 else f"{text}   # {doc}")
    lines += ["", "# Small, fast values: the notebooks' own defaults (they run top to bottom as",
              "# they are) and the smoke runs in the tests.", "smoke:"]
    lines += [f"  {k}: {_yaml_value(v)}" for k, v in SMOKE.items()]
    lines += ["", "# The datasets (`base.datasets` picks which run): each sets only the parameters where it differs",
              "# from the sections above; `mlsel run` runs every stage per dataset into <run_dir>/<dataset>/.",
              "# Order: sections, then the smoke profile (--smoke), then the definition, then -p overrides.",
              "dataset_defs:"]
    for name, values in DATASET_DEFS.items():
        lines.append(f"  {name}:")
        for key, value in values.items():
            if key == "pools":
                lines.append(f"    {key}:")
                lines += [f"      {pool}: {_yaml_value(models)}" for pool, models in value.items()]
            else:
                lines.append(f"    {key}: {_yaml_value(value)}")
    return "\n".join(lines) + "\n"


def notebook_parameters_source(stage: str) -> str:
    """The parameters cell of a stage's notebook: each key with its smoke-profile value, type and description.

    The notebooks run top to bottom with these small values: the smoke profile
    of the first dataset (its run folder ``<smoke run_dir>/<dataset>``; the
    report notebook builds the page of that one dataset). papermill and
    ``mlsel run`` replace them. A test keeps every notebook's cell equal to this.
    """
    params = Params()
    first = params.base.datasets[0]
    if stage == "report":
        values = stage_values(apply_overrides(apply_smoke(params), {"datasets": [first]}), stage)
    else:
        values = stage_values(dataset_params(params, first, smoke=True), stage)
    docs = {key: doc for section in ("base", *STAGE_SECTIONS[stage]) for key, _, doc in describe(SECTIONS[section])}
    return "\n".join(f"{key}: {type(value).__name__} = {value!r}  # {docs[key]}" for key, value in values.items())
