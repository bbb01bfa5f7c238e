"""Evaluating a router config offline on the held-out queries of a run folder.

The config (:mod:`mlsel.deploy.routing_config`) routes each held-out query by its
category; queries no decision matches go to ``default_decision`` if given,
otherwise to the best single model on the training split among all of the
run's models (their count is reported).

Each decision's algorithm is fitted on **all** training queries of the run
and all of its models with the decision's parameters, and chooses among the
decision's ``modelRefs`` only (``candidates``), which is what the runtime
would need masking for (upstream digest 2.6).

:func:`evaluate_router_config` writes the tidy CSV and the manifest entry and
returns a :class:`RouterConfigEvaluation`; its markdown is rendered by
:func:`mlsel.report.tables.router_config_markdown`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from mlsel.data.outcomes import OutcomeMatrix, data_hash, load_prepared, pool_matrix, split_masks
from mlsel.deploy.routing_config import CONFIG_KEYS, STATIC, Decision, RouterConfig, load_router_config
from mlsel.features import DEFAULT_EMBEDDER, EmbedSettings, features_for
from mlsel.files import write_csv
from mlsel.manifest import read_manifest, update_manifest
from mlsel.metrics.bootstrap import paired_difference
from mlsel.metrics.evaluate import LOOKUP_MIN_QUERIES, Strategy, baseline_strategies, evaluate, oracle_proba
from mlsel.params import BaseParams, TrainParams, default
from mlsel.paths import run_paths
from mlsel.selection.base import Selector
from mlsel.selection.baselines import BestSingleSelector
from mlsel.selection.registry import label, make_selector, selector_params

log = logging.getLogger(__name__)

UNMATCHED = "(unmatched)"
"""Decision name of the fallback for queries no decision matches."""


# --------------------------------------------------------------------------- run helpers


def run_models(run_dir: str, outcomes: pd.DataFrame | None = None) -> list[str]:
    """The run's models in the prepare stage's order (else sorted)."""
    prep = read_manifest(run_dir).get("stages", {}).get("prepare", {})
    if prep.get("models"):
        return list(prep["models"])
    if outcomes is None:
        outcomes = load_prepared(run_dir)[1]
    return sorted(outcomes["model"].unique())


def feature_settings(run_dir: str) -> tuple[str, float]:
    """(embedder id, onehot weight) the run's train stage used (its manifest entry), else the defaults."""
    train = read_manifest(run_dir).get("stages", {}).get("train", {}).get("params", {})
    embedder = train.get("embedder")
    if not embedder:
        log.warning("%s: no train stage in the manifest; using the default embedder %s", run_dir, DEFAULT_EMBEDDER)
        embedder = DEFAULT_EMBEDDER
    return str(embedder), float(train.get("onehot_weight", default(TrainParams, "onehot_weight")))


def make_decision_selector(algorithm: str, params: dict[str, Any], quality_weight: float, seed: int) -> Selector:
    """A selector for a config's ``algorithm.type`` with its parameters (``k``, ``num_clusters``, ``kernel``/``gamma``/``c``)."""
    if algorithm not in CONFIG_KEYS:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    values = {CONFIG_KEYS[algorithm][k]: v for k, v in params.items()}
    return make_selector(algorithm, selector_params(quality_weight=quality_weight, seed=seed, **values))


def onehot(models: Sequence[str], chosen: Sequence[str]) -> np.ndarray:
    """Choice distribution (n, m) putting all mass on each query's chosen model."""
    pos = {m: j for j, m in enumerate(models)}
    out = np.zeros((len(chosen), len(models)))
    out[np.arange(len(chosen)), [pos[c] for c in chosen]] = 1.0
    return out


def _algo_label(algorithm: str, params: dict[str, Any] | tuple) -> str:
    text = ", ".join(f"{k}={v}" for k, v in dict(params).items())
    return f"{label(algorithm)} ({text})"


# --------------------------------------------------------------------------- evaluate a config


@dataclass(frozen=True)
class DecisionInfo:
    """A decision (None: the unmatched-query fallback) and how many test queries it got."""

    name: str
    decision: Decision | None
    n_test: int


