"""The prepare pipeline: read the configured source, apply the data policies in order, split by query.

The order is fixed: read (:func:`mlsel.data.readers.read_source`), then
``missing_quality_policy``, ``duplicate_policy``, the pools with
``incomplete_policy``, ``max_queries``; the split is made by query
(:func:`mlsel.data.outcomes.assign_split`) before any label is derived. Every
drop and repair is counted in the returned :class:`~mlsel.data.records.DataLog`.
A source's side tables (:func:`mlsel.data.readers.read_side_tables`) are kept for
the prepared queries only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlsel import files
from mlsel.data.outcomes import (
    OUTCOME_FILE_COLUMNS,
    QUERY_COLUMNS,
    apply_missing_quality,
    assign_split,
    pool_models,
    resolve_duplicates,
    restrict_to_pools,
    subsample_queries,
)
from mlsel.data.readers import read_side_tables, read_source
from mlsel.data.records import DataLog


@dataclass(frozen=True)
class Prepared:
    """The prepare stage's result: queries with their split, outcomes, side tables by file name, and the data log."""

    queries: pd.DataFrame
    outcomes: pd.DataFrame
    side_tables: dict[str, pd.DataFrame]
    dlog: DataLog


def prepare_outcomes(p: Any) -> Prepared:
    """Read, validate and split the outcome data of the ``prepare`` parameters ``p``."""
    dlog = DataLog()
    models = pool_models(p.pools)
    df = read_source(p.source, p.source_path, p.data_dir, p.run_dir, models, dlog, p.unknown_category_policy)
    df = apply_missing_quality(df, p.missing_quality_policy, dlog)
    df = resolve_duplicates(df, p.duplicate_policy, dlog)
    df = restrict_to_pools(df, p.pools, p.incomplete_policy, dlog)
    df = subsample_queries(df, p.max_queries, p.seed, dlog)
    queries = df.drop_duplicates("query_id")[["query_id", "query", "category", "task"]].sort_values("query_id")
    queries["split"] = assign_split(queries, df, p.split, p.test_size, list(p.test_tasks), p.seed)
    side = {name: t[t["query_id"].isin(queries["query_id"])].sort_values(["query_id", "model"])
            for name, t in read_side_tables(p.source, p.data_dir, models, dlog).items()}
    return Prepared(queries[QUERY_COLUMNS], df, side, dlog)


def write_prepared(prepared: Prepared, folder: Path) -> dict[str, str]:
    """Write ``queries.csv``, ``outcomes.csv`` and the side tables into ``folder``; the SHA-256 of the first two."""
    folder.mkdir(parents=True, exist_ok=True)
    files.write_csv(prepared.queries, folder / "queries.csv")
    files.write_csv(prepared.outcomes.reindex(columns=OUTCOME_FILE_COLUMNS).sort_values(["query_id", "model"]), folder / "outcomes.csv")
    for name, table in prepared.side_tables.items():
        files.write_csv(table, folder / name)
    return {f: files.sha256_file(folder / f) for f in ("queries.csv", "outcomes.csv")}


def model_summary(prepared: Prepared) -> pd.DataFrame:
    """Per model: queries and mean quality on the train and test splits."""
    summary = (
        prepared.outcomes.merge(prepared.queries[["query_id", "split"]], on="query_id")
        .groupby(["model", "split"])["quality"].agg(["count", "mean"]).unstack("split")
    )
    summary.columns = [f"{stat}_{split}" for stat, split in summary.columns]
    names = {"count_train": "n_train", "count_test": "n_test", "mean_train": "quality_train", "mean_test": "quality_test"}
    return summary.rename(columns=names).reset_index()
