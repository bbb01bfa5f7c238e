"""Stage functions: what each notebook calls, one call per step.

Every stage reads only files that earlier stages wrote into the run folder
(:func:`mlsel.paths.run_paths`) and writes its own, so a notebook run alone
with papermill finds its inputs by the run-folder convention. Parameter names
are the params.yaml keys.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pandas as pd

from mlsel.data.outcomes import OutcomeMatrix, resolve_duplicates, restrict_to_pool, split_queries, subsample_queries
from mlsel.data.readers import read_llmrouter, read_mmlu_pro, read_seed_jsonl
from mlsel.data.records import DataLog
from mlsel.data.sources import SEED_HF_FILES, fetch_seed_hf
from mlsel.llm.benchmark import run_benchmark
from mlsel.metrics.evaluate import Strategy, baseline_strategies, evaluate, format_seed_tables, oracle_proba
from mlsel.paths import ConfigError, params_hash, resolve_path, run_paths, write_csv
from mlsel.selection.registry import load_selector, make_selector, save_selector
from mlsel.data.outcomes import OUTCOME_FILE_COLUMNS, QUERY_COLUMNS, data_hash, load_prepared, pool_matrix, split_masks
from mlsel.features import features_for
from mlsel.paths import update_manifest
from mlsel.paths import sha256_file


log = logging.getLogger(__name__)



# --------------------------------------------------------------------------- manifest










def _stage_entry(params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"params": params, "params_hash": params_hash(params), **extra}


# --------------------------------------------------------------------------- prepare


def _pool_models(pools: dict[str, list[str]]) -> list[str]:
    models: list[str] = []
    for pool, names in pools.items():
        if not names:
            raise ConfigError(f"pool {pool!r} has no models")
        models += [m for m in names if m not in models]
    return models


def load_source(source: str, source_path: str, data_dir: str, run_dir: str, models: list[str], dlog: DataLog, unknown_category_policy: str) -> pd.DataFrame:
    """Read the configured source into an outcome table."""
    mirror = data_dir(data_dir)
    if source == "mmlu_pro":
        return read_mmlu_pro([m for m in models], data_dir=mirror, dlog=dlog)
    if source == "llmrouter":
        return read_llmrouter(data_dir=mirror, dlog=dlog)
    if source == "seed_jsonl":
        if source_path.startswith("hf:"):
            path = fetch_seed_hf(source_path[3:] or SEED_HF_FILES[0])
        else:
            path = resolve_path(source_path)
        return read_seed_jsonl(path, dlog, unknown_category_policy)
    if source == "benchmark":
        path = resolve_path(source_path) if source_path else run_paths(run_dir)["benchmark"] / "output.jsonl"
        return read_seed_jsonl(path, dlog, unknown_category_policy)
    raise ConfigError(f"unknown source {source!r}; expected mmlu_pro, llmrouter, seed_jsonl or benchmark")


def prepare_data(
    run_dir: str,
    seed: int,
    data_dir: str,
    pools: dict[str, list[str]],
    source: str,
    source_path: str,
    max_queries: int,
    test_size: float,
    duplicate_policy: str,
    incomplete_policy: str,
    unknown_category_policy: str,
    **_ignored: Any,
) -> pd.DataFrame:
    """Read, validate and split the outcome data; write ``data/queries.csv`` and ``data/outcomes.csv``.

    The split is made by query, seeded and stratified by category, before
    any label is derived. Returns a per-model summary (queries, mean quality
    on train and test).
    """
    params = {k: v for k, v in locals().items() if k not in ("_ignored",)}
    dlog = DataLog()
    models = _pool_models(pools)
    df = load_source(source, source_path, data_dir, run_dir, models, dlog, unknown_category_policy)
    df = resolve_duplicates(df, duplicate_policy, dlog)
    df = restrict_to_pool(df, models, incomplete_policy, dlog)
    df = subsample_queries(df, max_queries, seed, dlog)
    queries = df.drop_duplicates("query_id")[["query_id", "query", "category", "task"]].sort_values("query_id")
    split = split_queries(queries, test_size, seed)
    queries["split"] = queries["query_id"].map(split)
    paths = run_paths(run_dir)
    paths["data"].mkdir(parents=True, exist_ok=True)
    write_csv(queries[QUERY_COLUMNS], paths["data"] / "queries.csv")
    outcomes = df[OUTCOME_FILE_COLUMNS].sort_values(["query_id", "model"])
    write_csv(outcomes, paths["data"] / "outcomes.csv")
    summary = (
        df.merge(queries[["query_id", "split"]], on="query_id")
        .groupby(["model", "split"])["quality"].agg(["count", "mean"]).unstack("split")
    )
    summary.columns = [f"{stat}_{split}" for stat, split in summary.columns]
    summary = summary.rename(columns={"count_train": "n_train", "count_test": "n_test", "mean_train": "quality_train", "mean_test": "quality_test"}).reset_index()
    update_manifest(
        run_dir, "prepare",
        _stage_entry(params, data=dlog.to_dict(), n_queries=int(len(queries)), n_train=int((queries["split"] == "train").sum()),
                     n_test=int((queries["split"] == "test").sum()), models=models,
                     outputs={f: sha256_file(paths["data"] / f) for f in ("queries.csv", "outcomes.csv")}),
    )
    log.info("prepared %d queries x %d models (%s)", len(queries), len(models), dlog.to_dict()["dropped"])
    return summary








# --------------------------------------------------------------------------- features






# --------------------------------------------------------------------------- train


def train_selectors(
    run_dir: str,
    seed: int,
    pools: dict[str, list[str]],
    selector_names: list[str],
    embedder: str,
    embed_batch_size: int,
    device: str,
    onehot_weight: float,
    quality_weight: float,
    knn_k: int,
    kmeans_num_clusters: int,
    svm_kernel: str,
    svm_gamma: float,
    svm_c: float,
    **extra: Any,
) -> pd.DataFrame:
    """Fit each selector on each pool's training queries; save them with manifests.

    Returns one row per (pool, selector): training queries, feature
    dimension, fit time in seconds.
    """
    params = {k: v for k, v in locals().items() if k != "extra"} | extra
    if isinstance(selector_names, str):
        raise TypeError(f"selector_names must be a list, got the string {selector_names!r} (with papermill: -y 'selector_names: [knn]')")
    queries, outcomes = load_prepared(run_dir)
    dhash = data_hash(run_dir)
    rows = []
    for pool, models in pools.items():
        matrix = pool_matrix(queries, outcomes, models)
        train, _ = split_masks(queries, matrix)
        X = features_for(matrix, embedder, onehot_weight, embed_batch_size, device)
        tr = matrix.subset(train)
        for name in selector_names:
            sel = make_selector(name, params)
            t0 = time.perf_counter()
            sel.fit(X[train], tr.quality, tr.latency_s, models=models)
            fit_s = time.perf_counter() - t0
            save_selector(
                sel, run_paths(run_dir)["models"] / pool, name,
                {"embedder": embedder, "onehot_weight": onehot_weight, "data_hash": dhash, "seed": seed, "pool": pool,
                 "n_train_queries": int(train.sum())},
            )
            rows.append({"pool": pool, "selector": name, "n_train_queries": int(train.sum()), "feature_dim": int(X.shape[1]), "fit_seconds": round(fit_s, 3)})
    summary = pd.DataFrame(rows)
    update_manifest(run_dir, "train", _stage_entry(params, data_hash=dhash, fitted=summary.drop(columns="fit_seconds").to_dict("records")))
    return summary


# --------------------------------------------------------------------------- evaluate


SELECTOR_LABELS = {"knn": "KNN Selection", "kmeans": "KMEANS Selection", "svm": "SVM Selection"}


def selector_label(name: str) -> str:
    return SELECTOR_LABELS.get(name, f"{name.upper()} Selection")


def pool_strategies(
    run_dir: str, pool: str, models: list[str], matrix: OutcomeMatrix, train: np.ndarray, test: np.ndarray,
    selector_names: list[str], quality_weight: float, embed_batch_size: int = 64, device: str = "cpu",
) -> list[Strategy]:
    """The strategies of one pool on its test queries: oracle, selectors, baselines."""
    te = matrix.subset(test)
    tr = matrix.subset(train)
    strategies = [Strategy("Oracle (best possible)", "oracle", oracle_proba(te))]
    feats: dict[tuple[str, float], np.ndarray] = {}
    for name in selector_names:
        sel, manifest = load_selector(run_paths(run_dir)["models"] / pool, name)
        if manifest["models"] != list(models):
            raise ValueError(f"selector {pool}/{name} was fitted on models {manifest['models']}, the pool has {models}; rerun train")
        key = (manifest["embedder"], float(manifest["onehot_weight"]))
        if key not in feats:
            feats[key] = features_for(te, key[0], key[1], embed_batch_size, device)
        strategies.append(Strategy(selector_label(name), "selector", sel.predict_proba(feats[key])))
    return strategies + baseline_strategies(tr, len(te), quality_weight)


def evaluate_selectors(
    run_dir: str,
    seed: int,
    pools: dict[str, list[str]],
    selector_names: list[str],
    quality_weight: float,
    n_bootstrap: int,
    embed_batch_size: int = 64,
    device: str = "cpu",
    **extra: Any,
) -> pd.DataFrame:
    """Evaluate every pool's selectors and baselines on the held-out queries.

    Writes ``tables/selection_results.csv``, ``per_category.csv``,
    ``selection_share.csv`` and ``seed_tables.md`` into the run folder and
    returns the results table.
    """
    params = {k: v for k, v in locals().items() if k != "extra"} | extra
    queries, outcomes = load_prepared(run_dir)
    parts: dict[str, list[pd.DataFrame]] = {"results": [], "per_category": [], "selection_share": []}
    for pool, models in pools.items():
        matrix = pool_matrix(queries, outcomes, models)
        train, test = split_masks(queries, matrix)
        strategies = pool_strategies(run_dir, pool, models, matrix, train, test, selector_names, quality_weight, embed_batch_size, device)
        out = evaluate(matrix.subset(test), strategies, pool, n_bootstrap=n_bootstrap, seed=seed)
        for key in parts:
            parts[key].append(out[key])
    tables = run_paths(run_dir)["tables"]
    merged = {key: pd.concat(v, ignore_index=True) for key, v in parts.items()}
    for key, df in merged.items():
        write_csv(df, tables / f"{'selection_results' if key == 'results' else key}.csv")
    md = format_seed_tables(merged["results"])
    (tables / "seed_tables.md").write_text(md + "\n")
    update_manifest(run_dir, "evaluate", _stage_entry(params, data_hash=data_hash(run_dir)))
    return merged["results"]


# --------------------------------------------------------------------------- benchmark


def benchmark_models(
    run_dir: str,
    queries: str,
    model_config: str,
    models: str,
    endpoint: str,
    output: str,
    concurrency: int,
    limit: int,
    max_tokens: int,
    temperature: float,
    timeout_s: float,
    max_retries: int,
    enable_code_eval: bool,
    **_ignored: Any,
) -> pd.DataFrame:
    """Benchmark every query on every model endpoint; returns the per-model summary.

    Writes ``<run_dir>/benchmark/output.jsonl`` (or ``output``) in the seed's
    record format, which the prepare stage reads with ``source: benchmark``.
    With no ``queries`` configured nothing is called and an empty summary is
    returned: the suite then works on recorded data.
    """
    if not queries:
        log.info("benchmark: no queries configured; the prepare stage uses recorded data")
        return pd.DataFrame(columns=["model", "n", "n_ok", "n_failed", "quality_mean", "response_time_s_mean"])


    out = resolve_path(output) if output else run_paths(run_dir)["benchmark"] / "output.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = run_benchmark(
        queries=str(resolve_path(queries)),
        output=str(out),
        model_config=str(resolve_path(model_config)) if model_config else None,
        models=[m.strip() for m in models.split(",") if m.strip()] if models else None,
        endpoint=endpoint,
        concurrency=concurrency,
        limit=limit or None,
        max_tokens=max_tokens,
        temperature=temperature,
        timeout_s=timeout_s,
        max_retries=max_retries,
        enable_code_eval=enable_code_eval,
        progress=False,
    )
    update_manifest(run_dir, "benchmark", {"output": str(out), "output_sha256": sha256_file(out), "summary": summary.to_dict("records")})
    return summary


def read_seed_tables(run_dir: str) -> str:
    """The markdown of the seed's two tables written by :func:`evaluate_selectors`."""
    path = run_paths(run_dir)["tables"] / "seed_tables.md"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the evaluate stage first")
    return path.read_text()
