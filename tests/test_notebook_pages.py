"""The run's executed notebooks as self-contained pages beside the report (mlsel.report.notebook_pages).

A tiny notebook is executed for real with papermill (as the runner executes the
stage notebooks): it shows a DataFrame, logs to stderr with ANSI colours and an
absolute path, draws a matplotlib PNG, and emits what must not reach a static
page (JavaScript, a script inside HTML, remote images, links and frames, a
widget). ``executed_notebook`` and ``make_run`` are imported by
tests/test_report_browser.py.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from mlsel.paths import NOTEBOOKS
from mlsel.publish import outside_path_name
from mlsel.report.notebook_pages import NotebookPageError, notebook_links, notebook_page, publish_notebooks

HOSTILE_HTML = (
    '<b id="html-out">bold html</b><script>document.title = "html script @@"</script>'
    '<img src="https://example.com/remote.png" onerror="document.title = \'onerror @@\'">'
    '<iframe src="https://example.com/frame"></iframe><a href="http://example.com/z" onclick="alert(2)">remote link</a>'
    '<link rel="stylesheet" href="https://example.com/s.css">'
    '<style>@import url("https://example.com/t.css"); .x { background: url(https://example.com/bg.png) }</style>'
    '<div style="background-image: url(https://example.com/bg2.png)">styled div</div>'
)

CELLS = [
    ("markdown", "# Tiny stage\nA [remote doc](https://example.com/doc), ![remote image](https://example.com/x.png) "
                 "and <script>document.title = 'markdown script ran'</script>."),
    ("parameters", "n_rows = 3  # rows shown"),
    ("code", "import pandas as pd\n\npd.DataFrame({'model': ['alpha-model', 'beta-model', 'gamma-model'][:n_rows], "
             "'quality': [0.61, 0.47, 0.52][:n_rows]})"),
    ("code", "import logging\nimport sys\n\nlogging.basicConfig(level=logging.INFO, format='%(levelname)s %(name)s: %(message)s', force=True)\n"
             "logging.getLogger('tiny').info('read /abs/machine/path/data.csv')\n"
             "print('\\x1b[31mred warning on stderr\\x1b[0m', file=sys.stderr)"),
    ("code", "import matplotlib.pyplot as plt\n\nfig, ax = plt.subplots(figsize=(3, 2), dpi=80)\nax.plot([0, 1, 2], [1, 0, 2])\nplt.show()"),
    # "@@" becomes "ran" in the outputs only, so a marker found on the page comes from an output, not from this source.
    ("code", f"from IPython.display import HTML, Javascript, display\n\ndisplay(Javascript(\"document.title = 'js @@'\".replace('@@', 'ran')))\n"
             f"display(HTML({HOSTILE_HTML!r}.replace('@@', 'ran')))"),
]


def executed_notebook(folder: Path) -> Path:
    """Execute the tiny notebook with papermill (``n_rows=2`` injected) into ``folder``; add widget state and a widget view."""
    import papermill as pm

    nb = nbformat.v4.new_notebook()
    for kind, source in CELLS:
        if kind == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(source))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(source, metadata={"tags": ["parameters"]} if kind == "parameters" else {}))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    folder.mkdir(parents=True, exist_ok=True)
    source, out = folder / "tiny_source.ipynb", folder / "tiny.ipynb"
    nbformat.write(nb, source)
    pm.execute_notebook(str(source), str(out), parameters={"n_rows": 2}, kernel_name="python3", progress_bar=False, log_output=False)
    executed = nbformat.read(out, as_version=4)
    # What an ipywidgets session leaves behind (ipywidgets is not installed here): both render as <script> in nbconvert.
    executed.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2, "version_minor": 0}}
    executed.cells[-1].outputs.append(nbformat.v4.new_output(
        "display_data", data={"application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2, "version_minor": 0},
                              "text/plain": "IntSlider(value=3)"}))
    nbformat.write(executed, out)
    return out


def make_run(root: Path, executed: Path, datasets: tuple[str, ...] = ("a", "b"), stages: tuple[str, ...] = ("prepare", "evaluate")) -> Path:
    """A run folder whose datasets' manifests list ``stages`` as executed (copies of ``executed``), plus the report notebook.

    The manifests record the paths of another machine: the pages must come from this run folder's ``notebooks/``.
    """
    for ds in datasets:
        folder = root / ds
        (folder / "notebooks").mkdir(parents=True, exist_ok=True)
        manifest = json.loads((folder / "manifest.json").read_text()) if (folder / "manifest.json").is_file() else {"stages": {}}
        for stage in stages:
            shutil.copy(executed, folder / "notebooks" / NOTEBOOKS[stage])
            manifest["stages"].setdefault(stage, {})["executed_notebook"] = f"/elsewhere/run/{ds}/notebooks/{NOTEBOOKS[stage]}"
        manifest["stages"]["router_export"] = {"n_files": 3}  # an entry that is not a stage
        (folder / "manifest.json").write_text(json.dumps(manifest))
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    shutil.copy(executed, root / "notebooks" / NOTEBOOKS["report"])
    return root


class _Attrs(HTMLParser):
    """Every (tag, attribute, value) of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.attrs: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag, attrs):
        self.attrs += [(tag, k, v or "") for k, v in attrs]


