"""The page model the template renders: sections of tables, figures and text blocks."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Table:
    """A rendered table: header and rows of ``(text, css_class)`` cells."""

    id: str
    caption: str
    columns: list[str]
    rows: list[list[tuple[str, str]]]
    note: str = ""
    link: str = ""
    css: str = ""
    column_links: list[str] = field(default_factory=list)  # per column: where its header links ("" for none)
    row_links: list[str] = field(default_factory=list)  # per row: where its first cell links ("" for none)
    type: str = "table"


@dataclass
class Figure:
    """An embedded PNG figure."""

    id: str
    caption: str
    png_b64: str = field(repr=False)  # a notebook's text form of the figure names it, without the image's bytes
    width_px: int = 0
    alt: str = ""
    shared: str = ""  # the caption's closing sentences: how to read every figure of its kind (a page of many datasets says them once)
    type: str = "figure"

    def _repr_png_(self) -> bytes:
        """The PNG itself: a notebook shows the figure inline, as the report does."""
        return base64.b64decode(self.png_b64)


@dataclass
class Text:
    """A paragraph, a list of sentences (``items``), a list of table links or a sub-heading."""

    text: str = ""
    items: list[str] = field(default_factory=list)
    heading: str = ""
    links: list[str] = field(default_factory=list)  # file names under tables/
    shared: str = ""  # a method note every dataset shares, named (a page of many datasets says it once, under this name)
    type: str = "text"


@dataclass
class LinkList:
    """A sub-heading and a list of links, ``(href, text)`` with ``href`` relative to the report folder."""

    heading: str
    links: list[tuple[str, str]] = field(default_factory=list)
    type: str = "linklist"


@dataclass
class Group:
    """Blocks shown together: folded under ``summary`` (a ``<details>`` the reader opens) or, without one, side by side
    where the page is wide enough (``css`` names the layout)."""

    blocks: list[Any] = field(default_factory=list)
    summary: str = ""
    css: str = ""
    type: str = "group"


@dataclass
class Glossary:
    """Terms and their definitions, ``(id, term, definition)``; each term is a link target."""

    entries: list[tuple[str, str, str]] = field(default_factory=list)
    type: str = "glossary"


@dataclass
class Section:
    """A section of the page: level 2 (listed in the contents) or 3 (a dataset's own section); folded (``collapsed``)
    under its title until the reader opens it."""

    id: str
    title: str
    blocks: list[Any] = field(default_factory=list)
    level: int = 2
    collapsed: bool = False


class Story(str):
    """A few sentences in Markdown, computed from a stage's values; a notebook renders them as Markdown."""

    def _repr_markdown_(self) -> str:
        return str(self)
