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
floats. L2 and cosine agree because every feature row has the same norm
sqrt(1 + onehot_weight^2). One thing no encoding fixes: when the k-th and
(k+1)-th nearest training queries are at exactly the same distance
(duplicate feature rows, e.g. query texts differing only in case under an
uncased embedder), which of them counts is an arbitrary order in
scikit-learn and in the runtime alike; :func:`agreement` counts those
queries (``n_boundary_ties``) and the disagreements outside them. Not
expressible: ``weights="distance"`` KNN (the runtime has no distance
weighting): exported with the uniform encoding and its agreement measured.

KMeans (exact). Centroids as fitted; ``cluster_models[c]`` = our choice for
cluster c (argmax of the cluster's mean utility, our tie rule, restricted to
the candidates). Runtime: nearest centroid by L2, lowest index on ties, as
scikit-learn's ``predict``.

SVM (approximate; agreement measured). The runtime scores each class by
``sum_{sv in class} alpha * exp(-gamma ||x/|x| - sv||^2) - rho`` and takes
the argmax: a per-class kernel vote, not libsvm's one-vs-one decision. The
export writes each class's real support vectors with ``alpha`` = the sum of
the absolute dual coefficients of that vector over its pairwise problems,
``rho_c = -0.5 * mean_j(signed intercept of pair (c, j))`` (exact for two
classes), and, because the runtime L2-normalises the query, support vectors
divided by the feature norm s with ``gamma * s^2``, so every kernel value is
scikit-learn's. The linear kernel is written as ``linear_classifiers``
(``weights = s * mean_j(+-w_cj)``, score ``weights . x/|x| - rho``). The
disagreement with :class:`mlsel.selection.classic.SVMSelector` is measured and
written to the export manifest; it is not hidden.
"""


from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mlsel.selection.base import Selector, candidate_mask, choose
from mlsel.selection.classic import KMeansSelector, KNNSelector, SVMSelector

KNN_TIE_EPS = 1e-10
"""Largest tie-break offset added to an exported KNN quality (below the selectors' 1e-9 tie tolerance)."""


def _floats(a: np.ndarray) -> list:
    """Exact float64 JSON numbers (a float32 value keeps its exact value)."""
    return np.asarray(a, dtype=np.float64).tolist()


def _candidates(sel: Selector, candidates: Sequence[str] | None) -> list[str]:
    mask = candidate_mask(sel.models_, candidates)
    return [m for m, keep in zip(sel.models_, mask) if keep]


def knn_artifact(sel: KNNSelector, candidates: Sequence[str] | None = None) -> dict[str, Any]:
    """``knn_model.json`` content for a fitted :class:`KNNSelector` (exact encoding; module docstring).

    Rows: one per (training query, candidate), query-major; ``k`` = the
    selector's neighbour count times the number of candidates.
    """
    cands = _candidates(sel, candidates)
    cols = [sel.models_.index(m) for m in cands]
    X = np.asarray(sel.nn_._fit_X, dtype=np.float32)
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
        "k": int(sel.nn_.n_neighbors) * m,
        "embeddings": _floats(np.repeat(X, m, axis=0)),
        "labels": [cands[j] for _ in range(n) for j in range(m)],
        "qualities": q.reshape(-1).tolist(),
        "latencies": [0] * (n * m),
        "model_names": cands,
        "num_samples": n * m,
        "feature_dim": int(X.shape[1]),
        "mlsel_encoding": "one row per (training query, model); qualities = 0.01 + 0.99*utility + tie_eps; latencies constant 0 ns; k = k_queries * n_models",
    }


def kmeans_artifact(sel: KMeansSelector, candidates: Sequence[str] | None = None) -> dict[str, Any]:
    """``kmeans_model.json`` content: centroids and our choice per cluster (exact)."""
    cands = _candidates(sel, candidates)
    mask = candidate_mask(sel.models_, candidates)
    idx = choose(sel.cluster_utility_, sel.rank_, mask)
    centroids = sel.km_.cluster_centers_
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


def _feature_norm(sel: Selector, X: np.ndarray | None = None) -> float:
    """The (constant) norm of the feature rows, sqrt(1 + onehot_weight^2); measured on support vectors."""
    rows = X if X is not None else sel.svc_.support_vectors_
    return float(np.median(np.linalg.norm(np.asarray(rows, dtype=np.float64), axis=1)))


