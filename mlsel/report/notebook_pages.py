"""The run's executed notebooks as self-contained HTML pages published beside the report.

:func:`notebook_links` lists the pages, relative to the report folder:
``notebooks/<dataset>/<stem>.html`` for every stage notebook a dataset's
``manifest.json`` lists (``stages.<stage>.executed_notebook``), then
``notebooks/90_build_report.html`` for the report notebook itself. It reads
only the manifests, so the report page, built while the report notebook is
still running, can link pages that do not exist yet. :func:`publish_notebooks`
writes exactly those pages once the report notebook has finished (the runner
calls it after the report stage) and removes pages of earlier builds.

A page opens with no network, like the report. nbconvert's ``lab`` and
``classic`` templates load MathJax and require.js from a CDN, so the notebook
body comes from its ``basic`` template (body only) and goes into a page of our
own: inline CSS, the report's Content-Security-Policy, a link back to the
report. Everything that could run or load something is removed: before
rendering, JavaScript and widget outputs and the widget state in the
notebook's metadata; after it, ``script``, ``iframe``, ``object``, ``embed``,
``link``, ``base``, ``meta`` and ``form`` elements, ``on*`` attributes, any
``src`` that is not a ``data:image/`` URI, any ``href`` that is not an in-page
anchor or a relative link, and ``url(...)``/``@import`` in CSS. Images stay
``data:`` URIs, ANSI colours in logs become CSS classes, consecutive stream
outputs are merged as Jupyter shows them (a progress bar shows its last
state). Every text of the notebook (cell sources, the injected parameters,
outputs, tracebacks) and then the whole page go through
:func:`mlsel.publish.publishable`: credentials (in an endpoint URL, an
``Authorization`` header) are masked and paths under the project, the data
mirror, the cache or the run folder are shown relative to it; a path elsewhere
stays as it was logged.
"""

from __future__ import annotations

import functools
import html
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from mlsel.manifest import read_manifest
from mlsel.params import STAGES
from mlsel.paths import NOTEBOOKS, project_root, resolve_path, run_paths
from mlsel.publish import publishable, write_published

log = logging.getLogger(__name__)

KERNEL_CWD = project_root() / "notebooks"
"""The folder the runner's kernels run in (papermill's ``cwd``): a notebook's relative links start there."""

PAGES_DIR = "notebooks"
"""Folder of the notebook pages under the report folder."""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
"""The report's policy: nothing but inline CSS and ``data:`` images, no script."""

ACTIVE_MIMETYPES = ("application/javascript", "text/javascript", "application/vnd.jupyter.widget-view+json",
                    "application/vnd.jupyter.widget-state+json")
"""Output types that nbconvert renders as ``<script>`` elements; dropped (an output's text/plain form stays)."""

REMOVED_ELEMENTS = ("script", "iframe", "frame", "frameset", "object", "embed", "applet", "link", "base", "meta", "form", "portal")
URL_ATTRIBUTES = ("src", "href", "xlink:href", "srcset", "poster", "background", "action", "formaction", "data", "ping",
                  "codebase", "cite", "longdesc", "manifest")
CSS_URL = re.compile(r"url\(\s*(?!['\"]?data:image/)[^)]*\)", re.I)
CSS_IMPORT = re.compile(r"@import[^;]*;?", re.I)
SCHEME = re.compile(r"^\s*[a-z][a-z0-9+.\-]*:", re.I)


class NotebookPageError(ValueError):
    """An executed notebook cannot be read or rendered; the message names the file."""


@dataclass(frozen=True)
class NotebookLink:
    """One notebook page: ``href`` relative to the report folder, ``source`` the executed notebook it is built from."""

    dataset: str  # "" for the report notebook, which runs once over the whole run
    stage: str
    stem: str
    href: str
    source: Path

    @property
    def title(self) -> str:
        return f"{self.stem} · {self.dataset}" if self.dataset else self.stem


def notebook_links(run_dir: str, datasets: list[str]) -> list[NotebookLink]:
    """The pages the report links, per dataset in stage order, then the report notebook's own page.

    A dataset's pages are the stage notebooks its manifest lists as executed.
    The notebook is looked up by its file name in the dataset's ``notebooks/``
    folder (the run-folder layout), not by the absolute path the manifest
    recorded, so a moved or copied run folder publishes its own notebooks.
    Nothing is read but the manifests: the pages need not exist yet.
    """
    links: list[NotebookLink] = []
    for ds in datasets:
        folder = str(resolve_path(run_dir) / ds)
        stages = read_manifest(folder)["stages"]
        for stage in [s for s in STAGES if s in stages and s != "report"]:
            recorded = stages[stage].get("executed_notebook")
            if recorded:
                name = Path(str(recorded)).name
                stem = Path(name).stem
                links.append(NotebookLink(ds, stage, stem, f"{PAGES_DIR}/{ds}/{stem}.html", run_paths(folder)["notebooks"] / name))
    report = run_paths(run_dir)["notebooks"] / NOTEBOOKS["report"]
    links.append(NotebookLink("", "report", report.stem, f"{PAGES_DIR}/{report.stem}.html", report))
    return links


