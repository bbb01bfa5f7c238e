"""The router runtime's selection rules on its model files, their agreement with our selectors, and exporting a run.

:func:`export_router_models` writes a run's fitted selectors as the router
runtime's ``knn_model.json`` / ``kmeans_model.json`` / ``svm_model.json``
(built by :mod:`mlsel.deploy.artifacts`, whose docstring says how exactly
each reproduces our selector), the runtime config snippet they need and
mlsel's ``manifest.json``, and scores them with reference implementations of
the runtime's selection rules (``runtime_*_select``, upstream digest 2.2-2.4)
on the held-out queries: agreement with the Python selector and quality.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

import mlsel
from mlsel import CATEGORIES
from mlsel.data.outcomes import load_prepared, pool_matrix, split_masks
from mlsel.deploy.artifacts import (
    ARTIFACT_BUILDERS,
    RUNTIME_CATEGORIES,
    RUNTIME_SLOT,
    check_exportable,
    runtime_onehot_order,
    to_runtime_layout,
)
from mlsel.deploy.routing_config import ALGORITHMS
from mlsel.features import EmbedSettings, features_for
from mlsel.manifest import update_manifest
from mlsel.paths import resolve_path, run_paths
from mlsel.selection.base import Selector
from mlsel.selection.classic import KNNSelector, distinct_aug
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
    Eu, inverse = distinct_aug(E)  # equal rows, equal distances on every CPU (see distinct_rows)
    e2 = (Eu * Eu).sum(axis=1)
    out = []
    for start in range(0, len(X), 256):
        xb = X[start:start + 256]
        d2 = (e2[None, :] - 2.0 * xb @ Eu.T + (xb * xb).sum(axis=1)[:, None])[:, inverse]
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


def agreement(artifact: dict[str, Any], sel: Selector, X: np.ndarray, candidates: Sequence[str] | None = None,
              theirs: np.ndarray | None = None, ours: np.ndarray | None = None) -> dict[str, Any]:
    """Share of queries ``X`` (n, d) where the runtime rule on ``artifact`` picks the Python selector's model.

    ``theirs`` / ``ours``: the runtime rule's / the selector's choices on the same queries when already
    computed (the export computes the runtime's on the queries' features in the runtime's one-hot order).
    """
    if ours is None:
        ours = sel.predict(X, candidates=candidates)
    if theirs is None:
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
    uncased embedder maps to one vector); the selector and the runtime reference rule take
    the lower row index, while the real runtime's order there is unspecified, so a
    disagreement on such a query is a tie, not an encoding error.
    """
    k = int(sel.k_)
    if k >= len(sel.aug_):
        return np.zeros(len(X), dtype=bool)
    dist, _ = sel.kneighbors(X, n_neighbors=k + 1)
    return dist[:, k - 1] == dist[:, k]


# --------------------------------------------------------------------------- export

RUNTIME_RULES = {
    "knn": "exact up to exact distance ties at the k-th neighbour (n_boundary_ties): one row per (training query, model), qualities = 0.01 + 0.99*utility + tie_eps, latencies 0 ns, k = k_queries*n_models",
    "kmeans": "exact: centroids and the cluster's argmax mean-utility model",
    "svm": "exact: one-vs-rest on L2-normalised features; per class its support vectors, signed coefficients (alpha) and rho = -intercept",
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


RUNTIME_CONFIG_FILE = "runtime_config.yaml"
"""The router config snippet written beside the model files."""

EXPORT_COLUMNS = ["pool", "algorithm", "file", "rule", "size_mb", "n_test", "agreement_rate", "selector_quality", "runtime_quality", "folder"]
"""One row per exported file: :func:`export_pools`'s table (``tables/router_export.csv``)."""


def _chosen_quality(matrix: Any, choices: np.ndarray) -> float:
    """Mean held-out quality of the chosen models (one name per query of ``matrix``)."""
    col = {m: j for j, m in enumerate(matrix.models)}
    j = np.asarray([col[c] for c in choices], dtype=np.int64)
    return float(np.asarray(matrix.quality)[np.arange(len(j)), j].mean()) if len(j) else float("nan")


def runtime_config_text(manifest: dict[str, Any], out_dir: Any, params: dict[str, dict[str, Any]], k_rows: int | None) -> str:
    """The router config snippet the exported files need (digest 2.6 key names), as YAML text."""
    import yaml

    ml: dict[str, Any] = {"enabled": True, "models_path": str(out_dir), "embedding_model": manifest["embedder"],
                          "embedding_dim": int(manifest["feature_dim"]) - len(CATEGORIES)}
    if "knn" in params:
        ml["knn"] = {"k": int(k_rows)}
    if "kmeans" in params:
        ml["kmeans"] = {"num_clusters": int(params["kmeans"]["num_clusters"])}
    if "svm" in params:
        ml["svm"] = {"kernel": params["svm"]["kernel"], "gamma": float(params["svm"]["gamma"])}
    slots = manifest.get("category_slots", {})
    head = (f"# Router runtime settings for the model files in {out_dir} (mlsel {manifest['package_version']}, pool {manifest['pool']}).\n"
            "# Merge under the router's config. The runtime must embed a query with the same embedder (L2-normalised,\n"
            f"# {ml['embedding_dim']} dims) and append its {len(manifest['categories'])}-category one-hot with weight 1, in its order:\n"
            f"# {', '.join(manifest['categories'])}.\n"
            + "".join(f"# Queries of category {c!r} (no runtime slot) were trained in the {s!r} slot: the router must report them as {s!r}.\n"
                      for c, s in slots.items())
            + "# knn.k counts stored rows: the selector's k training queries times the number of models.\n")
    return head + yaml.safe_dump({"global": {"router": {"model_selection": {"ml": ml}}}}, sort_keys=False)


def export_router_models(run_dir: str, pool: str, export_dir: str = "", embed: EmbedSettings = EmbedSettings(),
                         source: Path | None = None, names: Sequence[str] | None = None, record: str = "router_export") -> dict[str, Any]:
    """Write the run's fitted selectors of ``pool`` in the router runtime's file layout.

    ``source``: the folder of saved selectors (default: the train stage's ``<run_dir>/models/<pool>``; the ship stage
    passes the tuned ones, ``<run_dir>/tune/models/<pool>``); ``names``: only these of them; ``record``: the run
    manifest's entry for the export.

    Writes ``knn_model.json``, ``kmeans_model.json``, ``svm_model.json`` (those
    the train stage fitted), the runtime config snippet
    (``runtime_config.yaml``) and mlsel's ``manifest.json`` into
    ``export_dir`` (empty: ``<run_dir>/router_models``), with the one-hot
    columns in the runtime's category order. A selector whose features the
    runtime cannot reproduce is refused
    (:class:`mlsel.deploy.artifacts.NotExportableError`). The manifest
    records the embedder, feature dimension, models, data hash, seed, onehot
    weight, category order, each file's SHA-256 and size, and, on the pool's
    held-out queries, the agreement between the runtime rule on the written
    file (read back) and the Python selector (``agreement[<alg>]["rate"]`` in
    [0, 1]) with both one's mean quality (``selector_quality``,
    ``runtime_quality``); ``embed`` says how those queries are embedded.

    Returns the manifest.
    """
    paths = run_paths(run_dir)
    out_dir = resolve_path(export_dir) if export_dir else paths["root"] / "router_models"
    folder = source if source is not None else paths["models"] / pool
    found = [a for a in ALGORITHMS if (folder / f"{a}.manifest.json").is_file() and (names is None or a in names)]
    if not found:
        raise FileNotFoundError(f"{folder}: no fitted selectors for pool {pool!r}; run the train stage first")
    loaded = {name: load_selector(folder, name) for name in found}
    for name, (sel, smanifest) in loaded.items():
        check_exportable(name, sel, smanifest["onehot_weight"], where=str(folder / f"{name}.manifest.json"))
    queries, outcomes = load_prepared(run_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    order = runtime_onehot_order(CATEGORIES)
    manifest: dict[str, Any] = {"pool": pool, "categories": list(RUNTIME_CATEGORIES), "package_version": mlsel.__version__,
                                "category_slots": {c: s for c, s in RUNTIME_SLOT.items() if c != s},
                                "files": {}, "sizes": {}, "agreement": {}, "selectors": {}}
    feats: dict[tuple[str, float], np.ndarray] = {}
    runtime_feats: dict[tuple[str, float], np.ndarray] = {}
    params: dict[str, dict[str, Any]] = {}
    k_rows = None
    for name, (sel, smanifest) in loaded.items():
        matrix = pool_matrix(queries, outcomes, list(smanifest["models"]))
        _, test = split_masks(queries, matrix)
        held_out = matrix.subset(test)
        key = (smanifest["embedder"], float(smanifest["onehot_weight"]))
        if key not in feats:
            feats[key] = features_for(held_out, key[0], key[1], embed)
            runtime_feats[key] = to_runtime_layout(feats[key], order)  # what the router builds: its one-hot order
        _merge_settings(manifest, smanifest, folder)
        path = out_dir / ARTIFACT_FILES[name]
        artifact = ARTIFACT_BUILDERS[name](sel, onehot_order=order)
        text = json.dumps(artifact, separators=(",", ":"))  # compact: every KNN row is written once per model
        path.write_text(text)
        k_rows = artifact.get("k", k_rows)
        params[name] = smanifest["params"]
        # Agreement and quality are measured on the file as written and read back.
        reread = json.loads(path.read_text())
        theirs = RUNTIME_SELECT[name](reread, runtime_feats[key])
        ours = sel.predict(feats[key])
        agree = agreement(reread, sel, feats[key], theirs=theirs, ours=ours)
        agree["selector_quality"] = _chosen_quality(held_out, ours)
        agree["runtime_quality"] = _chosen_quality(held_out, theirs)
        manifest["files"][ARTIFACT_FILES[name]] = hashlib.sha256(text.encode()).hexdigest()
        manifest["sizes"][ARTIFACT_FILES[name]] = len(text.encode())
        manifest["agreement"][name] = agree
        manifest["selectors"][name] = {"params": smanifest["params"], "n_train_queries": smanifest.get("n_train_queries")}
        log.info("exported %s (%.1f MB): runtime agreement %.4f on %d test queries", path, len(text) / 1e6, agree["rate"], len(feats[key]))
    manifest["runtime_rules"] = {name: RUNTIME_RULES[name] for name in loaded}
    config = out_dir / RUNTIME_CONFIG_FILE
    config.write_text(runtime_config_text(manifest, out_dir, params, k_rows))
    manifest["runtime_config"] = RUNTIME_CONFIG_FILE
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    update_manifest(run_dir, record, {"params": {"pool": pool, "export_dir": str(out_dir)}, "agreement": manifest["agreement"],
                                               "data_hash": manifest.get("data_hash")})
    manifest["export_dir"] = str(out_dir)
    return manifest


def export_pools(run_dir: str, pools: dict[str, list[str]], export_pools: list[str], export_dir: str = "",
                 embed: EmbedSettings = EmbedSettings()) -> pd.DataFrame:
    """Export the fitted selectors of each pool in ``export_pools`` (see :func:`export_router_models`).

    Files go to ``<export_dir>/<pool>/`` (empty ``export_dir``:
    ``<run_dir>/router_models/<pool>/``). Returns one row per (pool,
    algorithm), :data:`EXPORT_COLUMNS`: the file, how exactly its runtime
    rule reproduces the selector, its size, and on the pool's held-out
    queries the agreement rate and the mean quality of the Python selector's
    and the runtime rule's choices.
    """
    rows = []
    base = resolve_path(export_dir) if export_dir else run_paths(run_dir)["root"] / "router_models"
    for pool in export_pools:
        if pool not in pools:
            raise KeyError(f"export_pools names {pool!r}, which is not a pool of this run ({sorted(pools)})")
        manifest = export_router_models(run_dir, pool, str(base / pool), embed)
        for alg, agree in manifest["agreement"].items():
            file = ARTIFACT_FILES[alg]
            rows.append({"pool": pool, "algorithm": alg, "file": file, "rule": "exact" if RUNTIME_RULES[alg].startswith("exact") else "approximate",
                         "size_mb": round(manifest["sizes"][file] / 1e6, 1), "n_test": agree["n_queries"], "agreement_rate": agree["rate"],
                         "selector_quality": agree["selector_quality"], "runtime_quality": agree["runtime_quality"], "folder": str(base / pool)})
    return pd.DataFrame(rows, columns=EXPORT_COLUMNS)
