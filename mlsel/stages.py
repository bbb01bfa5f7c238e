"""Stage functions: what the notebooks call, one call per step.

Each takes the stage's validated parameter object (:mod:`mlsel.params`; a
notebook builds it from its parameters cell with
``params.from_notebook(stage, globals())``), reads only files that earlier
stages wrote into the run folder (:func:`mlsel.paths.run_paths`) and writes its
own, so a notebook run alone with papermill finds its inputs by the
run-folder convention. The logic lives in the layers below: data, features,
selection, metrics, tuning, deploy, llm, report.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from mlsel.data.outcomes import OutcomeMatrix, data_hash, load_prepared, load_replicate, pool_matrix, pool_models, split_masks
from mlsel.data.prepare import model_summary, prepare_outcomes, write_prepared
from mlsel.deploy.routing_config import static_config
from mlsel.features import EmbedSettings, build_features
from mlsel.files import sha256_file, write_atomic, write_csv
from mlsel.manifest import params_hash, update_manifest
from mlsel.metrics.evaluate import (
    FittedLookup,
    SavedSelector,
    Strategy,
    evaluate,
    fitted_lookups,
    lookup_table,
    saved_selector_strategies,
    saved_selectors,
)
from mlsel.metrics.latency import repeatability, sweeps, weight_sweep
from mlsel.metrics.shares import SHARE_COLUMNS, label_share_rows, share_rows
from mlsel.paths import resolve_path, run_paths
from mlsel.report.blocks import Story
from mlsel.selection.registry import make_selector, save_selector

log = logging.getLogger(__name__)


def _stage_entry(p: Any, **extra: Any) -> dict[str, Any]:
    values = p.model_dump(by_alias=True)
    return {"params": values, "params_hash": params_hash(values), **extra}


# --------------------------------------------------------------------------- prepare


def prepare_data(p: Any) -> pd.DataFrame:
    """Read, validate and split the outcome data (:func:`mlsel.data.prepare.prepare_outcomes`); write ``data/queries.csv``,
    ``data/outcomes.csv`` and the source's side tables (for BFCL ``data/latency_replicate.csv``).

    The split is made by query before any label is derived, as ``split``
    says (:func:`mlsel.data.outcomes.assign_split`). Returns a per-model summary (queries, mean quality
    on train and test).
    """
    prepared = prepare_outcomes(p)
    outputs = write_prepared(prepared, run_paths(p.run_dir)["data"])
    queries, dlog, models = prepared.queries, prepared.dlog, pool_models(p.pools)
    n_train = int((queries["split"] == "train").sum())
    update_manifest(
        p.run_dir, "prepare",
        _stage_entry(p, data=dlog.to_dict(), n_queries=int(len(queries)), n_train=n_train, n_test=int(len(queries)) - n_train,
                     models=models, outputs=outputs),
    )
    log.info("prepared %d queries x %d models (%s)", len(queries), len(models), dlog.to_dict()["dropped"])
    return model_summary(prepared)


# --------------------------------------------------------------------------- benchmark


def benchmark_models(p: Any) -> pd.DataFrame:
    """Benchmark every query on every model endpoint; returns the per-model summary.

    Writes ``<run_dir>/benchmark/output.jsonl`` (or ``output``) in the seed's
    record format, which the prepare stage reads with ``source: benchmark``.
    With no ``queries`` configured nothing is called and an empty summary is
    returned: the suite then works on recorded data.
    """
    from mlsel.llm.benchmark import SUMMARY_COLUMNS, run_benchmark

    if not p.queries:
        log.info("benchmark: no queries configured; the prepare stage uses recorded data")
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    out = resolve_path(p.output) if p.output else run_paths(p.run_dir)["benchmark"] / "output.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = run_benchmark(
        queries=str(resolve_path(p.queries)),
        output=str(out),
        model_config=str(resolve_path(p.model_config_path)) if p.model_config_path else None,
        models=[m.strip() for m in p.models.split(",") if m.strip()] if p.models else None,
        endpoint=p.endpoint,
        concurrency=p.concurrency,
        limit=p.limit or None,
        max_tokens=p.max_tokens,
        temperature=p.temperature,
        timeout_s=p.timeout_s,
        max_retries=p.max_retries,
        enable_code_eval=p.enable_code_eval,
        progress=True,  # the runner relays the bar to its terminal (mlsel.progress), never into the notebook
    )
    update_manifest(p.run_dir, "benchmark", {"output": str(out), "output_sha256": sha256_file(out), "summary": summary.to_dict("records")})
    return summary


# --------------------------------------------------------------------------- train


def train_selectors(p: Any) -> pd.DataFrame:
    """Fit each selector on each pool's training queries; save them with manifests.

    Returns one row per (pool, selector): training queries, feature
    dimension, fit time in seconds. Writes ``tables/train_share.csv``: per
    pool, the share of training queries whose best model (by utility, ties to
    the better model on average) is each model, and the share each fitted
    selector routes there.
    """
    queries, outcomes = load_prepared(p.run_dir)
    dhash = data_hash(p.run_dir)
    rows, shares = [], []
    embedder = EmbedSettings.from_params(p).embedder(p.embedder)  # one model load for every pool
    for pool, models in p.pools.items():
        matrix = pool_matrix(queries, outcomes, models)
        train, _ = split_masks(queries, matrix)
        X = build_features(embedder.embed(list(matrix.queries)), matrix.categories, p.onehot_weight)
        tr = matrix.subset(train)
        for name in p.selector_names:
            sel = make_selector(name, p)
            t0 = time.perf_counter()
            sel.fit(X[train], tr.quality, tr.latency_s, models=models)
            fit_s = time.perf_counter() - t0
            if not shares or shares[-1]["pool"] != pool:  # the labels: the best model per training query, with the selectors' tie rule
                shares += label_share_rows(pool, tr, p.quality_weight, sel.rank_)
            shares += share_rows(pool, name, models, sel.predict_index(X[train]))
            save_selector(
                sel, run_paths(p.run_dir)["models"] / pool, name,
                {"embedder": p.embedder, "onehot_weight": p.onehot_weight, "data_hash": dhash, "seed": p.seed, "pool": pool,
                 "n_train_queries": int(train.sum())},
            )
            rows.append({"pool": pool, "selector": name, "n_train_queries": int(train.sum()), "feature_dim": int(X.shape[1]),
                         "fit_seconds": round(fit_s, 3)})
    summary = pd.DataFrame(rows)
    write_csv(pd.DataFrame(shares, columns=SHARE_COLUMNS), run_paths(p.run_dir)["tables"] / "train_share.csv")
    update_manifest(p.run_dir, "train", _stage_entry(p, data_hash=dhash, fitted=summary.drop(columns="fit_seconds").to_dict("records"),
                                                     embedding=embedder.info.to_dict()))
    return summary


# --------------------------------------------------------------------------- evaluate

STATIC_HEADER = ("# Static routing learned on this run's training split: each category goes to the model with the best\n"
                 "# training mean (mlsel.selection.lookup); no ML. Evaluate it offline with\n"
                 "#   mlsel evaluate-config --config <this file>\n")


def pool_strategies(p: Any, pool: str, matrix: OutcomeMatrix, train: np.ndarray, test: np.ndarray,
                    lookups: list[FittedLookup] | None = None, saved: list[SavedSelector] | None = None) -> list[Strategy]:
    """The strategies of one pool on its test queries: oracle, the trained selectors, baselines (with the static
    ``lookups`` already fitted on this split, if given: :func:`mlsel.metrics.evaluate.fitted_lookups`; ``saved``: the
    trained selectors already loaded, the test features last)."""
    return saved_selector_strategies(run_paths(p.run_dir)["models"] / pool, list(p.selector_names), list(p.pools[pool]),
                                     matrix.subset(test), matrix.subset(train), p.quality_weight, EmbedSettings.from_params(p),
                                     p.lookup_min_queries, lookups, saved)


def evaluate_selectors(p: Any) -> pd.DataFrame:
    """Evaluate every pool's selectors and baselines on the held-out queries.

    Writes ``tables/selection_results.csv``, ``per_category.csv``,
    ``selection_share.csv``, ``seed_tables.md``, the static lookups' content
    (``static_lookup.csv``), where latency is measured the utility-weight sweep
    (``latency_weight_sweep.csv``, :mod:`mlsel.metrics.latency`), where the
    prepare stage wrote the same requests timed again, how much of a latency
    repeats (``latency_repeatability.csv``) and each pool's per-category lookup as a
    per-decision routing config (``static_routing_<pool>.yaml``) into the run
    folder and returns the results table.
    """
    from mlsel.report.tables import seed_tables_markdown

    queries, outcomes = load_prepared(p.run_dir)
    parts: dict[str, list[pd.DataFrame]] = {"results": [], "per_category": [], "selection_share": [], "static_lookup": [],
                                            "latency_weight_sweep": [], "latency_repeatability": []}
    tables = run_paths(p.run_dir)["tables"]
    replicate = load_replicate(p.run_dir)
    for pool, models in p.pools.items():
        matrix = pool_matrix(queries, outcomes, models)
        train, test = split_masks(queries, matrix)
        tr, te = matrix.subset(train), matrix.subset(test)
        # The static lookups, fitted once: their baseline rows and their content (static_lookup.csv). The trained
        # selectors, loaded once: their rows and the utility-weight sweep (which also needs their training features).
        lookups = fitted_lookups(tr, te, p.quality_weight, p.lookup_min_queries)
        saved = saved_selectors(run_paths(p.run_dir)["models"] / pool, list(p.selector_names),
                                [tr, te] if sweeps(tr, te, list(p.quality_weight_sweep)) else [te], EmbedSettings.from_params(p), models)
        out = evaluate(te, pool_strategies(p, pool, matrix, train, test, lookups, saved), pool, n_bootstrap=p.n_bootstrap, seed=p.seed)
        out["static_lookup"] = lookup_table(lookups, pool)
        out["latency_weight_sweep"] = weight_sweep(saved, tr, te, pool, list(p.quality_weight_sweep), p.lookup_min_queries)
        if replicate is not None:
            out["latency_repeatability"] = repeatability(pool, tr, te, replicate)
        cat = out["static_lookup"][out["static_lookup"]["lookup"] == "category"]
        config = static_config(cat.to_dict("records"), f"best training mean of pool {pool}, {int(train.sum())} training queries")
        write_atomic(tables / f"static_routing_{pool}.yaml", STATIC_HEADER + yaml.safe_dump(config, sort_keys=False))
        for key in parts.keys() & out.keys():
            parts[key].append(out[key])
    merged = {key: pd.concat(v, ignore_index=True) for key, v in parts.items() if v}
    for key, df in merged.items():
        if not key.startswith("latency_") or len(df):  # the latency tables only where latency is measured
            write_csv(df, tables / f"{'selection_results' if key == 'results' else key}.csv")
    (tables / "seed_tables.md").write_text(seed_tables_markdown(merged["results"]) + "\n")
    update_manifest(p.run_dir, "evaluate", _stage_entry(p, data_hash=data_hash(p.run_dir)))
    return merged["results"]


def read_seed_tables(run_dir: str) -> Story:
    """The markdown of the seed's two tables written by :func:`evaluate_selectors` (a notebook renders it)."""
    path = run_paths(run_dir)["tables"] / "seed_tables.md"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the evaluate stage first")
    return Story(path.read_text())


