"""Ship selectors to the router: per-decision configs, runtime model files, pretrained files.

Three jobs, all offline:

1. **Evaluate a router ``config.yaml``** (:func:`evaluate_router_config`) on
   the held-out queries of a run folder, decision by decision, with the same
   tables, baselines and bootstrap CIs as :mod:`mlsel.evaluate`.
2. **Export fitted selectors** (:func:`export_router_models`) as the router
   runtime's ``knn_model.json`` / ``kmeans_model.json`` / ``svm_model.json``
   plus mlsel's ``manifest.json``, and check them with reference
   implementations of the runtime's selection rules (``runtime_*_select``).
3. **Pull pretrained files** (:func:`load_pretrained`) from the Hugging Face
   repo ``abdallah1008/semantic-router-ml-models``, check their feature layout
   (:func:`check_compatible`) and evaluate them like our own
   (:func:`evaluate_pretrained`).

Router config shape
-------------------
The reference's ``config.yaml``::

    model_selection: {ml: {enabled: true, models_path: ..., knn: {k: 5}, ...}}   # optional
    default_decision: general_decision          # optional, mlsel's own key (see below)
    decisions:
      - name: math_decision
        priority: 100
        rules: {operator: AND, conditions: [{type: domain, name: math}]}
        algorithm: {type: knn, knn: {k: 5}}
        modelRefs: [{model: Phi-3-mini-4k-instruct}, ...]

``routing.decisions`` and ``global.router.model_selection.ml`` are accepted
as the nested variants. Algorithm parameters: the decision's own block wins,
then the ``ml`` block's (``ml.knn.k`` ...), then the reference's defaults
(k=5, num_clusters=8, kernel=rbf, gamma=1.0, C=1.0). ``operator`` defaults to
``AND``. Only ``domain`` conditions can be evaluated offline (the query's
category is known; keywords, embeddings etc. are not).

Routing rule (offline): a held-out query goes to the highest-priority
decision whose rule matches its category. Two decisions that can match the
same category at the same priority are an error (the router's order between
them is not a documented contract). Queries no decision matches go to the
decision named by the top-level ``default_decision`` if given; otherwise to
the best single model on the training split among all of the run's models.
Their count is reported.

Each decision's algorithm is fitted on **all** training queries of the run
and all of its models with the decision's parameters, and chooses among the
decision's ``modelRefs`` only (``candidates``), which is what the runtime
would need masking for (upstream digest 2.6).

Runtime files and how exactly they reproduce our selectors
----------------------------------------------------------
Rules from upstream digest 2.2-2.4 and section 5, implemented in
:func:`runtime_knn_select`, :func:`runtime_kmeans_select`,
:func:`runtime_svm_select`.

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

import argparse
import hashlib
import json
import logging
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

import mlsel
from mlsel import CATEGORIES
from mlsel.data.outcomes import OutcomeMatrix
from mlsel import stages
from mlsel.data.outcomes import data_hash, load_prepared, pool_matrix, split_masks
from mlsel.features import features_for
from mlsel.metrics.evaluate import Strategy, baseline_strategies, evaluate, oracle_proba
from mlsel.params import load_params, stage_params
from mlsel.paths import read_manifest, read_yaml, resolve_path, run_paths, update_manifest, write_csv
from mlsel.selection.base import Selector, candidate_mask, choose
from mlsel.selection.baselines import BestSingleSelector
from mlsel.selection.classic import KMeansSelector, KNNSelector, SVMSelector
from mlsel.selection.registry import load_selector

log = logging.getLogger(__name__)

PRETRAINED_REPO = "abdallah1008/semantic-router-ml-models"
"""Hugging Face repo of the reference's pretrained model files."""

ALGORITHMS: tuple[str, ...] = ("knn", "kmeans", "svm")
ARTIFACT_FILES: dict[str, str] = {name: f"{name}_model.json" for name in ALGORITHMS}
DEFAULT_ALGORITHM_PARAMS: dict[str, dict[str, Any]] = {
    "knn": {"k": 5},
    "kmeans": {"num_clusters": 8},
    "svm": {"kernel": "rbf", "gamma": 1.0, "c": 1.0},
}
"""The reference's documented defaults per algorithm type."""

KNN_TIE_EPS = 1e-10
"""Largest tie-break offset added to an exported KNN quality (below the selectors' 1e-9 tie tolerance)."""

UNMATCHED = "(unmatched)"
"""Decision name of the fallback for queries no decision matches."""


class RouterConfigError(ValueError):
    """A router config is malformed; the message names the file and the decision."""


class IncompatibleArtifactError(ValueError):
    """A model file's feature layout (dimension, model names) does not match the run."""


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class Decision:
    """One routing decision of a router config.

    ``categories`` are the categories its rule matches; ``params`` the
    resolved algorithm parameters (``k``; ``num_clusters``; ``kernel``,
    ``gamma``, ``c``).
    """

    name: str
    priority: int
    categories: tuple[str, ...]
    algorithm: str
    params: tuple[tuple[str, Any], ...]
    model_refs: tuple[str, ...]
    description: str = ""

    @property
    def param_dict(self) -> dict[str, Any]:
        return dict(self.params)

    def params_text(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.params)


