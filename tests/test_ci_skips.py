"""The project's conftest hook: under CI=true a skipped test is a failure; elsewhere a skip stays a skip."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

PROBE = """
import pytest

def test_runs():
    assert True

def test_skips():
    pytest.skip("no widget here")

@pytest.mark.skipif(True, reason="not on this platform")
def test_marked_skip():
    pass

@pytest.mark.xfail(reason="known")
def test_expected_failure():
    assert False
"""


@pytest.mark.parametrize("ci, outcome, code", [("true", "1 failed, 1 passed, 1 xfailed, 1 error", 1), ("", "1 passed, 2 skipped, 1 xfailed", 0),
                                               ("false", "1 passed, 2 skipped, 1 xfailed", 0)])
def test_a_skip_fails_under_ci(tmp_path, ci, outcome, code):
    """A skip in the test body fails it; a skip mark fails its setup (reported as an error); xfail is untouched."""
    (tmp_path / "conftest.py").write_text((ROOT / "conftest.py").read_text())
    (tmp_path / "test_probe.py").write_text(PROBE)
    env = {**os.environ, "CI": ci}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rA", str(tmp_path)], cwd=tmp_path, env=env,
                       capture_output=True, text=True)
    assert outcome in r.stdout, r.stdout
    assert r.returncode == code, r.stdout
    if ci == "true":
        assert "test_probe.py::test_skips was skipped under CI=true, where every test must run: Skipped: no widget here" in r.stdout
        assert "test_probe.py::test_marked_skip was skipped under CI=true, where every test must run: Skipped: not on this platform" in r.stdout
