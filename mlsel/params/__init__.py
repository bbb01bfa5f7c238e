"""The parameter model: the one definition of every parameter (default, type, allowed values, doc).

Each ``params.yaml`` section is a pydantic model below; a field's default, type
and description are the only place that parameter is defined. ``params.yaml``
is rendered from these models (:func:`render_params_yaml`; a test keeps the
committed file equal to it), the notebooks' parameters cells are checked
against them, the CLI's ``-p key=value`` is validated by them, and the stage
functions, selectors and routers read their values as attributes of a
validated model, never by string with a fallback.

A parameter file may list only the keys it changes; every key it names must
exist, and wrong types are errors naming the file and the key. Key names are
unique across sections, so an override can name a key alone (``knn_k=7``) or
with its section (``train.knn_k=7``).

Modules: :mod:`~mlsel.params.model` (the sections and stage models),
:mod:`~mlsel.params.files` (files, overrides, stage values),
:mod:`~mlsel.params.render` (params.yaml and the notebooks' parameters cells).
"""

from mlsel.params.files import (
    ConfigError,
    apply_overrides,
    apply_smoke,
    dataset_params,
    for_stage,
    from_notebook,
    load_params,
    parse_overrides,
    stage_params,
    stage_values,
)
from mlsel.params.model import (
    ROUTER_NAMES,
    SECTIONS,
    SELECTOR_NAMES,
    SMOKE,
    STAGE_MODELS,
    STAGE_SECTIONS,
    STAGES,
    BaseParams,
    BenchmarkParams,
    EvaluateParams,
    Params,
    PrepareParams,
    ReportParams,
    Section,
    TrainParams,
    TuneParams,
    default,
    describe,
    keys_of,
)
from mlsel.params.render import notebook_parameters_source, render_params_yaml

__all__ = [
    "BaseParams", "BenchmarkParams", "ConfigError", "EvaluateParams", "Params", "PrepareParams", "ROUTER_NAMES", "ReportParams",
    "SECTIONS", "SELECTOR_NAMES", "SMOKE", "STAGES", "STAGE_MODELS", "STAGE_SECTIONS", "Section", "TrainParams", "TuneParams",
    "apply_overrides", "apply_smoke", "dataset_params", "default", "describe", "for_stage", "from_notebook", "keys_of", "load_params",
    "notebook_parameters_source", "parse_overrides", "render_params_yaml", "stage_params", "stage_values",
]
