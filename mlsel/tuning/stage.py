"""The tune stage: :func:`tune_selectors` wires CV, choice, outputs and the final evaluation together."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from mlsel.data.outcomes import data_hash, load_replicate
from mlsel.features import EmbedSettings
from mlsel.files import write_csv
from mlsel.manifest import params_hash, update_manifest
from mlsel.metrics.one_se import CHOICE_COLUMNS, COST_CHOICE_COLUMNS, cost_rule_table, rule_table
from mlsel.params import ConfigError
from mlsel.paths import run_paths
from mlsel.selection.base import best_single_index
from mlsel.tuning.choice import (
    cv_single_quality,
    cv_sweep,
    cv_table,
    fold_scores,
    headline_choice,
    heatmap_table,
    operating_points,
    rule_point,
    tuned_params_doc,
)
from mlsel.tuning.cv import FeatureCache, PoolData, TunePlan, build_cv_tasks, load_pools, prepared_split, run_cv_with
from mlsel.tuning.final import Fitted, final_tables, fit_final, latency_predictions, peer_calls, test_cost
from mlsel.tuning.grids import GRIDS, check_grid, params_text
from mlsel.tuning.summary import (
    CVChoices,
    SummarySettings,
    candidate_label,
    candidate_proba,
    cv_aiq_router,
    peer_columns,
    static_choices,
    static_columns,
    summary_row,
    summary_table,
)

log = logging.getLogger(__name__)


def tune_plan(p: Any) -> TunePlan:
    """Validate the tune-specific values of ``p`` and derive what is searched."""
    if p.tune_n_folds < 2 or p.tune_n_seeds < 1:
        raise ConfigError(f"tune_n_folds must be >= 2 and tune_n_seeds >= 1, got {p.tune_n_folds}, {p.tune_n_seeds}")
    check_grid(p.tune_grid)
    router_names = list(p.tune_router_names)
    return TunePlan(
        names=list(dict.fromkeys([*p.selector_names, *router_names])),
        router_names=router_names,
        embedders=list(p.tune_embedders or [p.embedder]),
        lambdas=[float(x) for x in p.tune_cost_lambdas],
    )


def tuned_params_text(doc: dict[str, Any], p: Any, root: Path) -> str:
    """tuned_params.yaml: a comment header, then ``doc``."""
    header = (f"# Chosen by mlsel.tuning: grid {p.tune_grid!r}, {p.tune_n_folds}-fold x {p.tune_n_seeds} seed(s) CV by query inside the\n"
              f"# training split of {root}. train/tune: one setting for all pools (paste into params.yaml\n"
              f"# if you want it); pools: the per-pool choices the tuned evaluation used. Not params.yaml itself.\n")
    return header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


def manifest_entry(p: Any, plan: TunePlan, pools: dict[str, PoolData], chosen_combos: dict[tuple[str, str], dict[str, Any]],
                   operating: dict[tuple[str, str], dict[str, Any]], raw: pd.DataFrame, n_tasks: int, cv_seconds: float,
                   total_seconds: float) -> dict[str, Any]:
    """The tune stage's manifest.json entry."""
    values = p.model_dump()
    return {
        "params": values, "params_hash": params_hash(values), "data_hash": data_hash(p.run_dir),
        "grid": p.tune_grid, "grid_spec": GRIDS[p.tune_grid], "selectors": plan.names, "embedders": plan.embedders,
        "cost_lambdas": plan.lambdas, "cost_unit": {pool: d.unit for pool, d in pools.items()}, "n_cv_tasks": n_tasks,
        "n_cv_fits": int(len(raw)), "cv_seconds": round(cv_seconds, 1), "cv_cpu_seconds": round(float(raw["cpu_s"].sum()), 1),
        "total_seconds": round(total_seconds, 1),
        "chosen": {f"{pool}/{n}": params_text(combo) for (pool, n), combo in chosen_combos.items()},
        "operating_points": {f"{pool}/{n}": op for (pool, n), op in operating.items()},
        "test_split_used_by": "final evaluation only (tuned_results, frontier, aiq)",
    }


