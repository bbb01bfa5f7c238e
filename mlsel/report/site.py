"""The cross-dataset page's sections: the answer first, then the full matrix, the glossary, what every dataset shares
(said once) and each dataset's own section.

Order (:func:`page_sections`):

1. The answer (:mod:`mlsel.report.answer`): one compact table and one figure, before the contents.
2. The full matrix (:func:`mlsel.report.overview.summary_table`), folded: it is wider than a screen.
3. The glossary (:mod:`mlsel.report.glossary`), which the answer table's headers link to.
4. Methods: what every dataset's section would otherwise repeat, said once (:mod:`mlsel.report.shared`).
5. Per dataset, a section with its verdicts (:func:`mlsel.report.overview.verdict`, one per pool), then its own
   sections (:func:`mlsel.report.page.collect`), scoped by its name (ids, table links, captions) and folded
   (``<details>``) except :data:`OPEN_SECTIONS`, which show their sentences and held-out results and fold the rest.
6. The executed notebooks.
"""

from __future__ import annotations

import json

import pandas as pd

from mlsel.paths import resolve_path, run_paths
from mlsel.report.answer import answer_section, peer_gains, with_shipped
from mlsel.report.blocks import Group, Section, Text
from mlsel.report.glossary import glossary_section
from mlsel.report.overview import dataset_title, notebooks_section, summary_table, verdict
from mlsel.report.shared import Shared, methods_section, take_repeated, take_shared, take_shared_parameters
from mlsel.report.tables import UNIT_NAMES

OPEN_SECTIONS = ("headline", "ship")
"""A dataset's sections shown open (by their unscoped id); the others are folded under their titles."""
OPEN_TABLES = ("results-main-",)
"""The tables an open section shows (by their unscoped id's stem): the held-out results; its other tables and its figures
are folded."""


def scope(sections: list[Section], ds: str) -> list[Section]:
    """Prefix every id with the dataset, point every table link at ``tables/<ds>/``, and name the dataset in the titles
    and in the captions that name a pool."""
    title = dataset_title(ds)
    for sec in sections:
        sec.id, sec.title = f"{ds}-{sec.id}", f"{title}: {sec.title}"
        for b in sec.blocks:
            if getattr(b, "id", ""):
                b.id = f"{ds}-{b.id}"
            if getattr(b, "link", "").startswith("tables/"):
                b.link = f"tables/{ds}/{b.link[len('tables/'):]}"
            if getattr(b, "caption", "").startswith("Pool "):
                b.caption = f"{title}, pool {b.caption[len('Pool '):]}"
            if b.type == "text" and b.links:
                b.links = [f"{ds}/{name}" for name in b.links]
            if b.type == "table":
                b.rows = [[(f"{ds}/{text}", cls) if cls == "link" else (text, cls) for text, cls in row] for row in b.rows]
    return sections


def fold(sections: list[Section], ds: str) -> list[Section]:
    """A dataset's own sections (scoped) at level 3: folded, except :data:`OPEN_SECTIONS`, whose sentences and
    :data:`OPEN_TABLES` are shown and whose other tables and figures are folded."""
    shown = tuple(f"{ds}-{stem}" for stem in OPEN_TABLES)
    for sec in sections:
        sec.level = 3
        sec.collapsed = not sec.id.endswith(tuple(f"-{s}" for s in OPEN_SECTIONS))
        if not sec.collapsed:
            sec.blocks = [Group([b], summary=f"{b.type.capitalize()}: {_short(b.caption)}")
                          if b.type in ("table", "figure") and not b.id.startswith(shown) else b for b in sec.blocks]
    return sections


def _short(caption: str) -> str:
    """A caption's first sentence (the fold's summary; the caption itself is inside)."""
    head = caption.split(". ")[0].rstrip(".")
    return head if len(head) <= 120 else head[:117] + "..."


def dataset_lead(ds: str, rows: pd.DataFrame) -> Section:
    """A dataset's own section: the split, the held-out queries and the cost unit; the verdict of each pool."""
    sec = Section(ds, dataset_title(ds))
    if rows.empty:
        sec.blocks.append(Text(text="No summary row: its tune stage (which chooses the router by cross-validation) has not run."))
        return sec
    r = rows.iloc[0]
    unit = UNIT_NAMES.get(r["cost_unit"], "none in the data") if isinstance(r["cost_unit"], str) else "none in the data"
    sec.blocks.append(Text(text=f"Split {r['split']}; {int(r['n_test'])} held-out queries; cost unit: {unit}. Its sections follow, "
                                "most of them folded: open the one you need."))
    sec.blocks.append(Text(items=[verdict(x) for x in rows.itertuples(index=False)]))
    return sec


def matrix_section(summary: pd.DataFrame, missing: list[str]) -> Section:
    """Every column of the summary (wider than a screen, so folded) and the datasets without a row."""
    sec = Section("overview", "All the numbers: the full matrix")
    if missing:
        sec.blocks.append(Text(text=f"No cross-dataset row for {', '.join(dataset_title(d) for d in missing)}: its tune stage "
                                    "(which chooses the router by cross-validation) has not run; its own sections follow."))
    if not summary.empty:
        table = summary_table(summary)
        sec.blocks.append(Group([table], summary=f"The full matrix: {len(table.columns)} columns per dataset and pool (it scrolls "
                                                 "sideways); the glossary defines each."))
    return sec


def _sources(run_dir: str, datasets: list[str]) -> dict[str, tuple[str, str]]:
    """Each dataset's title and data source (``prepare.source`` in its manifest; empty when unknown)."""
    out = {}
    for ds in datasets:
        path = run_paths(str(resolve_path(run_dir) / ds))["manifest"]
        manifest = json.loads(path.read_text()) if path.is_file() else {}
        source = ((manifest.get("stages") or {}).get("prepare") or {}).get("params", {}).get("source", "")
        out[ds] = (dataset_title(ds), str(source))
    return out


def page_sections(run_dir: str, datasets: list[str], summary: pd.DataFrame, missing: list[str]) -> list[Section]:
    """Every section of the cross-dataset page, in the order of the module docstring (the answer first)."""
    from mlsel.report.page import collect

    titles = {ds: dataset_title(ds) for ds in datasets}
    shared = Shared()
    own = {ds: collect(str(resolve_path(run_dir) / ds)) for ds in datasets}
    for sections in own.values():
        take_shared(sections, shared)
    take_shared_parameters(list(own.values()), shared)
    take_repeated(own, titles)
    parts = []
    for ds in datasets:
        rows = summary[summary["dataset"] == ds] if "dataset" in summary else summary.iloc[0:0]
        parts += [dataset_lead(ds, rows)] + fold(scope(own[ds], ds), ds)
    answer = answer_section(with_shipped(run_dir, peer_gains(run_dir, summary)) if not summary.empty else summary, titles)
    return ([answer, matrix_section(summary, missing), glossary_section(_sources(run_dir, datasets)), methods_section(shared)]
            + parts + [notebooks_section(run_dir, datasets)])
