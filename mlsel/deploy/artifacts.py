"""The router runtime's model files built from fitted selectors: ``knn_model.json``, ``kmeans_model.json``, ``svm_model.json``.

How exactly the files reproduce our selectors
---------------------------------------------
Rules from upstream digest 2.2-2.4 and section 5, implemented in
:mod:`mlsel.deploy.runtime` (``runtime_*_select``).

KNN (exact up to exact distance ties). Our KNN averages each model's utility over the k nearest
training *queries*. The runtime votes over the k nearest stored *rows* with
weight ``0.9*max(q, 0.01) + 0.1*(1 - (lat - min)/max(max - min, 1 ns))``.
The export writes one row per (training query, candidate model) with the
query's features, sets the runtime ``k`` to ``k * n_candidates`` (a query's M
rows sit at the same point, so the k*M nearest rows are the M rows of each
of the k nearest queries), writes ``qualities = 0.01 + 0.99 * utility +
tie_eps(model)`` (so ``max(q, 0.01)`` never clips and the vote is affine in
utility) and a constant ``latencies = 0`` ns (so the speed term adds the same
0.1 to every vote; utility already contains measured latency). Each model's
vote sum is then ``0.1k + 0.9(0.01k + 0.99*sum utility + k*tie_eps)``: the
same argmax as our mean utility. ``tie_eps`` (< 1e-10, decreasing with the
model's tie-break rank) reproduces our tie rule, which the runtime cannot
(it takes the argmax over a HashMap). The cost is size: k*M rows of d
floats, written at the selector's ``store_decimals``. The selector itself
finds neighbours by L2 over those stored rows, the runtime's metric. When
the k-th and (k+1)-th nearest training queries are at exactly the same
distance (duplicate feature rows, e.g. query texts differing only in case
under an uncased embedder), the selector counts the lower row index, as the
runtime reference rule does; the real runtime's BallTree leaves that order
unspecified, so :func:`mlsel.deploy.runtime.agreement` counts those queries
(``n_boundary_ties``) and the disagreements outside them. Not expressible:
``weights="distance"`` KNN (refused).

KMeans (exact). Centroids as fitted; ``cluster_models[c]`` = our choice for
cluster c (argmax of the cluster's mean utility, our tie rule, restricted to
the candidates). Runtime: nearest centroid by L2, lowest index on ties, as
the selector.

SVM (exact). :class:`mlsel.selection.classic.SVMSelector` is one-vs-rest on
L2-normalised features, one binary SVC per label class, so it computes the
runtime's rule itself: class c scores ``sum_{sv in c} alpha * exp(-gamma
||x/|x| - sv||^2) - rho``. Each class's classifier is written with its own
support vectors (unit rows, rounded as the selector stores them), its signed
coefficients as ``alpha``, ``rho = -intercept`` and ``gamma``. The linear
kernel is written as ``linear_classifiers`` (``weights . x/|x| - rho``).

Stored vectors are written at the selector's ``store_decimals`` (the values
the selector itself uses), so the files stay small and exact, and with the
one-hot columns in the runtime's category order (:data:`RUNTIME_CATEGORIES`;
a permutation of dimensions changes no distance, kernel or dot product).
What the runtime cannot reproduce is refused (:func:`check_exportable`): a
category one-hot weight other than the runtime's 1, and distance-weighted
KNN.
"""


from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mlsel import CATEGORIES
from mlsel.selection.base import Selector, candidate_mask, choose
from mlsel.selection.classic import KMeansSelector, KNNSelector, SVMSelector

KNN_TIE_EPS = 1e-10
"""Largest tie-break offset added to an exported KNN quality (below the selectors' 1e-9 tie tolerance)."""


def _floats(a: np.ndarray) -> list:
    """Exact float64 JSON numbers (a float32 value keeps its exact value)."""
    return np.asarray(a, dtype=np.float64).tolist()


def _stored(a: np.ndarray, decimals: int) -> list:
    """Stored vectors as JSON numbers: the shortest decimals of the rounded values (0: exact float64 of the float32 values)."""
    a = np.asarray(a, dtype=np.float64)
    return (np.round(a, decimals) + 0.0).tolist() if decimals > 0 else a.tolist()  # + 0.0: no "-0.0"


