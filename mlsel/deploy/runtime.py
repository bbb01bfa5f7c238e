"""The router runtime's selection rules on its model files, their agreement with our selectors, and exporting a run.

:func:`export_router_models` writes a run's fitted selectors as the router
runtime's ``knn_model.json`` / ``kmeans_model.json`` / ``svm_model.json``
(built by :mod:`mlsel.deploy.artifacts`, whose docstring says how exactly
each reproduces our selector) plus mlsel's ``manifest.json``, and checks
them with reference implementations of the runtime's selection rules
(``runtime_*_select``, upstream digest 2.2-2.4).
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Sequence

import numpy as np
import pandas as pd

import mlsel
from mlsel import CATEGORIES
from mlsel.data.outcomes import load_prepared, pool_matrix, split_masks
from mlsel.deploy.artifacts import ARTIFACT_BUILDERS
from mlsel.deploy.routing import ALGORITHMS
from mlsel.features import DEVICE, EMBED_BATCH_SIZE, features_for
from mlsel.paths import resolve_path, run_paths, update_manifest
from mlsel.selection.base import Selector
from mlsel.selection.classic import KNNSelector
from mlsel.selection.registry import load_selector

log = logging.getLogger(__name__)

ARTIFACT_FILES: dict[str, str] = {name: f"{name}_model.json" for name in ALGORITHMS}
"""The runtime's file name per algorithm."""


class IncompatibleArtifactError(ValueError):
    """A model file's feature layout (dimension, model names) does not match the run."""


# --------------------------------------------------------------------------- runtime rules


def _as_2d(x: np.ndarray) -> tuple[np.ndarray, bool]:
    arr = np.asarray(x, dtype=np.float64)
    return (arr[None, :], True) if arr.ndim == 1 else (arr, False)


def runtime_knn_select(artifact: dict[str, Any], x: np.ndarray) -> str | np.ndarray:
    """The router runtime's KNN rule (``ml-binding/src/knn.rs``, digest 2.2) on ``x`` (d,) or (n, d).

    k nearest stored rows by L2; each votes for its label with
    ``0.9*max(q, 0.01) + 0.1*(1 - (lat - min_lat)/max(max_lat - min_lat, 1))``
    (latencies in ns, min/max over the whole artifact); the highest vote sum
    wins. Two orders the runtime leaves unspecified are fixed here: among
    rows at exactly equal distance the lowest row index is nearer (the
    runtime's BallTree order), and exact vote ties go to the label seen first
    in row order (the runtime's HashMap order).
    """
    X, single = _as_2d(x)
    E = np.asarray(artifact["embeddings"], dtype=np.float64)
    if X.shape[1] != E.shape[1]:
        raise IncompatibleArtifactError(f"knn: query dimension {X.shape[1]} != artifact dimension {E.shape[1]}")
    labels = np.asarray(artifact["labels"], dtype=object)
    n = len(labels)
    q = np.asarray(artifact.get("qualities") or [0.5] * n, dtype=np.float64)
    lat = np.asarray(artifact.get("latencies") or [], dtype=np.float64)
    if len(lat):
        lo, hi = lat.min(), lat.max()
        speed = 1.0 - (lat - lo) / max(hi - lo, 1.0)
    else:
        speed = np.full(n, 0.5)  # the runtime's "median" default normalises to 0.5
    vote = 0.9 * np.maximum(q, 0.01) + 0.1 * speed
    k = min(int(artifact["k"]), n)
    names = list(dict.fromkeys(labels))
    pos = {nm: j for j, nm in enumerate(names)}
    label_idx = np.asarray([pos[lb] for lb in labels])
    e2 = (E * E).sum(axis=1)
    out = []
    for start in range(0, len(X), 256):
        xb = X[start:start + 256]
        d2 = e2[None, :] - 2.0 * xb @ E.T + (xb * xb).sum(axis=1)[:, None]
        # Lowest row index first among equal distances: duplicate feature rows (e.g. texts that an
        # uncased embedder maps to one vector) tie exactly, and linfa's BallTree leaves their order unspecified.
        nn = np.argsort(d2, axis=1, kind="stable")[:, :k]
        for row in nn:
            sums = np.bincount(label_idx[row], weights=vote[row], minlength=len(names))
            out.append(names[int(np.argmax(sums))])
    res = np.asarray(out, dtype=object)
    return res[0] if single else res


def runtime_kmeans_select(artifact: dict[str, Any], x: np.ndarray) -> str | np.ndarray:
    """The runtime's KMeans rule: nearest centroid by squared L2 (lowest index on ties) -> ``cluster_models[c]``."""
    X, single = _as_2d(x)
    C = np.asarray(artifact["centroids"], dtype=np.float64)
    if X.shape[1] != C.shape[1]:
        raise IncompatibleArtifactError(f"kmeans: query dimension {X.shape[1]} != artifact dimension {C.shape[1]}")
    d2 = ((X[:, None, :] - C[None, :, :]) ** 2).sum(axis=2)
    res = np.asarray(artifact["cluster_models"], dtype=object)[d2.argmin(axis=1)]
    return res[0] if single else res


