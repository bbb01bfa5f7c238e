"""The dependency scheme holds together.

pyproject.toml states ranges (what the package accepts), constraints.txt the exact versions of
everything `make test` installs (`make lock`, a pip freeze of .venv), environment.yml pins the
declared dependencies at those versions, and every third-party import is declared.
"""

from __future__ import annotations

import ast
import functools
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
RUNTIME = [Requirement(r) for r in PROJECT["dependencies"]]
EXTRAS = {name: [Requirement(r) for r in reqs] for name, reqs in PROJECT["optional-dependencies"].items()}
MAKEFILE = (ROOT / "Makefile").read_text()

# Import names whose distribution is named otherwise (the rest: the import name, `_` read as `-`).
IMPORT_TO_DIST = {
    "bs4": "beautifulsoup4",
    "yaml": "pyyaml",
    "sklearn": "scikit-learn",
    "PIL": "pillow",
    "websocket": "websocket-client",
    "llama_cpp": "llama-cpp-python",
}


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9._-]+)==([0-9][A-Za-z0-9.]*)", line)
        assert m, f"constraints.txt: {line!r} is not an exact `name==version` pin"
        name = canonicalize_name(m[1])
        assert name not in pins, f"constraints.txt pins {name} twice"
        pins[name] = m[2]
    return pins


CONSTRAINTS = _constraints()


def _makefile_var(name: str) -> str:
    m = re.search(rf"^{name}\s*:?=\s*(\S+)\s*$", MAKEFILE, re.M)
    assert m, f"Makefile has no {name}"
    return m[1]


def test_constraints_pin_what_make_test_installs():
    declared = RUNTIME + EXTRAS["test"]
    missing = [r.name for r in declared if canonicalize_name(r.name) not in CONSTRAINTS]
    assert not missing, f"declared but not in constraints.txt: {missing}"
    assert CONSTRAINTS["torch"] == "2.13.0", "torch stays at 2.13.0 (the CPU build)"
    # Not the package itself; llama-cpp-python is built from source at the Makefile's LLAMA_VERSION.
    assert "mlsel" not in CONSTRAINTS and "llama-cpp-python" not in CONSTRAINTS


def test_pyproject_ranges_admit_the_constrained_versions():
    for req in RUNTIME + [r for reqs in EXTRAS.values() for r in reqs]:
        ops = {s.operator for s in req.specifier}
        assert ">=" in ops and "==" not in ops, f"{req}: a range with a lower bound, not a pin"
        name = canonicalize_name(req.name)
        version = _makefile_var("LLAMA_VERSION") if name == "llama-cpp-python" else CONSTRAINTS[name]
        assert req.specifier.contains(version), f"{req} does not admit the constrained {name}=={version}"
    torch = next(r for r in RUNTIME if r.name == "torch")
    assert torch.specifier.contains("2.13.0") and not torch.specifier.contains("2.14.0"), "torch stays on 2.13"


def test_environment_yml_pins_the_constrained_versions():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert env["name"] == "mlsel"
    deps = env["dependencies"]
    assert "python=3.11" in deps and "pip" in deps
    pip = next(d["pip"] for d in deps if isinstance(d, dict))
    assert pip[0] == "-c constraints.txt"
    pins = {}
    for line in pip[1:]:
        name, _, version = line.partition("==")
        pins[canonicalize_name(name)] = version
    wanted = {canonicalize_name(r.name) for r in RUNTIME + EXTRAS["test"]}
    assert set(pins) == wanted, f"environment.yml vs pyproject: extra {set(pins) - wanted}, missing {wanted - set(pins)}"
    wrong = {n: (v, CONSTRAINTS[n]) for n, v in pins.items() if v != CONSTRAINTS[n]}
    assert not wrong, f"environment.yml (left) vs constraints.txt (right): {wrong}"


