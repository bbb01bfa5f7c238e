"""The published report: one self-contained HTML page built from a run folder.

:func:`build_report` reads only files of the run folder
(:func:`mlsel.paths.run_paths`): ``tables/*.csv`` and ``manifest.json``. It
writes ``<report_dir>/index.html`` and copies of every ``tables/*.csv`` under
``<report_dir>/tables/``, both through :func:`mlsel.publish.publishable` (credentials
masked, this machine's folders shown relative to the project, the data mirror or
the cache; a table with nothing to mask is copied byte-identical).

The page opens with no network: CSS is inline, figures are base64 PNG
``data:`` URIs drawn with matplotlib (Agg backend, fixed DPI, no software or
time stamp in the PNG metadata), there is no script, and a
Content-Security-Policy forbids loading anything but ``data:`` images. The
same run folder always gives the same bytes: nothing in the page depends on
the clock, the environment or the machine (its paths are shown relative).

Sections (a section or table appears only when its input file exists):

1. Headline, per pool: the seed's main table (``selection_results.csv``) and
   its "ML routing benefit over random" table, with uplift over the best
   single model (chosen on training data), the share of the random -> oracle
   gap closed, and a verdict in words generated from the confidence intervals.
2. Per-category quality (``per_category.csv``): table and heatmap.
3. Selection shares per model (``selection_share.csv``): table and stacked bars.
4. Quality vs efficiency scatter (latency, or the response-length proxy,
   which is labelled as such and never shown as seconds).
5. Optional tables written by other stages: ``tuned_results.csv``,
   ``frontier.csv`` (cost-quality frontier figure), ``aiq.csv``,
   ``tune_heatmap.csv`` (heatmap when it has two parameter columns and a
   score), ``cv_results.csv`` (first rows), ``router_config_results.csv``,
   ``router_export.csv`` (the shipped model files: the runtime rule's quality
   on held-out queries beside the Python selector's); any other CSV is
   listed and linked.
6. Provenance from the manifest: inputs with SHA-256, record counts, dropped
   and repaired records, every stage's parameters (secret-looking keys
   masked) with their hash, package versions and git commit.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pandas as pd

from mlsel.paths import resolve_path, run_paths
from mlsel.publish import publish_file, write_published
from mlsel.report.blocks import Section, Table, Text
from mlsel.report.figures import heatmap_figure, scatter_figure, share_figure, style
from mlsel.report.latency import latency_sections
from mlsel.report.provenance import provenance_section
from mlsel.report.shipping import choice_section, export_section, ship_section
from mlsel.report.tables import (
    PUBLISHED_TABLES,
    benefit_rows,
    benefit_table,
    best_single_model,
    efficiency_column,
    fmt_num,
    generic_table,
    is_missing,
    main_table,
    read_table,
    slug,
    verdicts,
)
from mlsel.report.tuned import frontier_blocks, tune_heatmap_blocks

log = logging.getLogger(__name__)

TEMPLATE = "report.html.j2"

KNOWN_TABLES = (
    "selection_results.csv",
    "per_category.csv",
    "selection_share.csv",
    "tuned_results.csv",
    "frontier.csv",
    "aiq.csv",
    "tune_heatmap.csv",
    "cv_results.csv",
    "router_config_results.csv",
    "router_export.csv",
    "ship.csv",
    "ship_choice.csv",
    "choice.csv",
    "choice_cost.csv",
    "static_lookup.csv",
    "latency_weight_sweep.csv",
    "latency_repeatability.csv",
    "latency_prediction.csv",
)
"""CSV files the report renders specifically; any other CSV is listed and linked."""


# --------------------------------------------------------------------------- headline


def results_blocks(res: pd.DataFrame, prefix: str, file: str, what: str) -> list[Any]:
    """Per pool: both seed tables and the verdicts (used for selection_results and tuned_results)."""
    blocks: list[Any] = []
    for pool, df in res.groupby("pool", sort=False):
        n = int(df["n_queries"].iloc[0]) if "n_queries" in df else 0
        col, _ = efficiency_column(df)
        blocks.append(Text(heading=f"Pool {pool} — {n} held-out queries"))
        blocks.append(main_table(df, f"{prefix}-main-{slug(pool)}", f"{what}, pool {pool}: the seed's main table, best quality first.",
                                 f"tables/{file}"))
        if col == "avg_response_chars":
            blocks.append(Text(text="Neither a cost in USD nor latency is in this data, so efficiency is shown as the average length of "
                                    "the chosen answers in characters: a proxy for cost, not a time."))
        if col == "avg_list_price":
            blocks.append(Text(text="This data has no per-query cost, so efficiency is shown as the chosen model's list price per 1M "
                                    "tokens: a proxy that assumes equal token counts across models, not a cost per query."))
        bt = benefit_table(df, f"{prefix}-benefit-{slug(pool)}", f"{what}, pool {pool}: ML routing benefit over random (expected).",
                           f"tables/{file}")
        if bt.rows:
            blocks.append(bt)
            blocks.append(Text(items=verdicts(df)))
    return blocks


# --------------------------------------------------------------------------- sections


def _strategy_order(res: pd.DataFrame | None, pool: str, names: list[str]) -> list[str]:
    if res is not None and "strategy" in res:
        d = res[res["pool"] == pool].sort_values("avg_quality", ascending=False, kind="mergesort")
        order = [s for s in d["strategy"] if s in names]
        return order + [s for s in names if s not in order]
    return names


def headline_section(res: pd.DataFrame) -> Section:
    sec = Section("headline", "Headline: selectors against baselines on held-out queries")
    summary = []
    for pool, df in res.groupby("pool", sort=False):
        sel = benefit_rows(df)
        if sel.empty:
            continue
        top = sel.iloc[0]
        beat = [str(s) for s, lo in zip(sel["strategy"], sel["uplift_vs_best_single_ci_low"]) if not is_missing(lo) and lo > 0]
        summary.append(
            f"Pool {pool}: the best selector is {top['strategy']} at {fmt_num(top['avg_quality'])} average quality "
            f"(best single model {best_single_model(df)}: {fmt_num(df.loc[df['kind'] == 'best_single', 'avg_quality'].iloc[0]) if (df['kind'] == 'best_single').any() else '—'}; "
            f"oracle: {fmt_num(df.loc[df['kind'] == 'oracle', 'avg_quality'].iloc[0]) if (df['kind'] == 'oracle').any() else '—'}). "
            + (f"{len(beat)} of {len(sel)} selectors beat the best single model ({', '.join(beat)})." if beat
               else f"None of the {len(sel)} selectors beats the best single model.")
        )
    sec.blocks.append(Text(items=summary))
    sec.blocks.append(Text(text=(
        "Random is the exact expectation over the pool's models (the per-query mean), not one draw. The best single model "
        "is chosen on the training split. Best Model % credits ties: a query where the chosen model has the highest quality, "
        "including queries every model answers equally, counts as a hit. Confidence intervals are 95% percentile bootstrap "
        "intervals over the held-out queries, paired across strategies. A selector beats a baseline when the whole interval "
        "of the difference is above 0."), shared="Baselines and intervals of the results tables"))
    sec.blocks += results_blocks(res, "results", "selection_results.csv", "Held-out results")
    return sec


def per_category_section(pc: pd.DataFrame, res: pd.DataFrame | None) -> Section:
    sec = Section("per-category", "Per-category quality")
    sec.blocks.append(Text(text="Average quality of each strategy on the held-out queries of each category (n = held-out queries in the "
                                "category).", shared="Per-category quality"))
    for pool, df in pc.groupby("pool", sort=False):
        order = _strategy_order(res, pool, list(dict.fromkeys(df["strategy"])))
        mat = df.pivot_table(index="strategy", columns="category", values="avg_quality", aggfunc="mean", sort=False).reindex(order)
        cats = list(mat.columns)
        ns = df.drop_duplicates("category").set_index("category")["n_queries"] if "n_queries" in df else pd.Series(dtype=int)
        sec.blocks.append(Text(heading=f"Pool {pool}"))
        rows = [[(str(s), "name")] + [(fmt_num(mat.loc[s, c], 3), "num") for c in cats] for s in mat.index]
        cols = ["Strategy"] + [f"{c} (n={int(ns[c])})" if c in ns else str(c) for c in cats]
        sec.blocks.append(Table(f"per-category-{slug(pool)}", f"Pool {pool}: average quality per category.", cols, rows, link="tables/per_category.csv", css="compact"))
        sec.blocks.append(heatmap_figure(mat, f"Pool {pool}: average quality per category", "category", "", f"fig-per-category-{slug(pool)}",
                                         f"Pool {pool}: strategy x category average quality (0 to 1).", cbar_label="avg quality"))
    return sec


def share_section(sh: pd.DataFrame, res: pd.DataFrame | None) -> Section:
    sec = Section("selection-share", "Which models the strategies choose")
    sec.blocks.append(Text(text="Share of held-out queries each strategy routes to each model (%). Random spreads evenly; the oracle's shares "
                                "show where each model is the best (ties go to the most efficient model).", shared="Selection shares"))
    for pool, df in sh.groupby("pool", sort=False):
        order = _strategy_order(res, pool, list(dict.fromkeys(df["strategy"])))
        models = list(dict.fromkeys(df["model"]))
        mat = df.pivot_table(index="strategy", columns="model", values="share_pct", aggfunc="sum", sort=False).reindex(index=order, columns=models)
        sec.blocks.append(Text(heading=f"Pool {pool}"))
        rows = [[(str(s), "name")] + [(fmt_num(mat.loc[s, m], 1, suffix="%"), "num") for m in models] for s in mat.index]
        sec.blocks.append(Table(f"share-{slug(pool)}", f"Pool {pool}: selection share per model.", ["Strategy"] + models, rows, link="tables/selection_share.csv"))
        sec.blocks.append(share_figure(mat.fillna(0.0), f"Pool {pool}: selection share per model", f"fig-share-{slug(pool)}",
                                       f"Pool {pool}: each bar is one strategy; segments are the share of queries routed to each model (%)."))
    return sec


def efficiency_section(res: pd.DataFrame) -> Section:
    sec = Section("quality-efficiency", "Quality vs efficiency")
    for pool, df in res.groupby("pool", sort=False):
        col, label = efficiency_column(df)
        if col not in df or df[col].isna().all():
            sec.blocks.append(Text(text=f"Pool {pool}: neither latency nor response length is available; no figure."))
            continue
        sec.blocks.append(scatter_figure(df.sort_values("avg_quality", ascending=False, kind="mergesort"), str(pool), f"fig-scatter-{slug(pool)}"))
    return sec


def static_section(lk: pd.DataFrame, tables: Path) -> Section:
    """Static routing: per pool, the category lookup learned on train (the categories the data has), and its config file."""
    sec = Section("static-routing", "Static routing: the best model per category on train")
    sec.blocks.append(Text(text=(
        "Each category goes to the model with the best mean on the training split: no ML, what the router's per-decision "
        "config can do by itself. A category with fewer training queries than lookup_min_queries, or none, keeps the best "
        "single model (source: fallback). Its held-out quality is the \"Per-category lookup on train\" row of the results "
        "tables; the per-task lookup (\"benchmark-only\") needs the dataset a query came from, which a router does not know."),
        shared="Static routing"))
    seen = lk[(lk["n_train"] > 0) | (lk["n_test"] > 0)]
    for pool, df in seen.groupby("pool", sort=False):
        cat = df[df["lookup"] == "category"].drop(columns=["pool", "lookup"])
        sec.blocks.append(generic_table(cat, f"table-static-{slug(str(pool))}", f"Pool {pool}: per-category lookup.", link="tables/static_lookup.csv"))
    configs = sorted(p.name for p in tables.glob("static_routing_*.yaml"))
    if configs:
        sec.blocks.append(Text(text="As a per-decision routing config the router reads (mlsel evaluate-config checks it offline):", links=configs))
    return sec


def optional_sections(tables: Path, res: pd.DataFrame | None) -> list[Section]:
    out: list[Section] = []
    tuned = read_table(tables, "tuned_results.csv")
    if tuned is not None and len(tuned):
        sec = Section("tuned", "Tuned selectors (held-out)")
        sec.blocks.append(Text(text="Selectors with hyper-parameters chosen by cross-validation inside the training split, evaluated on the same "
                                    "held-out queries.", shared="Tuned selectors"))
        if {"pool", "strategy", "kind", "avg_quality"} <= set(tuned.columns):
            sec.blocks += results_blocks(tuned, "tuned", "tuned_results.csv", "Tuned results")
        else:
            sec.blocks.append(generic_table(tuned, "table-tuned", "Tuned results.", link="tables/tuned_results.csv"))
        out.append(sec)
    fr = read_table(tables, "frontier.csv")
    if fr is not None and len(fr):
        out.append(Section("frontier", "Cost-quality frontier", frontier_blocks(fr, res)))
    aiq = read_table(tables, "aiq.csv")
    if aiq is not None:
        out.append(Section("aiq", "AIQ: area under the cost-quality curve", [generic_table(aiq, "table-aiq", "AIQ per cost-aware router.", link="tables/aiq.csv")]))
    th = read_table(tables, "tune_heatmap.csv")
    if th is not None and len(th):
        out.append(Section("tune-heatmap", "Hyper-parameter tuning", tune_heatmap_blocks(th)))
    cv = read_table(tables, "cv_results.csv")
    if cv is not None:
        out.append(Section("cv-results", "Cross-validation results",
                           [generic_table(cv, "table-cv-results", "Cross-validation results (first rows).", link="tables/cv_results.csv", max_rows=20)]))
    lk = read_table(tables, "static_lookup.csv")
    if lk is not None and len(lk):
        out.append(static_section(lk, tables))
    out += latency_sections(read_table(tables, "latency_weight_sweep.csv"), read_table(tables, "latency_repeatability.csv"),
                            read_table(tables, "latency_prediction.csv"))
    choice = read_table(tables, "choice.csv")
    if choice is not None and len(choice):
        out.append(choice_section(choice, read_table(tables, "choice_cost.csv")))
    ship = read_table(tables, "ship.csv")
    if ship is not None and len(ship):
        out.append(ship_section(ship))
    rc = read_table(tables, "router_config_results.csv")
    if rc is not None:
        out.append(Section("router-config", "Per-decision routing config",
                           [generic_table(rc, "table-router-config", "Per-decision routing config evaluated offline.", link="tables/router_config_results.csv")]))
    ex = read_table(tables, "router_export.csv")
    if ex is not None and len(ex):
        out.append(export_section(ex))
    return out


# --------------------------------------------------------------------------- assembly


def collect(run_dir: str) -> list[Section]:
    """All sections of the report for a run folder (tables built, figures drawn)."""
    paths = run_paths(run_dir)
    tables = paths["tables"]
    style()
    res = read_table(tables, "selection_results.csv")
    sections: list[Section] = []
    if res is not None and len(res):
        sections.append(headline_section(res))
    else:
        sections.append(Section("headline", "Headline", [Text(text="No selection_results.csv in this run folder: run the evaluate stage first.")]))
    pc = read_table(tables, "per_category.csv")
    if pc is not None and len(pc):
        sections.append(per_category_section(pc, res))
    sh = read_table(tables, "selection_share.csv")
    if sh is not None and len(sh):
        sections.append(share_section(sh, res))
    if res is not None and len(res):
        sections.append(efficiency_section(res))
    sections += optional_sections(tables, res)
    csvs = sorted(p.name for p in tables.glob("*.csv")) if tables.is_dir() else []
    others = [c for c in csvs if c not in KNOWN_TABLES]
    if others:
        sections.append(Section("other-tables", "Other tables",
                                [Text(text="Tables of this run folder that the report does not render; open them from the links."),
                                 Text(links=others)]))
    manifest = _read_manifest(paths["manifest"])
    sections.append(provenance_section(manifest, csvs, tables, KNOWN_TABLES))
    return sections


def _read_manifest(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {"stages": {}}


def report_sections(run_dir: str) -> list[str]:
    """Titles of the sections the report of ``run_dir`` shows (draws the figures)."""
    return [s.title for s in collect(run_dir)]


def render(sections: list[Section], run_dir: str, manifest: dict[str, Any], subtitle: str = "", lead: int = 0) -> str:
    """The HTML page for ``sections`` (the subtitle from the manifest unless given); the first ``lead`` sections come before
    the contents (folded), so the page opens on them."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mlsel.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    subtitle_text = subtitle
    res_stage = manifest.get("stages", {})
    subtitle = []
    if "prepare" in res_stage:
        recorded = res_stage["prepare"].get("params", {})  # as the manifest recorded them
        subtitle.append(f"source {recorded.get('source', '?')}")
        if "n_queries" in res_stage["prepare"]:
            subtitle.append(f"{res_stage['prepare']['n_queries']} queries ({res_stage['prepare'].get('n_test', '?')} held out)")
    if manifest.get("git_commit"):
        subtitle.append(f"commit {str(manifest['git_commit'])[:12]}")
    return env.get_template(TEMPLATE).render(
        sections=sections, run_name=Path(str(run_dir)).name, subtitle=subtitle_text or " · ".join(subtitle), lead=lead,
    )