def publish_notebooks(run_dir: str, datasets: list[str], report_dir: str) -> list[Path]:
    """Write every page of :func:`notebook_links` under ``<report_dir>/notebooks/``; remove pages no longer produced.

    Called after the report stage has finished, so the report's own executed
    notebook exists. Every page is rendered before anything is written: a
    missing executed notebook raises ``FileNotFoundError`` and an unreadable
    one :class:`NotebookPageError`, each naming the file, and leaves the
    published pages as they were. Returns the written pages, in link order.
    """
    out = resolve_path(report_dir)
    pages: dict[Path, str] = {}
    for link in notebook_links(run_dir, datasets):
        back = "../" * link.href.count("/") + "index.html#notebooks"
        pages[out / link.href] = notebook_page(link.source, link.title, back, page=out / link.href, run_dir=run_dir)
    pages_dir = out / PAGES_DIR
    existing = sorted(pages_dir.rglob("*")) if pages_dir.is_dir() else []
    for stale in [p for p in existing if p.suffix == ".html" and p.is_file() and p not in pages]:
        log.info("notebook pages: removing %s (no longer produced)", stale)
        stale.unlink()
    for folder in reversed([p for p in existing if p.is_dir()]):  # deepest first; a dataset no longer run leaves no folder
        if not any(folder.iterdir()):
            folder.rmdir()
    written = [write_published(path, text, run_dir) for path, text in pages.items()]
    sizes = [p.stat().st_size for p in written]
    for p, size in zip(written, sizes):
        log.info("notebook page %s: %.0f KB", p.relative_to(out), size / 1024)
    log.info("notebook pages: %d pages, %.1f MB in %s", len(written), sum(sizes) / 2**20, pages_dir)
    return written


def notebook_page(ipynb: Path, title: str, back_link: str, page: Path | None = None, run_dir: str | Path | None = None) -> str:
    """One executed notebook as a self-contained HTML page (see the module docstring).

    Parameters
    ----------
    ipynb : the executed notebook
    title : the page's title and heading
    back_link : relative link to the report page, e.g. ``../../index.html#notebooks``
    page : where the page will be written. A relative link in the notebook is relative to the folder its kernel ran in
        (:data:`KERNEL_CWD`, as in JupyterLab); on the page it is rewritten relative to the page's folder, and a link
        to nothing becomes plain text (its address in the title). Without ``page`` relative links stay as they are.
    run_dir : the run folder the notebook belongs to; paths under it are shown relative to it (:func:`mlsel.publish.publishable`)
    """
    nb = _read(Path(ipynb))
    _drop_active_outputs(nb)
    _mask_texts(nb, run_dir)
    try:
        body = _export(nb)
    except Exception as exc:  # nbconvert's errors vary by cause; the caller needs the file's name
        raise NotebookPageError(f"{ipynb}: cannot render the notebook as HTML: {exc}") from exc
    page_text = _wrap(_sanitize(body, Path(page).parent if page is not None else None), title, back_link, Path(ipynb).name)
    return publishable(page_text, run_dir)


def _read(ipynb: Path):
    import nbformat

    if not ipynb.is_file():
        raise FileNotFoundError(f"{ipynb}: executed notebook not found; run its stage (mlsel run) before publishing the notebook pages")
    try:
        return nbformat.read(ipynb, as_version=4)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise NotebookPageError(f"{ipynb}: not a readable notebook: {exc}") from exc


def _drop_active_outputs(nb) -> None:
    """Remove what nbconvert would render as script: widget state, JavaScript and widget outputs; inline isolated HTML.

    Images without alternative text get one naming their cell (nbconvert warns about each missing one).
    """
    nb.metadata.pop("widgets", None)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            for mime in [m for m in data if m in ACTIVE_MIMETYPES or m.startswith("application/vnd.jupyter.widget")]:
                del data[mime]
            md = output.setdefault("metadata", {})
            if {"image/png", "image/jpeg"} & set(data) and not md.get("alt") and not cell.metadata.get("alt"):
                if not any(isinstance(md.get(m), dict) and md[m].get("alt") for m in ("image/png", "image/jpeg")):
                    md["alt"] = f"Figure: output of cell [{cell.get('execution_count') or ' '}]"
            # An "isolated" HTML output becomes an iframe with a data: URI; render it inline, where it is sanitized.
            meta = output.get("metadata", {}).get("text/html")
            if isinstance(meta, dict):
                meta.pop("isolated", None)


