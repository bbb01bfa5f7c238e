"""Notebook hygiene and the parameter contract: params.yaml == notebook parameters == stage functions."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import papermill as pm
import pytest

from mlsel import paths
from mlsel.params import (
    STAGE_MODELS,
    STAGES,
    ConfigError,
    Params,
    TrainParams,
    apply_overrides,
    apply_smoke,
    dataset_params,
    default,
    from_notebook,
    keys_of,
    load_params,
    notebook_parameters_source,
    render_params_yaml,
    stage_values,
)

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
    # The last cell prints the notebook's checked output (nbval compares it with notebooks/checks/<notebook>.json).
    assert f'notebook_checks.checked_output(p, "{path.stem}", ' in "".join(code[-1]["source"])
    assert (path.parent / "checks" / f"{path.stem}.json").is_file()
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
def test_notebook_parameters_match_the_parameter_model(stage):
    """Same names, same types, and defaults = the first dataset's values with the smoke profile applied
    (the report notebook: the smoke run of that one dataset)."""
    params = load_params(ROOT / "params.yaml")
    first = params.base.datasets[0]
    if stage == "report":
        expected = stage_values(apply_overrides(apply_smoke(params), {"datasets": [first]}), stage)
        assert expected["run_dir"] == "runs/smoke" and expected["datasets"] == ["mmlu_pro"]
    else:
        expected = stage_values(dataset_params(params, first, smoke=True), stage)
        assert expected["run_dir"] == "runs/smoke/mmlu_pro"
    assert list(expected) == keys_of(STAGE_MODELS[stage])
    found = pm.inspect_notebook(str(ROOT / "notebooks" / paths.NOTEBOOKS[stage]))
    assert list(found) == list(expected)
    for name, value in expected.items():
        assert ast.literal_eval(found[name]["default"]) == value, name
        assert found[name]["inferred_type_name"] == type(value).__name__, name
        assert found[name]["help"], f"{name} has no comment in the parameters cell"


@pytest.mark.parametrize("stage", STAGES)
def test_parameters_cell_is_rendered_from_the_model(stage):
    """The cell's values, types and comments are the model's (smoke values), so it defines nothing of its own."""
    nb = json.loads((ROOT / "notebooks" / paths.NOTEBOOKS[stage]).read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
    assert "".join(cell["source"]) == notebook_parameters_source(stage)


@pytest.mark.parametrize("stage", STAGES)
def test_notebooks_validate_their_parameters_through_the_model(stage):
    """Each notebook turns its parameters cell into the stage's validated model and hands that on."""
    nb = json.loads((ROOT / "notebooks" / paths.NOTEBOOKS[stage]).read_text())
    calls = "".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code" and "parameters" not in c["metadata"].get("tags", []))
    assert f'params.from_notebook("{stage}", globals())' in calls
    assert "(p)" in calls


def test_params_yaml_is_rendered_from_the_model():
    """params.yaml holds no definition of its own: it is the model's defaults and descriptions."""
    assert (ROOT / "params.yaml").read_text() == render_params_yaml()
    assert load_params(ROOT / "params.yaml") == Params()


def test_overrides_parse_types_and_reject_unknown_keys():
    params = load_params(ROOT / "params.yaml")
    out = apply_overrides(params, ["knn_k=7", "train.svm_c=2", "selector_names=[knn]"])
    assert out.train.knn_k == 7 and out.train.svm_c == 2.0 and isinstance(out.train.svm_c, float)
    assert out.base.selector_names == ["knn"]
    assert params.train.knn_k == 5  # the input is not modified
    with pytest.raises(ConfigError, match="unknown parameter 'knn_kk'"):
        apply_overrides(params, ["knn_kk=3"])
    with pytest.raises(ConfigError, match="train.knn_k: Input should be a valid integer"):
        apply_overrides(params, ["knn_k=many"])
    with pytest.raises(ConfigError, match="unknown parameter 'prepare.knn_k'"):
        apply_overrides(params, ["prepare.knn_k=3"])
    with pytest.raises(ConfigError, match="svm_kernel: Input should be 'rbf' or 'linear'"):
        apply_overrides(params, ["svm_kernel=poly"])


def test_parameter_files_name_the_file_and_the_key(tmp_path):
    dup = tmp_path / "dup.yaml"
    dup.write_text("base: {seed: 1}\ntrain: {seed: 2}\n")
    with pytest.raises(ConfigError, match=r"dup\.yaml: key 'seed' belongs in section 'base', not 'train'"):
        load_params(dup)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("train: {knn_kk: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown\.yaml: train\.knn_kk: unknown parameter"):
        load_params(unknown)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("base: {n_bootstrap: -5}\n")
    with pytest.raises(ConfigError, match=r"wrong\.yaml: base\.n_bootstrap: Input should be greater than or equal to 1"):
        load_params(wrong)
    partial = tmp_path / "partial.yaml"
    partial.write_text("train: {knn_k: 9}\n")
    p = load_params(partial)
    assert p.train.knn_k == 9 and p.train.kmeans_num_clusters == default(TrainParams, "kmeans_num_clusters")


