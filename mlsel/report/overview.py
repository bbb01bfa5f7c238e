"""The cross-dataset report: does routing pay, per dataset and pool, then every dataset's own sections.

:func:`build_run_report` reads a run folder whose datasets each have their own
folder (``<run_dir>/<dataset>/``, see :mod:`mlsel.runner`). The matrix is built
from each dataset's ``tables/summary.csv`` (written by the tune stage,
:mod:`mlsel.tuning.summary`): best single model, oracle, the router chosen by
the one-standard-error rule on CV, Gain@B, Gap@O, CostSave@B and AIQ minus the
zero router, each with its 95% paired bootstrap CI (:func:`summary_table`), and
one sentence per row saying whether routing paid off there (:func:`verdict`).
The page opens with the answer (:mod:`mlsel.report.answer`); the matrix, the
glossary, the methods every dataset shares and each dataset's sections (as
:func:`mlsel.report.page.collect` builds them for one folder, scoped by the
dataset's name) follow, as :func:`mlsel.report.site.page_sections` lays them out.

The page ends with links to the run's executed notebooks
(:func:`mlsel.report.notebook_pages.notebook_links`); the runner publishes
those pages after the report stage, when the report notebook has finished.

Published files: ``<report_dir>/index.html``, ``tables/summary.csv`` (the
matrix, one row per dataset x pool) and ``tables/<dataset>/*.csv``
(copies of each dataset's tables, byte-identical unless they held something
:func:`mlsel.publish.publishable` masks). The matrix is also written
into the run folder as ``<run_dir>/tables/summary.csv``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from mlsel.files import write_csv
from mlsel.metrics.evaluate import CATEGORY_LOOKUP as LOOKUP_LABEL
from mlsel.paths import resolve_path, run_paths
from mlsel.publish import publish_file, write_published
from mlsel.report.blocks import Figure, LinkList, Section, Table, Text
from mlsel.report.figures import gain_figure, style
from mlsel.report.notebook_pages import notebook_links
from mlsel.report.tables import PUBLISHED_TABLES, UNIT_NAMES, fmt_ci, fmt_num, is_missing, read_table, table_markdown

log = logging.getLogger(__name__)

DATASET_TITLES = {"mmlu_pro": "MMLU-Pro", "llmrouter": "LLMRouter", "llmrouter_by_task": "LLMRouter, unseen tasks",
                  "routerbench": "RouterBench", "bfcl": "BFCL",
                  "bfcl_latency": "BFCL, latency axis"}
"""Display names of the defined datasets (any other dataset is shown by its name)."""


def dataset_title(name: str) -> str:
    return DATASET_TITLES[name] if name in DATASET_TITLES else name


def read_summary(run_dir: str, datasets: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """Every dataset's ``tables/summary.csv`` with a leading ``dataset`` column, and the datasets that have none
    (their tune stage has not run). A dataset without a run folder is an error."""
    parts, missing = [], []
    for ds in datasets:
        folder = resolve_path(run_dir) / ds  # a relative run folder is relative to the project root, as everywhere
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no run folder for dataset {ds!r}; run its stages first (mlsel run)")
        table = read_table(run_paths(str(folder))["tables"], "summary.csv")
        if table is None:
            missing.append(ds)
            continue
        table.insert(0, "dataset", ds)
        parts.append(table)
    summary = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["dataset", "pool"])
    return summary, missing


def _pct(v: Any, lo: Any = None, hi: Any = None) -> str:
    if lo is None:
        return fmt_num(v, 1, suffix="%")
    return fmt_ci(v, lo, hi, 1, False, "%")


STATIC_POINTS = {"best_single": "always using the best single model", "category_lookup": "the per-category lookup"}
"""How a static candidate chosen as an operating point is named in a sentence."""


def _argmax_clause(r: Any) -> str:
    """The CV arg-max beside the rule's choice, where they differ."""
    argmax = getattr(r, "argmax_router", None)
    if is_missing(argmax) or argmax == r.router:
        return ""
    return (f" The CV arg-max, {argmax}, beat it on CV by less than one standard error, so the simpler choice stands; held out "
            f"{argmax} scores "
            f"{fmt_ci(r.argmax_gain_at_b, r.argmax_gain_at_b_ci_low, r.argmax_gain_at_b_ci_high, 3, True)} against {r.best_single} and "
            f"{fmt_ci(r.argmax_gain_vs_lookup, r.argmax_gain_vs_lookup_ci_low, r.argmax_gain_vs_lookup_ci_high, 3, True)} against "
            "the lookup.")