def runtime_svm_select(artifact: dict[str, Any], x: np.ndarray) -> str | np.ndarray:
    """The runtime's SVM rule (digest 2.4): the query is L2-normalised; each class scores
    ``sum_sv alpha * exp(-gamma * ||x_hat - sv||^2) - rho`` (RBF; per-classifier gamma,
    else the top-level one) or ``weights . x_hat - rho`` (``linear_classifiers``); argmax,
    first classifier on ties."""
    X, single = _as_2d(x)
    Xh = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    names, scores = [], []
    for clf in artifact.get("linear_classifiers") or []:
        w = np.asarray(clf["weights"], dtype=np.float64)
        if w.shape[0] != X.shape[1]:
            raise IncompatibleArtifactError(f"svm: query dimension {X.shape[1]} != artifact dimension {w.shape[0]}")
        names.append(clf["model_name"])
        scores.append(Xh @ w - float(clf["rho"]))
    if not names:
        for clf in artifact.get("rbf_classifiers") or []:
            sv = np.asarray(clf["support_vectors"], dtype=np.float64)
            if sv.shape[1] != X.shape[1]:
                raise IncompatibleArtifactError(f"svm: query dimension {X.shape[1]} != artifact dimension {sv.shape[1]}")
            gamma = float(clf.get("gamma", artifact.get("gamma", 1.0)))
            d2 = (Xh * Xh).sum(axis=1)[:, None] - 2.0 * Xh @ sv.T + (sv * sv).sum(axis=1)[None, :]
            names.append(clf["model_name"])
            scores.append(np.exp(-gamma * np.maximum(d2, 0.0)) @ np.asarray(clf["alpha"], dtype=np.float64) - float(clf["rho"]))
    if not names:
        raise IncompatibleArtifactError("svm: the artifact has no classifiers")
    res = np.asarray(names, dtype=object)[np.vstack(scores).argmax(axis=0)]
    return res[0] if single else res


RUNTIME_SELECT = {"knn": runtime_knn_select, "kmeans": runtime_kmeans_select, "svm": runtime_svm_select}


def agreement(artifact: dict[str, Any], sel: Selector, X: np.ndarray, candidates: Sequence[str] | None = None) -> dict[str, Any]:
    """Share of queries ``X`` (n, d) where the runtime rule on ``artifact`` picks the Python selector's model."""
    ours = sel.predict(X, candidates=candidates)
    theirs = RUNTIME_SELECT[artifact["algorithm"]](artifact, X)
    same = ours == theirs
    out = {"n_queries": int(len(X)), "n_agree": int(same.sum()), "rate": float(same.mean()) if len(X) else float("nan")}
    if isinstance(sel, KNNSelector):
        tie = knn_boundary_ties(sel, X)
        out["n_boundary_ties"] = int(tie.sum())
        out["n_disagree_outside_ties"] = int((~same & ~tie).sum())
    return out


def knn_boundary_ties(sel: KNNSelector, X: np.ndarray) -> np.ndarray:
    """(n,) bool: the k-th and (k+1)-th nearest training queries are at exactly the same distance.

    There the k nearest queries are not unique (duplicate feature rows, e.g. texts an
    uncased embedder maps to one vector); scikit-learn and the runtime may each take
    either, so a disagreement on such a query is a tie, not an encoding error.
    """
    k = int(sel.nn_.n_neighbors)
    n_fit = int(sel.nn_.n_samples_fit_)
    if k >= n_fit:
        return np.zeros(len(X), dtype=bool)
    dist, _ = sel.nn_.kneighbors(np.asarray(X, dtype=np.float32), n_neighbors=k + 1)
    return dist[:, k - 1] == dist[:, k]


# --------------------------------------------------------------------------- export

RUNTIME_RULES = {
    "knn": "exact up to exact distance ties at the k-th neighbour (n_boundary_ties): one row per (training query, model), qualities = 0.01 + 0.99*utility + tie_eps, latencies 0 ns, k = k_queries*n_models",
    "kmeans": "exact: centroids and the cluster's argmax mean-utility model",
    "svm": "approximate: per-class kernel vote over the real support vectors (alpha = sum |dual coef|), query L2-normalised; agreement measured",
}
"""How exactly each exported file reproduces the Python selector (written to the export manifest)."""