def test_license_is_an_spdx_expression():
    assert PROJECT["license"] == "Apache-2.0"
    setuptools = next(Requirement(r) for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools"))
    assert not setuptools.specifier.contains("76.9"), "SPDX `project.license` needs setuptools>=77"


def test_makefile_installs_from_the_constraints():
    assert _makefile_var("CONSTRAINTS") == "constraints.txt"
    installs = [line.strip() for line in MAKEFILE.splitlines() if line.startswith("\t") and "pip install" in line]  # recipe lines
    assert any("$(TORCH)" in line for line in installs) and any("-e ." in line for line in installs)
    for line in installs:
        if "--upgrade pip" in line or "$(LLAMA_WHEELS)/" in line:  # pip itself; the locally built llama wheel, --no-deps
            continue
        assert "-c $(CONSTRAINTS)" in line, f"Makefile installs without the constraints: {line}"


# --- every third-party import is declared -------------------------------------------------------


@functools.cache
def _installed() -> dict[str, list[str]]:
    """Import name -> distributions, of what is installed here (read once: each read scans every installed package)."""
    return packages_distributions()


def _distribution(module: str) -> str:
    if module in IMPORT_TO_DIST:
        return IMPORT_TO_DIST[module]
    installed = _installed().get(module)
    return canonicalize_name(installed[0] if installed else module)


@functools.cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text())


def _third_party_imports(paths: list[Path], local: set[str]) -> dict[str, set[str]]:
    """Top-level import name -> files importing it, leaving out the stdlib, mlsel and ``local`` modules."""
    found: dict[str, set[str]] = {}
    for path in paths:
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top != "mlsel" and top not in local:
                    found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def _undeclared(paths: list[Path], declared: list[Requirement], local: set[str] = frozenset()) -> dict[str, str]:
    names = {canonicalize_name(r.name) for r in declared}
    return {f"{module} ({_distribution(module)})": ", ".join(sorted(files))
            for module, files in sorted(_third_party_imports(paths, set(local)).items())
            if canonicalize_name(_distribution(module)) not in names}


PACKAGE_FILES = sorted((ROOT / "mlsel").rglob("*.py"))
SUPPORT_DIRS = ("tests", "benchmarks", "tools")
SUPPORT_FILES = [ROOT / "conftest.py"] + sorted(p for d in SUPPORT_DIRS for p in (ROOT / d).rglob("*.py"))


def test_every_import_of_the_package_is_a_runtime_dependency():
    undeclared = _undeclared(PACKAGE_FILES, RUNTIME)
    assert not undeclared, f"mlsel/ imports these, pyproject's [project.dependencies] lacks them: {undeclared}"


def test_every_import_of_tests_benchmarks_tools_is_declared():
    local = {p.stem for p in SUPPORT_FILES}  # e.g. tests/llm_server.py imported as llm_server
    undeclared = _undeclared(SUPPORT_FILES, RUNTIME + EXTRAS["test"] + EXTRAS["llm"], local)
    assert not undeclared, f"imported, but neither a dependency nor in the test/llm extras: {undeclared}"


@pytest.mark.parametrize("module, dist", [("bs4", "beautifulsoup4"), ("pygments", "pygments"), ("threadpoolctl", "threadpoolctl")])
def test_an_undeclared_import_is_caught(module, dist):
    """The check can fail: without the distribution in the list, the package's import of it is reported."""
    without = [r for r in RUNTIME if canonicalize_name(r.name) != dist]
    assert len(without) == len(RUNTIME) - 1
    assert any(key.startswith(f"{module} ({dist})") for key in _undeclared(PACKAGE_FILES, without))


def test_import_names_map_to_the_installed_distributions():
    """IMPORT_TO_DIST agrees with the metadata of what is installed here."""
    installed = packages_distributions()
    for module, dist in IMPORT_TO_DIST.items():
        if module in installed:
            assert dist in {canonicalize_name(d) for d in installed[module]}, (module, installed[module])
