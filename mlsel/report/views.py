"""What each stage notebook shows at its end: the stage's key table, its figure and a few sentences.

The figures are drawn by the report's own functions (:mod:`mlsel.report.figures`),
so a notebook shows what the page shows; the sentences are computed from the
values (no number is typed in). Each function reads the run folder the stage
has just written (:func:`mlsel.paths.run_paths`).

=========  ======================================  ==================================================
stage      table                                   figure
=========  ======================================  ==================================================
prepare    :func:`category_quality`                :func:`category_quality_figure` (heatmap)
benchmark  :func:`benchmark_story` (its summary)   :func:`benchmark_figure` (none without queries)
train      :func:`training_share`                  :func:`training_share_figure` (shares)
evaluate   :func:`results_table`                   :func:`quality_cost_figures` (one per pool)
tune       :func:`routing_summary`                 :func:`cv_curve_figures`, :func:`frontier_figures`
ship       :func:`router_config_tables`,           :func:`router_config_figures` (none without a config)
           :func:`export_table`
report     :func:`routing_summary` (all datasets)  :func:`gain_summary_figure`
=========  ======================================  ==================================================
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from mlsel.data.outcomes import load_prepared
from mlsel.manifest import read_manifest
from mlsel.paths import project_root, resolve_path, run_paths
from mlsel.report.blocks import Figure, Story, Table
from mlsel.report.figures import benchmark_figure as benchmark_figure_of
from mlsel.report.figures import heatmap_figure, scatter_figure, share_figure, ship_figure, style
from mlsel.report.overview import dataset_title, gain_at_b_figure, read_summary, summary_table, verdict
from mlsel.report.page import efficiency_section
from mlsel.report.tables import benefit_rows, efficiency_column, export_sentences, fmt_ci, fmt_num, main_table, read_table, verdicts
from mlsel.report.tuned import cv_curves_blocks, frontier_blocks

ALL = "all categories"
"""The last row of :func:`category_quality`: every training query."""


def frame(table: Table) -> pd.DataFrame:
    """A report table as a DataFrame of its printed cells (what the page shows)."""
    return pd.DataFrame([[text for text, _ in row] for row in table.rows], columns=table.columns)


def _tables(run_dir: str) -> Path:
    return run_paths(run_dir)["tables"]


def _required(run_dir: str, name: str, stage: str) -> pd.DataFrame:
    table = read_table(_tables(run_dir), name)
    if table is None:
        raise FileNotFoundError(f"{_tables(run_dir) / name}: not found; run the {stage} stage first")
    return table


# --------------------------------------------------------------------------- prepare


def category_quality(run_dir: str, pools: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """Per category: training and test queries, and each model's mean quality on the training queries; last row all of them.

    Models in the pools' order (the models of the data without ``pools``)."""
    queries, outcomes = load_prepared(run_dir)
    counts = pd.crosstab(queries["category"], queries["split"]).reindex(columns=["train", "test"], fill_value=0)
    counts.columns = ["n_train", "n_test"]
    train = outcomes.merge(queries.loc[queries["split"] == "train", ["query_id", "category"]], on="query_id")
    models = list(dict.fromkeys(m for ms in (pools or {"": list(dict.fromkeys(outcomes["model"]))}).values() for m in ms))
    by_cat = train.pivot_table(index="category", columns="model", values="quality", aggfunc="mean").reindex(columns=models)
    overall = train.groupby("model")["quality"].mean().reindex(models).to_frame(ALL).T
    table = counts.join(by_cat, how="left")
    table.loc[ALL] = [int(counts["n_train"].sum()), int(counts["n_test"].sum()), *overall.loc[ALL].to_list()]
    table[["n_train", "n_test"]] = table[["n_train", "n_test"]].astype(int)
    table.index.name = "category"
    return table


