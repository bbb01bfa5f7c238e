"""Stage functions: what each notebook calls, one call per step.

Every stage reads only files that earlier stages wrote into the run folder
(:func:`mlsel.config.run_paths`) and writes its own, so a notebook run alone
with papermill finds its inputs by the run-folder convention. Parameter names
are the params.yaml keys.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import subprocess
import time
from importlib import metadata
from typing import Any

import numpy as np
import pandas as pd

import mlsel
from mlsel import config, data, embed, evaluate, selectors

log = logging.getLogger(__name__)

QUERY_COLUMNS = ["query_id", "query", "category", "task", "split"]
OUTCOME_FILE_COLUMNS = ["query_id", "model", "quality", "latency_s", "response_chars"]
PACKAGES = ("numpy", "pandas", "scikit-learn", "sentence-transformers", "torch", "papermill", "matplotlib", "seaborn", "huggingface-hub")


# --------------------------------------------------------------------------- manifest


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=config.project_root(), capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=config.project_root(), capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "mlsel": mlsel.__version__}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def update_manifest(run_dir: str, stage: str, entry: dict[str, Any]) -> dict[str, Any]:
    """Merge one stage's entry into ``<run_dir>/manifest.json`` and return the manifest."""
    path = config.run_paths(run_dir)["manifest"]
    path.parent.mkdir(parents=True, exist_ok=True)
    manifest = json.loads(path.read_text()) if path.is_file() else {"stages": {}}
    manifest["git_commit"] = _git_commit()
    manifest["package_versions"] = package_versions()
    manifest["stages"][stage] = entry
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    tmp.replace(path)
    return manifest


def read_manifest(run_dir: str) -> dict[str, Any]:
    path = config.run_paths(run_dir)["manifest"]
    return json.loads(path.read_text()) if path.is_file() else {"stages": {}}


def _stage_entry(params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"params": params, "params_hash": config.params_hash(params), **extra}


# --------------------------------------------------------------------------- prepare


def _pool_models(pools: dict[str, list[str]]) -> list[str]:
    models: list[str] = []
    for pool, names in pools.items():
        if not names:
            raise config.ConfigError(f"pool {pool!r} has no models")
        models += [m for m in names if m not in models]
    return models


def load_source(source: str, source_path: str, data_dir: str, run_dir: str, models: list[str], dlog: data.DataLog, unknown_category_policy: str) -> pd.DataFrame:
    """Read the configured source into an outcome table."""
    mirror = config.data_dir(data_dir)
    if source == "mmlu_pro":
        return data.read_mmlu_pro([m for m in models], data_dir=mirror, dlog=dlog)
    if source == "llmrouter":
        return data.read_llmrouter(data_dir=mirror, dlog=dlog)
    if source == "seed_jsonl":
        if source_path.startswith("hf:"):
            path = data.fetch_seed_hf(source_path[3:] or data.SEED_HF_FILES[0])
        else:
            path = config.resolve_path(source_path)
        return data.read_seed_jsonl(path, dlog, unknown_category_policy)
    if source == "benchmark":
        path = config.resolve_path(source_path) if source_path else config.run_paths(run_dir)["benchmark"] / "output.jsonl"
        return data.read_seed_jsonl(path, dlog, unknown_category_policy)
    raise config.ConfigError(f"unknown source {source!r}; expected mmlu_pro, llmrouter, seed_jsonl or benchmark")


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
    dlog = data.DataLog()
    models = _pool_models(pools)
    df = load_source(source, source_path, data_dir, run_dir, models, dlog, unknown_category_policy)
    df = data.resolve_duplicates(df, duplicate_policy, dlog)
    df = data.restrict_to_pool(df, models, incomplete_policy, dlog)
    df = data.subsample_queries(df, max_queries, seed, dlog)
    queries = df.drop_duplicates("query_id")[["query_id", "query", "category", "task"]].sort_values("query_id")
    split = data.split_queries(queries, test_size, seed)
    queries["split"] = queries["query_id"].map(split)
    paths = config.run_paths(run_dir)
    paths["data"].mkdir(parents=True, exist_ok=True)
    evaluate.write_table(queries[QUERY_COLUMNS], paths["data"] / "queries.csv")
    outcomes = df[OUTCOME_FILE_COLUMNS].sort_values(["query_id", "model"])
    evaluate.write_table(outcomes, paths["data"] / "outcomes.csv")
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
                     outputs={f: data.sha256_file(paths["data"] / f) for f in ("queries.csv", "outcomes.csv")}),
    )
    log.info("prepared %d queries x %d models (%s)", len(queries), len(models), dlog.to_dict()["dropped"])
    return summary