# --------------------------------------------------------------------------- tune


def tune_selectors(p: Any) -> pd.DataFrame:
    """Tune every selector and router by CV inside the training split; evaluate the tuned ones once on test."""
    from mlsel.tuning import tune_selectors as tune

    return tune(p)


# --------------------------------------------------------------------------- ship


def evaluate_router_config(p: Any) -> pd.DataFrame | None:
    """Evaluate the per-decision routing config (``router_config``) on the held-out queries; None if none is set.

    Writes ``tables/router_config_results.csv`` and ``router_config_results.md``.
    """
    if not p.router_config:
        return None
    from mlsel.deploy.evaluate_config import evaluate_router_config as evaluate_config
    from mlsel.report.tables import router_config_markdown

    ev = evaluate_config(run_dir=p.run_dir, seed=p.seed, router_config=p.router_config, n_bootstrap=p.n_bootstrap, pools=p.pools,
                         quality_weight=p.quality_weight, lookup_min_queries=p.lookup_min_queries,
                         embed=EmbedSettings.from_params(p))
    (run_paths(p.run_dir)["tables"] / "router_config_results.md").write_text(router_config_markdown(ev) + "\n")
    return ev.result


def ship_selector(p: Any) -> pd.DataFrame:
    """What to ship, per pool: the routing config the one-standard-error rule chooses on CV among what the router runtime
    can run (the best single model, the per-category lookup, KNN / KMeans / SVM with their tuned parameters), written to
    ``<run_dir>/ship/<pool>/`` with its model file, routed and scored on the held-out queries
    (:mod:`mlsel.deploy.ship`).

    Writes ``tables/ship.csv`` (one row per pool: what is shipped, its held-out quality and cost against the best single
    model, the lookup and the zero router, the runtime agreement, a one-line verdict) and ``tables/ship_choice.csv``
    (the rule's table). Needs the tune stage's outputs.
    """
    from mlsel.deploy.ship import ship_run

    table, choice = ship_run(p.run_dir, dict(p.pools), p.quality_weight, p.lookup_min_queries, p.n_bootstrap, p.seed,
                             EmbedSettings.from_params(p))
    tables = run_paths(p.run_dir)["tables"]
    write_csv(table, tables / "ship.csv")
    write_csv(choice, tables / "ship_choice.csv")
    update_manifest(p.run_dir, "ship", {"shipped": {r["pool"]: {"candidate": r["shipped"], "label": r["label"], "files": r["files"],
                                                                 "runtime_agreement": r["runtime_agreement"]} for r in table.to_dict("records")},
                                        "data_hash": data_hash(p.run_dir)})
    return table