@dataclass
class RouterConfig:
    """A parsed, validated router config."""

    path: str
    decisions: list[Decision]
    default_decision: str | None = None
    ml: dict[str, Any] = field(default_factory=dict)

    def decision(self, name: str) -> Decision:
        for d in self.decisions:
            if d.name == name:
                return d
        raise KeyError(name)

    def route(self, category: str) -> Decision | None:
        """The highest-priority decision whose rule matches ``category`` (None: no match)."""
        matching = [d for d in self.decisions if category in d.categories]
        if not matching:
            return None
        return max(matching, key=lambda d: d.priority)

    def routing_table(self) -> dict[str, str | None]:
        """Category -> decision name (None where nothing matches), in :data:`mlsel.CATEGORIES` order."""
        out = {}
        for c in CATEGORIES:
            d = self.route(c)
            out[c] = d.name if d else None
        return out

    def check_models(self, models: Sequence[str], where: str = "the run's data") -> None:
        """Every modelRef must be one of ``models``; otherwise an error naming the decision."""
        for d in self.decisions:
            missing = [m for m in d.model_refs if m not in models]
            if missing:
                raise RouterConfigError(
                    f"{self.path}: decision {d.name!r}: modelRefs {missing} are not in {where}; available: {list(models)}"
                )


def _positive_int(value: Any, what: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RouterConfigError(f"{where}: {what} must be a positive integer, got {value!r}")
    return value


def _algorithm_params(algo: str, block: dict[str, Any], ml: dict[str, Any], where: str) -> dict[str, Any]:
    merged = dict(DEFAULT_ALGORITHM_PARAMS[algo])
    for source in (ml.get(algo) or {}, block.get(algo) or {}):
        if not isinstance(source, dict):
            raise RouterConfigError(f"{where}: algorithm.{algo} must be a mapping, got {source!r}")
        merged.update({str(k).lower(): v for k, v in source.items()})
    known = set(DEFAULT_ALGORITHM_PARAMS[algo])
    # ml.knn may also carry runtime-only keys (pretrained_path ...), which do not change selection.
    merged = {k: v for k, v in merged.items() if k in known}
    if algo == "knn":
        merged["k"] = _positive_int(merged["k"], "knn.k", where)
    elif algo == "kmeans":
        merged["num_clusters"] = _positive_int(merged["num_clusters"], "kmeans.num_clusters", where)
    else:
        kernel = str(merged["kernel"]).lower()
        if kernel not in ("rbf", "linear"):
            raise RouterConfigError(f"{where}: svm.kernel must be rbf or linear, got {merged['kernel']!r}")
        merged["kernel"] = kernel
        for key in ("gamma", "c"):
            v = merged[key]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
                raise RouterConfigError(f"{where}: svm.{key} must be a positive number, got {v!r}")
            merged[key] = float(v)
    return merged


def _parse_decision(raw: Any, i: int, path: str, ml: dict[str, Any]) -> Decision:
    if not isinstance(raw, dict):
        raise RouterConfigError(f"{path}: decisions[{i}] must be a mapping, got {type(raw).__name__}")
    name = raw.get("name")
    if not isinstance(name, str) or not name:
        raise RouterConfigError(f"{path}: decisions[{i}]: missing field 'name'")
    where = f"{path}: decision {name!r}"
    for key in ("priority", "rules", "algorithm", "modelRefs"):
        if key not in raw or raw[key] is None:
            raise RouterConfigError(f"{where}: missing field {key!r}")
    priority = raw["priority"]
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise RouterConfigError(f"{where}: priority must be an integer, got {priority!r}")

    rules = raw["rules"]
    if not isinstance(rules, dict) or not isinstance(rules.get("conditions"), list) or not rules["conditions"]:
        raise RouterConfigError(f"{where}: rules must be a mapping with a non-empty 'conditions' list")
    operator = str(rules.get("operator", "AND")).upper()
    if operator not in ("AND", "OR"):
        raise RouterConfigError(f"{where}: rules.operator must be AND or OR, got {rules.get('operator')!r}")
    domains = []
    for j, cond in enumerate(rules["conditions"]):
        if not isinstance(cond, dict) or "type" not in cond or "name" not in cond:
            raise RouterConfigError(f"{where}: rules.conditions[{j}] needs fields 'type' and 'name'")
        if cond["type"] != "domain":
            raise RouterConfigError(
                f"{where}: rules.conditions[{j}] has type {cond['type']!r}; only 'domain' conditions can be evaluated offline"
            )
        if cond["name"] not in CATEGORIES:
            raise RouterConfigError(
                f"{where}: rules.conditions[{j}]: unknown category {cond['name']!r}; expected one of {list(CATEGORIES)}"
            )
        domains.append(cond["name"])
    if operator == "AND":
        # A query has exactly one category: AND over two different domains never matches.
        if len(set(domains)) > 1:
            raise RouterConfigError(f"{where}: rules AND over different domains {sorted(set(domains))} can never match; use OR")
    categories = tuple(c for c in CATEGORIES if c in set(domains))

    algo_block = raw["algorithm"]
    if not isinstance(algo_block, dict) or "type" not in algo_block:
        raise RouterConfigError(f"{where}: missing field 'algorithm.type'")
    algo = str(algo_block["type"]).lower()
    if algo not in ALGORITHMS:
        raise RouterConfigError(f"{where}: unknown algorithm type {algo_block['type']!r}; mlsel evaluates {list(ALGORITHMS)}")
    params = _algorithm_params(algo, algo_block, ml, where)

    refs_raw = raw["modelRefs"]
    if not isinstance(refs_raw, list) or not refs_raw:
        raise RouterConfigError(f"{where}: modelRefs must be a non-empty list of {{model: <name>}}")
    refs = []
    for j, ref in enumerate(refs_raw):
        model = ref.get("model") if isinstance(ref, dict) else None
        if not isinstance(model, str) or not model:
            raise RouterConfigError(f"{where}: modelRefs[{j}]: missing field 'model'")
        if model in refs:
            raise RouterConfigError(f"{where}: modelRefs lists {model!r} twice")
        refs.append(model)
    return Decision(name, priority, categories, algo, tuple(params.items()), tuple(refs), str(raw.get("description") or ""))


def load_router_config(path: str | os.PathLike[str], models: Sequence[str] | None = None) -> RouterConfig:
    """Read and validate a router config; with ``models``, also check every modelRef exists.

    Raises
    ------
    RouterConfigError
        naming the file and the decision: missing fields, unknown algorithm
        type, unknown category, modelRefs absent from ``models``, two
        decisions matching one category at the same priority, unknown
        ``default_decision``.
    """
    p = resolve_path(path)
    raw = read_yaml(p, "the router config", RouterConfigError)
    if not isinstance(raw, dict):
        raise RouterConfigError(f"{p}: expected a mapping at the top level")
    path_s = str(p)
    decisions_raw = raw.get("decisions")
    if decisions_raw is None and isinstance(raw.get("routing"), dict):
        decisions_raw = raw["routing"].get("decisions")
    if not isinstance(decisions_raw, list) or not decisions_raw:
        raise RouterConfigError(f"{p}: missing field 'decisions' (or 'routing.decisions'): a non-empty list")
    ml = (raw.get("model_selection") or {}).get("ml") if isinstance(raw.get("model_selection"), dict) else None
    if ml is None:
        glob = raw.get("global")
        if isinstance(glob, dict):
            ml = (((glob.get("router") or {}).get("model_selection")) or {}).get("ml")
    ml = ml if isinstance(ml, dict) else {}
    if ml.get("enabled") is False:
        log.warning("%s: model_selection.ml.enabled is false; evaluating the decisions anyway", p)

    decisions = [_parse_decision(d, i, path_s, ml) for i, d in enumerate(decisions_raw)]
    seen: set[str] = set()
    for d in decisions:
        if d.name in seen:
            raise RouterConfigError(f"{p}: decision {d.name!r} is defined twice")
        seen.add(d.name)
    for i, a in enumerate(decisions):
        for b in decisions[i + 1:]:
            shared = [c for c in a.categories if c in b.categories]
            if shared and a.priority == b.priority:
                raise RouterConfigError(
                    f"{p}: decisions {a.name!r} and {b.name!r} overlap at equal priority {a.priority}: "
                    f"both match {shared}; give one a different priority or remove the overlap"
                )
    default = raw.get("default_decision")
    if default is not None and default not in seen:
        raise RouterConfigError(f"{p}: default_decision {default!r} is not a decision; decisions: {sorted(seen)}")
    cfg = RouterConfig(path_s, decisions, default, ml)
    if models is not None:
        cfg.check_models(models)
    return cfg


# --------------------------------------------------------------------------- run helpers


def run_models(run_dir: str, outcomes: pd.DataFrame | None = None) -> list[str]:
    """The run's models in the prepare stage's order (else sorted)."""
    prep = read_manifest(run_dir).get("stages", {}).get("prepare", {})
    if prep.get("models"):
        return list(prep["models"])
    if outcomes is None:
        outcomes = load_prepared(run_dir)[1]
    return sorted(outcomes["model"].unique())


def feature_settings(run_dir: str, extra: dict[str, Any] | None = None) -> tuple[str, float]:
    """(embedder id, onehot weight) of the run: explicit keys, else the train stage's, else defaults."""
    extra = extra or {}
    train = read_manifest(run_dir).get("stages", {}).get("train", {}).get("params", {})
    from mlsel.features import DEFAULT_EMBEDDER

    embedder = extra.get("embedder") or train.get("embedder")
    if not embedder:
        log.warning("%s: no train stage in the manifest; using the default embedder %s", run_dir, DEFAULT_EMBEDDER)
        embedder = DEFAULT_EMBEDDER
    weight = extra.get("onehot_weight", train.get("onehot_weight", 1.0))
    return str(embedder), float(weight)


def make_decision_selector(algorithm: str, params: dict[str, Any], quality_weight: float, seed: int) -> Selector:
    """A selector for a config's ``algorithm.type`` with its parameters."""
    if algorithm == "knn":
        return KNNSelector(k=int(params["k"]), quality_weight=quality_weight)
    if algorithm == "kmeans":
        return KMeansSelector(num_clusters=int(params["num_clusters"]), quality_weight=quality_weight, random_state=seed)
    if algorithm == "svm":
        return SVMSelector(kernel=params["kernel"], gamma=float(params["gamma"]), C=float(params.get("c", 1.0)),
                                     quality_weight=quality_weight, random_state=seed)
    raise ValueError(f"unknown algorithm {algorithm!r}")


def _onehot(models: Sequence[str], chosen: Sequence[str]) -> np.ndarray:
    pos = {m: j for j, m in enumerate(models)}
    out = np.zeros((len(chosen), len(models)))
    out[np.arange(len(chosen)), [pos[c] for c in chosen]] = 1.0
    return out


def _baselines(te: OutcomeMatrix, tr: OutcomeMatrix, models: list[str], quality_weight: float) -> list[Strategy]:
    """Best single on train, every Always row and the exact random expectation over ``models``."""
    return baseline_strategies(tr.select_models(models), len(te), quality_weight)


def _algo_label(algorithm: str, params: dict[str, Any] | tuple) -> str:
    p = dict(params)
    text = ", ".join(f"{k}={v}" for k, v in p.items())
    return f"{stages.selector_label(algorithm)} ({text})"


# --------------------------------------------------------------------------- evaluate a config


def _paired_diff_ci(a: np.ndarray, b: np.ndarray, n_bootstrap: int, seed: int) -> tuple[float, float, float]:
    """Mean of a - b and its 95% percentile bootstrap CI over queries."""
    d = a - b
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(d), size=(n_bootstrap, len(d)))
    boot = d[idx].mean(axis=1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(d.mean()), float(lo), float(hi)


def evaluate_router_config(
    run_dir: str,
    seed: int,
    router_config: str,
    n_bootstrap: int,
    embed_batch_size: int = 64,
    device: str = "cpu",
    **extra: Any,
) -> pd.DataFrame:
    """Evaluate a router config offline on the held-out queries of a run folder.

    Routing, fitting and the unmatched-query rule are described in the module
    docstring. Every decision gets its own table (its test queries, its
    modelRefs as the candidate set for the algorithm, the oracle and every
    baseline); the overall table has every test query and all of the run's
    models, with the routed choices, each algorithm of the config applied to
    all queries and all models (the single-algorithm configurations), and the
    usual baselines.

    Writes ``<run_dir>/tables/router_config_results.csv`` (tidy: one row per
    (decision, strategy); ``decision == "overall"`` for the overall table) and
    ``router_config_results.md``; returns the CSV's DataFrame.
    """
    if not router_config:
        log.info("router_config is empty: no per-decision routing config to evaluate")
        return pd.DataFrame()
    quality_weight = float(extra.get("quality_weight", 0.9))
    queries, outcomes = load_prepared(run_dir)
    models = run_models(run_dir, outcomes)
    cfg = load_router_config(router_config, models)
    embedder, onehot_weight = feature_settings(run_dir, extra)
    matrix = pool_matrix(queries, outcomes, models)
    train, test = split_masks(queries, matrix)
    X = features_for(matrix, embedder, onehot_weight, embed_batch_size, device)
    tr, te = matrix.subset(train), matrix.subset(test)
    Xtr, Xte = X[train], X[test]

    fitted: dict[tuple, Selector] = {}

    def fitted_selector(algorithm: str, params: tuple) -> Selector:
        key = (algorithm, params)
        if key not in fitted:
            sel = make_decision_selector(algorithm, dict(params), quality_weight, seed)
            fitted[key] = sel.fit(Xtr, tr.quality, tr.latency_s, models=models)
        return fitted[key]

    # Route every test query.
    routed: list[str] = []
    for c in te.categories:
        d = cfg.route(c)
        routed.append(d.name if d else (cfg.default_decision or UNMATCHED))
    routed_arr = np.asarray(routed, dtype=object)
    n_unmatched = int(sum(cfg.route(c) is None for c in te.categories))
    best_all = BestSingleSelector(quality_weight=quality_weight).fit(np.zeros((len(tr), 1)), tr.quality, tr.latency_s, models=models)

    chosen = np.empty(len(te), dtype=object)
    cand_mask = np.zeros((len(te), len(models)), dtype=bool)
    tables: list[pd.DataFrame] = []
    info_rows = []
    units = [(d.name, d) for d in cfg.decisions] + [(UNMATCHED, None)]
    for name, d in units:
        mask = routed_arr == name
        if not mask.any():
            info_rows.append((name, d, 0))
            continue
        refs = list(d.model_refs) if d else list(models)
        ted = te.subset(mask).select_models(refs)
        trd_mask = np.isin(tr.categories, d.categories) if d else np.zeros(len(tr), dtype=bool)
        strategies = [Strategy("Oracle (best possible)", "oracle", oracle_proba(ted))]
        if d is not None:
            sel = fitted_selector(d.algorithm, d.params)
            pick = sel.predict(Xte[mask], candidates=refs)
            strategies.append(Strategy(_algo_label(d.algorithm, d.params), "selector", _onehot(refs, pick)))
            if trd_mask.any():
                trd = tr.subset(trd_mask).select_models(refs)
                bsd = BestSingleSelector(quality_weight=quality_weight).fit(np.zeros((len(trd), 1)), trd.quality, trd.latency_s, models=refs)
                strategies.append(Strategy(f"Best single on this decision's train queries ({bsd.model_})", "best_single_decision",
                                                    _onehot(refs, [bsd.model_] * int(mask.sum()))))
        else:
            pick = np.asarray([best_all.model_] * int(mask.sum()), dtype=object)
        strategies += _baselines(ted, tr, refs, quality_weight)
        out = evaluate(ted, strategies, name, n_bootstrap=n_bootstrap, seed=seed)["results"]
        out.insert(1, "scope", "decision")
        out.insert(2, "algorithm", d.algorithm if d else "best_single")
        out.insert(3, "algorithm_params", d.params_text() if d else "")
        out.insert(4, "categories", ";".join(d.categories) if d else "")
        out.insert(5, "model_refs", ";".join(refs))
        tables.append(out)
        chosen[mask] = pick
        cand_mask[mask] = np.isin(models, refs)
        info_rows.append((name, d, int(mask.sum())))

    # Overall: the routed choices beside each single-algorithm configuration.
    strategies = [Strategy("Oracle (best possible)", "oracle", oracle_proba(te))]
    q_c = np.where(cand_mask, te.quality, -np.inf)
    oracle_c = np.zeros_like(te.quality)
    oracle_c[np.arange(len(te)), q_c.argmax(axis=1)] = 1.0
    strategies.append(Strategy("Oracle within each decision's modelRefs", "oracle_routed", oracle_c))
    config_name = Path(cfg.path).name
    strategies.append(Strategy(f"Router config ({config_name})", "router_config", _onehot(models, list(chosen))))
    single_algos: dict[str, tuple] = {}
    for d in cfg.decisions:
        single_algos.setdefault(d.algorithm, d.params)
    for algorithm, params in single_algos.items():
        sel = fitted_selector(algorithm, params)
        strategies.append(Strategy(f"{_algo_label(algorithm, params)} on every query", "selector", sel.predict_proba(Xte)))
    strategies += _baselines(te, tr, list(models), quality_weight)
    rand_c = cand_mask / cand_mask.sum(axis=1, keepdims=True)
    strategies.append(Strategy("Random within each decision's modelRefs (expected)", "random_routed", rand_c))
    overall = evaluate(te, strategies, "overall", n_bootstrap=n_bootstrap, seed=seed)["results"]
    overall.insert(1, "scope", "overall")
    overall.insert(2, "algorithm", "")
    overall.insert(3, "algorithm_params", "")
    overall.insert(4, "categories", "")
    overall.insert(5, "model_refs", ";".join(models))
    result = pd.concat([overall, *tables], ignore_index=True).rename(columns={"pool": "decision"})

    # The router config against the best single-algorithm configuration, paired.
    per_q = {s.name: (s.proba * te.quality).sum(axis=1) for s in strategies}
    algo_rows = overall[overall["kind"] == "selector"].sort_values("avg_quality", ascending=False)
    best_algo = algo_rows["strategy"].iloc[0]
    router_name = f"Router config ({config_name})"
    diff = _paired_diff_ci(per_q[router_name], per_q[best_algo], n_bootstrap, seed)

    tables_dir = run_paths(run_dir)["tables"]
    write_csv(result, tables_dir / "router_config_results.csv")
    md = format_router_tables(result, cfg, info_rows, n_unmatched, best_algo, diff, best_all.model_)
    (tables_dir / "router_config_results.md").write_text(md + "\n")
    update_manifest(
        run_dir, "router_config",
        {"params": {"router_config": str(router_config), "seed": seed, "n_bootstrap": n_bootstrap, "quality_weight": quality_weight,
                    "embedder": embedder, "onehot_weight": onehot_weight},
         "config_sha256": hashlib.sha256(Path(cfg.path).read_bytes()).hexdigest(),
         "data_hash": data_hash(run_dir),
         "routed_test_queries": {name: n for name, _, n in info_rows},
         "n_unmatched_test_queries": n_unmatched,
         "unmatched_rule": f"default_decision {cfg.default_decision!r}" if cfg.default_decision else "best single model on train among all models",
         "best_single_algorithm": best_algo,
         "router_minus_best_single_algorithm": {"mean": diff[0], "ci_low": diff[1], "ci_high": diff[2]}},
    )
    return result


def _md_table(df: pd.DataFrame) -> list[str]:
    latency = df["avg_latency_s"].notna().all()
    eff_head = "Avg Latency" if latency else "Avg Response Chars (proxy, not a time)"
    out = [f"| Strategy | Avg Quality [95% CI] | {eff_head} | Best Model % | vs best single [95% CI] |", "|---|---|---|---|---|"]
    for _, r in df.sort_values("avg_quality", ascending=False, kind="stable").iterrows():
        eff = f"{r['avg_latency_s']:.2f}s" if latency else f"{r['avg_response_chars']:.0f}"
        out.append(
            f"| {r['strategy']} | {r['avg_quality']:.3f} [{r['avg_quality_ci_low']:.3f}, {r['avg_quality_ci_high']:.3f}] | {eff} "
            f"| {r['best_model_pct']:.1f}% | {r['uplift_vs_best_single']:+.3f} "
            f"[{r['uplift_vs_best_single_ci_low']:+.3f}, {r['uplift_vs_best_single_ci_high']:+.3f}] |"
        )
    return out


def format_router_tables(result: pd.DataFrame, cfg: RouterConfig, info_rows: list, n_unmatched: int, best_algo: str,
                         diff: tuple[float, float, float], best_single_model: str) -> str:
    """Markdown: the routing table, the overall table and one table per decision."""
    name = Path(cfg.path).name
    out = [f"## Router config `{name}` on the held-out queries\n", "| Decision | Priority | Categories | Algorithm | modelRefs | Test queries |",
           "|---|---|---|---|---|---|"]
    for dname, d, n in info_rows:
        if d is None:
            if n:
                out.append(f"| {UNMATCHED} | - | (no decision matches) | best single on train ({best_single_model}) | all | {n} |")
            continue
        out.append(f"| {dname} | {d.priority} | {', '.join(d.categories)} | {d.algorithm} ({d.params_text()}) | {', '.join(d.model_refs)} | {n} |")
    rule = (f"they go to `default_decision` {cfg.default_decision!r}" if cfg.default_decision
            else f"they go to the best single model on train among all models ({best_single_model})")
    out.append(f"\nTest queries no decision matches: {n_unmatched}; {rule}.\n")
    ov = result[result["decision"] == "overall"]
    out.append(f"### Overall — {int(ov['n_queries'].iloc[0])} held-out queries, all models\n")
    out += _md_table(ov)
    out.append(
        f"\nBest single-algorithm configuration: **{best_algo}**. Router config minus it: "
        f"{diff[0]:+.3f} [{diff[1]:+.3f}, {diff[2]:+.3f}] avg quality (paired bootstrap, 95% CI).\n"
    )
    for dname, d, n in info_rows:
        if not n:
            continue
        df = result[(result["decision"] == dname) & (result["scope"] == "decision")]
        what = f"{d.algorithm} ({d.params_text()}), categories: {', '.join(d.categories)}" if d else "unmatched queries, best single on train"
        out.append(f"### Decision `{dname}` — {n} held-out queries; {what}; candidates: {', '.join(df['model_refs'].iloc[0].split(';'))}\n")
        out += _md_table(df)
        out.append("")
    return "\n".join(out)


# --------------------------------------------------------------------------- runtime artifacts


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
ARTIFACT_BUILDERS = {"knn": knn_artifact, "kmeans": kmeans_artifact, "svm": svm_artifact}


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


def export_router_models(run_dir: str, pool: str, export_dir: str = "", **extra: Any) -> dict[str, Any]:
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
        models = list(smanifest["models"])
        matrix = pool_matrix(queries, outcomes, models)
        _, test = split_masks(queries, matrix)
        key = (smanifest["embedder"], float(smanifest["onehot_weight"]))
        if key not in feats:
            feats[key] = features_for(matrix.subset(test), key[0], key[1], int(extra.get("embed_batch_size", 64)), str(extra.get("device", "cpu")))
        for k in ("embedder", "onehot_weight", "data_hash", "seed"):
            prev = manifest.get(k)
            if prev is not None and prev != smanifest[k]:
                raise ValueError(f"{folder}: selectors disagree on {k} ({prev!r} vs {smanifest[k]!r}); rerun train")
            manifest[k] = smanifest[k]
        manifest["models"] = models
        manifest["feature_dim"] = int(smanifest["feature_dim"])
        artifact = ARTIFACT_BUILDERS[name](sel)
        path = out_dir / ARTIFACT_FILES[name]
        text = json.dumps(artifact)
        path.write_text(text)
        # Agreement is measured on the file as written and read back.
        reread = json.loads(path.read_text())
        manifest["files"][ARTIFACT_FILES[name]] = hashlib.sha256(text.encode()).hexdigest()
        manifest["agreement"][name] = agreement(reread, sel, feats[key])
        manifest["selectors"][name] = {"params": smanifest["params"], "n_train_queries": smanifest.get("n_train_queries")}
        log.info("exported %s: runtime agreement %.4f on %d test queries", path, manifest["agreement"][name]["rate"], len(feats[key]))
    if "svm" in manifest["agreement"]:
        manifest["svm_agreement_rate"] = manifest["agreement"]["svm"]["rate"]
    manifest["runtime_rules"] = {
        "knn": "exact up to exact distance ties at the k-th neighbour (n_boundary_ties): one row per (training query, model), qualities = 0.01 + 0.99*utility + tie_eps, latencies 0 ns, k = k_queries*n_models",
        "kmeans": "exact: centroids and the cluster's argmax mean-utility model",
        "svm": "approximate: per-class kernel vote over the real support vectors (alpha = sum |dual coef|), query L2-normalised; agreement measured",
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    update_manifest(run_dir, "router_export", {"params": {"pool": pool, "export_dir": str(out_dir)}, "agreement": manifest["agreement"],
                                                      "data_hash": manifest.get("data_hash")})
    manifest["export_dir"] = str(out_dir)
    return manifest


# --------------------------------------------------------------------------- pretrained


def export_pools(run_dir: str, pools: dict[str, list[str]], export_pools: list[str], export_dir: str = "", **extra: Any) -> pd.DataFrame:
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
        manifest = export_router_models(run_dir, pool, str(base / pool))
        for alg, agree in manifest.get("agreement", {}).items():
            rows.append({"pool": pool, "algorithm": alg, "agreement_rate": agree.get("rate"), "folder": str(base / pool)})
    return pd.DataFrame(rows, columns=["pool", "algorithm", "agreement_rate", "folder"])


def load_pretrained(repo_id: str = PRETRAINED_REPO, revision: str | None = None, cache_dir: str | os.PathLike[str] | None = None) -> dict[str, dict]:
    """Download (or find in the cache) the repo's ``*_model.json`` files; ``{algorithm: artifact}``.

    Uses ``huggingface_hub.snapshot_download`` with the cache under
    ``mlsel.paths.cache_dir()/hf`` by default. With ``HF_HUB_OFFLINE=1`` it
    reads the local Hugging Face cache only (``refs/<revision>`` and
    ``snapshots/<commit>/``).
    """
    from huggingface_hub import snapshot_download

    cache = Path(cache_dir) if cache_dir else cache_dir() / "hf"
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=str(cache), allow_patterns=["*_model.json"], local_files_only=offline))
    out: dict[str, dict] = {}
    for path in sorted(folder.rglob("*_model.json")):
        algo = path.name[: -len("_model.json")]
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise IncompatibleArtifactError(f"{path}: malformed JSON: {exc.msg} (line {exc.lineno})") from exc
        if not isinstance(data, dict):
            raise IncompatibleArtifactError(f"{path}: expected a JSON object")
        data.setdefault("algorithm", algo)
        data["_source"] = f"{repo_id}@{revision or 'main'}:{path.relative_to(folder)}"
        out[algo] = data
    if not out:
        raise FileNotFoundError(f"{repo_id} ({folder}): no *_model.json files")
    return out


