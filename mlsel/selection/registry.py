"""The one factory: selectors and cost-aware routers by name, and their saved form."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Any

import joblib

import mlsel
from mlsel.files import write_atomic
from mlsel.params import for_stage
from mlsel.selection.base import Selector
from mlsel.selection.classic import KMeansSelector, KNNSelector, SVMSelector
from mlsel.selection.cost_aware import CostAwareRouter, KNNRegressorSelector, LogRegSelector, MLPSelector
from mlsel.selection.guarded import GuardedRouter
from mlsel.selection.scoreboard import ClusterScoreboardSelector

SELECTORS: dict[str, type[Selector]] = {"knn": KNNSelector, "kmeans": KMeansSelector, "svm": SVMSelector}
"""The reference's three algorithms by their config ``algorithm.type`` name."""

ROUTERS: dict[str, type[CostAwareRouter]] = {
    "knn_reg": KNNRegressorSelector,
    "mlp": MLPSelector,
    "logreg": LogRegSelector,
    "scoreboard": ClusterScoreboardSelector,
    "guarded": GuardedRouter,
}
"""Router names (as in ``selector_names`` / ``tune_router_names``) and their classes."""


ROUTER_PARAM_KEYS: dict[str, tuple[str, ...]] = {
    "knn_reg": ("knn_reg_k", "knn_reg_weights", "knn_reg_shrink"),
    "mlp": ("mlp_hidden", "mlp_alpha"),
    "logreg": ("logreg_c",),
    "scoreboard": ("scoreboard_clusters", "scoreboard_alpha", "scoreboard_top_p"),
    "guarded": ("guard_k", "guard_z", "guard_shrink", "guard_base", "guard_novelty"),
}
"""The params.yaml keys each router reads (besides quality_weight, cost_lambda, seed)."""

LABELS: dict[str, str] = {"knn": "KNN Selection", "kmeans": "KMEANS Selection", "svm": "SVM Selection"}
"""The reference's table labels of its three selectors."""


def label(name: str, tuned: bool = False) -> str:
    """The results-table label of a selector: ``KNN Selection``, or ``KNN (tuned)`` after tuning."""
    if tuned:
        return f"{name.upper()} (tuned)"
    return LABELS.get(name, f"{name.upper()} Selection")


def make_selector(name: str, p: Any) -> Selector:
    """Build a selector or a cost-aware router by name from a parameter object.

    ``p`` is a validated stage parameter model (:mod:`mlsel.params`) or any
    object with the same attributes: every selector reads ``quality_weight``
    and ``seed``; ``knn`` reads ``knn_k``; ``kmeans`` ``kmeans_num_clusters``;
    ``svm`` ``svm_kernel``, ``svm_gamma``, ``svm_c``; knn and svm ``store_decimals``; the routers read
    ``cost_lambda`` and their keys in :data:`ROUTER_PARAM_KEYS`. A missing
    attribute is an error, never a silent default.
    """
    if name == "knn":
        return KNNSelector(k=p.knn_k, quality_weight=p.quality_weight, store_decimals=p.store_decimals)
    if name == "kmeans":
        return KMeansSelector(num_clusters=p.kmeans_num_clusters, quality_weight=p.quality_weight, random_state=p.seed)
    if name == "svm":
        return SVMSelector(kernel=p.svm_kernel, gamma=p.svm_gamma, C=float(p.svm_c), quality_weight=p.quality_weight,
                           random_state=p.seed, store_decimals=p.store_decimals)
    if name in ROUTERS:
        return _make_router(name, p)
    raise ValueError(f"unknown selector {name!r}; known: {sorted(SELECTORS) + sorted(ROUTERS)}")