def build_report(run_dir: str, report_dir: str) -> Path:
    """Build ``<report_dir>/index.html`` and copy ``<run_dir>/tables/`` (:data:`PUBLISHED_TABLES`) to ``<report_dir>/tables/``.

    Parameters
    ----------
    run_dir : the run folder (read only: ``tables/*.csv`` and ``manifest.json``)
    report_dir : output folder, created if missing

    Returns
    -------
    Path of ``index.html``. The same run folder always gives the same bytes.
    CSVs in ``<report_dir>/tables/`` that the run folder does not have are
    removed, so the published tables mirror the run.
    """
    paths = run_paths(run_dir)
    if not paths["root"].is_dir():
        raise FileNotFoundError(f"{paths['root']}: run folder not found; run the earlier stages first")
    out = resolve_path(report_dir)
    out_tables = out / "tables"
    out_tables.mkdir(parents=True, exist_ok=True)
    sections = collect(run_dir)
    html = render(sections, run_dir, _read_manifest(paths["manifest"]))
    sources = sorted(p for pattern in PUBLISHED_TABLES for p in paths["tables"].glob(pattern)) if paths["tables"].is_dir() else []
    if out_tables.resolve() != paths["tables"].resolve():
        # The published tables mirror the run: a CSV left by an earlier build of
        # another run would sit beside the page without being what it shows.
        names = {p.name for p in sources}
        for stale in sorted(p for pattern in PUBLISHED_TABLES for p in out_tables.glob(pattern)):
            if stale.name not in names:
                log.info("report: removing %s (not in %s)", stale, paths["tables"])
                stale.unlink()
    for src in sources:  # masked even where the report folder is the run folder (published in place)
        publish_file(src, out_tables / src.name, run_dir)
    index = write_published(out / "index.html", html, run_dir)
    log.info("report: %s (%d sections)", index, len(sections))
    return index