def artifact_feature_dim(artifact: dict[str, Any]) -> int:
    """The feature dimension a model file expects."""
    algo = artifact.get("algorithm")
    try:
        if algo == "knn":
            return len(artifact["embeddings"][0])
        if algo == "kmeans":
            return len(artifact["centroids"][0])
        if algo == "svm":
            for clf in artifact.get("linear_classifiers") or []:
                return len(clf["weights"])
            for clf in artifact.get("rbf_classifiers") or []:
                return len(clf["support_vectors"][0])
        if artifact.get("feature_dim"):
            return int(artifact["feature_dim"])
    except (KeyError, IndexError, TypeError) as exc:
        raise IncompatibleArtifactError(f"{algo} model file {artifact.get('_source', '')}: malformed ({exc!r})") from exc
    raise IncompatibleArtifactError(f"{algo} model file {artifact.get('_source', '')}: cannot tell its feature dimension")


def artifact_models(artifact: dict[str, Any]) -> list[str]:
    """The model names a model file can choose."""
    algo = artifact.get("algorithm")
    if algo == "knn":
        names = artifact.get("labels") or []
    elif algo == "kmeans":
        names = artifact.get("cluster_models") or []
    elif algo == "svm":
        names = [c["model_name"] for c in (artifact.get("linear_classifiers") or []) + (artifact.get("rbf_classifiers") or [])]
    else:
        names = artifact.get("model_names") or []
    return list(dict.fromkeys(names))