def _merge_settings(manifest: dict[str, Any], smanifest: dict[str, Any], folder: Any) -> None:
    """Copy a selector's feature settings into the export manifest; selectors of one pool must agree."""
    for k in ("embedder", "onehot_weight", "data_hash", "seed"):
        prev = manifest.get(k)
        if prev is not None and prev != smanifest[k]:
            raise ValueError(f"{folder}: selectors disagree on {k} ({prev!r} vs {smanifest[k]!r}); rerun train")
        manifest[k] = smanifest[k]
    manifest["models"] = list(smanifest["models"])
    manifest["feature_dim"] = int(smanifest["feature_dim"])


def export_router_models(run_dir: str, pool: str, export_dir: str = "", embed_batch_size: int = EMBED_BATCH_SIZE, device: str = DEVICE) -> dict[str, Any]:
    """Write the run's fitted selectors of ``pool`` in the router runtime's file layout.

    Writes ``knn_model.json``, ``kmeans_model.json``, ``svm_model.json`` (those
    the train stage fitted) and mlsel's ``manifest.json`` into ``export_dir``
    (empty: ``<run_dir>/router_models``). The manifest records the embedder,
    feature dimension, models, data hash, seed, onehot weight, category
    order, each file's SHA-256 and the measured agreement between the runtime
    rule on the written file and the Python selector on the pool's held-out
    queries (``agreement[<alg>]["rate"]`` in [0, 1]).

    Returns the manifest.
    """
    paths = run_paths(run_dir)
    out_dir = resolve_path(export_dir) if export_dir else paths["root"] / "router_models"
    folder = paths["models"] / pool
    found = [a for a in ALGORITHMS if (folder / f"{a}.manifest.json").is_file()]
    if not found:
        raise FileNotFoundError(f"{folder}: no fitted selectors for pool {pool!r}; run the train stage first")
    queries, outcomes = load_prepared(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"pool": pool, "categories": list(CATEGORIES), "package_version": mlsel.__version__,
                                "files": {}, "agreement": {}, "selectors": {}}
    feats: dict[tuple[str, float], np.ndarray] = {}
    for name in found:
        sel, smanifest = load_selector(folder, name)
        matrix = pool_matrix(queries, outcomes, list(smanifest["models"]))
        _, test = split_masks(queries, matrix)
        key = (smanifest["embedder"], float(smanifest["onehot_weight"]))
        if key not in feats:
            feats[key] = features_for(matrix.subset(test), key[0], key[1], embed_batch_size, device)
        _merge_settings(manifest, smanifest, folder)
        path = out_dir / ARTIFACT_FILES[name]
        text = json.dumps(ARTIFACT_BUILDERS[name](sel))
        path.write_text(text)
        # Agreement is measured on the file as written and read back.
        reread = json.loads(path.read_text())
        manifest["files"][ARTIFACT_FILES[name]] = hashlib.sha256(text.encode()).hexdigest()
        manifest["agreement"][name] = agreement(reread, sel, feats[key])
        manifest["selectors"][name] = {"params": smanifest["params"], "n_train_queries": smanifest.get("n_train_queries")}
        log.info("exported %s: runtime agreement %.4f on %d test queries", path, manifest["agreement"][name]["rate"], len(feats[key]))
    if "svm" in manifest["agreement"]:
        manifest["svm_agreement_rate"] = manifest["agreement"]["svm"]["rate"]
    manifest["runtime_rules"] = dict(RUNTIME_RULES)
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    update_manifest(run_dir, "router_export", {"params": {"pool": pool, "export_dir": str(out_dir)}, "agreement": manifest["agreement"],
                                               "data_hash": manifest.get("data_hash")})
    manifest["export_dir"] = str(out_dir)
    return manifest


def export_pools(run_dir: str, pools: dict[str, list[str]], export_pools: list[str], export_dir: str = "",
                 embed_batch_size: int = EMBED_BATCH_SIZE, device: str = DEVICE) -> pd.DataFrame:
    """Export the fitted selectors of each pool in ``export_pools`` (see :func:`export_router_models`).

    Files go to ``<export_dir>/<pool>/`` (empty ``export_dir``:
    ``<run_dir>/router_models/<pool>/``). Returns one row per (pool,
    algorithm) with the measured agreement rate between the runtime rule on
    the written file and the Python selector on the pool's held-out queries.
    """
    rows = []
    base = resolve_path(export_dir) if export_dir else run_paths(run_dir)["root"] / "router_models"
    for pool in export_pools:
        if pool not in pools:
            raise KeyError(f"export_pools names {pool!r}, which is not a pool of this run ({sorted(pools)})")
        manifest = export_router_models(run_dir, pool, str(base / pool), embed_batch_size, device)
        for alg, agree in manifest["agreement"].items():
            rows.append({"pool": pool, "algorithm": alg, "agreement_rate": agree["rate"], "folder": str(base / pool)})
    return pd.DataFrame(rows, columns=["pool", "algorithm", "agreement_rate", "folder"])
