"""The package's shape: its layers (import-linter), and modules and functions small enough to read."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "mlsel"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
LONG_REASON = re.compile(r"#\s*long:\s*\S")
"""A function may be longer when the line above its ``def`` says why: ``# long: <reason>``."""

MODULES = sorted(PACKAGE.rglob("*.py"))


def test_layers_hold():
    """Lower layers never import higher ones (contracts in pyproject.toml's [tool.importlinter])."""
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def test_a_broken_layer_is_caught(tmp_path):
    """The contract check can fail: a copy of the package where data imports stages is rejected."""
    import shutil

    copy = tmp_path / "mlsel"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "data" / "records.py", "a") as fh:
        fh.write("\nfrom mlsel import stages  # noqa: E402,F401\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    lint = Path(sys.executable).with_name("lint-imports")
    out = subprocess.run([str(lint), "--config", str(tmp_path / "pyproject.toml"), "--no-cache"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=300, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})
    assert out.returncode != 0
    assert "mlsel.data.records -> mlsel.stages" in out.stdout


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_and_function_sizes(path):
    text = path.read_text()
    lines = text.splitlines()
    assert len(lines) <= MAX_MODULE_LINES, f"{path.name}: {len(lines)} lines (> {MAX_MODULE_LINES}); split it by concern"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            if n > MAX_FUNCTION_LINES:
                assert LONG_REASON.search(lines[first - 2]), f"{path.name}:{node.lineno} {node.name} has {n} lines and no '# long: <reason>'"


def test_no_parameter_defaults_looked_up_by_string():
    """Parameters are attributes of the validated model, never ``params.get("key", default)``."""
    offenders = []
    for path in MODULES:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\b(params|extra|p|sp|stage_params)\.get\(\s*[\"'][a-z_]+[\"']\s*,", line):
                offenders.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