def category_quality_figure(table: pd.DataFrame) -> Figure:
    style()
    mat = table.drop(columns=["n_train", "n_test"])
    mat.index = [f"{c} (n={n})" for c, n in zip(table.index, table["n_train"])]
    return heatmap_figure(mat, "Mean quality per category, training queries", "model", "category", "fig-category-quality",
                          "Each model's mean quality on the training queries of each category (last row: all of them).",
                          cbar_label="mean quality")


def prepare_story(table: pd.DataFrame, run_dir: str) -> Story:
    cats, models = table.drop(index=ALL), [c for c in table.columns if c not in ("n_train", "n_test")]
    overall = table.loc[ALL, models].astype(float)
    best = str(overall.idxmax())
    seen = cats[cats["n_train"] > 0]  # a category may have held-out queries only (no training mean to compare)
    unseen = [str(c) for c in cats.index[cats["n_train"] == 0]]
    leaders = seen[models].astype(float).idxmax(axis=1)
    others = leaders[leaders != best]
    spread = (seen[models].max(axis=1) - seen[models].min(axis=1)).astype(float)
    data = read_manifest(run_dir)["stages"]["prepare"].get("data", {})
    dropped = {k: v for k, v in data.get("dropped", {}).items() if v}
    repaired = {k: v for k, v in data.get("repaired", {}).items() if v}
    lines = [
        f"**{int(table.loc[ALL, 'n_train']) + int(table.loc[ALL, 'n_test'])} queries** in {len(cats)} categories, split by query into "
        f"{int(table.loc[ALL, 'n_train'])} training and {int(table.loc[ALL, 'n_test'])} held-out queries, each answered by all "
        f"{len(models)} models.",
        f"On the training queries the best model overall is **{best}** ({fmt_num(overall[best])}); it leads in "
        f"{int((leaders == best).sum())} of {len(seen)} categories with training queries"
        + (f", and other models lead in {', '.join(f'{c} ({m})' for c, m in others.items())}." if len(others) else ", in every one: "
           "a per-query selector can only gain where models differ on individual queries.")
        + (f" Held-out queries only (nothing to learn from): {', '.join(unseen)}." if unseen else ""),
        f"Models differ most in {spread.idxmax()} (mean quality from {fmt_num(seen.loc[spread.idxmax(), models].min())} to "
        f"{fmt_num(seen.loc[spread.idxmax(), models].max())}) and least in {spread.idxmin()} (a spread of {fmt_num(spread.min())}).",
        ("Dropped records: " + ", ".join(f"{k} {v}" for k, v in dropped.items()) + "." if dropped else "No record was dropped.")
        + (" Repaired: " + ", ".join(f"{k} {v}" for k, v in repaired.items()) + "." if repaired else ""),
    ]
    return Story("\n\n".join(lines))


# --------------------------------------------------------------------------- benchmark


def benchmark_figure(summary: pd.DataFrame) -> Figure | None:
    """Quality and response time per model; None when nothing was benchmarked (no figure to draw)."""
    if summary.empty:
        return None
    style()
    return benchmark_figure_of(summary)


def benchmark_story(summary: pd.DataFrame, queries: str) -> Story:
    """What the benchmark asked and got back, per model (its summary table), in a few sentences."""
    if summary.empty:
        return Story("No queries were configured (`queries` is empty), so no endpoint was called; the prepare stage reads recorded "
                     "results." if not queries else f"No model answered any query of `{queries}`.")
    best = summary.loc[summary["quality_mean"].astype(float).idxmax()]
    fast = summary.loc[summary["response_time_s_mean"].astype(float).idxmin()]
    text = (f"Asked {int(summary['n'].max())} queries of {len(summary)} models: {int(summary['n_ok'].sum())} answers, "
            f"{int(summary['n_failed'].sum())} failed calls (recorded as failures, never as quality 0). Best mean quality: "
            f"**{best['model']}** ({fmt_num(best['quality_mean'])}); fastest: {fast['model']} ({fmt_num(fast['response_time_s_mean'], 2)} s "
            "per answer).")
    if "cost_usd_total" in summary and summary["cost_usd_total"].notna().any():
        text += f" Total cost: {fmt_num(summary['cost_usd_total'].sum(), 4)} USD."
    return Story(text)