RUNTIME_ONEHOT_WEIGHT = 1.0
"""The weight the router runtime gives the category one-hot it appends to the embedding (digest 2.6)."""


RUNTIME_CATEGORIES: tuple[str, ...] = ("math", "physics", "chemistry", "biology", "computer science", "history", "economics", "business",
                                      "law", "health", "psychology", "philosophy", "other", "unknown")
"""The router runtime's one-hot order (digest 1: its code's list, which has no "engineering" and ends with "unknown")."""

RUNTIME_SLOT: dict[str, str] = {**{c: c for c in CATEGORIES if c in RUNTIME_CATEGORIES}, "engineering": "unknown"}
"""Our category -> the runtime's one-hot slot. The runtime has no engineering slot and mlsel's data never has
"unknown", so engineering takes the unknown slot: the files are exact when the router reports an engineering
query as "unknown"."""


def runtime_onehot_order(categories: Sequence[str] = CATEGORIES) -> np.ndarray:
    """Column permutation (14,): slot j of the runtime's one-hot is our one-hot column ``order[j]``."""
    missing = [c for c in categories if c not in RUNTIME_SLOT]
    if missing or len(categories) != len(RUNTIME_CATEGORIES):
        raise NotExportableError(f"categories {missing or list(categories)} have no slot in the router runtime's one-hot {list(RUNTIME_CATEGORIES)}")
    ours = {RUNTIME_SLOT[c]: i for i, c in enumerate(categories)}
    return np.asarray([ours[c] for c in RUNTIME_CATEGORIES], dtype=np.int64)


def to_runtime_layout(X: np.ndarray, order: np.ndarray | None) -> np.ndarray:
    """Feature rows (..., d) with their last len(order) columns (the one-hot) in the runtime's order; ``None``: unchanged."""
    X = np.asarray(X)
    if order is None:
        return X
    k = len(order)
    return np.concatenate([X[..., :-k], X[..., -k:][..., order]], axis=-1)


class NotExportableError(ValueError):
    """A fitted selector whose features or rule the router runtime cannot reproduce."""


def check_exportable(name: str, sel: Selector, onehot_weight: float, where: str = "") -> None:
    """Raise :class:`NotExportableError` naming what the runtime cannot reproduce for selector ``name``."""
    problems = []
    if float(onehot_weight) != RUNTIME_ONEHOT_WEIGHT:
        problems.append(f"onehot_weight={onehot_weight:g}, but the runtime appends the category one-hot with weight "
                        f"{RUNTIME_ONEHOT_WEIGHT:g} (retrain with onehot_weight={RUNTIME_ONEHOT_WEIGHT:g})")
    if name == "knn" and getattr(sel, "weights", "uniform") != "uniform":
        problems.append(f"KNN weights={sel.weights!r}, but the runtime's vote has no distance weighting (use weights='uniform')")
    if problems:
        raise NotExportableError(f"{where or name}: cannot export {name} for the router runtime: " + "; ".join(problems))


def _candidates(sel: Selector, candidates: Sequence[str] | None) -> list[str]:
    mask = candidate_mask(sel.models_, candidates)
    return [m for m, keep in zip(sel.models_, mask) if keep]


def knn_artifact(sel: KNNSelector, candidates: Sequence[str] | None = None, onehot_order: np.ndarray | None = None) -> dict[str, Any]:
    """``knn_model.json`` content for a fitted :class:`KNNSelector` (exact encoding; module docstring).

    Rows: one per (training query, candidate), query-major; ``k`` = the
    selector's neighbour count times the number of candidates.
    """
    cands = _candidates(sel, candidates)
    cols = [sel.models_.index(m) for m in cands]
    X = to_runtime_layout(sel.rows_, onehot_order)
    u = sel.train_utility_[:, cols]
    n, m = u.shape
    # Tie-break offsets: our rule prefers the lowest rank_ among the candidates.
    order = sorted(range(m), key=lambda j: sel.rank_[cols[j]])
    eps = np.zeros(m)
    for r, j in enumerate(order):
        eps[j] = KNN_TIE_EPS * (m - 1 - r) / max(m - 1, 1)
    q = 0.01 + 0.99 * u + eps[None, :]
    return {
        "algorithm": "knn",
        "trained": True,
        "k": int(sel.k_) * m,
        "embeddings": _stored(np.repeat(X, m, axis=0), sel.store_decimals),
        "labels": [cands[j] for _ in range(n) for j in range(m)],
        "qualities": q.reshape(-1).tolist(),
        "latencies": [0] * (n * m),
        "model_names": cands,
        "num_samples": n * m,
        "feature_dim": int(X.shape[1]),
        "mlsel_encoding": "one row per (training query, model); qualities = 0.01 + 0.99*utility + tie_eps; latencies constant 0 ns; k = k_queries * n_models",
    }