def check_compatible(artifact: dict[str, Any], feature_dim: int, models: Sequence[str], embedder: str = "") -> None:
    """Raise :class:`IncompatibleArtifactError` unless the file fits this run's features and models.

    The algorithm must be one mlsel can run (knn, kmeans, svm), its feature
    dimension must equal ``feature_dim`` and every model it can choose must
    be one of ``models``.
    """
    algo = artifact.get("algorithm")
    src = artifact.get("_source", "")
    what = f"{algo} model file" + (f" {src}" if src else "")
    if algo not in ALGORITHMS:
        raise IncompatibleArtifactError(f"{what}: algorithm {algo!r} has no runtime reference in mlsel; expected one of {list(ALGORITHMS)}")
    dim = artifact_feature_dim(artifact)
    if dim != feature_dim:
        emb = f" (embedder {embedder})" if embedder else ""
        raise IncompatibleArtifactError(f"{what}: embedding dimension {dim} != {feature_dim} of this run's features{emb}")
    names = artifact_models(artifact)
    unknown = [m for m in names if m not in models]
    if unknown or not names:
        raise IncompatibleArtifactError(f"{what}: models {unknown or names} are not among this run's models {list(models)}")


def evaluate_pretrained(
    run_dir: str,
    pool: str,
    seed: int,
    n_bootstrap: int,
    repo_id: str = PRETRAINED_REPO,
    revision: str | None = None,
    cache_dir: str | None = None,
    embed_batch_size: int = 64,
    device: str = "cpu",
    **extra: Any,
) -> pd.DataFrame:
    """Evaluate the pretrained files with the runtime rules on a pool's held-out queries.

    Rows: the oracle, our own fitted selectors (those the train stage saved),
    each pretrained file (``Pretrained <ALG> (<repo>)``) and the baselines.
    Every file must pass :func:`check_compatible` (else the error names the
    mismatch). Writes ``tables/pretrained_results.csv``; returns it.
    """
    artifacts = load_pretrained(repo_id, revision, cache_dir)
    queries, outcomes = load_prepared(run_dir)
    pools = extra.get("pools") or {}
    models = list(pools[pool]) if pool in pools else json.loads((run_paths(run_dir)["models"] / pool / f"{ALGORITHMS[0]}.manifest.json").read_text())["models"]
    embedder, onehot_weight = feature_settings(run_dir, extra)
    matrix = pool_matrix(queries, outcomes, models)
    train, test = split_masks(queries, matrix)
    te = matrix.subset(test)
    Xte = features_for(te, embedder, onehot_weight, embed_batch_size, device)
    dim = Xte.shape[1]
    for art in artifacts.values():
        check_compatible(art, dim, models, embedder)
    names = [a for a in ALGORITHMS if (run_paths(run_dir)["models"] / pool / f"{a}.manifest.json").is_file()]
    strategies = stages.pool_strategies(run_dir, pool, models, matrix, train, test, names, float(extra.get("quality_weight", 0.9)),
                                        embed_batch_size, device)
    for algo, art in artifacts.items():
        chosen = RUNTIME_SELECT[algo](art, Xte)
        strategies.insert(1, Strategy(f"Pretrained {algo.upper()} ({repo_id})", "pretrained", _onehot(models, list(chosen))))
    res = evaluate(te, strategies, pool, n_bootstrap=n_bootstrap, seed=seed)["results"]
    write_csv(res, run_paths(run_dir)["tables"] / "pretrained_results.csv")
    return res