def _make_router(name: str, p: Any) -> Selector:
    common = {"quality_weight": p.quality_weight, "cost_lambda": float(p.cost_lambda)}
    if name == "knn_reg":
        return KNNRegressorSelector(k=p.knn_reg_k, weights=p.knn_reg_weights, shrink=float(p.knn_reg_shrink), **common)
    if name == "mlp":
        return MLPSelector(hidden=tuple(p.mlp_hidden), alpha=float(p.mlp_alpha), random_state=p.seed, **common)
    if name == "logreg":
        return LogRegSelector(C=float(p.logreg_c), **common)
    if name == "guarded":
        return GuardedRouter(k=p.guard_k, z=float(p.guard_z), shrink=float(p.guard_shrink), base=p.guard_base, novelty=float(p.guard_novelty),
                             min_queries=p.lookup_min_queries, **common)
    return ClusterScoreboardSelector(num_clusters=p.scoreboard_clusters, alpha=float(p.scoreboard_alpha), top_p=p.scoreboard_top_p,
                                     random_state=p.seed, **common)


def selector_params(**values: Any) -> Any:
    """A full parameter object for :func:`make_selector`: the model's defaults, with ``values`` replacing some."""
    return for_stage("tune", values, where="selector parameters")


class UnverifiedSelectorError(ValueError):
    """A saved selector file whose SHA-256 is not the one recorded when it was saved (or none was recorded)."""


def save_selector(selector: Selector, folder: str | os.PathLike[str], name: str, manifest: dict[str, Any]) -> Path:
    """Write ``<name>.joblib`` and ``<name>.manifest.json`` into ``folder``.

    The manifest records what a loader must match: embedder id, feature
    dimension, models, parameters, data hash, seed, package version, and the
    SHA-256 of the ``.joblib`` file (``joblib_sha256``), which
    :func:`load_selector` checks before unpickling. Both files are written
    atomically (:func:`mlsel.files.write_atomic`).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.joblib"
    buf = io.BytesIO()
    joblib.dump(selector, buf)
    data = buf.getvalue()
    full = {
        "selector": name,
        "class": type(selector).__name__,
        "params": {k: v for k, v in selector.get_params().items()},
        "models": list(selector.models_),
        "feature_dim": int(selector.n_features_in_),
        "package_version": mlsel.__version__,
        **manifest,
        "joblib_sha256": hashlib.sha256(data).hexdigest(),
    }
    write_atomic(path, data)
    write_atomic(folder / f"{name}.manifest.json", json.dumps(full, indent=2, sort_keys=True, default=str) + "\n")
    return path


def load_selector(folder: str | os.PathLike[str], name: str) -> tuple[Selector, dict[str, Any]]:
    """Load a selector saved by :func:`save_selector` and its manifest.

    The ``.joblib`` file is read once and unpickled only if its SHA-256 equals
    the ``joblib_sha256`` its manifest recorded; otherwise (or when the
    manifest records none, as before mlsel recorded it) an
    :class:`UnverifiedSelectorError` names the file and both digests, and
    nothing is unpickled.
    """
    folder = Path(folder)
    mpath = folder / f"{name}.manifest.json"
    if not mpath.is_file():
        raise FileNotFoundError(f"{mpath}: no selector manifest; run the train stage first")
    manifest = json.loads(mpath.read_text())
    path = folder / f"{name}.joblib"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no saved selector beside its manifest {mpath}; run the train stage again")
    data = path.read_bytes()
    got, expected = hashlib.sha256(data).hexdigest(), manifest.get("joblib_sha256")
    if got != expected:
        recorded = f"the recorded {expected}" if expected else "no recorded digest (joblib_sha256)"
        raise UnverifiedSelectorError(f"{path}: SHA-256 {got} does not match {recorded} in {mpath}; "
                                      "refusing to unpickle it (run the train stage again)")
    selector = joblib.load(io.BytesIO(data))
    if list(selector.models_) != manifest["models"] or selector.n_features_in_ != manifest["feature_dim"]:
        raise ValueError(f"{mpath}: manifest does not match the saved selector")
    return selector, manifest