# --------------------------------------------------------------------------- train


def training_share(run_dir: str) -> pd.DataFrame:
    """Per pool, rows the training labels and each fitted selector, columns the pool's models: share of training queries (%)."""
    share = _required(run_dir, "train_share.csv", "train")
    share["row"] = share["pool"] + " · " + share["strategy"]
    return share.pivot_table(index="row", columns="model", values="share_pct", aggfunc="sum", sort=False).fillna(0.0)


def training_share_figure(share: pd.DataFrame) -> Figure:
    style()
    return share_figure(share, "Training queries: best model (labels) and each selector's choices", "fig-training-share",
                        "Per pool: the share of training queries whose best model is each model, and where each fitted selector routes them.")


def train_story(fitted: pd.DataFrame, share: pd.DataFrame) -> Story:
    lines = [f"Fitted {fitted['selector'].nunique()} selectors on each of {fitted['pool'].nunique()} pools, on "
             f"{int(fitted['n_train_queries'].iloc[0])} training queries with {int(fitted['feature_dim'].iloc[0])} features each, in "
             f"{fmt_num(fitted['fit_seconds'].sum(), 1)} s (slowest: {fitted.loc[fitted['fit_seconds'].idxmax(), 'selector']} on pool "
             f"{fitted.loc[fitted['fit_seconds'].idxmax(), 'pool']}, {fmt_num(fitted['fit_seconds'].max(), 1)} s)."]
    for pool in dict.fromkeys(fitted["pool"]):
        rows = share.loc[[r for r in share.index if r.startswith(f"{pool} · ")]]
        labels = rows.iloc[0]
        top = str(labels.idxmax())
        picks = ", ".join(f"{r.split(' · ', 1)[1]} {fmt_num(rows.loc[r, top], 1)}%" for r in rows.index[1:])
        lines.append(f"Pool {pool}: {top} is the best model on {fmt_num(labels[top], 1)}% of the training queries; the share of "
                     f"training queries each selector routes to it: {picks}.")
    return Story("\n\n".join(lines))


# --------------------------------------------------------------------------- evaluate


def results_table(results: pd.DataFrame) -> pd.DataFrame:
    """The report's main results table (quality with 95% CI, efficiency, Best Model %, difference to the best single model), all pools."""
    parts = []
    for pool, df in results.groupby("pool", sort=False):
        t = frame(main_table(df))
        t.insert(0, "Pool", pool)
        parts.append(t)
    return pd.concat(parts, ignore_index=True)


def quality_cost_figures(results: pd.DataFrame) -> list[Figure]:
    """The report's quality-vs-cost figure, one per pool that has an efficiency column (its "Quality vs efficiency" section)."""
    style()
    return [b for b in efficiency_section(results).blocks if isinstance(b, Figure)]


def evaluate_story(results: pd.DataFrame) -> Story:
    lines = []
    for pool, df in results.groupby("pool", sort=False):
        o, r = df[df["kind"] == "oracle"], df[df["kind"] == "random"]
        lines.append(f"**Pool {pool}** ({int(df['n_queries'].iloc[0])} held-out queries; oracle {fmt_num(o['avg_quality'].iloc[0]) if len(o) else '—'}, "
                     f"random {fmt_num(r['avg_quality'].iloc[0]) if len(r) else '—'}): " + " ".join(verdicts(df)[:1])
                     + f" {int((benefit_rows(df)['uplift_vs_best_single_ci_low'] > 0).sum())} of {len(benefit_rows(df))} selectors beat the "
                     "best single model (the whole 95% interval of the difference above 0).")
    return Story("\n\n".join(lines))


