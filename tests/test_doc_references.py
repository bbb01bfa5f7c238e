"""Every cross-reference in the package's docstrings and comments names something that exists.

Sphinx-style roles (``:mod:`mlsel.data.costs```, ``:func:`mlsel.data.costs.fill_missing_cost```, ``:data:``,
``:class:``, ``:meth:``, ``:attr:``) with a full ``mlsel.`` target are resolved by importing the module and
walking the attributes; a target that no longer exists (or a broken one like ``None.None``) fails the test,
naming the file and line.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ROLE = re.compile(r":(?:mod|func|data|class|meth|attr|exc):`~?([A-Za-z_][\w.]*)`")


def resolve(target: str) -> bool:
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def references() -> list[tuple[str, int, str]]:
    out = []
    for path in sorted((ROOT / "mlsel").rglob("*.py")):
        for lineno, line in enumerate(path.read_text().splitlines(), start=1):
            out += [(str(path.relative_to(ROOT)), lineno, t) for t in ROLE.findall(line) if t.startswith(("mlsel", "None"))]
    return out


def test_every_full_reference_resolves():
    refs = references()
    assert len(refs) > 50  # the package does cross-reference itself
    broken = [f"{f}:{n}: {t}" for f, n, t in refs if not resolve(t)]
    assert broken == []


def test_the_check_catches_a_broken_reference():
    assert resolve("mlsel.data.costs.fill_missing_cost") and resolve("mlsel.data.costs")
    assert not resolve("None.None") and not resolve("mlsel.data.outcomes.fill_missing_cost") and not resolve("mlsel.nowhere.x")