def verdict(r: Any) -> str:
    """One plain sentence per summary row: did routing pay off here, in quality and in cost?"""
    where = f"{dataset_title(r.dataset)}, pool {r.pool}"
    gain = f"{fmt_num(r.gain_at_b, 3, True)} [{fmt_num(r.gain_at_b_ci_low, 3, True)}, {fmt_num(r.gain_at_b_ci_high, 3, True)}]"
    if str(r.router).startswith("Best single on train"):
        s = (f"{where}: the one-SE rule on CV keeps always using {r.best_single}: no lookup or router was better on CV by more than "
             f"one standard error.{_argmax_clause(r)}")
    elif str(r.router) == LOOKUP_LABEL:
        shown = not is_missing(r.gain_at_b_ci_low) and r.gain_at_b_ci_low > 0
        s = (f"{where}: the one-SE rule on CV chooses the per-category lookup (static routing, no ML): "
             + (f"it beats always using {r.best_single} by {gain} quality." if shown else
                f"held out it is not distinguishable from always using {r.best_single} ({gain}; the interval includes 0)."))
    elif not is_missing(r.gain_at_b_ci_low) and r.gain_at_b_ci_low > 0:
        s = (f"{where}: routing paid off. {r.router} beats always using {r.best_single} by {gain} quality and closes "
             f"{_pct(r.gap_closed_pct)} of the gap to the oracle.")
    elif not is_missing(r.gain_at_b_ci_high) and r.gain_at_b_ci_high < 0:
        s = f"{where}: routing did not pay off. {r.router} is worse than always using {r.best_single}: {gain} quality."
    else:
        s = (f"{where}: routing did not pay off in quality. {r.router} is not distinguishable from always using {r.best_single} "
             f"({gain}; the interval includes 0): for quality alone, {r.best_single} does as well.")
    if not str(r.router).startswith("Best single on train"):
        s += _argmax_clause(r)
    s += static_sentence(r)
    unit = UNIT_NAMES[r.cost_unit] if isinstance(r.cost_unit, str) and r.cost_unit in UNIT_NAMES else "cost"
    if is_missing(r.cost_unit) or r.cost_unit == "":
        return s + " The data has no per-query cost, so no saving is computed."
    if is_missing(r.cost_save_at_b_pct):
        return s + f" No cost-aware router reached {r.best_single}'s quality in cross-validation, so no cost saving ({unit}) is claimed."
    save = _pct(r.cost_save_at_b_pct, r.cost_save_at_b_ci_low, r.cost_save_at_b_ci_high)
    kept = f"held-out quality {fmt_num(r.op_quality, 3)} against {fmt_num(r.best_single_quality, 3)}"
    if getattr(r, "cost_router", None) in STATIC_POINTS:
        s += (f" At its quality, the one-SE rule on CV cost keeps {STATIC_POINTS[r.cost_router]}: no cheaper point by more than one "
              f"standard error; held out it saves {save} of the cost in {unit} ({kept}).")
    elif not is_missing(r.cost_save_at_b_ci_low) and r.cost_save_at_b_ci_low > 0:
        s += f" At the operating point chosen on CV to keep its quality, routing saves {save} of the cost in {unit} ({kept})."
    else:
        s += f" At the operating point chosen on CV to keep its quality, the saving in {unit} is {save}: not shown to be above 0 ({kept})."
    return s + matched_sentence(r, unit)


def static_sentence(r: Any) -> str:
    """Static routing against ML routing: the per-category lookup's quality, the router's gain over it, the verdict."""
    if is_missing(getattr(r, "category_lookup_quality", None)):
        return ""
    lk = fmt_ci(r.lookup_gain_at_b, r.lookup_gain_at_b_ci_low, r.lookup_gain_at_b_ci_high, 3, True)
    vs = fmt_ci(r.gain_vs_lookup, r.gain_vs_lookup_ci_low, r.gain_vs_lookup_ci_high, 3, True)
    task = "" if is_missing(getattr(r, "task_lookup_quality", None)) else (
        f" (the per-task lookup, which needs the query's dataset, scores {fmt_num(r.task_lookup_quality, 3)})")
    peer = "" if is_missing(getattr(r, "best_peer", None)) else (
        f" The best peer's published router, {r.best_peer}, scores {fmt_num(r.best_peer_quality, 3)}; the router's gain over it is "
        f"{fmt_ci(r.gain_vs_peer, r.gain_vs_peer_ci_low, r.gain_vs_peer_ci_high, 3, True)}.")
    return (f" Static routing, each category to its best model on train, scores {fmt_num(r.category_lookup_quality, 3)} "
            f"({lk} over {r.best_single}){task}; the router's gain over it is {vs}: {r.verdict}.{peer}")