def load_prepared(run_dir: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the prepare stage's ``queries.csv`` and ``outcomes.csv``."""
    paths = config.run_paths(run_dir)
    qpath, opath = paths["data"] / "queries.csv", paths["data"] / "outcomes.csv"
    if not qpath.is_file() or not opath.is_file():
        raise FileNotFoundError(f"{paths['data']}: no prepared data; run the prepare stage (00_prepare_data) first")
    queries = pd.read_csv(qpath, dtype={"query_id": str, "task": str}, keep_default_na=False)
    outcomes = pd.read_csv(opath, dtype={"query_id": str, "latency_s": float, "response_chars": float})
    return queries, outcomes


def pool_matrix(queries: pd.DataFrame, outcomes: pd.DataFrame, models: list[str]) -> data.OutcomeMatrix:
    """The query x model matrix of one pool (all splits; queries sorted by id)."""
    df = outcomes.merge(queries[["query_id", "query", "category", "task"]], on="query_id")
    return data.to_matrix(df, list(models))


def split_masks(queries: pd.DataFrame, matrix: data.OutcomeMatrix) -> tuple[np.ndarray, np.ndarray]:
    split = queries.set_index("query_id")["split"].reindex(matrix.query_ids).to_numpy()
    return split == "train", split == "test"


# --------------------------------------------------------------------------- features


def features_for(matrix: data.OutcomeMatrix, embedder: str, onehot_weight: float, embed_batch_size: int = 64, device: str = "cpu") -> np.ndarray:
    """Embed the matrix's queries (cached) and append the weighted category one-hot."""
    emb = embed.Embedder(embedder, batch_size=embed_batch_size, device=device).embed(list(matrix.queries))
    return embed.build_features(emb, matrix.categories, onehot_weight)


def data_hash(run_dir: str) -> str:
    paths = config.run_paths(run_dir)
    h = hashlib.sha256()
    for name in ("queries.csv", "outcomes.csv"):
        h.update(data.sha256_file(paths["data"] / name).encode())
    return h.hexdigest()[:16]


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
            sel = selectors.make_selector(name, params)
            t0 = time.perf_counter()
            sel.fit(X[train], tr.quality, tr.latency_s, models=models)
            fit_s = time.perf_counter() - t0
            selectors.save_selector(
                sel, config.run_paths(run_dir)["models"] / pool, name,
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
    run_dir: str, pool: str, models: list[str], matrix: data.OutcomeMatrix, train: np.ndarray, test: np.ndarray,
    selector_names: list[str], quality_weight: float, embed_batch_size: int = 64, device: str = "cpu",
) -> list[evaluate.Strategy]:
    """The strategies of one pool on its test queries: oracle, selectors, baselines."""
    te = matrix.subset(test)
    tr = matrix.subset(train)
    strategies = [evaluate.Strategy("Oracle (best possible)", "oracle", evaluate.oracle_proba(te))]
    feats: dict[tuple[str, float], np.ndarray] = {}
    for name in selector_names:
        sel, manifest = selectors.load_selector(config.run_paths(run_dir)["models"] / pool, name)
        if manifest["models"] != list(models):
            raise ValueError(f"selector {pool}/{name} was fitted on models {manifest['models']}, the pool has {models}; rerun train")
        key = (manifest["embedder"], float(manifest["onehot_weight"]))
        if key not in feats:
            feats[key] = features_for(te, key[0], key[1], embed_batch_size, device)
        strategies.append(evaluate.Strategy(selector_label(name), "selector", sel.predict_proba(feats[key])))
    return strategies + evaluate.baseline_strategies(tr, len(te), quality_weight)


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
        out = evaluate.evaluate(matrix.subset(test), strategies, pool, n_bootstrap=n_bootstrap, seed=seed)
        for key in parts:
            parts[key].append(out[key])
    tables = config.run_paths(run_dir)["tables"]
    merged = {key: pd.concat(v, ignore_index=True) for key, v in parts.items()}
    for key, df in merged.items():
        evaluate.write_table(df, tables / f"{'selection_results' if key == 'results' else key}.csv")
    md = evaluate.format_seed_tables(merged["results"])
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
    from mlsel import benchmark

    out = config.resolve_path(output) if output else config.run_paths(run_dir)["benchmark"] / "output.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    summary = benchmark.run_benchmark(
        queries=str(config.resolve_path(queries)),
        output=str(out),
        model_config=str(config.resolve_path(model_config)) if model_config else None,
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
    update_manifest(run_dir, "benchmark", {"output": str(out), "output_sha256": data.sha256_file(out), "summary": summary.to_dict("records")})
    return summary


def read_seed_tables(run_dir: str) -> str:
    """The markdown of the seed's two tables written by :func:`evaluate_selectors`."""
    path = config.run_paths(run_dir)["tables"] / "seed_tables.md"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the evaluate stage first")
    return path.read_text()
