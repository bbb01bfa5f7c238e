"""What to ship: the routing config the one-standard-error rule chooses among what the router runtime can run.

Per pool, the candidates are what the router runtime can run, simplest first:

1. ``best_single``: one decision sending every category to the best single model of the training split (static);
2. ``category_lookup``: the per-category lookup as static decisions (:func:`mlsel.deploy.routing_config.static_config`);
3. ``knn``, ``kmeans``, ``svm``: one decision over every category with that algorithm, its model file the tuned
   selector (the combination CV chose, fitted on the whole training split by the tune stage and saved under
   ``<run_dir>/tune/models/<pool>``). A tuned selector the runtime cannot reproduce (a category one-hot weight other
   than 1, distance-weighted KNN: :func:`mlsel.deploy.artifacts.check_exportable`) is not a candidate; the table
   says why (``not_runnable``).

The decision's ``modelRefs`` are the pool's models: the runtime returns a model from the model file's whole label set
and fails when it is not among the decision's refs (upstream digest 2.6), so a restricted candidate set is not
something it can run.

The choice is the tune stage's rule (:mod:`mlsel.metrics.one_se`) on the same CV fold scores
(``<run_dir>/tune/cv_fold_scores.csv``) and against the same reference, the CV-best of every candidate the headline
chose among (:func:`ship_rule`): the simplest candidate the runtime can run within one standard error of it. So where
the headline's choice is runnable it is what is shipped; where the routers beat every runnable candidate by more than
one standard error, the rule is applied to the runnable candidates alone. The chosen
config goes to ``<run_dir>/ship/<pool>/router_config.yaml`` (an algorithm's with its model file, the runtime settings
and the export manifest beside it). It is then routed on the held-out queries: the config's decisions (and, for an
algorithm, the runtime's rule on the written file) must give the model the evaluated choice gives on every query
(``runtime_agreement``, 1.0); and scored against the best single model, the per-category lookup (paired bootstrap CIs)
and the zero router at the same cost (the single models' hull, on the held-out queries), with a one-line verdict.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlsel import CATEGORIES
from mlsel.data.costs import cost_matrix, fill_missing_cost, with_cost_axis
from mlsel.data.outcomes import load_prepared, pool_matrix, split_masks
from mlsel.deploy.artifacts import NotExportableError, check_exportable
from mlsel.deploy.routing_config import ALGORITHMS, load_router_config, static_config
from mlsel.deploy.runtime import ARTIFACT_FILES, RUNTIME_CONFIG_FILE, export_router_models
from mlsel.features import EmbedSettings, features_for
from mlsel.files import write_atomic
from mlsel.manifest import read_manifest
from mlsel.metrics.bootstrap import paired_difference
from mlsel.metrics.frontier import hull_quality, zero_router
from mlsel.metrics.one_se import BEST_SINGLE, CATEGORY_LOOKUP, RULE, RULE_TEXT, RuleChoice, fit_static, one_se_rule, per_fold, rule_table
from mlsel.paths import run_paths
from mlsel.selection.registry import label, load_selector

log = logging.getLogger(__name__)

CONFIG_FILE = "router_config.yaml"

SHIP_COLUMNS = [
    "pool", "shipped", "label", "tuned_params", "rule", "argmax", "n_test", "quality", "cost_unit", "cost",
    "best_single", "best_single_quality", "best_single_cost", "gain_vs_best_single", "gain_vs_best_single_ci_low",
    "gain_vs_best_single_ci_high", "lookup_quality", "gain_vs_lookup", "gain_vs_lookup_ci_low", "gain_vs_lookup_ci_high",
    "zero_router_quality", "gain_vs_zero_router", "runtime_agreement", "files", "not_runnable", "verdict",
]
"""ship.csv: one row per pool."""


def tuned_folder(run_dir: str, pool: str) -> Path:
    """``<run_dir>/tune/models/<pool>``: the tuned selectors the tune stage saved for the runtime."""
    return run_paths(run_dir)["tuned_models"] / pool


def runtime_candidates(run_dir: str, pool: str) -> tuple[dict[str, int], dict[str, Any], dict[str, str], dict[str, str]]:
    """Every candidate the tune stage scored for the pool, simplest first (``name -> the CV combination scored for it``: the
    static ones, then each tuned selector and router at its chosen combination), those the runtime can run (``name -> its
    loaded tuned selector and manifest``, None for a static one), the tuned parameters of each runnable algorithm, and why a
    tuned KNN, KMeans or SVM is not runnable (``name -> reason``)."""
    cv = pd.read_csv(run_paths(run_dir)["tune"] / "cv_results.csv")
    chosen = cv[(cv["pool"] == pool) & cv["chosen"]]
    candidates = {BEST_SINGLE: 0, CATEGORY_LOOKUP: 0, **{str(n): int(c) for n, c in zip(chosen["selector"], chosen["combo"])}}
    runnable: dict[str, Any] = {BEST_SINGLE: None, CATEGORY_LOOKUP: None}
    params, excluded = {}, {}
    folder = tuned_folder(run_dir, pool)
    for name in (a for a in ALGORITHMS if a in candidates):
        if not (folder / f"{name}.manifest.json").is_file():
            excluded[name] = f"no tuned model in {folder}"
            continue
        sel, manifest = load_selector(folder, name)
        try:
            check_exportable(name, sel, manifest["onehot_weight"])
        except NotExportableError as e:
            excluded[name] = str(e).split("for the router runtime: ", 1)[-1]
            continue
        runnable[name] = (sel, manifest)
        params[name] = str(manifest.get("tuned", ""))
    return candidates, runnable, params, excluded


def ship_rule(per_fold_scores: pd.DataFrame, runnable: set[str]) -> tuple[str, RuleChoice, str]:
    """The shipped candidate: the one-standard-error rule over every candidate (the headline's rule and reference, the
    CV-best of all), its choice restricted to what the runtime can run: the simplest runnable candidate within one
    standard error of the CV-best. Where none is (the routers beat every runnable one by more), the rule is applied to
    the runnable candidates alone. Returns ``(the candidate, the rule's table, which reference was used)``."""
    full = one_se_rule(per_fold_scores)
    ok = full.table[full.table["within_one_se"] & full.table["candidate"].isin(runnable)]
    if len(ok):
        name, rule, reference = str(ok["candidate"].iloc[0]), full, "the CV-best of all candidates"
    else:
        rule = one_se_rule(per_fold_scores[[c for c in per_fold_scores.columns if c in runnable]])
        name, reference = rule.chosen, "the CV-best of the runnable candidates (no runnable one within one SE of all)"
    table = rule.table.assign(chosen=rule.table["candidate"] == name)
    return name, RuleChoice(name, rule.argmax, table), reference


def _single_config(model: str, source: str) -> dict[str, Any]:
    return static_config([{"group": c, "model": model, "source": "train"} for c in CATEGORIES], source)


def _algorithm_config(name: str, models: list[str], runtime: dict[str, Any]) -> dict[str, Any]:
    """One decision over every category with ``name``; the runtime's ``ml`` block (its model files and settings)."""
    return {**runtime, "routing": {"decisions": [{
        "name": f"{name}_all", "description": f"{label(name)} with the parameters CV chose, over every category", "priority": 100,
        "rules": {"operator": "OR", "conditions": [{"type": "domain", "name": c} for c in CATEGORIES]},
        "algorithm": {"type": name}, "modelRefs": [{"model": m} for m in models]}]}}


def _routed(config_path: Path, categories: np.ndarray, models: list[str]) -> tuple[np.ndarray, list[str]]:
    """The static model per query (-1 where the decision runs an algorithm) and each query's decision, as the runtime
    routes the written config (read back)."""
    cfg = load_router_config(config_path, models)
    idx, names = np.full(len(categories), -1), []
    for i, c in enumerate(categories):
        d = cfg.route(str(c)) or (cfg.decision(cfg.default_decision) if cfg.default_decision else None)
        if d is None:
            raise ValueError(f"{config_path}: no decision for category {c!r}")
        names.append(d.name)
        if d.algorithm == "static":
            idx[i] = models.index(d.model_refs[0])
    return idx, names


HEADER = ("# The routing config mlsel ships for pool {pool} of {run}: {what}.\n"
          "# Chosen by the {rule} rule on the tune stage's CV inside the training split: {text}.\n"
          "# Held out ({n} queries) it routes every query as evaluated (runtime agreement {agree:.4f}); see tables/ship.csv.\n")


def _verdict(name: str, lab: str, best: str) -> str:
    """What to do, in words (the numbers are the row's columns: :func:`mlsel.report.shipping.ship_sentence` adds them)."""
    if name == BEST_SINGLE:
        return f"Use {best} for every query: on CV no lookup or router is better than it beyond one standard error."
    if name == CATEGORY_LOOKUP:
        return "Use the per-category lookup (static, no ML): on CV no router is better than it beyond one standard error."
    return f"Route with {lab}: on CV every simpler candidate is more than one standard error below the best."


def ship_pool(run_dir: str, pool: str, models: list[str], scores: pd.DataFrame, quality_weight: float, min_queries: int,
              n_bootstrap: int, seed: int, embed: EmbedSettings, cost_axis: str = "auto") -> tuple[dict[str, Any], pd.DataFrame]:
    """Choose, write, route and score one pool's shipped config (module docstring); ``(its ship.csv row, its rule table)``."""
    queries, outcomes = load_prepared(run_dir)
    matrix = with_cost_axis(pool_matrix(queries, outcomes, models), cost_axis)
    train, test = split_masks(queries, matrix)
    tr, te = matrix.subset(train), matrix.subset(test)
    best, lookup = fit_static(tr, quality_weight, min_queries)
    candidates, runnable, params, excluded = runtime_candidates(run_dir, pool)
    name, rule, reference = ship_rule(per_fold(scores[scores["pool"] == pool], candidates), set(runnable))
    labels = {BEST_SINGLE: f"Always {models[best]} (best single on train)", CATEGORY_LOOKUP: "Per-category lookup (static)",
              **{n: f"{label(n, tuned=True)} (not runnable by the router runtime)" for n in candidates if n not in runnable},
              **{n: f"{label(n)} (tuned: {params[n]})" for n in params}}
    out = run_paths(run_dir)["ship"] / pool
    out.mkdir(parents=True, exist_ok=True)
    for stale in [out / f for f in (*ARTIFACT_FILES.values(), RUNTIME_CONFIG_FILE, "manifest.json")]:
        stale.unlink(missing_ok=True)  # a previous run's choice must not stay beside this one's config

    source = f"pool {pool}, {len(tr)} training queries"
    files = [CONFIG_FILE]
    if name == BEST_SINGLE:
        config, chosen = _single_config(models[best], f"best single model of {source}"), np.full(len(te), best)
    elif name == CATEGORY_LOOKUP:
        rows = [{"group": c, "model": models[lookup.predict_index([c])[0]],
                 "source": "train" if c in lookup.table else "fallback: best single"} for c in CATEGORIES]
        config, chosen = static_config(rows, f"per-category lookup of {source}"), lookup.predict_index(te.categories)
    else:
        manifest = export_router_models(run_dir, pool, str(out), embed, source=tuned_folder(run_dir, pool), names=[name],
                                        record="ship_export")
        runtime = yaml.safe_load((out / RUNTIME_CONFIG_FILE).read_text())
        config = _algorithm_config(name, models, runtime)
        sel, smanifest = runnable[name]
        chosen = sel.predict_index(features_for(te, smanifest["embedder"], float(smanifest["onehot_weight"]), embed))
        files += [ARTIFACT_FILES[name], RUNTIME_CONFIG_FILE, "manifest.json"]
    path = out / CONFIG_FILE
    write_atomic(path, yaml.safe_dump(config, sort_keys=False))
    static_idx, _ = _routed(path, te.categories, models)
    if name in ALGORITHMS:  # every query reaches the algorithm's decision; the runtime's rule on the file decides
        agree = float(manifest["agreement"][name]["rate"]) if (static_idx == -1).all() else 0.0
    else:
        agree = float((static_idx == chosen).mean()) if len(te) else float("nan")
    write_atomic(path, HEADER.format(pool=pool, run=Path(run_dir).name, what=labels[name], rule=RULE, text=RULE_TEXT, n=len(te),
                                     agree=agree) + yaml.safe_dump(config, sort_keys=False))

    ar = np.arange(len(te))
    q = te.quality[ar, chosen]
    q_b, q_l = te.quality[:, best], te.quality[ar, lookup.predict_index(te.categories)]
    gain, vs_lookup = paired_difference(q, q_b, n_bootstrap, seed), paired_difference(q, q_l, n_bootstrap, seed)
    cost_te, unit = cost_matrix(te)
    row: dict[str, Any] = {
        "pool": pool, "shipped": name, "label": labels[name], "tuned_params": params.get(name, ""), "rule": f"{RULE} against {reference}",
        "argmax": rule.argmax,
        "n_test": len(te), "quality": q.mean(), "cost_unit": unit or "", "best_single": models[best], "best_single_quality": q_b.mean(),
        "gain_vs_best_single": gain[0], "gain_vs_best_single_ci_low": gain[1], "gain_vs_best_single_ci_high": gain[2],
        "lookup_quality": q_l.mean(), "gain_vs_lookup": vs_lookup[0], "gain_vs_lookup_ci_low": vs_lookup[1],
        "gain_vs_lookup_ci_high": vs_lookup[2], "runtime_agreement": agree, "files": ";".join(files),
        "not_runnable": "; ".join(f"{k}: {v}" for k, v in excluded.items()),
        "verdict": _verdict(name, labels[name], models[best]),
    }
    if cost_te is not None:
        cost_te = fill_missing_cost(cost_te, reference=cost_matrix(tr)[0])
        hc, hq = zero_router(cost_te.mean(axis=0), te.quality.mean(axis=0))
        c = float(cost_te[ar, chosen].mean())
        zero = float(hull_quality(hc, hq, c))
        row.update({"cost": c, "best_single_cost": float(cost_te[:, best].mean()), "zero_router_quality": zero,
                    "gain_vs_zero_router": float(q.mean()) - zero})
    return row, rule_table(pool, "ship", rule, labels).assign(runnable=lambda t: t["candidate"].isin(set(runnable)))


def ship_run(run_dir: str, pools: dict[str, list[str]], quality_weight: float, min_queries: int, n_bootstrap: int, seed: int,
             embed: EmbedSettings) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Ship every pool (:func:`ship_pool`); ``(ship.csv, ship_choice.csv)``. Needs the tune stage's outputs."""
    tune = run_paths(run_dir)["tune"]
    if not (tune / "cv_fold_scores.csv").is_file():
        raise FileNotFoundError(f"{tune / 'cv_fold_scores.csv'}: not found; run the tune stage first (it scores the candidates)")
    scores = pd.read_csv(tune / "cv_fold_scores.csv")
    cost_axis = read_manifest(run_dir).get("stages", {}).get("tune", {}).get("params", {}).get("cost_axis", "auto")
    rows, tables = [], []
    for pool, models in pools.items():
        row, table = ship_pool(run_dir, pool, list(models), scores, quality_weight, min_queries, n_bootstrap, seed, embed, cost_axis)
        rows.append(row)
        tables.append(table)
        log.info("ship %s: %s (held out %+.3f against always %s)", pool, row["verdict"], row["gain_vs_best_single"], row["best_single"])
    return pd.DataFrame(rows).reindex(columns=SHIP_COLUMNS), pd.concat(tables, ignore_index=True)
