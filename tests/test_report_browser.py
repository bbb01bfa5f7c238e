"""The built report in a real browser: headless Chromium with the network off.

Checks that every table and figure of the page reaches the DOM, that every
figure decodes (naturalWidth > 0), and that a screenshot of the page is not
blank; that the cross-dataset page opens on the answer (at 1400x900, from the
DOM's element positions: the answer table and the gains figure inside the first
screen, no table wider than its container unless it scrolls there, the page at
most 25 screens high); and that the published executed-notebook pages and the page linking them
load with no network request and no console error, their images decoding.
Those are driven over the DevTools protocol (websocket-client, which
jupyterlab's server brings), which sees every request a page makes, even one
its Content-Security-Policy blocks (that one is a console error).
Chromium comes from Debian (``apt-get install -y chromium``); without
it the test is skipped, except in CI (``CI=true``), where the project's conftest
hook makes the skip a failure.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from test_notebook_pages import executed_notebook, make_run

from mlsel.params import Params, dataset_params, stage_values
from mlsel.params.model import DEFAULT_DATASETS
from mlsel.report.page import build_report

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.browser

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"

# Test-only probe, injected into a copy of the page (the report itself has no
# script): after load, record how many images decoded.
PROBE = (
    "<script>window.addEventListener('load',function(){var im=document.images,ok=0;"
    "for(var k=0;k<im.length;k++){if(im[k].complete&&im[k].naturalWidth>0)ok++;}"
    "document.body.setAttribute('data-img-total',im.length);document.body.setAttribute('data-img-ok',ok);});</script>"
)


def _chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if path is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")  # a failure under CI=true (conftest.py)
    return path


FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
    "--disable-default-apps", "--hide-scrollbars",
    # Network off: no name resolves, and any request would go to a dead proxy.
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
)


def _run_chromium(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [chromium, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


class _Elements(HTMLParser):
    """Ids of tables and figures, counts of <table> and <img>."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[str] = []
        self.figures: list[str] = []
        self.imgs = 0
        self.attrs: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "table":
            self.tables.append(a.get("id", ""))
        elif tag == "figure":
            self.figures.append(a.get("id", ""))
        elif tag == "img":
            self.imgs += 1
        elif tag == "body":
            self.attrs = {k: v or "" for k, v in a.items()}


def _parse(text: str) -> _Elements:
    p = _Elements()
    p.feed(text)
    return p