# --------------------------------------------------------------------------- tune


def routing_summary(run_dir: str, datasets: list[str] | None = None) -> pd.DataFrame:
    """The report's headline matrix (Gain@B, CostSave@B, AIQ with CIs): of ``datasets`` under ``run_dir``, or of one dataset's folder."""
    if datasets is None:
        table = _required(run_dir, "summary.csv", "tune")
        table.insert(0, "dataset", Path(run_dir).name)
        return table
    return read_summary(run_dir, datasets)[0]


def summary_frame(summary: pd.DataFrame) -> pd.DataFrame:
    return frame(summary_table(summary))


def cv_curve_figures(run_dir: str) -> list[Figure]:
    style()
    return cv_curves_blocks(_required(run_dir, "tune_heatmap.csv", "tune"))


def frontier_figures(run_dir: str) -> list[Figure]:
    style()
    blocks = frontier_blocks(_required(run_dir, "frontier.csv", "tune"), read_table(_tables(run_dir), "tuned_results.csv"))
    return [b for b in blocks if isinstance(b, Figure)]


def routing_story(summary: pd.DataFrame) -> Story:
    return Story("\n\n".join(f"- {verdict(r)}" for r in summary.itertuples(index=False)))


# --------------------------------------------------------------------------- ship


SHIP_VIEW = {"pool": "pool", "label": "shipped", "quality": "held-out quality", "gain_vs_best_single": "vs best single",
             "gain_vs_lookup": "vs lookup", "cost": "cost", "cost_unit": "cost unit", "runtime_agreement": "runtime agreement",
             "files": "files"}


def ship_table(shipped: pd.DataFrame) -> pd.DataFrame:
    """What is shipped per pool (``tables/ship.csv``): the config, its held-out quality and gains with CIs, cost, agreement."""
    t = shipped.copy()
    for col in ("gain_vs_best_single", "gain_vs_lookup"):
        t[col] = [fmt_ci(g, lo, hi, 3, True) for g, lo, hi in zip(t[col], t[f"{col}_ci_low"], t[f"{col}_ci_high"])]
    t["quality"] = t["quality"].map(lambda v: f"{v:.3f}")
    return t[[c for c in SHIP_VIEW if c in t]].rename(columns=SHIP_VIEW)


def ship_choice_story(shipped: pd.DataFrame) -> Story:
    """The rule, then each pool's one-line verdict (``tables/ship.csv``)."""
    from mlsel.metrics.one_se import RULE_TEXT
    from mlsel.report.shipping import ship_sentence

    return Story(f"Chosen on the tune stage's CV inside the training split: {RULE_TEXT} (`tables/ship_choice.csv`).\n\n"
                 + "\n\n".join(f"- **{r.pool}**: {ship_sentence(r)}" for r in shipped.itertuples(index=False)))


def ship_figures(shipped: pd.DataFrame) -> list[Figure]:
    """The shipped config's gains per pool (:func:`mlsel.report.figures.ship_figure`); none without a row."""
    if shipped.empty:
        return []
    style()
    return [ship_figure(shipped)]


def router_config_tables(run_dir: str, router_results: pd.DataFrame | None) -> Story:
    """The routing config's tables as ``router_config_results.md`` has them (routing, overall, one per decision), or why there are none."""
    if router_results is None:
        return Story("No per-decision routing config was evaluated: `router_config` is empty.")
    return Story((_tables(run_dir) / "router_config_results.md").read_text())


def router_config_figures(router_results: pd.DataFrame | None) -> list[Figure]:
    """The report's quality-vs-cost figure of the config's overall table: the routed choices beside every algorithm and baseline."""
    if router_results is None:
        return []
    overall = router_results[router_results["decision"] == "overall"]
    col = efficiency_column(overall)[0]
    if col not in overall or overall[col].isna().all():
        return []
    style()
    models = len(str(overall["model_refs"].iloc[0]).split(";"))
    return [scatter_figure(overall.sort_values("avg_quality", ascending=False, kind="mergesort"), f"all {models} models (router config)",
                           "fig-scatter-router-config")]