# --------------------------------------------------------------------------- CLI


def _params(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    return load_params(getattr(args, "params", None))


def _default_pool(pools: dict[str, list[str]]) -> str:
    return max(pools, key=lambda p: len(pools[p]))


def _cli_export(args: argparse.Namespace) -> int:
    params = _params(args)
    flat = stage_params(params, "evaluate")
    run_dir = args.run_dir or flat["run_dir"]
    pool = args.pool or _default_pool(flat["pools"])
    export_dir = args.export_dir if args.export_dir is not None else flat.get("export_dir", "")
    manifest = export_router_models(run_dir, pool, export_dir, embed_batch_size=flat.get("embed_batch_size", 64), device=flat.get("device", "cpu"))
    print(f"router model files for pool {pool!r} written to {manifest['export_dir']}")
    for name, a in manifest["agreement"].items():
        print(f"  {ARTIFACT_FILES[name]:<18} runtime rule agrees with mlsel on {a['n_agree']}/{a['n_queries']} test queries ({100 * a['rate']:.1f}%)")
    return 0


def _cli_evaluate_config(args: argparse.Namespace) -> int:
    params = _params(args)
    flat = stage_params(params, "evaluate")
    if args.run_dir:
        flat["run_dir"] = args.run_dir
    if args.config:
        flat["router_config"] = args.config
    if args.n_bootstrap is not None:
        flat["n_bootstrap"] = args.n_bootstrap
    if not flat.get("router_config"):
        print("no router config: pass --config or set evaluate.router_config in params.yaml", file=sys.stderr)
        return 1
    evaluate_router_config(**flat)
    md = run_paths(flat["run_dir"])["tables"] / "router_config_results.md"
    print(md.read_text())
    print(f"(tidy table: {md.with_suffix('.csv')})")
    return 0


def add_cli(subparsers) -> None:
    """Register the ``export`` and ``evaluate-config`` subcommands (``args.func(args)`` runs them)."""
    p = subparsers.add_parser("export", help="write a run's fitted selectors as router model files (knn/kmeans/svm_model.json + manifest.json)")
    p.add_argument("--run-dir", default=None, help="run folder (default: params.yaml run_dir)")
    p.add_argument("--pool", default=None, help="model pool to export (default: the largest pool in params.yaml)")
    p.add_argument("--export-dir", default=None, help="output folder (default: params.yaml export_dir; empty: <run_dir>/router_models)")
    p.add_argument("--params", default=None, help="parameter file (default: params.yaml at the project root)")
    p.set_defaults(func=_cli_export)

    p = subparsers.add_parser("evaluate-config", help="evaluate a router config.yaml (per-decision algorithms) on a run's held-out queries")
    p.add_argument("--run-dir", default=None, help="run folder (default: params.yaml run_dir)")
    p.add_argument("--config", default=None, help="router config YAML (default: params.yaml router_config)")
    p.add_argument("--n-bootstrap", type=int, default=None, help="bootstrap draws (default: params.yaml n_bootstrap)")
    p.add_argument("--params", default=None, help="parameter file (default: params.yaml at the project root)")
    p.set_defaults(func=_cli_evaluate_config)
