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
    type: str = "table"


@dataclass
class Figure:
    """An embedded PNG figure."""

    id: str
    caption: str
    png_b64: str = field(repr=False)  # a notebook's text form of the figure names it, without the image's bytes
    width_px: int = 0
    alt: str = ""
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
    type: str = "text"


@dataclass
class LinkList:
    """A sub-heading and a list of links, ``(href, text)`` with ``href`` relative to the report folder."""

    heading: str
    links: list[tuple[str, str]] = field(default_factory=list)
    type: str = "linklist"


@dataclass
class Section:
    id: str
    title: str
    blocks: list[Any] = field(default_factory=list)


class Story(str):
    """A few sentences in Markdown, computed from a stage's values; a notebook renders them as Markdown."""

    def _repr_markdown_(self) -> str:
        return str(self)