def matched_sentence(r: Any, unit: str) -> str:
    """The matched operating point (CV-chosen to keep ``matched_target_pct`` of the best single model's quality), if any."""
    if is_missing(getattr(r, "matched_quality_pct", None)) or is_missing(getattr(r, "matched_target_pct", None)):
        return ""
    name = STATIC_POINTS.get(r.matched_router, r.matched_router)
    return (f" Chosen on CV to keep {fmt_num(r.matched_target_pct, 0)}% of its quality, {name} keeps "
            f"{_pct(r.matched_quality_pct, r.matched_quality_pct_ci_low, r.matched_quality_pct_ci_high)} of it at "
            f"{_pct(r.matched_cost_pct, r.matched_cost_pct_ci_low, r.matched_cost_pct_ci_high)} of its cost in {unit}.")


def summary_table(df: pd.DataFrame) -> Table:
    """The headline matrix: one row per dataset and pool."""
    rows = []
    for r in df.itertuples(index=False):
        unit = UNIT_NAMES[r.cost_unit] if isinstance(r.cost_unit, str) and r.cost_unit in UNIT_NAMES else UNIT_NAMES[""]
        rows.append([
            (dataset_title(r.dataset), "name"), (str(r.pool), "name"), (str(r.split), "name"), (str(int(r.n_test)), "num"),
            (f"{r.best_single} ({fmt_num(r.best_single_quality, 3)})", "name"), (fmt_num(r.oracle_quality, 3), "num"),
            (f"{r.router} ({fmt_num(r.router_quality, 3)})", "name"),
            (fmt_ci(r.gain_at_b, r.gain_at_b_ci_low, r.gain_at_b_ci_high, 3, True), "num"),
            ("—" if is_missing(getattr(r, "argmax_router", None)) else
             f"{r.argmax_router}: {fmt_ci(r.argmax_gain_at_b, r.argmax_gain_at_b_ci_low, r.argmax_gain_at_b_ci_high, 3, True)}", "name"),
            (fmt_num(getattr(r, "category_lookup_quality", None), 3), "num"),
            (fmt_ci(getattr(r, "gain_vs_lookup", None), getattr(r, "gain_vs_lookup_ci_low", None),
                    getattr(r, "gain_vs_lookup_ci_high", None), 3, True), "num"),
            ("—" if is_missing(getattr(r, "verdict", None)) else str(r.verdict), "name"),
            ("—" if is_missing(getattr(r, "best_peer", None)) else f"{r.best_peer} ({fmt_num(r.best_peer_quality, 3)})", "name"),
            (fmt_ci(getattr(r, "gain_vs_peer", None), getattr(r, "gain_vs_peer_ci_low", None),
                    getattr(r, "gain_vs_peer_ci_high", None), 3, True), "num"),
            (_pct(r.gap_closed_pct), "num"), (_pct(r.gap_closed_random_pct), "num"), (unit, "name"),
            (_pct(r.cost_save_at_b_pct, r.cost_save_at_b_ci_low, r.cost_save_at_b_ci_high), "num"),
            ("—" if is_missing(getattr(r, "matched_quality_pct", None)) else
             f"{fmt_num(r.matched_quality_pct, 1)}% / {fmt_num(r.matched_cost_pct, 1)}%", "num"),
            (fmt_ci(r.aiq_minus_zero, r.aiq_minus_zero_ci_low, r.aiq_minus_zero_ci_high, 3, True), "num"),
        ])
    columns = ["Dataset", "Pool", "Split", "Held-out queries", "Best single, chosen on train (quality)", "Oracle",
               "Chosen by the one-SE rule on CV (quality)", "Gain@B [95% CI]", "CV arg-max: Gain@B [95% CI]",
               "Per-category lookup on train (quality)",
               "Router − lookup [95% CI]", "ML or static routing?", "Best peer, published settings (quality)",
               "Router − best peer [95% CI]", "Gap@O closed", "Random → oracle closed", "Cost unit",
               "CostSave@B [95% CI]", "Matched point: quality / cost, % of best single", "AIQ − zero router [95% CI]"]
    links = ["", "", "#gloss-split-seeded", "", "#gloss-best-single", "#gloss-oracle", "#gloss-one-se", "#gloss-gain-at-b", "#gloss-one-se",
             "#gloss-lookup", "#gloss-lookup", "#gloss-verdict", "#gloss-peer", "#gloss-peer", "#gloss-gap-at-o", "#gloss-gap-at-o",
             "#gloss-cost", "#gloss-cost-save-at-b", "#gloss-matched", "#gloss-aiq"]
    return Table("summary-matrix", "Does routing pay? One row per dataset and pool, on held-out queries.", columns, rows,
                 link="tables/summary.csv", css="compact", column_links=links)


