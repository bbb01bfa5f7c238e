"""Peers' published router recipes, as named baselines on the suite's split and features.

Each class follows one peer's source at the commit its docstring names, with
that source's defaults; the code is ours. They run on the same training split
and the same query embeddings as the suite's routers (the train stage's
embedder, **without** the category one-hot where the peer embeds the query
text alone, :data:`PEER_ONEHOT_WEIGHT`), are fitted once with their published settings (never tuned here) on
quality alone, their sources' target, whatever the run's ``quality_weight`` (the tune stage fits them with
``quality_weight=1``, :data:`mlsel.tuning.final.PEER_QUALITY_WEIGHT`), and
appear in ``tuned_results.csv`` with their own label and kind ``peer``.
Cross-validation never chooses among them: they are baselines. The two
matrix factorisations (LLMRouter's MF, EmbedLLM's) live in
:mod:`mlsel.selection.peers_mf` and are registered here.

Where a peer breaks ties by the order of models in its data file (see
``docs/peers/routerbench_llmrouter.md``), ours uses the suite's tie rule
(:func:`mlsel.selection.base.choose`: the higher mean training utility, then
model order), so a peer's result does not depend on how a file is sorted.
"""

from __future__ import annotations

import numpy as np

from mlsel.selection.base import QUALITY_WEIGHT, SEED, Selector, choose
from mlsel.selection.peers_mf import EmbedLLMMF, LLMRouterMF

ROUTERBENCH = "withmartian/routerbench@cc67d1008bd8f3cf1e8040cc3ba4034d31b93c0c"
LLMROUTER = "ulab-uiuc/LLMRouter@4e7a796942ce26e9d5f2b93191c7c2585c99c2e3"


class RouterBenchKNN(Selector):
    """RouterBench's KNN router (``routers/knn_router.py``, {ROUTERBENCH}).

    ``NearestNeighbors(n_neighbors=50, metric="cosine")`` over the prompt
    embeddings; each model's predicted performance is the unweighted mean over
    the neighbours; the choice is its argmax (RouterBench's willingness to pay
    is infinite here: quality only). Defaults: ``k = 50`` (the code's; the
    paper also sweeps 5, 10, 40). Ties: the suite's rule (RouterBench's
    ``idxmax`` takes the first model column).
    """

    def __init__(self, k: int = 50, quality_weight: float = QUALITY_WEIGHT):
        self.k = k
        self.quality_weight = quality_weight

    def _fit(self, X, u):
        from sklearn.neighbors import NearestNeighbors

        self.nn_ = NearestNeighbors(n_neighbors=min(self.k, len(X)), metric="cosine", algorithm="brute").fit(X)
        self.u_ = u

    def decision_scores(self, X):
        _, idx = self.nn_.kneighbors(np.asarray(X, dtype=np.float32))
        return self.u_[idx].mean(axis=1)


class RouterBenchMLP(Selector):
    """RouterBench's MLP router (``routers/mlp_router.py``, {ROUTERBENCH}).

    One ``MLPRegressor`` per model regressing its performance on the prompt
    embedding: ``hidden_layer_sizes=(100,)`` (the paper's first setting; the
    code's default is (100, 100, 100)), ``relu``, Adam with constant learning
    rate 0.001, ``max_iter=200``, ``random_state=1234``, other arguments at
    scikit-learn's defaults. The choice is the argmax of the predictions.
    """

    def __init__(self, hidden: tuple[int, ...] = (100,), quality_weight: float = QUALITY_WEIGHT):
        self.hidden = hidden
        self.quality_weight = quality_weight

    def _fit(self, X, u):
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.neural_network import MLPRegressor

        self.mlps_ = []
        for j in range(u.shape[1]):
            mlp = MLPRegressor(hidden_layer_sizes=tuple(self.hidden), activation="relu", solver="adam", learning_rate="constant",
                               learning_rate_init=1e-3, max_iter=200, random_state=1234)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)  # 200 iterations, as published, whether converged or not
                self.mlps_.append(mlp.fit(X, u[:, j]))

    def decision_scores(self, X):
        X = np.asarray(X, dtype=np.float32)
        return np.column_stack([m.predict(X) for m in self.mlps_])