@dataclass
class RouterConfigEvaluation:
    """What :func:`evaluate_router_config` measured: the results table and what its summary needs."""

    result: pd.DataFrame
    """Tidy: one row per (decision, strategy); ``decision == "overall"`` for the overall table."""
    config: RouterConfig
    decisions: list[DecisionInfo]
    n_unmatched: int
    best_single_algorithm: str
    """The strategy label of the best single-algorithm configuration on the overall table."""
    difference: tuple[float, float, float]
    """Router config minus the best single-algorithm configuration: mean avg quality and 95% paired bootstrap CI."""
    best_single_model: str
    """Best single model on train among all of the run's models (the unmatched queries' fallback)."""
    versus_best_single_model: tuple[float, float, float] = (float("nan"),) * 3
    """Router config minus always using the best single model: mean avg quality and 95% paired bootstrap CI."""

    @property
    def verdict(self) -> str:
        """One line from the paired CI against the best single model: what to do with this config."""
        d, lo, hi = self.versus_best_single_model
        where = f"{d:+.3f} [{lo:+.3f}, {hi:+.3f}] against always {self.best_single_model}"
        if lo > 0:
            return f"The config beats always using {self.best_single_model} ({where}): it pays to deploy it."
        if hi < 0:
            return f"The config loses to always using {self.best_single_model} ({where}): deploy what the ship stage chose instead."
        return f"The config is not shown better than always using {self.best_single_model} ({where})."


@dataclass
class _Context:
    """The run's data for one config evaluation: every model, train/test outcomes and features."""

    models: list[str]
    tr: OutcomeMatrix
    te: OutcomeMatrix
    Xtr: np.ndarray
    Xte: np.ndarray
    quality_weight: float
    seed: int
    n_bootstrap: int
    fitted: dict[tuple, Selector] = field(default_factory=dict)
    lookup_min_queries: int = LOOKUP_MIN_QUERIES

    def selector(self, algorithm: str, params: tuple) -> Selector:
        """The decision algorithm fitted on all training queries and models (once per algorithm and parameters)."""
        key = (algorithm, params)
        if key not in self.fitted:
            sel = make_decision_selector(algorithm, dict(params), self.quality_weight, self.seed)
            self.fitted[key] = sel.fit(self.Xtr, self.tr.quality, self.tr.latency_s, models=self.models)
        return self.fitted[key]

    def results(self, test: OutcomeMatrix, strategies: list[Strategy], name: str) -> pd.DataFrame:
        return evaluate(test, strategies, name, n_bootstrap=self.n_bootstrap, seed=self.seed)["results"]


def _describe(df: pd.DataFrame, scope: str, algorithm: str, params_text: str, categories: str, model_refs: str) -> pd.DataFrame:
    for i, (col, value) in enumerate([("scope", scope), ("algorithm", algorithm), ("algorithm_params", params_text),
                                      ("categories", categories), ("model_refs", model_refs)], start=1):
        df.insert(i, col, value)
    return df


def _decision_table(ctx: _Context, d: Decision | None, mask: np.ndarray, name: str, best_model: str) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    """One decision's table on its test queries, its choices and its candidates (None: the unmatched fallback)."""
    refs = list(d.model_refs) if d else list(ctx.models)
    ted = ctx.te.subset(mask).select_models(refs)
    strategies = [Strategy("Oracle (best possible)", "oracle", oracle_proba(ted))]
    if d is not None and d.algorithm == STATIC:
        pick = np.asarray([refs[0]] * int(mask.sum()), dtype=object)
    elif d is not None:
        pick = ctx.selector(d.algorithm, d.params).predict(ctx.Xte[mask], candidates=refs)
        strategies.append(Strategy(_algo_label(d.algorithm, d.params), "selector", onehot(refs, pick)))
        trd_mask = np.isin(ctx.tr.categories, d.categories)
        if trd_mask.any():
            trd = ctx.tr.subset(trd_mask).select_models(refs)
            bsd = BestSingleSelector(quality_weight=ctx.quality_weight).fit(np.zeros((len(trd), 1)), trd.quality, trd.latency_s, models=refs)
            strategies.append(Strategy(f"Best single on this decision's train queries ({bsd.model_})", "best_single_decision",
                                       onehot(refs, [bsd.model_] * int(mask.sum()))))
    else:
        pick = np.asarray([best_model] * int(mask.sum()), dtype=object)
    strategies += baseline_strategies(ctx.tr.select_models(refs), ted, ctx.quality_weight, ctx.lookup_min_queries)
    out = _describe(ctx.results(ted, strategies, name), "decision", d.algorithm if d else "best_single",
                    d.params_text() if d else "", ";".join(d.categories) if d else "", ";".join(refs))
    return out, pick, refs