def attributes(text: str) -> list[tuple[str, str, str]]:
    p = _Attrs()
    p.feed(text)
    return p.attrs


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> Path:
    return executed_notebook(tmp_path_factory.mktemp("tiny-notebook"))


@pytest.fixture(scope="module")
def page(executed) -> str:
    return notebook_page(executed, "tiny <stage> · a", "../../index.html#notebooks")


def test_page_loads_nothing_and_runs_nothing(page, executed):
    assert "<script" not in page.lower()
    found = attributes(page)
    for tag, attr, value in found:
        assert not attr.startswith("on"), (tag, attr, value)
        if attr in ("src", "href", "srcset", "poster", "action", "data"):
            assert "http://" not in value and "https://" not in value, (tag, attr, value)
        if attr == "src":
            assert value.startswith("data:image/"), (tag, value[:60])
    assert not [t for t, _, _ in found if t in ("iframe", "link", "object", "embed", "base", "form")]
    # CSS loads nothing (the code cell that wrote it still shows it as text).
    css = re.findall(r"<style[^>]*>(.*?)</style>", page, flags=re.S) + [v for _, a, v in found if a == "style"]
    assert len(css) >= 4 and "styled div" in page
    for block in css:
        assert not re.search(r"url\(\s*['\"]?(?!data:)", block) and "@import" not in block, block[:200]
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src data:; style-src \'unsafe-inline\'">' in page
    # What was there is gone, not hidden: the JavaScript output, the scripts in HTML and markdown, the widget.
    for ran in ("js ran", "html script ran", "markdown script ran", "onerror ran", "widget-state", "widget-view"):
        assert ran not in page, ran
    source = executed.read_text()
    assert all(s in source for s in ("widget-state", "js ran", "html script ran", "onerror ran"))  # the notebook did carry them