def svm_artifact(sel: SVMSelector, candidates: Sequence[str] | None = None) -> dict[str, Any]:
    """``svm_model.json`` content for a fitted :class:`SVMSelector` (approximate; module docstring).

    Only classes that were training labels and are candidates get a
    classifier. A selector with one label class (or no candidate class)
    exports one classifier with a zero-weight vector for the model it would
    choose, so the runtime picks that model.
    """
    cands = _candidates(sel, candidates)
    mask = candidate_mask(sel.models_, candidates)
    kernel_type = "Linear" if sel.kernel == "linear" else "Rbf"
    base = {"algorithm": "svm", "trained": True, "model_names": cands, "kernel_type": kernel_type, "kernel": sel.kernel,
            "C": float(sel.C), "linear_classifiers": [], "rbf_classifiers": []}
    svc = sel.svc_
    present = [] if svc is None else [int(c) for c in svc.classes_]
    keep = [c for c in present if mask[c]]
    if not keep:
        # Degenerate: the Python selector's choice is a constant here.
        const = sel.models_[int(sel.predict_index(np.zeros((1, sel.n_features_in_), dtype=np.float32), candidates)[0])]
        d = sel.n_features_in_
        base.update(gamma=1.0, feature_dim=d, n_classes=1)
        base["rbf_classifiers"] = [{"model_name": const, "alpha": [0.0], "support_vectors": [[0.0] * d], "rho": 0.0, "gamma": 1.0}]
        base["kernel_type"] = "Rbf"
        return base
    s = _feature_norm(sel)
    gamma = float(svc._gamma) * s * s
    sv = np.asarray(svc.support_vectors_, dtype=np.float64)
    # libsvm's own sign convention (pair (i, j) positive favours i); scikit-learn negates the
    # public dual_coef_/intercept_ of a binary SVC, but keeps the raw ones as _dual_coef_/_intercept_.
    dual = np.asarray(getattr(svc, "_dual_coef_", svc.dual_coef_), dtype=np.float64)
    intercept = np.asarray(getattr(svc, "_intercept_", svc.intercept_), dtype=np.float64)
    n_cls = len(present)
    starts = np.concatenate([[0], np.cumsum(svc.n_support_)])
    pair = {}
    p = 0
    for i in range(n_cls):
        for j in range(i + 1, n_cls):
            pair[(i, j)] = p
            p += 1

    def bias(i: int) -> float:
        """Mean signed intercept class i faces (positive favours i), over its pairwise problems."""
        vals = [intercept[pair[(i, j)]] if i < j else -intercept[pair[(j, i)]] for j in range(n_cls) if j != i]
        return float(np.mean(vals))

    for i, c in enumerate(present):
        if not mask[c]:
            continue
        rows = slice(starts[i], starts[i + 1])
        if kernel_type == "Rbf":
            alpha = np.abs(dual[:, rows]).sum(axis=0)
            base["rbf_classifiers"].append({
                "model_name": sel.models_[c],
                "alpha": alpha.tolist(),
                "support_vectors": _floats(sv[rows] / s),
                "rho": -0.5 * bias(i),
                "gamma": gamma,
            })
        else:
            # Pairwise linear decision f_ij(x) = w_ij . x + b_ij; class i's score is the mean of +-f_ij.
            ws = []
            for j in range(n_cls):
                if j == i:
                    continue
                a, b = min(i, j), max(i, j)
                ra, rb = slice(starts[a], starts[a + 1]), slice(starts[b], starts[b + 1])
                w = dual[b - 1, ra] @ sv[ra] + dual[a, rb] @ sv[rb]
                ws.append(w if i == a else -w)
            base["linear_classifiers"].append({"model_name": sel.models_[c], "weights": _floats(s * np.mean(ws, axis=0)), "rho": -bias(i)})
    base.update(gamma=gamma, feature_dim=int(sv.shape[1]), n_classes=len(keep), mlsel_feature_norm=s, mlsel_sklearn_gamma=float(svc._gamma))
    return base


ARTIFACT_BUILDERS = {"knn": knn_artifact, "kmeans": kmeans_artifact, "svm": svm_artifact}
"""The file content builder per algorithm: ``(fitted selector, candidates=None) -> dict``."""