def _overall_strategies(ctx: _Context, cfg: RouterConfig, chosen: np.ndarray, cand_mask: np.ndarray) -> list[Strategy]:
    """The routed choices beside each single-algorithm configuration and the baselines, on every test query."""
    te = ctx.te
    strategies = [Strategy("Oracle (best possible)", "oracle", oracle_proba(te))]
    q_c = np.where(cand_mask, te.quality, -np.inf)
    oracle_c = np.zeros_like(te.quality)
    oracle_c[np.arange(len(te)), q_c.argmax(axis=1)] = 1.0
    strategies.append(Strategy("Oracle within each decision's modelRefs", "oracle_routed", oracle_c))
    strategies.append(Strategy(f"Router config ({Path(cfg.path).name})", "router_config", onehot(ctx.models, list(chosen))))
    single_algos: dict[str, tuple] = {}
    for d in cfg.decisions:
        if d.algorithm != STATIC:
            single_algos.setdefault(d.algorithm, d.params)
    for algorithm, params in single_algos.items():
        sel = ctx.selector(algorithm, params)
        strategies.append(Strategy(f"{_algo_label(algorithm, params)} on every query", "selector", sel.predict_proba(ctx.Xte)))
    strategies += baseline_strategies(ctx.tr.select_models(list(ctx.models)), te, ctx.quality_weight, ctx.lookup_min_queries)
    rand_c = cand_mask / cand_mask.sum(axis=1, keepdims=True)
    strategies.append(Strategy("Random within each decision's modelRefs (expected)", "random_routed", rand_c))
    return strategies


def _context(run_dir: str, seed: int, router_config: str, n_bootstrap: int, quality_weight: float,
             embed: EmbedSettings) -> tuple[RouterConfig, _Context, str, float]:
    queries, outcomes = load_prepared(run_dir)
    models = run_models(run_dir, outcomes)
    cfg = load_router_config(router_config, models)
    embedder, onehot_weight = feature_settings(run_dir)
    matrix = pool_matrix(queries, outcomes, models)
    train, test = split_masks(queries, matrix)
    X = features_for(matrix, embedder, onehot_weight, embed)
    ctx = _Context(models, matrix.subset(train), matrix.subset(test), X[train], X[test], quality_weight, seed, n_bootstrap)
    return cfg, ctx, embedder, onehot_weight


