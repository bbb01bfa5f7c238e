"""The named search spaces, the parameter combinations they expand to, and their parameter objects."""

from __future__ import annotations

import itertools
import logging
from typing import Any, Mapping, get_origin

from mlsel.params import STAGE_MODELS, ConfigError, Section, for_stage

log = logging.getLogger(__name__)

GRIDS: dict[str, dict[str, Any]] = {
    # The main job: <= ~4 minutes on 2 cores for MMLU-Pro (9.3k training queries), both pools.
    "default": {
        "onehot_weight": [1.0],
        "quality_weight": [0.5, 0.9, 1.0],  # searched only where latency was measured and is not the cost axis
        "selectors": {
            "knn": {"onehot_weight": [0.0, 1.0], "knn_k": [50, 200]},
            "kmeans": {"kmeans_num_clusters": [8, 16]},
            "svm": {"svm_kernel": ["rbf"], "svm_gamma": [1.0], "svm_c": [1.0]},
            # k, shrink and weights are prediction-time parameters: one fit per fold serves them all.
            "knn_reg": {"onehot_weight": [0.5, 1.0], "knn_reg_k": [100, 200, 400], "knn_reg_weights": ["distance"], "knn_reg_shrink": [0.0, 100.0]},
            "mlp": {"mlp_hidden": [128], "mlp_alpha": [10.0]},
            "logreg": {"logreg_c": [0.01, 0.1]},
            # top_p and alpha are prediction-time parameters.
            "scoreboard": {"scoreboard_clusters": [20, 60], "scoreboard_top_p": [1, 4], "scoreboard_alpha": [1.0]},
            # Prediction-time parameters; z = inf is the static choice itself (lookup or best single), z = 0 with
            # shrink = 0 and base global a plain KNN regression (base category: ties keep the category's model).
            "guarded": {"onehot_weight": [1.0], "guard_k": [50, 200], "guard_z": [0.0, 1.0, float("inf")],
                        "guard_shrink": [0.0, 200.0], "guard_base": ["category", "global"]},
        },
    },
    # Smoke runs: seconds on 600 queries.
    "small": {
        "onehot_weight": [0.5, 1.0],
        "quality_weight": [0.9],
        "selectors": {
            "knn": {"knn_k": [5, 20]},
            "kmeans": {"kmeans_num_clusters": [4, 8]},
            "svm": {"onehot_weight": [1.0], "svm_c": [1.0]},
            "knn_reg": {"knn_reg_k": [10, 30]},
            "mlp": {"mlp_hidden": [32], "mlp_alpha": [1e-2]},
            "logreg": {"logreg_c": [1.0]},
            "scoreboard": {"scoreboard_clusters": [8], "scoreboard_top_p": [1, 2]},
            "guarded": {"onehot_weight": [1.0], "guard_k": [10, 30], "guard_z": [0.0, float("inf")]},
        },
    },
}
"""Named search spaces. ``onehot_weight``/``quality_weight`` at the top are shared
by all selectors unless a selector's own grid lists them; the embedders come
from ``tune_embedders`` (default: the train stage's ``embedder``). A value of a
list-typed parameter may be written as a scalar (``mlp_hidden: [32]`` means
one hidden layer of 32): :func:`combo_params` wraps it."""

HEATMAP_PARAM = {
    "knn": "knn_k", "kmeans": "kmeans_num_clusters", "svm": "svm_c", "knn_reg": "knn_reg_k",
    "mlp": "mlp_alpha", "logreg": "logreg_c", "scoreboard": "scoreboard_clusters", "guarded": "guard_k",
}
"""The parameter each selector's heatmap row varies (against ``onehot_weight``)."""

CORE_KEYS = ("knn_k", "kmeans_num_clusters", "svm_kernel", "svm_gamma", "svm_c")
FEATURE_KEYS = ("embedder", "onehot_weight")

_TUNE_FIELDS = STAGE_MODELS["tune"].model_fields


def check_grid(grid_name: str) -> None:
    """Raise :class:`~mlsel.params.ConfigError` unless ``grid_name`` is one of :data:`GRIDS`."""
    if grid_name not in GRIDS:
        raise ConfigError(f"unknown tune_grid {grid_name!r}; expected one of {sorted(GRIDS)}")


def combos(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The cartesian product of a ``{key: [values]}`` grid, in key order (last key varies fastest)."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def selector_grid(grid_name: str, name: str, embedders: list[str], has_latency: bool, quality_weight: float,
                  latency_cost: bool = False) -> list[dict[str, Any]]:
    """All parameter combinations of one selector in a named grid (feature keys included).

    ``quality_weight`` is the user's value, the only one used when no latency was measured. Where latency is the pool's
    cost axis (``latency_cost``) the grid's ``quality_weight`` is 1.0 alone: the routers pay ``cost_lambda`` x latency,
    so latency is not also put in their target (counted twice).
    """
    check_grid(grid_name)
    spec = GRIDS[grid_name]
    own = dict(spec["selectors"][name]) if name in spec["selectors"] else {}
    if name not in spec["selectors"]:
        log.warning("tune grid %r has no entry for %r; only its configured values are evaluated", grid_name, name)
    grid: dict[str, list[Any]] = {"embedder": list(embedders)}
    grid["onehot_weight"] = list(own.pop("onehot_weight", spec["onehot_weight"]))
    qw = own.pop("quality_weight", spec["quality_weight"])
    grid["quality_weight"] = [1.0] if has_latency and latency_cost else (list(qw) if has_latency else [quality_weight])
    grid.update({k: list(v) for k, v in own.items()})
    return combos(grid)


def params_text(combo: dict[str, Any]) -> str:
    """``key=value; ...``: a combination as one compact string."""
    return "; ".join(f"{k}={v}" for k, v in combo.items())


def _model_value(key: str, value: Any) -> Any:
    if key in _TUNE_FIELDS and get_origin(_TUNE_FIELDS[key].annotation) is list and not isinstance(value, (list, tuple)):
        return [value]
    return value


def combo_params(values: Mapping[str, Any], combo: Mapping[str, Any]) -> Section:
    """The validated tune-stage parameter object: ``values`` (``p.model_dump()``) with one combination's values.

    Plain dicts cross the process boundary to the joblib workers; each
    worker validates its own object here.
    """
    update = {k: _model_value(k, v) for k, v in combo.items()}
    return for_stage("tune", {**values, **update}, where="tune grid combination")