class _BestModelClassifier(Selector):
    """LLMRouter's label: one training example per query, labelled with its best model.

    LLMRouter takes the first row of the best performance in its routing file
    (``groupby("query")["performance"].idxmax()``), so a tie, and every
    all-right or all-wrong query, goes to whichever model is listed first. Here
    the label is the suite's tie rule (:func:`mlsel.selection.base.choose`).
    When every training query has the same label there is nothing to classify
    (scikit-learn's classifiers refuse one class): that model is chosen for
    every query.
    """

    def _fit(self, X, u):
        labels = choose(u, self.rank_)
        self.classes_ = np.unique(labels)
        self.model_ = self._classifier().fit(X, labels) if len(self.classes_) > 1 else None

    def _classifier(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def _class_scores(self, X):  # pragma: no cover - abstract
        raise NotImplementedError

    def decision_scores(self, X):
        """Per model: the classifier's score for that model's class; models never a label get -inf."""
        out = np.full((len(X), len(self.models_)), -np.inf)
        out[:, self.classes_] = self._class_scores(np.asarray(X, dtype=np.float32)) if self.model_ is not None else 0.0
        return out


class LLMRouterKNN(_BestModelClassifier):
    """LLMRouter's KNN router (``llmrouter/models/knnrouter``, {LLMROUTER}).

    ``KNeighborsClassifier(n_neighbors=5, weights="uniform", metric="minkowski", p=2)``
    on the query embedding, labels as in :class:`_BestModelClassifier`. The
    vote is counted here so that a tied vote goes to the suite's tie rule
    (scikit-learn's goes to the alphabetically first model name).
    """

    def __init__(self, k: int = 5, quality_weight: float = QUALITY_WEIGHT):
        self.k = k
        self.quality_weight = quality_weight

    def _classifier(self):
        from sklearn.neighbors import KNeighborsClassifier

        return KNeighborsClassifier(n_neighbors=self.k, weights="uniform", metric="minkowski", p=2)

    def _class_scores(self, X):
        _, idx = self.model_.kneighbors(X, n_neighbors=min(self.k, self.model_.n_samples_fit_))
        votes = self.model_._y[idx]  # neighbour labels as indices into classes_
        return np.stack([(votes == c).sum(axis=1) for c in range(len(self.classes_))], axis=1).astype(float)


class LLMRouterSVM(_BestModelClassifier):
    """LLMRouter's SVM router (``llmrouter/models/svmrouter``, {LLMROUTER}).

    ``SVC(kernel="rbf", C=1.0, gamma="scale")`` (one-vs-rest aggregated
    decision values), labels as in :class:`_BestModelClassifier`. LLMRouter
    also sets ``probability=True``, which does not change ``predict`` and is
    left out (it costs an internal 5-fold fit).
    """

    def __init__(self, quality_weight: float = QUALITY_WEIGHT, random_state: int = SEED):
        self.quality_weight = quality_weight
        self.random_state = random_state

    def _classifier(self):
        from sklearn.svm import SVC

        return SVC(kernel="rbf", C=1.0, gamma="scale", decision_function_shape="ovr", random_state=self.random_state)

    def _class_scores(self, X):
        if len(self.classes_) == 1:
            return np.zeros((len(X), 1))
        d = self.model_.decision_function(X)
        return np.column_stack([-d, d]) if d.ndim == 1 else d


class LLMRouterMLP(_BestModelClassifier):
    """LLMRouter's MLP router (``llmrouter/models/mlprouter``, {LLMROUTER}).

    ``MLPClassifier(hidden_layer_sizes=[128, 64], activation="relu", solver="adam",
    alpha=1e-4, learning_rate_init=1e-3, max_iter=500, random_state=42)``,
    labels as in :class:`_BestModelClassifier`; the choice is the argmax of
    the predicted class probabilities.
    """

    def __init__(self, quality_weight: float = QUALITY_WEIGHT):
        self.quality_weight = quality_weight

    def _classifier(self):
        from sklearn.neural_network import MLPClassifier

        return MLPClassifier(hidden_layer_sizes=(128, 64), activation="relu", solver="adam", alpha=1e-4,
                             learning_rate_init=1e-3, max_iter=500, random_state=42)

    def _class_scores(self, X):
        return self.model_.predict_proba(X)


for _cls in (RouterBenchKNN, RouterBenchMLP, LLMRouterKNN, LLMRouterSVM, LLMRouterMLP):
    _cls.__doc__ = _cls.__doc__.format(ROUTERBENCH=ROUTERBENCH, LLMROUTER=LLMROUTER)

AVENGERS = "ZhangYiqun018/AvengersPro@dfb60b156c4b6011b89edfc8516aa16d8e4f4d38"
SEMANTIC_ROUTER = "vllm-project/semantic-router@ed5f977d86cc42a82e028df50de0271c34c00df1"


class AvengersPro(Selector):
    """Avengers-Pro's cluster router (``simple_cluster_router.py`` with ``config/balance_config.json``, {AVENGERS}).

    ``KMeans(n_clusters=25, random_state=42, n_init=10)`` on the L2-normalised
    query embeddings; each cluster ranks the models by their mean training
    score there (a stable sort: ties keep model order; the published quality
    ranking, ``performance_weight`` 1, since the suite compares routers on
    quality). A query takes its ``top_k = 3`` nearest centroids by ``1 - x.c``
    (centroids not renormalised), weighs them by ``softmax(-beta * distance)``
    with ``beta = 9.0``, and each model scores the weighted sum of its
    **reciprocal ranks** ``1 / (rank + 1)``; a cluster with no training query
    adds nothing. The number of clusters is capped by the training queries (theirs
    is not). Ties: the suite's rule. The paper's setting (60 clusters, p = 4) is
    the suite's own tuned ``scoreboard`` router's default, not this peer's.
    """

    def __init__(self, n_clusters: int = 25, top_k: int = 3, beta: float = 9.0, random_state: int = 42,
                 quality_weight: float = QUALITY_WEIGHT):
        self.n_clusters = n_clusters
        self.top_k = top_k
        self.beta = beta
        self.random_state = random_state
        self.quality_weight = quality_weight

    @staticmethod
    def _unit(X: np.ndarray) -> np.ndarray:
        norm = np.linalg.norm(X, axis=1, keepdims=True)
        return X / np.where(norm > 0, norm, 1.0)

    def _fit(self, X, u):
        from sklearn.cluster import KMeans

        Xn = self._unit(np.asarray(X, dtype=np.float64))
        km = KMeans(n_clusters=min(self.n_clusters, len(Xn)), random_state=self.random_state, n_init=10).fit(Xn)
        self.centers_ = km.cluster_centers_
        self.rr_ = np.zeros((len(self.centers_), u.shape[1]))  # reciprocal rank per (cluster, model); 0 for an empty cluster
        for c in range(len(self.centers_)):
            rows = km.labels_ == c
            if rows.any():
                order = np.argsort(-u[rows].mean(axis=0), kind="stable")
                self.rr_[c, order] = 1.0 / (np.arange(u.shape[1]) + 1)

    def decision_scores(self, X):
        dist = 1.0 - self._unit(np.asarray(X, dtype=np.float64)) @ self.centers_.T
        near = np.argsort(dist, axis=1, kind="stable")[:, : self.top_k]
        logits = -self.beta * np.take_along_axis(dist, near, axis=1)
        w = np.exp(logits - logits.max(axis=1, keepdims=True))
        w /= w.sum(axis=1, keepdims=True)
        return (w[:, :, None] * self.rr_[near]).sum(axis=1)


class HierShrink(Selector):
    """HierShrink (semantic-router issue #3459; ``pkg/modelselection/hiershrink.go`` and ``HierShrinkModel``, {SEMANTIC_ROUTER}).

    Training-free: two independent K-means over the unique feature vectors
    (``coarse_clusters = 20``, ``fine_clusters = 100``, ``random_state=42``,
    ``n_init=10``; the features are the embedding with the category one-hot,
    as its trainer combines them), queries assigned by squared Euclidean
    distance. Each model's score is a two-level m-estimate: the coarse-cluster
    mean shrunk toward the model's global mean,
    ``b1 = (n_c * mean_c + 24 * mean) / (n_c + 24)``, then the fine-cluster mean
    shrunk toward it, ``b2 = (n_f * mean_f + 24 * b1) / (n_f + 24)``
    (``shrink = 24``, the code's constant); an empty cluster leaves the level
    above. The choice is the argmax of ``b2`` (``cost_weight`` 0, its
    default). Ties: the suite's rule (theirs: the first model listed).
    """

    def __init__(self, coarse_clusters: int = 20, fine_clusters: int = 100, shrink: float = 24.0, random_state: int = 42,
                 quality_weight: float = QUALITY_WEIGHT):
        self.coarse_clusters = coarse_clusters
        self.fine_clusters = fine_clusters
        self.shrink = shrink
        self.random_state = random_state
        self.quality_weight = quality_weight

    def _fit(self, X, u):
        from sklearn.cluster import KMeans

        unique = np.unique(X, axis=0)
        self.levels_ = []
        for k in (self.coarse_clusters, self.fine_clusters):
            km = KMeans(n_clusters=min(k, len(unique)), random_state=self.random_state, n_init=10).fit(unique)
            label = km.predict(X)
            sums = np.zeros((km.n_clusters, u.shape[1]))
            np.add.at(sums, label, u)
            self.levels_.append((km, sums, np.bincount(label, minlength=km.n_clusters).astype(float)))
        self.mean_ = u.mean(axis=0)

    def decision_scores(self, X):
        est = np.tile(self.mean_, (len(X), 1))
        for km, sums, counts in self.levels_:  # coarse, then fine: each shrunk toward the level above
            label = km.predict(np.asarray(X, dtype=km.cluster_centers_.dtype))
            est = (sums[label] + self.shrink * est) / (counts[label][:, None] + self.shrink)
        return est


for _cls in (AvengersPro, HierShrink):
    _cls.__doc__ = _cls.__doc__.format(AVENGERS=AVENGERS, SEMANTIC_ROUTER=SEMANTIC_ROUTER)

PEERS: dict[str, type[Selector]] = {
    "routerbench_knn": RouterBenchKNN,
    "routerbench_mlp": RouterBenchMLP,
    "llmrouter_knn": LLMRouterKNN,
    "llmrouter_svm": LLMRouterSVM,
    "llmrouter_mlp": LLMRouterMLP,
    "llmrouter_mf": LLMRouterMF,
    "embedllm_mf": EmbedLLMMF,
    "avengers_pro": AvengersPro,
    "hiershrink": HierShrink,
}
"""The peers by name, each with its source's defaults."""

PEER_LABELS: dict[str, str] = {
    "routerbench_knn": "Peer: RouterBench KNN (k=50)",
    "routerbench_mlp": "Peer: RouterBench MLP (100)",
    "llmrouter_knn": "Peer: LLMRouter KNN (k=5)",
    "llmrouter_svm": "Peer: LLMRouter SVM (RBF)",
    "llmrouter_mlp": "Peer: LLMRouter MLP (128, 64)",
    "llmrouter_mf": "Peer: LLMRouter MF (128)",
    "embedllm_mf": "Peer: EmbedLLM MF (232)",
    "avengers_pro": "Peer: Avengers-Pro (25 clusters, top 3)",
    "hiershrink": "Peer: HierShrink (20/100 clusters)",
}
"""Their labels in the results tables."""

PEER_ONEHOT_WEIGHT: dict[str, float] = {"hiershrink": 1.0}
"""The category one-hot weight of a peer's features (0 where its source embeds the query text alone)."""
