"""Notebook hygiene and the parameter contract: params.yaml == notebook parameters == stage functions."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import papermill as pm
import pytest
from mlsel.params import STAGE_SECTIONS, apply_overrides, apply_smoke, load_params, stage_params
from mlsel import paths
from mlsel.paths import ConfigError, STAGES


ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_every_stage_has_its_notebook():
    assert sorted(p.name for p in NOTEBOOKS) == sorted(paths.NOTEBOOKS.values())


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean(path):
    nb = json.loads(path.read_text())
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert "papermill" not in nb["metadata"], "papermill metadata must be stripped"
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), "outputs must be stripped"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    src = "".join(tagged[0]["source"])
    tree = ast.parse(src)
    assert all(isinstance(node, (ast.AnnAssign, ast.Assign)) for node in tree.body), "the parameters cell only assigns literals"
    for c in code:
        body = ast.parse("".join(c["source"])).body
        assert not any(isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.For, ast.While)) for n in body), "no logic in notebooks"
    assert nb["cells"][0]["cell_type"] == "markdown" and "**Inputs:**" in "".join(nb["cells"][0]["source"])


@pytest.mark.parametrize("stage", STAGES)
def test_notebook_parameters_match_params_yaml(stage):
    """Same names, same types, and defaults = params.yaml with the smoke profile applied."""
    params = apply_smoke(load_params(ROOT / "params.yaml"))
    expected = stage_params(params, stage)
    found = pm.inspect_notebook(str(ROOT / "notebooks" / paths.NOTEBOOKS[stage]))
    assert list(found) == list(expected)
    for name, value in expected.items():
        assert ast.literal_eval(found[name]["default"]) == value, name
        assert found[name]["inferred_type_name"] == type(value).__name__, name
        assert found[name]["help"], f"{name} has no comment in the parameters cell"


@pytest.mark.parametrize("stage", STAGES)
def test_stage_functions_accept_every_parameter(stage):
    """Each notebook passes its parameters to mlsel functions that name them."""
    all_params = load_params(ROOT / "params.yaml")
    # Every key of the stage's own sections must reach a function; shared
    # `base` keys (e.g. data_dir) are used only by the stages that need them.
    params = [k for section in STAGE_SECTIONS[stage] for k in all_params.get(section, {})]
    nb = json.loads((ROOT / "notebooks" / paths.NOTEBOOKS[stage]).read_text())
    calls = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code" and "parameters" not in c["metadata"].get("tags", []))
    for name in params:
        assert f"{name}={name}" in calls, f"{name} is a parameter of {stage} but the notebook never passes it on"


def test_overrides_parse_types_and_reject_unknown_keys():
    params = load_params(ROOT / "params.yaml")
    out = apply_overrides(params, ["knn_k=7", "train.svm_c=2", "selector_names=[knn]"])
    assert out["train"]["knn_k"] == 7 and out["train"]["svm_c"] == 2.0 and out["base"]["selector_names"] == ["knn"]
    assert params["train"]["knn_k"] == 5  # the input is not modified
    with pytest.raises(ConfigError, match="unknown parameter 'knn_kk'"):
        apply_overrides(params, ["knn_kk=3"])
    with pytest.raises(ConfigError, match="expected a number"):
        apply_overrides(params, ["knn_k=many"])


def test_params_yaml_keys_are_unique(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("base: {seed: 1}\ntrain: {seed: 2}\n")
    with pytest.raises(ConfigError, match="appears in both"):
        load_params(bad)


def test_yaml_files_that_cannot_be_read_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read the parameter file"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: the parameter file is not valid YAML"):
        load_params(bad)