def evaluate_router_config(
    run_dir: str,
    seed: int,
    router_config: str,
    n_bootstrap: int,
    quality_weight: float = default(BaseParams, "quality_weight"),
    embed: EmbedSettings = EmbedSettings(),
    lookup_min_queries: int = LOOKUP_MIN_QUERIES,
    **other_stage_params: Any,
) -> RouterConfigEvaluation | None:
    """Evaluate a router config offline on the held-out queries of a run folder (None if ``router_config`` is empty).

    Routing, fitting and the unmatched-query rule are described in the module
    docstring. Every decision gets its own table (its test queries, its
    modelRefs as the candidate set for the algorithm, the oracle and every
    baseline); the overall table has every test query and all of the run's
    models, with the routed choices, each algorithm of the config applied to
    all queries and all models (the single-algorithm configurations), and the
    usual baselines. ``embed`` says how the queries are embedded
    (:meth:`mlsel.features.EmbedSettings.from_params` of the stage's
    parameters); ``other_stage_params`` (the rest of the ship stage's
    parameters, ``embed_batch_size`` and ``device`` among them) are ignored.

    Writes ``<run_dir>/tables/router_config_results.csv`` (tidy: one row per
    (decision, strategy); ``decision == "overall"`` for the overall table) and
    the manifest entry ``router_config``. Its markdown:
    :func:`mlsel.report.tables.router_config_markdown`.
    """
    if not router_config:
        log.info("router_config is empty: no per-decision routing config to evaluate")
        return None
    quality_weight = float(quality_weight)
    cfg, ctx, embedder, onehot_weight = _context(run_dir, seed, router_config, n_bootstrap, quality_weight, embed)
    ctx.lookup_min_queries = int(lookup_min_queries)
    te, models = ctx.te, ctx.models
    routed = np.asarray([(d.name if d else (cfg.default_decision or UNMATCHED)) for d in map(cfg.route, te.categories)], dtype=object)
    n_unmatched = int(sum(cfg.route(c) is None for c in te.categories))
    best_all = BestSingleSelector(quality_weight=quality_weight).fit(np.zeros((len(ctx.tr), 1)), ctx.tr.quality, ctx.tr.latency_s, models=models)

    chosen = np.empty(len(te), dtype=object)
    cand_mask = np.zeros((len(te), len(models)), dtype=bool)
    tables: list[pd.DataFrame] = []
    infos: list[DecisionInfo] = []
    for name, d in [(d.name, d) for d in cfg.decisions] + [(UNMATCHED, None)]:
        mask = routed == name
        if mask.any():
            table, chosen[mask], refs = _decision_table(ctx, d, mask, name, best_all.model_)
            tables.append(table)
            cand_mask[mask] = np.isin(models, refs)
        infos.append(DecisionInfo(name, d, int(mask.sum())))

    strategies = _overall_strategies(ctx, cfg, chosen, cand_mask)
    overall = _describe(ctx.results(te, strategies, "overall"), "overall", "", "", "", ";".join(models))
    result = pd.concat([overall, *tables], ignore_index=True).rename(columns={"pool": "decision"})

    # The router config against the best single-algorithm configuration, paired.
    per_q = {s.name: (s.proba * te.quality).sum(axis=1) for s in strategies}
    algos = overall[overall["kind"] == "selector"].sort_values("avg_quality", ascending=False)["strategy"]
    # A config of static decisions only has no algorithm to compare with: it is compared with the best single model.
    best_algo = algos.iloc[0] if len(algos) else overall.loc[overall["kind"] == "best_single", "strategy"].iloc[0]
    routed_q = per_q[f"Router config ({Path(cfg.path).name})"]
    diff = paired_difference(routed_q, per_q[best_algo], n_bootstrap, seed)
    best_name = overall.loc[overall["kind"] == "best_single", "strategy"].iloc[0]
    ev = RouterConfigEvaluation(result, cfg, infos, n_unmatched, best_algo, diff, best_all.model_,
                                paired_difference(routed_q, per_q[best_name], n_bootstrap, seed))
    write_csv(result, run_paths(run_dir)["tables"] / "router_config_results.csv")
    _record(run_dir, ev, router_config, seed, n_bootstrap, quality_weight, embedder, onehot_weight)
    return ev


def _record(run_dir: str, ev: RouterConfigEvaluation, router_config: str, seed: int, n_bootstrap: int, quality_weight: float,
            embedder: str, onehot_weight: float) -> None:
    """The manifest entry ``router_config``."""
    cfg, diff = ev.config, ev.difference
    update_manifest(
        run_dir, "router_config",
        {"params": {"router_config": str(router_config), "seed": seed, "n_bootstrap": n_bootstrap, "quality_weight": quality_weight,
                    "embedder": embedder, "onehot_weight": onehot_weight},
         "config_sha256": hashlib.sha256(Path(cfg.path).read_bytes()).hexdigest(),
         "data_hash": data_hash(run_dir),
         "routed_test_queries": {info.name: info.n_test for info in ev.decisions},
         "n_unmatched_test_queries": ev.n_unmatched,
         "unmatched_rule": f"default_decision {cfg.default_decision!r}" if cfg.default_decision else "best single model on train among all models",
         "best_single_algorithm": ev.best_single_algorithm,
         "router_minus_best_single_algorithm": {"mean": diff[0], "ci_low": diff[1], "ci_high": diff[2]},
         "router_minus_best_single_model": dict(zip(("mean", "ci_low", "ci_high"), ev.versus_best_single_model)),
         "verdict": ev.verdict},
    )