def test_notebook_namespace_is_checked():
    with pytest.raises(ConfigError, match=r"parameters \['run_dir'"):
        from_notebook("report", {"seed": 1})
    ns = stage_values(Params(), "report") | {"datasets": "mmlu_pro"}
    with pytest.raises(ConfigError, match=r"notebook of stage report: datasets: Input should be a valid list"):
        from_notebook("report", ns)


def test_stages_are_passed_only_the_parameters_they_read():
    """The prepare notebook gets no selector or embedding keys, the report notebook only its folders and datasets,
    and every stage's base keys are the ones listed for it in the parameter model."""
    values = {stage: stage_values(Params(), stage) for stage in STAGES}
    assert list(values["report"]) == ["run_dir", "datasets", "report_dir"]
    assert not {"selector_names", "quality_weight", "embed_batch_size", "device", "datasets"} & set(values["prepare"])
    assert list(values["benchmark"])[:2] == ["run_dir", "queries"]
    for stage in ("train", "evaluate", "tune", "ship"):
        assert "data_dir" not in values[stage] and "datasets" not in values[stage], stage
    # The routing config and the export are the ship stage's alone; the bootstrap draws are shared with evaluate.
    assert not {"router_config", "export_pools", "export_dir"} & set(values["evaluate"])
    assert list(values["ship"])[-3:] == ["router_config", "export_pools", "export_dir"]
    assert "n_bootstrap" in values["evaluate"] and "n_bootstrap" in values["ship"] and "selector_names" not in values["ship"]
    injected = pm.inspect_notebook(str(ROOT / "notebooks" / paths.NOTEBOOKS["prepare"]))
    assert "selector_names" not in injected and "data_dir" in injected


def test_constructor_defaults_come_from_the_model():
    """Selectors and routers built without arguments agree with params.yaml's defaults."""
    from mlsel.selection.classic import KMeansSelector, KNNSelector, SVMSelector
    from mlsel.selection.cost_aware import KNNRegressorSelector, LogRegSelector, MLPSelector
    from mlsel.selection.scoreboard import ClusterScoreboardSelector

    p = Params()
    assert KNNSelector().k == p.train.knn_k and KNNSelector().quality_weight == p.base.quality_weight
    assert KMeansSelector().num_clusters == p.train.kmeans_num_clusters and KMeansSelector().random_state == p.base.seed
    assert (SVMSelector().kernel, SVMSelector().gamma, SVMSelector().C) == (p.train.svm_kernel, p.train.svm_gamma, p.train.svm_c)
    assert (KNNRegressorSelector().k, KNNRegressorSelector().weights) == (p.tune.knn_reg_k, p.tune.knn_reg_weights)
    assert MLPSelector().alpha == p.tune.mlp_alpha and list(MLPSelector().hidden) == p.tune.mlp_hidden
    assert LogRegSelector().C == p.tune.logreg_c
    assert (ClusterScoreboardSelector().num_clusters, ClusterScoreboardSelector().top_p) == (p.tune.scoreboard_clusters, p.tune.scoreboard_top_p)


def test_yaml_files_that_cannot_be_read_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read the parameter file"):
        load_params(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: the parameter file is not valid YAML"):
        load_params(bad)


def test_checked_output_compares_only_with_the_recorded_parameters():
    """The notebooks' check cell: the recorded text passes, another text fails showing both, other parameters are not compared."""
    from mlsel.notebook_checks import checked_output

    found = pm.inspect_notebook(str(ROOT / "notebooks" / paths.NOTEBOOKS["benchmark"]))
    defaults = {name: ast.literal_eval(v["default"]) for name, v in found.items()}
    p = from_notebook("benchmark", defaults)
    recorded = json.loads((ROOT / "notebooks" / "checks" / "10_benchmark_models.json").read_text())["output"]
    assert checked_output(p, "10_benchmark_models", recorded) == recorded
    with pytest.raises(AssertionError, match="differs from 10_benchmark_models.json"):
        checked_output(p, "10_benchmark_models", recorded + " and more")
    other = from_notebook("benchmark", {**defaults, "concurrency": 7})
    assert checked_output(other, "10_benchmark_models", "anything") == "anything"
