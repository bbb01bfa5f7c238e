"""What the datasets' sections of the cross-dataset page say alike, said once in its Methods section.

Each dataset's sections (:func:`mlsel.report.page.collect`) are built for a page
of their own, so each repeats what every dataset shares. On the cross-dataset
page :func:`take_shared` moves, before the sections are scoped by dataset:

- the method notes (:attr:`mlsel.report.blocks.Text.shared`), said once under their names;
- how to read each kind of figure (:attr:`mlsel.report.blocks.Figure.shared`), cut from the captions;
- the software table, left in a dataset's provenance only where it differs from the first dataset's;
- the blocks :data:`SAID_BY_ANOTHER` names, whose numbers another block of the same section shows (a table and the
  heatmap annotated with the same values; the CSV stays linked).

:func:`take_shared_parameters` then keeps in each dataset's parameter tables only the parameters whose values differ
between datasets; those every dataset has alike are listed once. :func:`take_repeated` replaces a long paragraph that a
dataset's section repeats word for word from an earlier dataset's (the same data twice) by a pointer to the first.
"""

from __future__ import annotations

from typing import Any

from mlsel.report.blocks import Group, Section, Table, Text

FIGURE_KINDS = {"fig-scatter": "Quality vs efficiency", "fig-frontier": "Cost-quality frontier", "fig-cv-curves": "Cross-validation curves"}
"""How the Methods section names a kind of figure (by its id's stem) when it says how to read it."""
SAID_BY_ANOTHER = {"per-category-": "the heatmap annotated with the same values", "fig-share-": "the table of the same shares",
                   "fig-tune-heatmap-": "the cross-validation curves of the same grid"}
"""Blocks (by their id's stem) left out of the cross-dataset page: what else shows their numbers."""
SOFTWARE = "prov-software"
PARAMETERS = "prov-params-"


class Shared:
    """What the datasets' sections say alike, collected once."""

    def __init__(self) -> None:
        self.notes: dict[str, str] = {}  # a method note's name -> its text
        self.figures: dict[str, str] = {}  # a kind of figure -> how to read it
        self.software: Table | None = None
        self.parameters: list[Table] = []  # per stage, the parameters every dataset has alike


def _figure_kind(fig_id: str) -> str:
    return next((name for stem, name in FIGURE_KINDS.items() if fig_id.startswith(stem)), "Figures")


def _said_by_another(b: Any) -> bool:
    return b.type in ("table", "figure") and b.id.startswith(tuple(SAID_BY_ANOTHER))


def take_shared(sections: list[Section], shared: Shared) -> None:
    """Move what ``sections`` (one dataset's, not yet scoped) say alike with every dataset to ``shared`` (module docstring)."""
    for sec in sections:
        kept: list[Any] = []
        for b in sec.blocks:
            if b.type == "text" and b.shared:
                shared.notes.setdefault(b.shared, b.text)
                continue
            if _said_by_another(b):
                if getattr(b, "link", "") and not any(x.type == "text" and x.links == [b.link[len("tables/"):]] for x in kept):
                    kept.append(Text(text="As a table:", links=[b.link[len("tables/"):]]))
                continue
            if b.type == "figure" and b.shared and b.caption.endswith(b.shared):
                shared.figures.setdefault(_figure_kind(b.id), b.shared)
                b.caption = b.caption[: -len(b.shared)].rstrip()
            if b.type == "table" and b.id == SOFTWARE:
                if shared.software is None:
                    shared.software = Table("methods-software", b.caption, b.columns, b.rows)
                if b.rows == shared.software.rows:
                    kept.append(Text(text="As in the Methods section's software table."))
                    continue
                b.caption += " It differs from the Methods section's."
            kept.append(b)
        sec.blocks = kept


def take_shared_parameters(parts: list[list[Section]], shared: Shared) -> None:
    """Per stage, the parameters (name and value) every dataset that ran the stage has alike, when two or more did: listed
    once in ``shared``, left out of each dataset's table (a table with nothing left says so)."""
    tables: dict[str, list[Table]] = {}
    for sections in parts:
        for sec in sections:
            for b in sec.blocks:
                if b.type == "table" and b.id.startswith(PARAMETERS):
                    tables.setdefault(b.id, []).append(b)
    for tid, group in tables.items():
        if len(group) < 2:
            continue
        common = set.intersection(*({tuple(c for c, _ in row) for row in t.rows} for t in group))
        if not common:
            continue
        first = group[0]
        stage = tid[len(PARAMETERS):]
        shared.parameters.append(Table(f"methods-params-{stage}", f"Stage {stage}: the parameters every dataset has alike.",
                                       first.columns, [row for row in first.rows if tuple(c for c, _ in row) in common]))
        for t in group:
            t.rows = [row for row in t.rows if tuple(c for c, _ in row) not in common]
            t.caption = (f"{t.caption} Only the parameters whose values differ between datasets; the others are in the Methods "
                         "section." if t.rows else f"{t.caption} Every parameter as in the Methods section.")
    for sections in parts:
        for sec in sections:
            sec.blocks = [Text(text=b.caption) if b.type == "table" and b.id.startswith(PARAMETERS) and not b.rows else b
                          for b in sec.blocks]


LONG_WORDS = 40
"""A paragraph this long that a dataset's section repeats word for word from an earlier dataset's is said once."""


def _long_text(b: Any) -> tuple[str, ...] | None:
    """A text block's paragraph or list as a key, when any of its paragraphs has :data:`LONG_WORDS` words or more."""
    if b.type != "text" or b.shared:
        return None
    parts = ([b.text] if b.text else []) + list(b.items)
    return tuple(parts) if any(len(p.split()) >= LONG_WORDS for p in parts) else None


def take_repeated(parts: dict[str, list[Section]], titles: dict[str, str]) -> None:
    """A long paragraph or list (:data:`LONG_WORDS`) a dataset's section repeats word for word from an earlier dataset's
    (the same data seen twice, as BFCL's latency measured once and tuned for two cost axes) points to the first instead."""
    first: dict[tuple[str, ...], str] = {}
    for ds, sections in parts.items():
        for sec in sections:
            kept: list[Any] = []
            for b in sec.blocks:
                key = _long_text(b)
                if key is not None and first.setdefault(key, ds) != ds:
                    kept.append(Text(text=f"As in the {titles[first[key]]} section, from the same data."))
                    continue
                kept.append(b)
            sec.blocks = kept


def methods_section(shared: Shared) -> Section:
    """What every dataset's section shares, said once: the method notes, how to read the figures, the software and the
    parameters every dataset has alike (the last two folded)."""
    sec = Section("methods", "Methods: what every dataset shares")
    sec.blocks.append(Text(text="Every dataset runs the same stages on its own split: prepare, train (the reference's selectors), "
                                "evaluate on the held-out queries, tune (routers and parameters chosen by cross-validation inside "
                                "the training split), ship. What follows holds for each; the datasets' sections hold only their own "
                                "numbers."))
    notes = [Text(heading=name, text=text) for name, text in shared.notes.items()]
    if shared.figures:
        notes.append(Text(heading="Reading the figures", items=[f"{kind}: {text}" for kind, text in shared.figures.items()]))
    sec.blocks.append(Group(notes, css="notes"))
    if shared.software is not None:
        sec.blocks.append(Group([shared.software], summary="Software: the git commit, package versions and the CPU"))
    if shared.parameters:
        sec.blocks.append(Group(list(shared.parameters), summary="Parameters every dataset has alike, per stage"))
    return sec