def export_router_models(p: Any) -> pd.DataFrame:
    """Export the train stage's selectors of ``export_pools`` (the reference parameters: k=5, 8 clusters, gamma 1) as the
    router runtime's model files; one row per file. What is shipped is :func:`ship_selector`'s choice.

    Each file is scored with the runtime's rule on the held-out queries beside
    the Python selector; the table goes to ``tables/router_export.csv`` (none
    when ``export_pools`` is empty).
    """
    from mlsel.deploy.runtime import export_pools

    table = export_pools(run_dir=p.run_dir, pools=p.pools, export_pools=p.export_pools, export_dir=p.export_dir,
                         embed=EmbedSettings.from_params(p))
    path = run_paths(p.run_dir)["tables"] / "router_export.csv"
    if len(table):
        write_csv(table.drop(columns=["folder"]), path)
    elif path.exists():
        path.unlink()
    return table


# --------------------------------------------------------------------------- report


def build_report(p: Any) -> Path:
    """Build the self-contained cross-dataset HTML report of the run into ``report_dir``; returns the page's path.

    ``run_dir`` holds one folder per dataset of ``datasets`` (as ``mlsel run`` writes them).
    """
    from mlsel.report.overview import build_run_report

    return build_run_report(run_dir=p.run_dir, datasets=list(p.datasets), report_dir=p.report_dir)