def test_page_shows_the_outputs(page):
    # The DataFrame as an HTML table, with the injected parameter (2 rows, not the default 3).
    tables = re.findall(r"<table.*?</table>", page, flags=re.S)
    assert len(tables) == 1 and "alpha-model" in tables[0] and "0.61" in tables[0] and "beta-model" in tables[0]
    assert "gamma-model" not in tables[0]
    assert "injected-parameters" in page and "n_rows" in page
    # stderr: the log line's path outside the known folders is published as its file name and digest; ANSI colours are
    # classes, no raw escape codes.
    assert f"read {outside_path_name('/abs/machine/path/data.csv')}" in page and "/abs/machine" not in page
    assert re.search(r'<span class="ansi-red-fg">red warning on stderr</span>', page)
    stderr = re.findall(r'<div class="output_subarea output_stream output_stderr output_text">(.*?)</div>', page, flags=re.S)
    assert len(stderr) == 1 and "red warning on stderr" in stderr[0] and "[31m" not in stderr[0] and "\x1b" not in page
    # One figure, once, as a PNG data: URI that decodes.
    pngs = re.findall(r'<img[^>]*src="data:image/png;base64,([^"]+)"', page)
    assert len(pngs) == 1
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(pngs[0]))) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 50
    # The harmless parts of the HTML output and of a widget stay; a removed link keeps its text and address.
    assert '<b id="html-out">bold html</b>' in page and "styled div" in page and "IntSlider(value=3)" in page
    assert re.search(r'<a[^>]*title="http://example.com/z"[^>]*>remote link</a>', page)
    assert "[embedded iframe removed" in page and "[image not embedded: https://example.com/remote.png]" in page
    assert "remote doc" in page
    # Our frame: the title (escaped), the link back to the report, readable code.
    assert "<title>tiny &lt;stage&gt; · a</title>" in page and page.count('href="../../index.html#notebooks"') == 2
    assert 'class="highlight' in page and ".highlight .k" in page and "max-width: 100%" in page


def test_same_notebook_same_bytes(page, executed):
    assert notebook_page(executed, "tiny <stage> · a", "../../index.html#notebooks") == page


def test_links_come_from_the_manifests(executed, tmp_path):
    run = make_run(tmp_path / "run", executed)
    (run / "c").mkdir()  # a dataset whose stages ran outside the runner: no manifest, no pages
    (run / "notebooks" / NOTEBOOKS["report"]).unlink()  # the report notebook is still running: it is linked all the same
    links = notebook_links(str(run), ["b", "a", "c"])
    assert [link.href for link in links] == [
        "notebooks/b/00_prepare_data.html", "notebooks/b/30_evaluate_selectors.html",
        "notebooks/a/00_prepare_data.html", "notebooks/a/30_evaluate_selectors.html", "notebooks/90_build_report.html"]
    assert links[0].source == run / "b" / "notebooks" / "00_prepare_data.ipynb"  # in this run folder, not /elsewhere
    assert [(link.dataset, link.stage) for link in links][-1] == ("", "report")


def test_publish_writes_exactly_the_linked_pages(executed, tmp_path):
    run, site = make_run(tmp_path / "run", executed), tmp_path / "site"
    (site / "notebooks" / "old").mkdir(parents=True)
    (site / "notebooks" / "old" / "00_prepare_data.html").write_text("stale")
    (site / "notebooks" / "a" / "40_tune_selectors.html").parent.mkdir(parents=True)
    (site / "notebooks" / "a" / "40_tune_selectors.html").write_text("stale")
    (site / "notebooks" / "notes.txt").write_text("not a page")
    written = publish_notebooks(str(run), ["a", "b"], str(site))
    hrefs = [link.href for link in notebook_links(str(run), ["a", "b"])]
    assert written == [site / h for h in hrefs] and len(hrefs) == 5
    assert sorted(str(p.relative_to(site)) for p in site.rglob("*.html")) == sorted(hrefs)
    assert not (site / "notebooks" / "old").exists() and (site / "notebooks" / "notes.txt").is_file()
    for path, href in zip(written, hrefs):
        text = path.read_text(encoding="utf-8")
        back = re.search(r'<a href="([^"]+)">← Back to the report</a>', text).group(1)
        assert (path.parent / back.split("#")[0]).resolve() == (site / "index.html").resolve(), href
        assert "alpha-model" in text and text.count("data:image/png;base64,") == 1
    assert not list(site.rglob(".*.tmp")), "atomic writes leave no temporary file"