@pytest.fixture(scope="module")
def page(smoke_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("report-browser")
    sp = stage_values(smoke_run, "report")
    html_path = build_report(sp["run_dir"], str(out))
    return {"path": html_path, "text": html_path.read_text(encoding="utf-8"), "params": sp, "tmp": tmp_path_factory}


def test_every_table_and_figure_in_the_dom(page):
    chromium = _chromium()
    source = _parse(page["text"])
    pools = sorted(set(re.findall(r'<table id="results-main-([^"]+)"', page["text"])))
    assert pools, "no per-pool results table"
    # The fixed core of the page: per pool four tables and three figures, plus provenance.
    for pool in pools:
        for tid in (f"results-main-{pool}", f"results-benefit-{pool}", f"per-category-{pool}", f"share-{pool}"):
            assert tid in source.tables, tid
        for fid in (f"fig-per-category-{pool}", f"fig-share-{pool}", f"fig-scatter-{pool}"):
            assert fid in source.figures, fid
    for tid in ("prov-inputs", "prov-counts", "prov-params-prepare", "prov-params-evaluate", "prov-software", "prov-tables"):
        assert tid in source.tables, tid
    assert source.imgs == len(source.figures) >= 3 * len(pools)

    # The page as it is: Chromium parses every table and figure.
    dom = _parse(_run_chromium(chromium, page["tmp"].mktemp("profile"), "--dump-dom", page["path"].as_uri()).stdout)
    assert dom.tables == source.tables
    assert dom.figures == source.figures
    assert dom.imgs == source.imgs

    # A copy with the test-only probe (and a CSP that lets only that inline script run): every image decodes.
    assert CSP in page["text"]
    probe_path = page["path"].with_name("probe.html")
    probe_path.write_text(
        page["text"].replace(CSP, CSP + "; script-src 'unsafe-inline'").replace("</body>", PROBE + "</body>"), encoding="utf-8"
    )
    probed = _parse(_run_chromium(chromium, page["tmp"].mktemp("profile"), "--dump-dom", probe_path.as_uri()).stdout)
    assert probed.attrs.get("data-img-total") == str(source.imgs)
    assert probed.attrs.get("data-img-ok") == str(source.imgs), "some figures did not decode in the browser"
    probe_path.unlink()


def test_screenshot_is_not_blank(page):
    chromium = _chromium()
    import numpy as np
    from PIL import Image

    shot = page["tmp"].mktemp("shot") / "report.png"
    _run_chromium(chromium, page["tmp"].mktemp("profile"), "--window-size=1400,6000", f"--screenshot={shot}", page["path"].as_uri())
    assert shot.is_file()
    with Image.open(shot) as im:
        assert im.size == (1400, 6000)
        gray = np.asarray(im.convert("L"))
        rgb = np.asarray(im.convert("RGB"))
    inked_rows = (gray < 200).any(axis=1).mean()
    assert inked_rows > 0.3, f"only {inked_rows:.0%} of the rows have any text or figure"
    # Figures bring colour: many distinct colours, not just black text on white.
    colours = len(np.unique(rgb[::4, ::4].reshape(-1, 3), axis=0))
    assert colours > 200, colours


def test_cross_dataset_page_in_the_browser(cross_dataset_run, tmp_path):
    """The published page of a multi-dataset run: matrix, gain figure and every dataset's tables reach the DOM, images decode."""
    from mlsel.report.overview import build_run_report

    chromium = _chromium()
    path = build_run_report(str(cross_dataset_run), ["a", "b"], str(tmp_path / "site"))
    text = path.read_text(encoding="utf-8")
    source = _parse(text)
    assert source.tables[:2] == ["answer-table", "summary-matrix"] and source.figures[0] == "fig-answer"
    assert {"a-results-main-small4", "b-results-main-small4", "a-prov-inputs", "b-prov-inputs"} <= set(source.tables)
    dom = _parse(_run_chromium(chromium, tmp_path / "profile", "--dump-dom", path.as_uri()).stdout)
    assert dom.tables == source.tables and dom.figures == source.figures and dom.imgs == source.imgs
    probe = path.with_name("probe.html")
    probe.write_text(text.replace(CSP, CSP + "; script-src 'unsafe-inline'").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    probed = _parse(_run_chromium(chromium, tmp_path / "profile2", "--dump-dom", probe.as_uri()).stdout)
    assert probed.attrs.get("data-img-ok") == str(source.imgs) == probed.attrs.get("data-img-total")


# --------------------------------------------------------------------------- the executed-notebook pages

PAGE_STATE = (
    "({images: Array.from(document.images).map(i => i.complete ? i.naturalWidth : -1), scripts: document.scripts.length,"
    " links: Array.from(document.links).map(a => a.href), text: document.body.innerText.length})"
)
"""Evaluated in the loaded page over the DevTools protocol (the page's own policy forbids scripts; this is not one)."""


class Devtools:
    """Headless Chromium (network off) driven over the DevTools protocol: load a page, see what it requested and logged."""

    def __init__(self, chromium: str, profile: Path) -> None:
        import websocket  # websocket-client, a dependency of jupyter_server (jupyterlab)

        self.proc = subprocess.Popen([chromium, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port_file, deadline = profile / "DevToolsActivePort", time.monotonic() + 60
        while not (port_file.is_file() and len(port_file.read_text().split()) >= 2):
            assert self.proc.poll() is None and time.monotonic() < deadline, "chromium did not open its DevTools port"
            time.sleep(0.05)
        port, path = port_file.read_text().split()[:2]
        self.ws = websocket.create_connection(f"ws://127.0.0.1:{port}{path}", timeout=60, suppress_origin=True)
        self.events: list[dict] = []
        self.last_id = 0

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.last_id += 1
        self.ws.send(json.dumps({"id": self.last_id, "method": method, "params": params or {}, **({"sessionId": session} if session else {})}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.last_id:
                assert "error" not in msg, msg
                return msg["result"]
            self.events.append(msg)

    def _wait(self, method: str, session: str) -> None:
        while not any(e.get("method") == method and e.get("sessionId") == session for e in self.events):
            self.events.append(json.loads(self.ws.recv()))

    def load(self, url: str, expression: str = PAGE_STATE, viewport: tuple[int, int] | None = None, shot: Path | None = None) -> dict:
        """Open ``url`` in a new tab (at ``viewport``'s width and height in CSS pixels, if given); its requests, console
        errors and ``expression``'s value once it has loaded; a screenshot of the viewport to ``shot``, if given."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Network", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        if viewport:
            self.send("Emulation.setDeviceMetricsOverride", {"width": viewport[0], "height": viewport[1], "deviceScaleFactor": 1,
                                                             "mobile": False}, session)
        self.events.clear()
        self.send("Page.navigate", {"url": url}, session)
        self._wait("Page.loadEventFired", session)  # after every image has loaded or failed
        if shot is not None:
            shot.write_bytes(base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"}, session)["data"]))
        state = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)["result"]["value"]
        mine = [e for e in self.events if e.get("sessionId") == session]
        self.send("Target.closeTarget", {"targetId": target})
        state["requests"] = [e["params"]["request"]["url"] for e in mine if e["method"] == "Network.requestWillBeSent"]
        state["errors"] = ([e["params"]["entry"]["text"] for e in mine if e["method"] == "Log.entryAdded" and e["params"]["entry"]["level"] == "error"]
                           + [str(e["params"]["args"]) for e in mine if e["method"] == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert")]
                           + [str(e["params"]["exceptionDetails"]) for e in mine if e["method"] == "Runtime.exceptionThrown"])
        # Network: anything but the page's own file and its embedded data: URIs.
        state["network"] = [u for u in state["requests"] if urlparse(u).scheme not in ("file", "data")]
        return state

    def close(self) -> None:
        try:
            self.send("Browser.close")
        finally:
            self.ws.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@pytest.fixture(scope="module")
def devtools(tmp_path_factory):
    browser = Devtools(_chromium(), tmp_path_factory.mktemp("devtools-profile"))
    yield browser
    browser.close()


@pytest.fixture(scope="module")
def notebook_site(cross_dataset_run, tmp_path_factory):
    """The cross-dataset run with executed notebooks (a tiny one, run with papermill) for every stage of a and b: the report
    page built first, as the report notebook builds it, then the notebook pages published, as the runner does afterwards."""
    from mlsel.report.notebook_pages import publish_notebooks
    from mlsel.report.overview import build_run_report

    tmp = tmp_path_factory.mktemp("notebook-site")
    run, site = tmp / "run", tmp / "site"
    shutil.copytree(cross_dataset_run, run)
    make_run(run, executed_notebook(tmp / "tiny"), datasets=("a", "b"), stages=("prepare", "train", "evaluate", "tune", "ship"))
    index = build_run_report(str(run), ["a", "b"], str(site))
    return {"index": index, "pages": publish_notebooks(str(run), ["a", "b"], str(site))}


def _local_target(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


def test_every_notebook_page_loads_offline_without_errors(devtools, notebook_site):
    index, pages = notebook_site["index"], notebook_site["pages"]
    assert len(pages) == 11  # 2 datasets x 5 stages + the report notebook
    home = devtools.load(index.as_uri())
    assert home["network"] == [] and home["errors"] == [] and home["scripts"] == 0
    assert len(home["images"]) >= 3 and all(w > 0 for w in home["images"]), home["images"]
    linked = sorted(_local_target(u) for u in home["links"] if "/notebooks/" in u)
    assert linked == sorted(pages), "the report links exactly the published pages"
    for page in pages:
        state = devtools.load(page.as_uri())
        assert state["requests"][0] == page.as_uri(), state["requests"][:1]
        assert state["network"] == [], (page, state["network"])
        assert state["errors"] == [], (page, state["errors"])
        assert state["scripts"] == 0 and state["text"] > 500, page
        assert len(state["images"]) == 1 and state["images"][0] > 0, (page, state["images"])  # the tiny notebook's figure decodes
        back = [u for u in state["links"] if u.startswith("file:") and "#notebooks" in u]
        assert len(back) == 2 and all(_local_target(u) == index for u in back), back


def test_the_probe_sees_requests_and_errors(devtools, tmp_path):
    """The check above can fail: a page without our policy that loads a remote image and logs an error is caught."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><img src="https://example.com/x.png">'
                   '<script>console.error("boom")</script></body></html>', encoding="utf-8")
    state = devtools.load(bad.as_uri())
    assert state["network"] == ["https://example.com/x.png"]
    assert any("boom" in e for e in state["errors"]) and state["scripts"] == 1 and state["images"] == [0]
    # With the pages' policy the attempt is still seen (the protocol reports it before the policy blocks it), and the
    # refusal is a console error: "no request" above means the page attempted none, not that the policy stopped them.
    from mlsel.report.notebook_pages import CSP

    blocked = tmp_path / "blocked.html"
    blocked.write_text(f'<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="{CSP}"></head>'
                       '<body><img src="https://example.com/x.png"></body></html>', encoding="utf-8")
    state = devtools.load(blocked.as_uri())
    assert state["network"] == ["https://example.com/x.png"] and state["images"] == [0]
    assert any("violates the following Content Security Policy" in e for e in state["errors"]), state["errors"]


# --------------------------------------------------------------------------- the first screen and the page's size

SCREEN = (1400, 900)
"""The screen the page is laid out for: its first screen holds the answer."""
MAX_SCREENS = 25
"""The page's height, all sections folded as published, in screens of :data:`SCREEN`."""
LAYOUT = """(() => {
  const doc = document.documentElement, main = document.querySelector('main');
  const box = e => { if (!e) return null; const r = e.getBoundingClientRect();
                     return {top: r.top + scrollY, bottom: r.bottom + scrollY, left: r.left, right: r.right, width: r.width}; };
  const answer = document.getElementById('answer-table'), figure = document.querySelector('#fig-answer img');
  const out = {answer: box(answer), figure: box(figure), height: doc.scrollHeight, width: doc.scrollWidth,
               answerScrolls: answer ? answer.parentElement.scrollWidth > answer.parentElement.clientWidth : null,
               figureDecoded: figure ? figure.complete && figure.naturalWidth > 0 : false, overflowing: []};
  document.querySelectorAll('details').forEach(d => { d.open = true; });
  out.openHeight = doc.scrollHeight; out.openWidth = doc.scrollWidth; out.tables = document.querySelectorAll('table').length;
  for (const t of document.querySelectorAll('table')) {
    const wrap = t.parentElement, scrolls = ['auto', 'scroll'].includes(getComputedStyle(wrap).overflowX);
    const tw = t.getBoundingClientRect().width, ww = wrap.getBoundingClientRect().width;
    if ((tw > ww + 1 && !scrolls) || ww > main.clientWidth + 1) out.overflowing.push(t.id);
  }
  return out;
})()"""
"""Where the answer table and the gains figure are, the page's height and width as published (folded), then with every
section opened: each table that is wider than its container without scrolling inside it, or whose container is wider
than the page's column."""


def first_screen(devtools: Devtools, index: Path, shot: Path) -> dict:
    """The page at :data:`SCREEN` with the network off: the answer table and the gains figure end inside the first screen,
    the table fits without scrolling (1,280 px at most), the page never scrolls sideways, no table is wider than its
    container unless that scrolls, the page is at most :data:`MAX_SCREENS` high, and the screenshot is not blank."""
    import numpy as np
    from PIL import Image

    state = devtools.load(index.as_uri(), LAYOUT, viewport=SCREEN, shot=shot)
    assert state["network"] == [] and state["errors"] == [], (state["network"], state["errors"])
    width, height = SCREEN
    assert state["answer"] is not None and state["figure"] is not None, "no answer table or gains figure"
    assert state["answer"]["bottom"] <= height and state["figure"]["bottom"] <= height, (state["answer"], state["figure"])
    assert state["answer"]["width"] <= 1280 and state["answerScrolls"] is False, state["answer"]
    assert state["figureDecoded"]
    assert state["width"] <= width and state["openWidth"] <= width, (state["width"], state["openWidth"])
    assert state["tables"] > 0 and state["overflowing"] == [], state["overflowing"]
    assert state["height"] <= MAX_SCREENS * height, f"{state['height'] / height:.1f} screens"
    with Image.open(shot) as im:
        assert im.size == SCREEN
        rgb = np.asarray(im.convert("RGB"))
    assert (rgb.min(axis=2) < 200).any(axis=1).mean() > 0.3, "the first screen is mostly blank"
    assert len(np.unique(rgb[::2, ::2].reshape(-1, 3), axis=0)) > 50, "no figure on the first screen"
    return state


def test_the_answer_is_on_the_first_screen(devtools, cross_dataset_run, tmp_path):
    from mlsel.report.overview import build_run_report

    index = build_run_report(str(cross_dataset_run), ["a", "b"], str(tmp_path / "site"))
    state = first_screen(devtools, index, tmp_path / "first_screen.png")
    assert state["openHeight"] > state["height"], "the datasets' sections are folded"


def test_the_layout_check_can_fail(devtools, tmp_path):
    """A page whose table is wider than the screen and does not scroll, with the answer below the first screen, fails."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><html><body><main><div style="height:1200px"></div><div><table id="answer-table">'
                   '<tr><td style="white-space:nowrap">' + "wide " * 400 + '</td></tr></table></div>'
                   '<figure id="fig-answer"><img src=""></figure></main></body></html>', encoding="utf-8")
    state = devtools.load(bad.as_uri(), LAYOUT, viewport=SCREEN)
    assert state["answer"]["top"] >= 1200 and state["width"] > SCREEN[0] and state["overflowing"] == ["answer-table"]


@pytest.mark.slow
def test_the_default_run_page_fits(devtools, default_run, tmp_path):
    """The default run's page, as the report stage built it: the answer on the first screen, within 25 screens, under 1.5 MB."""
    index = default_run.report_dir / "index.html"
    assert index.stat().st_size < 1.5e6, index.stat().st_size
    first_screen(devtools, index, tmp_path / "first_screen.png")


def test_published_notebook_pages_load_offline(devtools):
    """The published report (reports/) links the default run's executed notebooks; every page loads with the network off,
    attempts no request, logs no error, runs no script, and its figures (at least one per stage notebook, except the ship
    notebook of a dataset that evaluates no routing config) decode."""
    report = ROOT / "reports"
    home = devtools.load((report / "index.html").as_uri())
    linked = sorted(_local_target(u) for u in home["links"] if "/notebooks/" in u)
    pages = sorted((report / "notebooks").rglob("*.html"))
    assert linked == pages and len(pages) == len(DEFAULT_DATASETS) * 5 + 1  # each default dataset's 5 stages + the report notebook
    no_config = {ds for ds in DEFAULT_DATASETS if not dataset_params(Params(), ds).ship.router_config}
    for page in pages:
        state = devtools.load(page.as_uri())
        assert state["network"] == [] and state["errors"] == [] and state["scripts"] == 0, (page, state["network"], state["errors"])
        figures = 0 if page.stem == "50_ship_selector" and page.parent.name in no_config else 1
        assert len(state["images"]) >= figures and all(w > 0 for w in state["images"]), (page, state["images"])
