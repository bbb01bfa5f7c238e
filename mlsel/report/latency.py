"""The report's sections on measured latency: the utility-weight sweep and how much of a latency repeats."""

from __future__ import annotations

import pandas as pd

from mlsel.metrics.latency import ALL_MODELS, MODEL_MEAN, prediction_sentence, repeatability_sentence
from mlsel.report.blocks import Section, Text
from mlsel.report.tables import generic_table, slug


def latency_section(sw: pd.DataFrame) -> Section:
    """The utility-weight sweep (:mod:`mlsel.metrics.latency`): per pool, each quality_weight's held-out quality and latency."""
    sec = Section("latency-weight", "What quality_weight does on measured latency")
    sec.blocks.append(Text(text=(
        "Each selector scores a model by quality_weight * quality + (1 - quality_weight) / (1 + latency in seconds). Refitted on the "
        "training split with each weight and scored on the held-out queries: a lower weight buys speed with quality. Latency is "
        "that of the chosen answers: mean, median and 90th percentile; faster % is the share of queries sent to a faster answer "
        "than the same strategy picks at the highest weight."), shared="The utility-weight sweep on measured latency"))
    shown = sw.assign(avg_cost_usd=sw["avg_cost_usd"] * 1000).rename(columns={
        "quality_weight": "quality_weight", "strategy": "Strategy", "avg_quality": "Quality", "avg_latency_s": "Mean s",
        "median_latency_s": "Median s", "p90_latency_s": "p90 s", "avg_cost_usd": "USD per 1,000", "fast_choice_pct": "faster %"})
    for pool, df in shown.groupby("pool", sort=False):
        sec.blocks.append(generic_table(df.drop(columns="pool"), f"table-latency-weight-{slug(str(pool))}",
                                        f"Pool {pool}: the utility-weight sweep on the held-out queries.",
                                        link="tables/latency_weight_sweep.csv", max_rows=len(df)))
    return sec


def repeatability_section(rep: pd.DataFrame) -> Section:
    """Per pool: the sentence on how much of a request's latency repeats, and the per-model table."""
    sec = Section("latency-repeat", "How much of a request's latency repeats")
    sec.blocks.append(Text(text=(
        "The same requests were timed again in an independent run of the benchmark. Each model's latency is predicted from the "
        "training split (its geometric mean there) and compared on the held-out requests with the other run's timing; "
        f"\"{ALL_MODELS}\" pools the models timed in both runs."), shared="How much of a latency repeats"))
    for pool, df in rep.groupby("pool", sort=False):
        sec.blocks.append(Text(text=f"Pool {pool}: {repeatability_sentence(df)}"))
        sec.blocks.append(generic_table(df.drop(columns="pool"), f"table-latency-repeat-{slug(str(pool))}",
                                        f"Pool {pool}: latency measured twice.", link="tables/latency_repeatability.csv",
                                        max_rows=len(df)))
    return sec


def prediction_blocks(pred: pd.DataFrame) -> list:
    """Per pool: the sentence on the tuned routers' per-query latency predictions, and their table."""
    out = []
    for pool, df in pred.groupby("pool", sort=False):
        out.append(Text(text=f"Pool {pool}, the routers' predictions: {prediction_sentence(df)}"))
        out.append(generic_table(df.drop(columns="pool"), f"table-latency-prediction-{slug(str(pool))}",
                                 f"Pool {pool}: per-query latency predicted by the tuned routers (fitted on the training split) "
                                 f"against {MODEL_MEAN.lower()}, on the held-out pairs timed in both runs.",
                                 link="tables/latency_prediction.csv", max_rows=len(df)))
    return out


def latency_sections(sweep: pd.DataFrame | None, repeat: pd.DataFrame | None, predicted: pd.DataFrame | None = None) -> list[Section]:
    """The latency sections the run's tables allow (none without measured latency)."""
    out = [latency_section(sweep)] if sweep is not None and len(sweep) else []
    if repeat is not None and len(repeat):
        out.append(repeatability_section(repeat))
        if predicted is not None and len(predicted):
            out[-1].blocks += prediction_blocks(predicted)
    return out