def _mask_texts(nb, run_dir: str | Path | None) -> None:
    """Every text the page shows made :func:`~mlsel.publish.publishable` before rendering, so that syntax highlighting or ANSI
    colours cannot split a credential or a path across elements (the finished page is masked once more)."""
    for cell in nb.cells:
        cell.source = publishable(cell.source, run_dir)
        for output in cell.get("outputs", []):
            if isinstance(output.get("text"), str):
                output["text"] = publishable(output["text"], run_dir)
            if "evalue" in output:
                output["evalue"] = publishable(str(output["evalue"]), run_dir)
            if isinstance(output.get("traceback"), list):
                output["traceback"] = [publishable(str(line), run_dir) for line in output["traceback"]]
            data = output.get("data", {})
            for mime, value in data.items():
                if mime.startswith("text/") or mime == "image/svg+xml":
                    data[mime] = publishable(value if isinstance(value, str) else "".join(value), run_dir)


@functools.lru_cache(maxsize=1)
def _exporter():
    """nbconvert's HTML exporter with the ``basic`` template, built once (compiling its templates is most of a small page's time)."""
    from nbconvert import HTMLExporter
    from nbconvert.preprocessors import CoalesceStreamsPreprocessor

    exporter = HTMLExporter(template_name="basic")
    exporter.register_preprocessor(CoalesceStreamsPreprocessor(enabled=True), enabled=True)
    return exporter


def _export(nb) -> str:
    body, _ = _exporter().from_notebook_node(nb)
    return body


def _allowed_url(attr: str, value: str) -> bool:
    value = value.strip()
    if attr in ("href", "xlink:href"):
        # In-page anchors and relative links load nothing; any scheme (http, file, javascript, data) is dropped.
        return value.startswith("#") or not (SCHEME.match(value) or value.startswith("//"))
    return attr == "src" and value.lower().startswith("data:image/")


def _rebase(href: str, page_dir: Path) -> str | None:
    """A relative link of the notebook (from :data:`KERNEL_CWD`) as seen from ``page_dir``; None when it points at nothing."""
    path, _, fragment = href.partition("#")
    target = (KERNEL_CWD / unquote(path)).resolve()
    if not target.exists():
        return None
    rel = Path(os.path.relpath(target, page_dir.resolve())).as_posix()
    return rel + (f"#{fragment}" if fragment else "")