def summary_markdown(df: pd.DataFrame) -> str:
    """The headline matrix and its verdicts as markdown (``mlsel results``; the README's results section)."""
    lines = table_markdown(summary_table(df))
    return "\n".join(lines + [""] + [f"- {verdict(r)}" for r in df.itertuples(index=False)]) + "\n"


def gain_at_b_figure(df: pd.DataFrame) -> Figure:
    """Gain@B with its 95% CI per row of the headline matrix, labelled dataset / pool."""
    return gain_figure(df, [f"{dataset_title(d)} / {p}" for d, p in zip(df["dataset"], df["pool"])], "fig-gain-at-b")


def notebooks_section(run_dir: str, datasets: list[str]) -> Section:
    """Links to the executed notebooks' pages, per dataset, then the report notebook's."""
    links = notebook_links(run_dir, datasets)
    sec = Section("notebooks", "Executed notebooks")
    sec.blocks.append(Text(text=(
        f"The notebooks that produced this page, as mlsel run executed them for run {Path(str(run_dir)).name} (the default run for "
        "the published report): each with the parameters the run injected (the cell tagged injected-parameters), its log, "
        "tables and figures. Every stage notebook ran once per dataset; the report notebook ran once over the whole run. "
        "Each is a static, self-contained page.")))
    for ds in datasets:
        mine = [(link.href, f"{link.stem}.ipynb ({link.stage} stage)") for link in links if link.dataset == ds]
        if mine:
            sec.blocks.append(LinkList(dataset_title(ds), mine))
        else:
            sec.blocks.append(Text(heading=dataset_title(ds), text="Its manifest lists no executed notebook: its stages ran outside mlsel run."))
    sec.blocks.append(LinkList("The whole run", [(link.href, f"{link.stem}.ipynb (report stage)") for link in links if not link.dataset]))
    return sec


def _publish_tables(run_dir: str, datasets: list[str], out_tables: Path) -> None:
    """Copy every dataset's tables (:data:`PUBLISHED_TABLES`) to ``<out_tables>/<dataset>/`` and the matrix; remove published ones the run does not have."""
    wanted = {out_tables / "summary.csv": run_paths(run_dir)["tables"] / "summary.csv"}
    for ds in datasets:
        src = run_paths(str(resolve_path(run_dir) / ds))["tables"]
        wanted.update({out_tables / ds / p.name: p for pattern in PUBLISHED_TABLES for p in sorted(src.glob(pattern))})
    for stale in sorted(p for pattern in PUBLISHED_TABLES for p in out_tables.rglob(pattern)):
        if stale not in wanted:
            log.info("report: removing %s (not in the run)", stale)
            stale.unlink()
    for dst, src in wanted.items():
        dst.parent.mkdir(parents=True, exist_ok=True)
        publish_file(src, dst, run_dir)  # masked even where the report folder is the run folder (published in place)


def build_run_report(run_dir: str, datasets: list[str], report_dir: str) -> Path:
    """Build the cross-dataset ``<report_dir>/index.html`` (its sections: :func:`mlsel.report.site.page_sections`) and
    publish the tables (see the module docstring)."""
    from mlsel.report.page import render
    from mlsel.report.site import page_sections

    style()
    summary, missing = read_summary(run_dir, datasets)
    write_csv(summary, run_paths(run_dir)["tables"] / "summary.csv")
    sections = page_sections(run_dir, datasets, summary, missing)
    subtitle = f"{len(datasets)} datasets, {len(summary)} dataset and pool rows"
    html = render(sections, run_dir, {"stages": {}}, subtitle=subtitle, lead=1)
    out = resolve_path(report_dir)
    out_tables = out / "tables"
    out_tables.mkdir(parents=True, exist_ok=True)
    _publish_tables(run_dir, datasets, out_tables)
    index = write_published(out / "index.html", html, run_dir)
    log.info("report: %s (%d sections, %d datasets)", index, len(sections), len(datasets))
    return index
