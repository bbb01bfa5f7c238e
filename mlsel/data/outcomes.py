"""From outcome tables to what the selectors see: pool policies, the query x model matrix, splits.

Duplicates and incomplete queries
---------------------------------
Duplicate (query, model) rows: ``duplicate_policy`` = ``error`` |
``mean`` (average them) | ``first`` (keep the first). Queries not scored by every
model of a pool: ``incomplete_policy`` = ``drop`` | ``error``, pool by pool
(:func:`restrict_to_pools`): a query stays in every pool whose models all
scored it and leaves only the others (counted per pool as
``dropped.incomplete_query_in_pool_<pool>``); a query in no pool leaves the
data (``dropped.incomplete_query``). :func:`pool_matrix` gives each pool its
complete queries. Every dropped or repaired record is counted in a
:class:`~mlsel.data.records.DataLog`, which the stage writes to the run manifest.

A pool's cost axis and the one rule for missing costs: :mod:`mlsel.data.costs`.

Splits are by query and made before any label is derived (:func:`assign_split`:
seeded and stratified by category, the source's own files, or held-out tasks);
K-fold for tuning is by query inside the training split (grouped by task when
tasks are held out).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, fields, replace

import numpy as np
import pandas as pd

from mlsel.data.records import DataError, DataLog
from mlsel.files import sha256_file
from mlsel.params import ConfigError
from mlsel.paths import run_paths

log = logging.getLogger(__name__)

def resolve_duplicates(df: pd.DataFrame, policy: str, dlog: DataLog) -> pd.DataFrame:
    """Apply ``duplicate_policy`` to repeated (query_id, model) rows."""
    dup = df.duplicated(["query_id", "model"], keep=False)
    if not dup.any():
        return df
    n_extra = int(df.duplicated(["query_id", "model"]).sum())
    first = df[dup].iloc[0]
    if policy == "error":
        raise DataError(
            f"{n_extra} duplicate (query, model) rows, e.g. model {first['model']!r} on query "
            f"{first['query'][:80]!r} (query_id {first['query_id']}); set duplicate_policy to mean or first"
        )
    if policy == "first":
        dlog.dropped["duplicate_row"] += n_extra
        return df.drop_duplicates(["query_id", "model"], keep="first").reset_index(drop=True)
    if policy == "mean":
        dlog.repaired["duplicate_rows_averaged"] += n_extra
        keys = ["query_id", "model"]
        numeric = ("quality", "latency_s", "response_chars", "cost_usd", "list_price")
        how = {c: ("mean" if c in numeric else "first") for c in df.columns if c not in keys}
        agg = df.groupby(keys, sort=False).agg(how).reset_index()
        return agg[[c for c in df.columns]]
    raise DataError(f"unknown duplicate_policy {policy!r}; expected error, mean or first")


def apply_missing_quality(df: pd.DataFrame, policy: str, dlog: DataLog) -> pd.DataFrame:
    """Apply ``missing_quality_policy`` to empty (NaN) quality cells.

    ``error``: a :class:`DataError` naming the first such cell's file and row
    (``source_row`` where the reader records it), model and query. ``drop``:
    the empty cells are removed, counted as ``dropped.missing_quality_cell``;
    a query left without a score for some pool model then leaves the pools of
    that model by ``incomplete_policy`` (:func:`restrict_to_pools`), while a
    query scored in another record of the source (RouterBench repeats some
    prompts) keeps that score. Every reader hands null/NaN/empty scores here
    as NaN quality.
    """
    bad = df["quality"].isna()
    if not bad.any():
        return df
    first = df[bad].iloc[0]
    if policy == "error":
        where = f"{first['source_row']}: " if "source_row" in df else ""
        raise DataError(
            f"{where}model {first['model']!r} has no quality on query {str(first['query'])[:80]!r} ({int(bad.sum())} empty quality "
            "cells in all); set missing_quality_policy: drop to drop such cells (counted; incomplete queries then follow incomplete_policy)"
        )
    if policy != "drop":
        raise DataError(f"unknown missing_quality_policy {policy!r}; expected error or drop")
    dlog.dropped["missing_quality_cell"] += int(bad.sum())
    return df[~bad].reset_index(drop=True)


def assign_split(queries: pd.DataFrame, df: pd.DataFrame, split: str, test_size: float, test_tasks: list[str], seed: int) -> pd.Series:
    """``train``/``test`` per query id (a Series indexed like ``queries``), by the ``split`` parameter.

    ``seeded``: :func:`split_queries`. ``source``: the source's own files
    (the reader's ``source_split`` column; a query in both is a test query).
    ``by_task``: the queries of ``test_tasks`` are the test split, every other
    task trains (out-of-distribution: no test task is ever seen in training).
    """
    qid = queries["query_id"]
    if split == "seeded":
        return qid.map(split_queries(queries, test_size, seed))
    if split == "source":
        if "source_split" not in df:
            raise ConfigError("split: source needs a source with its own train/test files (routerbench); this source has none")
        per_query = df.groupby("query_id")["source_split"].agg(lambda s: "test" if (s == "test").any() else "train")
        return qid.map(per_query)
    if split == "by_task":
        tasks = sorted(set(queries["task"]))
        unknown = [t for t in test_tasks if t not in tasks]
        if not test_tasks or unknown:
            raise ConfigError(f"split: by_task needs test_tasks from the data's tasks {tasks}; got {list(test_tasks)}")
        if set(test_tasks) >= set(tasks):
            raise ConfigError(f"split: by_task: test_tasks {list(test_tasks)} leave no task to train on")
        return queries["task"].isin(test_tasks).map({True: "test", False: "train"})
    raise ConfigError(f"unknown split {split!r}; expected seeded, source or by_task")


def _complete_queries(sub: pd.DataFrame, models: list[str]) -> pd.Index:
    """The query ids of ``sub`` with a row for every one of ``models``."""
    counts = sub[sub["model"].isin(models)].groupby("query_id")["model"].nunique()
    return counts.index[counts == len(set(models))]


def restrict_to_pools(df: pd.DataFrame, pools: dict[str, list[str]], policy: str, dlog: DataLog) -> pd.DataFrame:
    """Keep each query in every pool whose models all scored it (``incomplete_policy``, pool by pool).

    A (query, model) row stays when its model is in a pool that keeps the
    query. ``drop`` counts, per pool, the queries it leaves out as
    ``dropped.incomplete_query_in_pool_<pool>``, and the queries no pool keeps
    as ``dropped.incomplete_query``. ``error``: a :class:`DataError` naming the
    pool and one such query.
    """
    models = pool_models(pools)
    missing = sorted(set(models) - set(df["model"]))
    if missing:
        raise DataError(f"models {missing} have no records; the data has {sorted(df['model'].unique())}")
    sub = df[df["model"].isin(models)]
    n_queries = sub["query_id"].nunique()
    keep = np.zeros(len(sub), dtype=bool)
    for pool, names in pools.items():
        complete = _complete_queries(sub, names)
        n_out = n_queries - len(complete)
        if n_out:
            if policy == "error":
                q = sub[~sub["query_id"].isin(complete)].iloc[0]
                raise DataError(
                    f"pool {pool!r}: {n_out} of {n_queries} queries not scored by every model of the pool {list(names)}, e.g. "
                    f"{q['query'][:80]!r}; set incomplete_policy: drop to leave them out of that pool"
                )
            if policy != "drop":
                raise DataError(f"unknown incomplete_policy {policy!r}; expected drop or error")
            dlog.dropped[f"incomplete_query_in_pool_{pool}"] += n_out
        keep |= (sub["model"].isin(names) & sub["query_id"].isin(complete)).to_numpy()
    n_gone = n_queries - sub.loc[keep, "query_id"].nunique()
    if n_gone:
        dlog.dropped["incomplete_query"] += n_gone
    return sub[keep].reset_index(drop=True)


def restrict_to_pool(df: pd.DataFrame, models: list[str], policy: str, dlog: DataLog) -> pd.DataFrame:
    """:func:`restrict_to_pools` for one pool of ``models``; its drops are counted as ``dropped.incomplete_query`` alone."""
    one = DataLog()
    out = restrict_to_pools(df, {"pool": list(models)}, policy, one)
    if one.dropped["incomplete_query"]:
        dlog.dropped["incomplete_query"] += one.dropped["incomplete_query"]
    return out


@dataclass
class OutcomeMatrix:
    """Query x model view of an outcome table.

    Attributes
    ----------
    query_ids, queries, categories : ndarray of str, shape (n,)
    models : list of str, length m, the fixed model order
    quality : ndarray of float, shape (n, m), in [0, 1]
    latency_s : ndarray of float, shape (n, m), or None when nothing was measured
    response_chars : ndarray of float, shape (n, m), or None when unknown
    cost_usd : ndarray of float, shape (n, m), or None when the data has no real cost
    list_price : ndarray of float, shape (n, m), or None: the model's list price per 1M tokens (a proxy)
    tasks : ndarray of str, shape (n,), or None when the data names no task (the dataset or benchmark a query came from)
    """

    query_ids: np.ndarray
    queries: np.ndarray
    categories: np.ndarray
    models: list[str]
    quality: np.ndarray
    latency_s: np.ndarray | None
    response_chars: np.ndarray | None
    cost_usd: np.ndarray | None = None
    list_price: np.ndarray | None = None
    tasks: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.query_ids)

    def subset(self, mask_or_index: np.ndarray) -> "OutcomeMatrix":
        idx = np.asarray(mask_or_index)
        rows = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "models"}
        return OutcomeMatrix(models=list(self.models), **{k: None if v is None else v[idx] for k, v in rows.items()})

    def select_models(self, models: list[str]) -> "OutcomeMatrix":
        cols = [self.models.index(m) for m in models]
        return replace(self, models=list(models), **{k: None if getattr(self, k) is None else getattr(self, k)[:, cols]
                                                     for k in PER_MODEL_FIELDS})


PER_MODEL_FIELDS = ("quality", "latency_s", "response_chars", "cost_usd", "list_price")
"""The (n, m) fields of :class:`OutcomeMatrix`; the others are per query (n,)."""


def to_matrix(df: pd.DataFrame, models: list[str]) -> OutcomeMatrix:
    """Pivot a complete outcome table to an :class:`OutcomeMatrix` (queries sorted by id)."""
    sub = df[df["model"].isin(models)]
    meta = sub.drop_duplicates("query_id").set_index("query_id").sort_index()
    def pivot(col: str) -> np.ndarray:
        wide = sub.pivot(index="query_id", columns="model", values=col).reindex(index=meta.index, columns=models)
        return wide.to_numpy(dtype=float)
    quality = pivot("quality")
    if np.isnan(quality).any():
        raise DataError("outcome table is incomplete for this pool; run restrict_to_pool first")
    lat = pivot("latency_s")
    chars = pivot("response_chars")
    usd = pivot("cost_usd") if "cost_usd" in sub else np.full_like(quality, np.nan)
    price = pivot("list_price") if "list_price" in sub else np.full_like(quality, np.nan)
    tasks = meta["task"].fillna("").to_numpy(dtype=str) if "task" in meta else None
    tasks = None if tasks is None or not (tasks != "").any() else tasks
    return OutcomeMatrix(
        meta.index.to_numpy(dtype=str),
        meta["query"].to_numpy(dtype=str),
        meta["category"].to_numpy(dtype=str),
        list(models),
        quality,
        None if np.isnan(lat).all() else lat,
        None if np.isnan(chars).all() else chars,
        None if np.isnan(usd).all() else usd,
        None if np.isnan(price).all() else price,
        tasks,
    )


def split_queries(queries: pd.DataFrame, test_size: float, seed: int) -> pd.Series:
    """The ``seeded`` split: each query to ``train`` or ``test``, stratified by category.

    Parameters
    ----------
    queries : DataFrame with columns ``query_id`` and ``category``, one row per query
    test_size : fraction of queries held out, in (0, 1)
    seed : random seed; the same (queries, seed) always gives the same split

    Returns
    -------
    Series indexed by query_id with values ``"train"`` / ``"test"``.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be in (0, 1), got {test_size}")
    q = queries.drop_duplicates("query_id").sort_values("query_id").reset_index(drop=True)
    try:
        _, te = train_test_split(q["query_id"], test_size=test_size, random_state=seed, stratify=q["category"])
    except ValueError:
        # Too few queries per category to stratify (tiny data): a plain seeded split.
        log.warning("split: too few queries per category to stratify; using an unstratified seeded split")
        _, te = train_test_split(q["query_id"], test_size=test_size, random_state=seed)
    out = pd.Series("train", index=q["query_id"].to_numpy(), name="split")
    out.loc[te.to_numpy()] = "test"
    return out


def kfold_queries(query_ids: np.ndarray, categories: np.ndarray, n_splits: int, seed: int,
                  groups: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """K-fold by query, a list of (train_index, valid_index) pairs: stratified by category, or, with ``groups``
    (e.g. tasks), grouped (seeded shuffle of the groups; no group on both sides of a fold)."""
    from sklearn.model_selection import GroupKFold, KFold, StratifiedKFold

    if groups is not None:
        return list(GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(query_ids, groups=groups))

    counts = pd.Series(categories).value_counts()
    if (counts >= n_splits).all():
        cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        return list(cv.split(query_ids, categories))
    cv = KFold(n_splits=n_splits, shuffle=True, random_state=seed)
    return list(cv.split(query_ids))


def subsample_queries(df: pd.DataFrame, max_queries: int, seed: int, dlog: DataLog) -> pd.DataFrame:
    """Keep a seeded, category-stratified sample of ``max_queries`` queries (0 = all)."""
    qids = df.drop_duplicates("query_id")[["query_id", "category"]]
    if not max_queries or max_queries >= len(qids):
        return df
    keep = split_queries(qids, test_size=max_queries / len(qids), seed=seed)
    kept = set(keep[keep == "test"].index)
    dlog.dropped["subsampled_out_by_max_queries"] += len(qids) - len(kept)
    return df[df["query_id"].isin(kept)].reset_index(drop=True)


QUERY_COLUMNS = ["query_id", "query", "category", "task", "split"]


OUTCOME_FILE_COLUMNS = ["query_id", "model", "quality", "latency_s", "response_chars", "cost_usd", "list_price"]


def load_prepared(run_dir: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the prepare stage's ``queries.csv`` and ``outcomes.csv``."""
    paths = run_paths(run_dir)
    qpath, opath = paths["data"] / "queries.csv", paths["data"] / "outcomes.csv"
    if not qpath.is_file() or not opath.is_file():
        raise FileNotFoundError(f"{paths['data']}: no prepared data; run the prepare stage (00_prepare_data) first")
    queries = pd.read_csv(qpath, dtype={"query_id": str, "task": str}, keep_default_na=False)
    outcomes = pd.read_csv(opath, dtype={"query_id": str, "latency_s": float, "response_chars": float, "cost_usd": float,
                                         "list_price": float})
    return queries, outcomes


REPLICATE_FILE = "latency_replicate.csv"
"""The prepared side table of the same requests timed again in another run (``query_id, model, latency_s``)."""


def load_replicate(run_dir: str) -> pd.DataFrame | None:
    """The prepare stage's :data:`REPLICATE_FILE`, or None where the source has no second timing."""
    path = run_paths(run_dir)["data"] / REPLICATE_FILE
    return pd.read_csv(path, dtype={"query_id": str}) if path.is_file() else None


def pool_matrix(queries: pd.DataFrame, outcomes: pd.DataFrame, models: list[str]) -> OutcomeMatrix:
    """The query x model matrix of one pool: the prepared queries scored by every model of it (all splits; sorted by id).

    A prepared query may lack a score of a model of another pool
    (:func:`restrict_to_pools`); it is in this pool's matrix only if all of ``models`` scored it.
    """
    sub = outcomes[outcomes["model"].isin(models)]
    sub = sub[sub["query_id"].isin(_complete_queries(sub, list(models)))]
    df = sub.merge(queries[["query_id", "query", "category", "task"]], on="query_id")
    return to_matrix(df, list(models))


def split_masks(queries: pd.DataFrame, matrix: OutcomeMatrix) -> tuple[np.ndarray, np.ndarray]:
    split = queries.set_index("query_id")["split"].reindex(matrix.query_ids).to_numpy()
    return split == "train", split == "test"


def data_hash(run_dir: str) -> str:
    paths = run_paths(run_dir)
    h = hashlib.sha256()
    for name in ("queries.csv", "outcomes.csv"):
        h.update(sha256_file(paths["data"] / name).encode())
    return h.hexdigest()[:16]


def pool_models(pools: dict[str, list[str]]) -> list[str]:
    """Every model of the pools, each once, in first-seen order; an empty pool is an error."""
    models: list[str] = []
    for pool, names in pools.items():
        if not names:
            raise ConfigError(f"pool {pool!r} has no models")
        models += [m for m in names if m not in models]
    return models
