"""Project-wide pytest hook: under ``CI=true`` a skipped test (or notebook cell) is a failure.

A check that did not run is not a pass: CI must run every test, so a skip there
means the machine lacks something the suite needs, and the run says what.
Outside CI (``CI`` unset or not ``true``) skips stay skips. Expected failures
(``xfail``) are not skips and are left alone.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() == "true"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.skipped and in_ci() and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = f"{item.nodeid} was skipped under CI=true, where every test must run: {reason}"