def test_missing_or_unreadable_notebook_is_named_and_nothing_changes(executed, tmp_path):
    run, site = make_run(tmp_path / "run", executed), tmp_path / "site"
    publish_notebooks(str(run), ["a", "b"], str(site))
    before = {p: p.read_bytes() for p in site.rglob("*.html")}
    (run / "b" / "notebooks" / "30_evaluate_selectors.ipynb").unlink()
    with pytest.raises(FileNotFoundError, match=r"run/b/notebooks/30_evaluate_selectors\.ipynb: executed notebook not found"):
        publish_notebooks(str(run), ["a", "b"], str(site))
    assert {p: p.read_bytes() for p in site.rglob("*.html")} == before
    (run / "b" / "notebooks" / "30_evaluate_selectors.ipynb").write_text("{not json")
    with pytest.raises(NotebookPageError, match=r"run/b/notebooks/30_evaluate_selectors\.ipynb: not a readable notebook"):
        publish_notebooks(str(run), ["a", "b"], str(site))
    (run / "notebooks" / "90_build_report.ipynb").unlink()
    with pytest.raises(FileNotFoundError, match=r"run/notebooks/90_build_report\.ipynb"):
        publish_notebooks(str(run), ["a"], str(site))
    assert {p: p.read_bytes() for p in site.rglob("*.html")} == before


def test_report_links_every_published_page(executed, tmp_path):
    """The page links exactly the published pages (a run folder with no tables: the report only needs its folders)."""
    from mlsel.report.overview import build_run_report

    site = tmp_path / "site"
    run = make_run(tmp_path / "run", executed, datasets=("a",), stages=("prepare", "train", "evaluate", "tune", "ship"))
    (run / "b").mkdir()
    index = build_run_report(str(run), ["a", "b"], str(site))  # before the pages exist, as in the report notebook
    published = publish_notebooks(str(run), ["a", "b"], str(site))
    text = index.read_text(encoding="utf-8")
    section = re.search(r'<section id="notebooks">.*?</section>', text, flags=re.S).group(0)
    assert "Executed notebooks" in section and "with the parameters the run injected" in section
    assert "b</h3>\n<p>Its manifest lists no executed notebook" in section  # b's manifest has none
    hrefs = re.findall(r'href="(notebooks/[^"]+)"', text)
    assert hrefs == ["notebooks/a/00_prepare_data.html", "notebooks/a/20_train_selectors.html", "notebooks/a/30_evaluate_selectors.html",
                     "notebooks/a/40_tune_selectors.html", "notebooks/a/50_ship_selector.html", "notebooks/90_build_report.html"]
    assert sorted(site / h for h in hrefs) == sorted(published)
    for h in hrefs:
        assert (site / h).is_file(), h


def test_relative_links_are_rebased_to_the_page(tmp_path):
    """A notebook's relative link is relative to the kernel's folder (notebooks/, as in JupyterLab); on a page written
    elsewhere it points at the same file, and a link to no file becomes plain text with its address in the title."""
    from mlsel.report.notebook_pages import KERNEL_CWD

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("[readme](../README.md#layout) and [gone](../no/such/file.html) and [here](#top)")]
    src = tmp_path / "n.ipynb"
    nbformat.write(nb, src)
    page_path = tmp_path / "report" / "notebooks" / "x.html"
    found = [(t, k, v) for t, k, v in attributes(notebook_page(src, "t", "../index.html", page=page_path)) if t == "a"]
    readme = Path(os.path.relpath(KERNEL_CWD.parent / "README.md", page_path.parent)).as_posix()
    hrefs = [v for _, k, v in found if k == "href"]
    assert f"{readme}#layout" in hrefs and "#top" in hrefs
    assert not any("no/such" in v for v in hrefs)
    assert ("a", "title", "../no/such/file.html (not published)") in found
    assert (page_path.parent / readme).resolve() == (KERNEL_CWD.parent / "README.md").resolve()