def export_table(exported: pd.DataFrame) -> pd.DataFrame:
    """``tables/router_export.csv`` as written: one row per exported file (the local folder left out)."""
    return exported.drop(columns=["folder"])


def _config_sentence(router_results: pd.DataFrame) -> str:
    overall = router_results[router_results["decision"] == "overall"]
    cfg = overall[overall["kind"] == "router_config"].iloc[0]
    algos = overall[overall["kind"] == "selector"].sort_values("avg_quality", ascending=False, kind="mergesort")
    return (f"**{cfg['strategy']}** on {int(cfg['n_queries'])} held-out queries: average quality {fmt_num(cfg['avg_quality'], 3)}"
            + (f", against {fmt_num(algos['avg_quality'].iloc[0], 3)} for the best single-algorithm configuration "
               f"({algos['strategy'].iloc[0]})" if len(algos) else "")
            + f" and {fmt_num(overall.loc[overall['kind'] == 'best_single', 'avg_quality'].iloc[0], 3)} for the best single model.")


def ship_story(router_results: pd.DataFrame | None, exported: pd.DataFrame) -> Story:
    """One sentence on the config against the best single-algorithm configuration and the best single model, one per exported pool."""
    lines = ["No per-decision routing config was evaluated (`router_config` is empty)."] if router_results is None else [
        _config_sentence(router_results)]
    lines += export_sentences(exported) if len(exported) else ["No pool is exported (`export_pools` is empty)."]
    return Story("\n\n".join(lines))


def ship_check(router_results: pd.DataFrame | None, exported: pd.DataFrame) -> str:
    """What notebook 50 checks: each decision's held-out queries and oracle quality, and the files shipped (no embedding arithmetic)."""
    parts = []
    if router_results is not None:
        oracle = router_results[router_results["kind"] == "oracle"][["decision", "n_queries", "avg_quality"]]
        parts.append(oracle.round(4).to_string(index=False))
    if len(exported):
        parts.append(exported[["pool", "algorithm", "file", "rule", "n_test"]].to_string(index=False))
    return "\n\n".join(parts) or "nothing shipped"


# --------------------------------------------------------------------------- report


def gain_summary_figure(summary: pd.DataFrame) -> Figure | None:
    """Gain@B with its CI per dataset and pool; None when no dataset has a summary row (no tune stage has run)."""
    if summary.empty:
        return None
    style()
    return gain_at_b_figure(summary)


def report_story(summary: pd.DataFrame, page: Any) -> Story:
    """How many dataset-pool rows routing paid off in, and a link to the page (relative to the notebooks folder, as JupyterLab opens it)."""
    page = Path(page)
    try:
        link = Path("..") / page.resolve().relative_to(project_root())
    except ValueError:
        link = page.resolve()
    tail = f"\n\n[Open the report]({link.as_posix()}) — `{resolve_path(str(page))}`"
    if summary.empty:
        return Story("No dataset has a headline row yet: its tune stage, which chooses the router by cross-validation, has not run; "
                     "the page shows each dataset's own sections." + tail)
    paid = summary[summary["gain_at_b_ci_low"] > 0]
    saved = summary[summary["cost_save_at_b_ci_low"] > 0] if "cost_save_at_b_ci_low" in summary else summary.iloc[:0]
    head = (f"Routing beats the best single model in quality on **{len(paid)} of {len(summary)}** dataset-pool rows"
            + (f" ({', '.join(f'{dataset_title(d)} / {p}' for d, p in zip(paid['dataset'], paid['pool']))})" if len(paid) else "")
            + f"; at the best single model's quality it saves cost on {len(saved)} of the {len(summary)}.")
    return Story(head + tail)
