"""The built report in a real browser: headless Chromium with the network off.

Checks that every table and figure of the page reaches the DOM, that every
figure decodes (naturalWidth > 0), and that a screenshot of the page is not
blank. Chromium comes from Debian (``apt-get install -y chromium``); without
it the test is skipped, except in CI (``CI=true``), where the project's conftest
hook makes the skip a failure.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest

from mlsel.params import stage_values
from mlsel.report.page import build_report

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


def _run_chromium(chromium: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
        "--disable-default-apps", "--hide-scrollbars", f"--user-data-dir={profile}",
        # Network off: no name resolves, and any request would go to a dead proxy.
        "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=http://127.0.0.1:9",
        "--virtual-time-budget=10000", *args,
    ]
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
    assert source.tables[0] == "summary-matrix" and source.figures[0] == "fig-gain-at-b"
    assert {"a-results-main-small4", "b-results-main-small4", "a-prov-inputs", "b-prov-inputs"} <= set(source.tables)
    dom = _parse(_run_chromium(chromium, tmp_path / "profile", "--dump-dom", path.as_uri()).stdout)
    assert dom.tables == source.tables and dom.figures == source.figures and dom.imgs == source.imgs
    probe = path.with_name("probe.html")
    probe.write_text(text.replace(CSP, CSP + "; script-src 'unsafe-inline'").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    probed = _parse(_run_chromium(chromium, tmp_path / "profile2", "--dump-dom", probe.as_uri()).stdout)
    assert probed.attrs.get("data-img-ok") == str(source.imgs) == probed.attrs.get("data-img-total")