def save_tuned_selectors(p: Any, pools: dict[str, PoolData], fitted: Fitted, chosen_combos: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Save each final fit the router runtime can run (KNN, KMeans, SVM with the combination CV chose, fitted on the whole
    training split) as ``<run_dir>/tune/models/<pool>/<name>.joblib`` with its manifest: what the ship stage exports."""
    from mlsel.selection.registry import save_selector

    dhash = data_hash(p.run_dir)
    for (pool, name), fit in fitted.items():
        if fit.selector is None:
            continue
        combo = chosen_combos[(pool, name)]
        save_selector(fit.selector, run_paths(p.run_dir)["tuned_models"] / pool, name,
                      {"embedder": combo["embedder"], "onehot_weight": float(combo["onehot_weight"]), "data_hash": dhash, "seed": p.seed,
                       "pool": pool, "n_train_queries": len(pools[pool].tr), "tuned": params_text(combo)})


def pool_summaries(p: Any, plan: TunePlan, pools: dict[str, PoolData], fitted: Fitted,
                   sweep: pd.DataFrame, operating: dict[tuple[str, str], dict[str, Any]], aiq: pd.DataFrame,
                   folds: pd.DataFrame, tuned: pd.DataFrame, cv_choice: CVChoiceInputs) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """summary.csv: per pool, does routing pay (:mod:`mlsel.tuning.summary`), every choice made on CV only by the
    one-standard-error rule (:mod:`mlsel.metrics.one_se`); choice.csv, the rule's table of the headline router, and
    choice_cost.csv, of the operating points (in cost terms)."""
    at_best = operating_points(pools, sweep, plan.router_names, p.quality_weight, 1.0, folds)
    rows, tables, cost_tables = [], [], []
    settings = SummarySettings(p.quality_weight, p.tune_n_bootstrap, p.seed, p.tune_match_quality_ratio, p.lookup_min_queries)
    for pool, d in pools.items():
        best_j = best_single_index(d.tr.quality, d.tr.latency_s, p.quality_weight)
        labels = {n: candidate_label(n, d, p.quality_weight) for n in ["best_single", "category_lookup", *plan.names]}
        head = headline_choice(cv_choice.scores, pool, plan.names, cv_choice.chosen)
        tables.append(rule_table(pool, "headline", head, labels))
        points = {}
        for rule, ops, ratio in (("at_best", at_best, 1.0), ("matched", operating, p.tune_match_quality_ratio)):
            target = ratio * cv_single_quality(d, folds, best_j)
            points[rule], choice = rule_point(d, cv_choice.scores, cv_choice.raw, folds, cv_choice.chosen, ops, plan.lambdas, target,
                                              best_j, plan.router_names)
            if choice is not None:
                cost_tables.append(cost_rule_table(pool, rule, choice, labels))
        choices = CVChoices(head.chosen, points["at_best"], points["matched"], cv_aiq_router(d, sweep, folds, plan.router_names),
                            argmax=head.argmax)
        rows.append(summary_row(d, fitted, plan, choices, test_cost(d), aiq[aiq["pool"] == pool] if len(aiq) else None, settings))
        rows[-1].update(static_columns(tuned[tuned["pool"] == pool], rows[-1]["router"], rows[-1]["gain_at_b_ci_low"]))
        proba = candidate_proba(d, fitted, head.chosen, static_choices(d, p.quality_weight, p.lookup_min_queries))
        rows[-1].update(peer_columns(d, fitted, list(p.tune_peer_names), head.chosen, p.tune_n_bootstrap, p.seed, router_proba=proba))
    choice_table = pd.concat(tables, ignore_index=True)[CHOICE_COLUMNS] if tables else pd.DataFrame(columns=CHOICE_COLUMNS)
    cost_table = pd.concat(cost_tables, ignore_index=True) if cost_tables else pd.DataFrame(columns=COST_CHOICE_COLUMNS)
    return summary_table(rows, prepared_split(p.run_dir)), choice_table, cost_table


@dataclass(frozen=True)
class CVChoiceInputs:
    """What the one-standard-error choices read: every CV fit's per-fold scores and the static candidates'
    (cv_fold_scores.csv), the raw CV rows (for the routers' per-fold sweep costs), each selector's chosen combination."""

    scores: pd.DataFrame
    raw: pd.DataFrame
    chosen: dict[tuple[str, str], int]


def tune_selectors(p: Any) -> pd.DataFrame:
    """Tune every selector and router by CV inside the training split; evaluate the tuned ones once on test.

    ``p`` is the validated tune-stage parameter object (``stage_params(params,
    "tune")``, an instance of ``STAGE_MODELS["tune"]``). Returns the
    ``tuned_results.csv`` table (one row per pool x strategy). See
    :mod:`mlsel.tuning` for every file written.
    """
    t_start = time.perf_counter()
    plan = tune_plan(p)
    pools = load_pools(p.run_dir, p.pools, p.cost_axis)
    paths = run_paths(p.run_dir)
    features = FeatureCache(EmbedSettings.from_params(p))

    # CV inside the training split.
    tasks, grids, folds = build_cv_tasks(p, plan, pools, features)
    peers = peer_calls(p.model_dump(), plan, pools, features)  # fitted on the whole training split beside the CV (no CV choice feeds them)
    log.info("tune: %d CV tasks (%s grid, %d folds x %d seeds, %d pools, selectors %s) and %d peer fits", len(tasks), p.tune_grid,
             p.tune_n_folds, p.tune_n_seeds, len(pools), plan.names, len(peers))
    t_cv = time.perf_counter()
    raw, peer_fits = run_cv_with(tasks, peers, p.tune_n_jobs, scheduler=p.tune_dask_scheduler)
    cv_seconds = time.perf_counter() - t_cv

    # Aggregate and choose, on CV only.
    cv, chosen = cv_table(raw, grids, pools)
    sweep = cv_sweep(raw, grids, chosen, pools, plan.lambdas)
    operating = operating_points(pools, sweep, plan.router_names, p.quality_weight, p.tune_match_quality_ratio, folds)
    chosen_combos = {key: grids[key][i] for key, i in chosen.items()}
    write_csv(cv, paths["tune"] / "cv_results.csv")
    write_csv(sweep, paths["tune"] / "cv_frontier.csv")
    write_csv(folds, paths["tune"] / "cv_folds.csv")
    write_csv(heatmap_table(cv, grids), paths["tables"] / "tune_heatmap.csv")
    scores = fold_scores(raw, pools, p.tune_n_folds, p.tune_n_seeds, p.seed, p.quality_weight, p.lookup_min_queries)
    write_csv(scores, paths["tune"] / "cv_fold_scores.csv")
    doc = tuned_params_doc(cv, grids, chosen, operating, pools, plan.names, plan.router_names)
    (paths["tune"] / "tuned_params.yaml").write_text(tuned_params_text(doc, p, paths["root"]))

    # Final evaluation: the only use of the test split.
    fitted = fit_final(p.model_dump(), plan, pools, chosen_combos, operating, features, p.tune_n_jobs,
                       scheduler=p.tune_dask_scheduler, peers={(o.pool, o.name): o for o in peer_fits})
    save_tuned_selectors(p, pools, fitted, chosen_combos)
    tuned, front, aiq = final_tables(p, plan, pools, fitted, operating)
    write_csv(tuned, paths["tables"] / "tuned_results.csv")
    write_csv(front, paths["tables"] / "frontier.csv")
    write_csv(aiq, paths["tables"] / "aiq.csv")
    replicate = load_replicate(p.run_dir)
    if replicate is not None:  # the same requests timed again: do the routers' latency predictions repeat?
        predicted = latency_predictions(pools, fitted, plan, replicate)
        if len(predicted):
            write_csv(predicted, paths["tables"] / "latency_prediction.csv")
    summary, choice, choice_cost = pool_summaries(p, plan, pools, fitted, sweep, operating, aiq, folds, tuned,
                                                  CVChoiceInputs(scores, raw, chosen))
    write_csv(summary, paths["tables"] / "summary.csv")
    write_csv(choice, paths["tables"] / "choice.csv")
    write_csv(choice_cost, paths["tables"] / "choice_cost.csv")

    total = time.perf_counter() - t_start
    update_manifest(p.run_dir, "tune", manifest_entry(p, plan, pools, chosen_combos, operating, raw, len(tasks), cv_seconds, total))
    log.info("tune: done in %.1f s (CV %.1f s)", total, cv_seconds)
    return tuned