def _sanitize(body: str, page_dir: Path | None = None) -> str:
    """The nbconvert body without anything that runs or loads: see the module docstring; relative links rebased to
    ``page_dir`` (:func:`_rebase`) when it is given."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(body, "html.parser")
    for tag in soup.find_all(REMOVED_ELEMENTS):
        if tag.name in ("iframe", "object", "embed"):
            note = soup.new_tag("p", attrs={"class": "nb-note"})
            note.string = f"[embedded {tag.name} removed: the page loads nothing]"
            tag.replace_with(note)
        else:
            tag.decompose()
    for tag in soup.find_all(True):
        for attr in list(tag.attrs):
            value = tag.attrs[attr]
            text = " ".join(value) if isinstance(value, list) else str(value)
            if attr.lower().startswith("on"):
                del tag.attrs[attr]
            elif attr.lower() in URL_ATTRIBUTES and not _allowed_url(attr.lower(), text):
                del tag.attrs[attr]
                if attr.lower() in ("href", "xlink:href"):
                    tag.attrs["title"] = text  # the address stays readable, not clickable
                elif tag.name == "img":
                    note = soup.new_tag("span", attrs={"class": "nb-note"})
                    note.string = f"[image not embedded: {text}]"
                    tag.replace_with(note)
                    break
            elif attr.lower() == "href" and page_dir is not None and text.strip() and not text.strip().startswith("#"):
                rebased = _rebase(text.strip(), page_dir)
                if rebased is None:
                    del tag.attrs[attr]
                    tag.attrs["title"] = f"{text} (not published)"
                else:
                    tag.attrs[attr] = rebased
            elif attr.lower() == "style":
                tag.attrs[attr] = CSS_URL.sub("none", CSS_IMPORT.sub("", text))
    for style in soup.find_all("style"):
        style.string = CSS_URL.sub("none", CSS_IMPORT.sub("", style.get_text()))
    return str(soup)


def _ansi_css() -> str:
    colours = {"black": ("#3e424d", "#282c36"), "red": ("#e75c58", "#b22b31"), "green": ("#00a250", "#007427"),
               "yellow": ("#ddb62b", "#b27d12"), "blue": ("#208ffb", "#0065ca"), "magenta": ("#d160c4", "#a03196"),
               "cyan": ("#60c6c8", "#258f8f"), "white": ("#c5c1b4", "#a1a6b2")}
    rules = []
    for name, (normal, intense) in colours.items():
        rules.append(f".ansi-{name}-fg{{color:{normal}}} .ansi-{name}-bg{{background:{normal}}} "
                     f".ansi-{name}-intense-fg{{color:{intense}}} .ansi-{name}-intense-bg{{background:{intense}}}")
    return "\n".join(rules + [".ansi-bold{font-weight:700} .ansi-underline{text-decoration:underline}"])


PAGE_CSS = """
:root { --fg: #1d2430; --muted: #5b6472; --line: #d9dee6; --code: #f6f8fa; --accent: #2f5d9e; }
* { box-sizing: border-box; }
body { margin: 0; color: var(--fg); background: #fff;
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 20px 28px 64px; }
header { border-bottom: 2px solid var(--accent); margin-bottom: 16px; }
header h1 { font-size: 22px; margin: 6px 0 4px; }
header p { color: var(--muted); margin: 4px 0 10px; font-size: 13px; }
a { color: var(--accent); }
pre, code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.cell { margin: 10px 0; }
.input, .output_area, .text_cell { display: flex; gap: 10px; }
.prompt { flex: 0 0 6.5em; color: var(--muted); font: 12px/1.9 ui-monospace, Menlo, Consolas, monospace; text-align: right; }
.inner_cell, .output_subarea { flex: 1 1 auto; min-width: 0; }
.input_area { background: var(--code); border: 1px solid var(--line); border-radius: 3px; }
.input_area pre { margin: 0; padding: 6px 10px; overflow-x: auto; font-size: 12.5px; line-height: 1.45; }
.output_subarea { overflow-x: auto; padding: 4px 0; }
.output_subarea pre { margin: 0; padding: 2px 10px; font-size: 12.5px; line-height: 1.4; white-space: pre-wrap; overflow-wrap: anywhere; }
.output_stderr { background: #fff6f4; border-left: 3px solid #f0c6bd; }
.output_error pre { background: #fdecea; }
.rendered_html table, .output_html table { border-collapse: collapse; font-size: 13px; margin: 6px 0; }
.rendered_html th, .rendered_html td { border: 1px solid var(--line); padding: 3px 8px; text-align: right; vertical-align: top;
                                      white-space: nowrap; }
.rendered_html th { background: #f2f4f8; font-weight: 600; }
.rendered_html tbody tr:nth-child(even) { background: #fafbfc; }
.text_cell_render { max-width: 90ch; }
.text_cell_render h1 { font-size: 24px; } .text_cell_render h2 { font-size: 19px; margin-top: 26px; }
.text_cell_render code { background: var(--code); padding: 0 3px; border-radius: 3px; font-size: 13px; }
.anchor-link { visibility: hidden; margin-left: 4px; text-decoration: none; }
h1:hover .anchor-link, h2:hover .anchor-link, h3:hover .anchor-link { visibility: visible; }
img { max-width: 100%; height: auto; }
.nb-note { color: var(--muted); font-style: italic; }
"""


def _wrap(body: str, title: str, back_link: str, filename: str) -> str:
    from pygments.formatters import HtmlFormatter

    t, back = html.escape(title), html.escape(back_link, quote=True)
    css = PAGE_CSS + HtmlFormatter(style="default").get_style_defs(".highlight") + "\n" + _ansi_css()
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{t}</title>\n<style>{css}</style>\n</head>\n<body>\n<main>\n<header>\n"
        f"<p><a href=\"{back}\">← Back to the report</a></p>\n<h1>{t}</h1>\n"
        f"<p>The executed notebook <code>{html.escape(filename)}</code> as <code>mlsel run</code> ran it: the cell tagged "
        "injected-parameters holds the parameters it ran with. A static copy: nothing on this page runs or loads.</p>\n"
        f"</header>\n{body}\n<p><a href=\"{back}\">← Back to the report</a></p>\n</main>\n</body>\n</html>\n"
    )