def kmeans_artifact(sel: KMeansSelector, candidates: Sequence[str] | None = None, onehot_order: np.ndarray | None = None) -> dict[str, Any]:
    """``kmeans_model.json`` content: centroids and our choice per cluster (exact)."""
    cands = _candidates(sel, candidates)
    mask = candidate_mask(sel.models_, candidates)
    idx = choose(sel.cluster_utility_, sel.rank_, mask)
    centroids = to_runtime_layout(sel.centroids_, onehot_order)
    return {
        "algorithm": "kmeans",
        "trained": True,
        "num_clusters": int(len(centroids)),
        "centroids": _floats(centroids),
        "cluster_models": [sel.models_[i] for i in idx],
        "n_clusters": int(len(centroids)),
        "model_names": cands,
        "feature_dim": int(centroids.shape[1]),
        "cluster_sizes": [int(x) for x in sel.cluster_sizes_],
        "cluster_utility": _floats(sel.cluster_utility_),
    }


def svm_artifact(sel: SVMSelector, candidates: Sequence[str] | None = None, onehot_order: np.ndarray | None = None) -> dict[str, Any]:
    """``svm_model.json`` content for a fitted :class:`SVMSelector` (exact; module docstring).

    Only classes that were training labels and are candidates get a
    classifier. A selector with one label class (or no candidate class)
    exports one classifier with a zero vote for the model it would choose,
    so the runtime picks that model.
    """
    cands = _candidates(sel, candidates)
    mask = candidate_mask(sel.models_, candidates)
    kernel_type = "Linear" if sel.kernel == "linear" else "Rbf"
    gamma = float(sel.gamma)
    base = {"algorithm": "svm", "trained": True, "model_names": cands, "kernel_type": kernel_type, "kernel": sel.kernel,
            "C": float(sel.C), "gamma": gamma, "feature_dim": int(sel.n_features_in_), "linear_classifiers": [], "rbf_classifiers": [],
            "mlsel_encoding": "one-vs-rest on L2-normalised features: per class its support vectors, signed coefficients (alpha) and rho = -intercept"}
    keep = [] if sel.constant_ is not None else [j for j, c in enumerate(sel.classes_) if mask[c]]
    if not keep:
        # Degenerate: the Python selector's choice is a constant here.
        const = sel.models_[int(sel.predict_index(np.zeros((1, sel.n_features_in_), dtype=np.float32), candidates)[0])]
        base.update(kernel_type="Rbf", n_classes=1)
        base["rbf_classifiers"] = [{"model_name": const, "alpha": [0.0], "support_vectors": [[0.0] * sel.n_features_in_], "rho": 0.0, "gamma": gamma}]
        return base
    for j in keep:
        name = sel.models_[int(sel.classes_[j])]
        rho = -float(sel.intercept_[j])
        if kernel_type == "Linear":
            base["linear_classifiers"].append({"model_name": name, "weights": _floats(to_runtime_layout(sel.weights_[j], onehot_order)), "rho": rho})
        else:
            rows = np.flatnonzero(sel.coef_[:, j] != 0)
            base["rbf_classifiers"].append({"model_name": name, "alpha": _floats(sel.coef_[rows, j]),
                                            "support_vectors": _stored(to_runtime_layout(sel.sv_[rows], onehot_order), sel.store_decimals),
                                            "rho": rho, "gamma": gamma})
    base["n_classes"] = len(keep)
    return base


ARTIFACT_BUILDERS = {"knn": knn_artifact, "kmeans": kmeans_artifact, "svm": svm_artifact}
"""The file content builder per algorithm: ``(fitted selector, candidates=None, onehot_order=None) -> dict``
(``onehot_order``: :func:`runtime_onehot_order`, to write the one-hot columns in the runtime's order)."""
