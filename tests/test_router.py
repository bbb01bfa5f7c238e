"""Router shipping: config evaluation, runtime model files, pretrained files (offline)."""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mlsel.data.outcomes import load_prepared, pool_matrix, split_masks
from mlsel.data.records import DataError
from mlsel.deploy.artifacts import (
    ARTIFACT_BUILDERS,
    RUNTIME_CATEGORIES,
    NotExportableError,
    check_exportable,
    kmeans_artifact,
    knn_artifact,
    runtime_onehot_order,
    svm_artifact,
    to_runtime_layout,
)
from mlsel.deploy.commands import _cli_evaluate_config, _cli_export, add_cli
from mlsel.deploy.evaluate_config import RouterConfigEvaluation, evaluate_router_config
from mlsel.deploy.pretrained import PRETRAINED_REPO, check_compatible, evaluate_pretrained, load_pretrained
from mlsel.deploy.routing_config import ALGORITHMS, RouterConfigError, load_router_config
from mlsel.deploy.runtime import (
    ARTIFACT_FILES,
    RUNTIME_SELECT,
    IncompatibleArtifactError,
    export_router_models,
    knn_boundary_ties,
    runtime_knn_select,
    runtime_svm_select,
)
from mlsel.features import EmbedSettings, features_for
from mlsel.params import stage_values
from mlsel.paths import run_paths
from mlsel.report.tables import router_config_markdown
from mlsel.selection.classic import KMeansSelector, KNNSelector, SVMSelector
from mlsel.selection.registry import label, load_selector

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "router_config.yaml"
POOL = "all5"


@pytest.fixture(scope="module")
def run_dir(smoke_run) -> str:
    return str(smoke_run.base.run_dir)


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("router-models")
    return export_router_models(run_dir, POOL, str(out)), out


@pytest.fixture(scope="module")
def test_features(run_dir, smoke_run):
    """(selectors by name, models, test-query features) of the smoke run's pool."""
    queries, outcomes = load_prepared(run_dir)
    folder = run_paths(run_dir)["models"] / POOL
    sels = {name: load_selector(folder, name)[0] for name in ALGORITHMS}
    manifest = load_selector(folder, "knn")[1]
    matrix = pool_matrix(queries, outcomes, manifest["models"])
    _, test = split_masks(queries, matrix)
    X = features_for(matrix.subset(test), manifest["embedder"], manifest["onehot_weight"], EmbedSettings.from_params(smoke_run.base))
    return sels, manifest["models"], X


# --------------------------------------------------------------------------- export


def test_export_writes_runtime_fields_and_manifest(exported):
    manifest, out = exported
    knn = json.loads((out / "knn_model.json").read_text())
    assert {"algorithm", "trained", "k", "embeddings", "labels", "qualities", "latencies"} <= set(knn)
    n_models = len(manifest["models"])
    assert knn["k"] == 5 * n_models
    assert len(knn["embeddings"]) == len(knn["labels"]) == len(knn["qualities"]) == len(knn["latencies"])
    assert all(isinstance(v, int) for v in knn["latencies"])  # integer nanoseconds
    assert min(knn["qualities"]) >= 0.01  # the runtime's max(q, 0.01) never clips
    km = json.loads((out / "kmeans_model.json").read_text())
    assert {"algorithm", "trained", "num_clusters", "centroids", "cluster_models"} <= set(km)
    assert len(km["cluster_models"]) == len(km["centroids"]) == km["num_clusters"]
    svm = json.loads((out / "svm_model.json").read_text())
    assert svm["kernel_type"] == "Rbf" and svm["rbf_classifiers"]
    for clf in svm["rbf_classifiers"]:
        assert {"model_name", "alpha", "support_vectors", "rho", "gamma"} <= set(clf)
        # Signed one-vs-rest coefficients (|alpha| <= C), not unit placeholders; support vectors are unit rows.
        assert len(clf["alpha"]) == len(clf["support_vectors"]) and min(clf["alpha"]) < 0 < max(clf["alpha"])
        assert max(abs(a) for a in clf["alpha"]) <= svm["C"] + 1e-9
        assert np.linalg.norm(np.asarray(clf["support_vectors"]), axis=1) == pytest.approx(1.0, abs=2e-3)
    on_disk = json.loads((out / "manifest.json").read_text())
    for key in ("embedder", "feature_dim", "models", "data_hash", "seed", "onehot_weight", "categories"):
        assert key in on_disk, key
    assert on_disk["feature_dim"] == 398 and len(on_disk["categories"]) == 14


def test_knn_and_kmeans_exports_reproduce_python_selectors(exported, test_features):
    manifest, out = exported
    sels, models, X = test_features
    Xr = to_runtime_layout(X, runtime_onehot_order())  # the router's features: its one-hot order
    for name in ("knn", "kmeans"):
        art = json.loads((out / ARTIFACT_FILES[name]).read_text())
        theirs = RUNTIME_SELECT[name](art, Xr)
        ours = sels[name].predict(X)
        if name == "knn":  # no exact distance ties at the k-th neighbour among the smoke run's queries
            assert not knn_boundary_ties(sels[name], X).any()
        assert list(theirs) == list(ours), f"{name}: runtime rule disagrees on {(theirs != ours).sum()} of {len(X)} test queries"
        assert manifest["agreement"][name]["rate"] == 1.0
        # Restricted to a decision's modelRefs: exported with the candidate set, still identical.
        refs = [models[0], models[2], models[3]]
        art_c = ARTIFACT_BUILDERS[name](sels[name], candidates=refs)
        assert list(RUNTIME_SELECT[name](art_c, X)) == list(sels[name].predict(X, candidates=refs))
        assert RUNTIME_SELECT[name](art, Xr[0]) == ours[0]  # one query at a time


def test_knn_export_reproduces_tie_rule_on_binary_outcomes():
    """0/1 qualities make vote ties common; the export must break them as the selector does."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 6)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Q = (rng.random((200, 4)) < 0.5).astype(float)
    sel = KNNSelector(k=3).fit(X[:150], Q[:150], models=["a", "b", "c", "d"])
    art = knn_artifact(sel)
    assert list(runtime_knn_select(art, X[150:])) == list(sel.predict(X[150:]))


def test_svm_export_reproduces_python_selector(exported, test_features):
    manifest, out = exported
    on_disk = json.loads((out / "manifest.json").read_text())
    sels, models, X = test_features
    art = json.loads((out / "svm_model.json").read_text())
    theirs = runtime_svm_select(art, to_runtime_layout(X, runtime_onehot_order()))
    assert list(theirs) == list(sels["svm"].predict(X))
    assert on_disk["agreement"]["svm"]["rate"] == 1.0
    assert on_disk["runtime_rules"]["svm"].startswith("exact")
    refs = [models[0], models[3]]
    art_c = svm_artifact(sels["svm"], candidates=refs)
    assert list(runtime_svm_select(art_c, X)) == list(sels["svm"].predict(X, candidates=refs))


def test_svm_binary_export_is_exact():
    """With two label classes the runtime's per-class vote equals libsvm's decision."""
    rng = np.random.default_rng(1)
    X = rng.standard_normal((120, 5)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Q = np.zeros((120, 2))
    Q[np.arange(120), (X[:, 0] > 0).astype(int)] = 1.0
    sel = SVMSelector(gamma=1.0).fit(X[:80], Q[:80], models=["a", "b"])
    art = svm_artifact(sel)
    assert list(runtime_svm_select(art, X[80:])) == list(sel.predict(X[80:]))


@pytest.mark.parametrize("kernel", ["rbf", "linear"])
def test_svm_is_one_vs_rest_libsvm_on_normalised_features(kernel):
    """Each class's score is the binary SVC decision value (class vs rest) on L2-normalised rows, and the file reproduces it."""
    from sklearn.svm import SVC

    rng = np.random.default_rng(3)
    X = (3.0 * rng.standard_normal((260, 7))).astype(np.float32)  # rows of varying norm: the selector normalises them
    Q = rng.random((260, 4))
    sel = SVMSelector(kernel=kernel, gamma=2.0, C=0.7, store_decimals=0).fit(X[:200], Q[:200], models=list("abcd"))
    Xu = X / np.linalg.norm(X, axis=1, keepdims=True)
    labels = Q[:200].argmax(axis=1)
    assert list(sel.classes_) == [0, 1, 2, 3]
    scores = sel.class_scores(X[200:])
    for j, c in enumerate(sel.classes_):
        ref = SVC(kernel=kernel, gamma=2.0, C=0.7).fit(Xu[:200], labels == c).decision_function(Xu[200:])
        assert np.abs(scores[:, j] - ref).max() < 1e-5
    art = svm_artifact(sel)
    assert art["kernel_type"] == ("Linear" if kernel == "linear" else "Rbf")
    assert list(runtime_svm_select(art, X[200:])) == list(sel.predict(X[200:]))
    # The runtime rule by hand for the first class and query: sum alpha*exp(-gamma*|x/|x| - sv|^2) - rho.
    if kernel == "rbf":
        clf = art["rbf_classifiers"][0]
        x = Xu[200].astype(np.float64)
        by_hand = sum(a * np.exp(-2.0 * np.sum((x - np.asarray(sv)) ** 2)) for a, sv in zip(clf["alpha"], clf["support_vectors"])) - clf["rho"]
        assert by_hand == pytest.approx(scores[0, 0], abs=1e-5)


def test_runtime_svm_rule_by_hand():
    """Two classes, hand-computed: a: 1.0*exp(-1*|x-e1|^2) - 0.1; b: -0.5*exp(-1*|x-e2|^2) + 0.2*exp(-1*|x-e1|^2) - (-0.3)."""
    art = {"algorithm": "svm", "rbf_classifiers": [
        {"model_name": "a", "alpha": [1.0], "support_vectors": [[1.0, 0.0]], "rho": 0.1, "gamma": 1.0},
        {"model_name": "b", "alpha": [-0.5, 0.2], "support_vectors": [[0.0, 1.0], [1.0, 0.0]], "rho": -0.3, "gamma": 1.0}]}
    # x = (2, 0) normalises to e1: a = 1 - 0.1 = 0.9; b = -0.5*exp(-2) + 0.2 + 0.3 = 0.432 -> a.
    assert runtime_svm_select(art, np.array([2.0, 0.0])) == "a"
    # x = (0, 3) -> e2: a = exp(-2) - 0.1 = 0.0353; b = -0.5 + 0.2*exp(-2) + 0.3 = -0.173 -> a; rho of b = -0.9 flips it (b = 0.427).
    assert runtime_svm_select(art, np.array([0.0, 3.0])) == "a"
    art["rbf_classifiers"][1]["rho"] = -0.9
    assert runtime_svm_select(art, np.array([0.0, 3.0])) == "b"


def _unit_rows_and_outcomes(seed: int, n: int, d: int, m: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Random unit-norm feature rows (n, d) and random outcomes (n, m)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True), rng.random((n, m))


def test_stored_vectors_are_rounded_and_written_as_used():
    """store_decimals rounds KNN rows and SVM support vectors; the files carry those values, so the rule stays exact."""
    X, Q = _unit_rows_and_outcomes(4, 300, 12)
    knn = KNNSelector(k=4, store_decimals=2).fit(X[:240], Q[:240], models=list("abc"))
    assert np.allclose(knn.rows_ * 100, np.round(knn.rows_ * 100), atol=1e-4)
    art = knn_artifact(knn)
    text = json.dumps(art["embeddings"][:50])
    assert max(len(t.strip(" []-").split(".")[-1]) for t in text.split(",")) <= 2  # at most 2 decimals written
    assert list(runtime_knn_select(json.loads(json.dumps(art)), X[240:])) == list(knn.predict(X[240:]))
    full = json.dumps(knn_artifact(KNNSelector(k=4, store_decimals=0).fit(X[:240], Q[:240], models=list("abc"))))
    assert len(json.dumps(art)) < len(full) / 2
    svm = SVMSelector(store_decimals=2).fit(X[:240], Q[:240], models=list("abc"))
    assert np.allclose(svm.sv_ * 100, np.round(svm.sv_ * 100), atol=1e-4)
    assert list(runtime_svm_select(json.loads(json.dumps(svm_artifact(svm))), X[240:])) == list(svm.predict(X[240:]))


def test_float32_selection_matches_library_neighbours_and_clusters():
    """KNN by one float32 product picks the same neighbours as scikit-learn's cosine search; KMeans the same clusters."""
    from sklearn.cluster import KMeans
    from sklearn.neighbors import NearestNeighbors

    X, Q = _unit_rows_and_outcomes(5, 1500, 20)
    knn = KNNSelector(k=7, store_decimals=0).fit(X[:1200], Q[:1200], models=list("abc"))
    _, ours = knn.kneighbors(X[1200:])
    _, ref = NearestNeighbors(n_neighbors=7, metric="cosine").fit(X[:1200]).kneighbors(X[1200:])
    assert (np.sort(ours, axis=1) == np.sort(ref, axis=1)).all()
    km = KMeansSelector(num_clusters=6).fit(X[:1200], Q[:1200], models=list("abc"))
    ref_km = KMeans(n_clusters=6, random_state=km.random_state, n_init=10).fit(X[:1200])
    assert (km.clusters(X[1200:]) == ref_km.predict(X[1200:])).all()


def test_files_carry_the_one_hot_in_the_runtime_category_order():
    """Our alphabetical one-hot is written in the runtime's order (math first); engineering takes the unused 'unknown' slot."""
    from mlsel import CATEGORIES
    from mlsel.features import build_features

    order = runtime_onehot_order()
    assert sorted(order) == list(range(14))
    cats = np.asarray(["math", "engineering", "biology", "other"])
    X = build_features(np.zeros((4, 3), dtype=np.float32), cats, 1.0)
    Xr = to_runtime_layout(X, order)
    assert [RUNTIME_CATEGORIES[j] for j in Xr[:, 3:].argmax(axis=1)] == ["math", "unknown", "biology", "other"]
    assert list(X[:, 3:].argmax(axis=1)) == [CATEGORIES.index(c) for c in cats]
    km = KMeansSelector(num_clusters=4).fit(X, np.eye(4)[:, :2], models=["a", "b"])
    art = kmeans_artifact(km, onehot_order=order)
    assert np.allclose(np.asarray(art["centroids"]), to_runtime_layout(km.centroids_, order))
    assert list(RUNTIME_SELECT["kmeans"](art, Xr)) == list(km.predict(X))
    with pytest.raises(NotExportableError, match="have no slot in the router runtime's one-hot"):
        runtime_onehot_order(CATEGORIES[:-1] + ("astrology",))


def test_export_refuses_what_the_runtime_cannot_compute():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((50, 6)).astype(np.float32)
    Q = rng.random((50, 2))
    knn = KNNSelector(k=3, weights="distance").fit(X, Q, models=["a", "b"])
    with pytest.raises(NotExportableError, match=r"models/small4/knn.manifest.json: cannot export knn .*weights='distance'"):
        check_exportable("knn", knn, 1.0, where="models/small4/knn.manifest.json")
    svm = SVMSelector().fit(X, Q, models=["a", "b"])
    with pytest.raises(NotExportableError, match=r"onehot_weight=0.5, but the runtime appends the category one-hot with weight 1"):
        check_exportable("svm", svm, 0.5)
    check_exportable("svm", svm, 1.0)  # accepted


# --------------------------------------------------------------------------- config evaluation


def test_sample_config_per_decision_tables(run_dir, smoke_run):
    flat = stage_values(smoke_run, "ship") | {"router_config": str(SAMPLE), "n_bootstrap": 50}
    ev = evaluate_router_config(**flat, embed=EmbedSettings(flat["embed_batch_size"], flat["device"]))
    assert isinstance(ev, RouterConfigEvaluation)
    res = ev.result
    tables = run_paths(run_dir)["tables"]
    csv = pd.read_csv(tables / "router_config_results.csv")
    assert {"decision", "scope", "strategy", "kind", "avg_quality", "avg_quality_ci_low", "best_model_pct", "model_refs"} <= set(csv.columns)
    decisions = set(csv.loc[csv["scope"] == "decision", "decision"])
    assert {"math_decision", "general_fallback"} <= decisions
    overall = res[res["decision"] == "overall"]
    assert overall["kind"].isin(["router_config"]).sum() == 1
    assert (overall["kind"] == "selector").sum() == 3  # knn, svm, kmeans applied to every query
    # Per decision: the algorithm chose among its modelRefs only, baselines on the same candidates.
    math = res[res["decision"] == "math_decision"]
    assert not math["strategy"].str.contains("Mistral|70B").any()
    queries, _ = load_prepared(run_dir)
    assert int(math["n_queries"].iloc[0]) == int(((queries["split"] == "test") & (queries["category"] == "math")).sum())
    n_routed = res[res["scope"] == "decision"].groupby("decision")["n_queries"].first().sum()
    assert n_routed == int(overall["n_queries"].iloc[0])
    assert list(csv.columns) == list(res.columns) and len(csv) == len(res)
    # Strategies carry their model as data: every best-single and always row names its model.
    assert csv.loc[csv["kind"].isin(["best_single", "always"]), "model"].notna().all()
    md = router_config_markdown(ev)
    assert "### Decision `math_decision`" in md and "Test queries no decision matches: 0" in md


def _write(tmp_path: Path, cfg: dict, name: str = "bad.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def _sample() -> dict:
    return yaml.safe_load(SAMPLE.read_text())


MODELS = ["Phi-3-mini-4k-instruct", "Mistral-7B-Instruct-v0.2", "Meta-Llama-3.1-8B-Instruct", "Qwen1.5-7B-Chat", "Meta-Llama-3.1-70B-Instruct"]


def test_sample_config_parses_and_routes_every_category():
    cfg = load_router_config(SAMPLE, MODELS)
    table = cfg.routing_table()
    assert table["math"] == "math_decision" and table["computer science"] == "code_decision" and table["other"] == "general_decision"
    assert all(table.values())
    assert cfg.decision("code_decision").param_dict == {"kernel": "rbf", "gamma": 1.0, "c": 1.0}


def test_nested_config_variant(tmp_path):
    raw = _sample()
    nested = {"global": {"router": {"model_selection": raw["model_selection"]}}, "routing": {"decisions": raw["decisions"]}}
    cfg = load_router_config(_write(tmp_path, nested, "nested.yaml"), MODELS)
    assert [d.name for d in cfg.decisions] == [d["name"] for d in raw["decisions"]]


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda c: c["decisions"][0]["algorithm"].update(type="forest"), r"decision 'math_decision': unknown algorithm type 'forest'"),
        (lambda c: c["decisions"][1]["modelRefs"].append({"model": "gpt-4o"}), r"decision 'code_decision': modelRefs \['gpt-4o'\] are not in"),
        (lambda c: c["decisions"][2].update(priority=100, rules={"operator": "OR", "conditions": [{"type": "domain", "name": "other"}, {"type": "domain", "name": "math"}]}),
         r"decisions 'math_decision' and 'general_decision' overlap at equal priority 100: both match \['math'\]"),
        (lambda c: c["decisions"][0]["rules"]["conditions"][0].update(name="maths"), r"decision 'math_decision'.*unknown category 'maths'"),
        (lambda c: c["decisions"][3].pop("modelRefs"), r"decision 'general_fallback': missing field 'modelRefs'"),
        (lambda c: c["decisions"][0]["algorithm"].pop("type"), r"decision 'math_decision': missing field 'algorithm.type'"),
    ],
    ids=["unknown-algorithm", "absent-model", "overlap", "unknown-category", "missing-modelrefs", "missing-type"],
)
def test_malformed_configs_name_file_decision_and_problem(tmp_path, mutate, message):
    raw = _sample()
    mutate(raw)
    path = _write(tmp_path, raw)
    with pytest.raises(RouterConfigError, match=message) as err:
        load_router_config(path, MODELS)
    assert str(path) in str(err.value)


# --------------------------------------------------------------------------- pretrained (offline HF cache)


def _hf_cache(root: Path, files: dict[str, dict], commit: str) -> Path:
    """A local Hugging Face cache holding ``files`` at ``commit`` with refs/main -> commit."""
    repo = root / ("models--" + PRETRAINED_REPO.replace("/", "--"))
    snap = repo / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, content in files.items():
        (snap / name).write_text(json.dumps(content))
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return root


def test_pretrained_dimension_mismatch_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    upstream = {"algorithm": "kmeans", "trained": True, "num_clusters": 2, "centroids": [[0.0] * 1038, [1.0] * 1038],
                "cluster_models": ["llama-3.2-1b", "mistral-7b"]}
    cache = _hf_cache(tmp_path / "hf", {"kmeans_model.json": upstream}, "a" * 40)
    arts = load_pretrained(cache_dir=cache)
    assert set(arts) == {"kmeans"}
    with pytest.raises(IncompatibleArtifactError, match=r"embedding dimension 1038 != 398 of this run's features \(embedder x\)"):
        check_compatible(arts["kmeans"], 398, MODELS, embedder="x")
    with pytest.raises(IncompatibleArtifactError, match=r"models \['llama-3.2-1b', 'mistral-7b'\] are not among"):
        check_compatible(arts["kmeans"], 1038, MODELS)


def test_pretrained_blob_with_wrong_digest_is_removed_and_reported(tmp_path, monkeypatch):
    """A cached file whose content is not the SHA-256 its blob is named by is removed and reported, not read."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = _hf_cache(tmp_path / "hf", {}, "c" * 40)
    repo = cache / ("models--" + PRETRAINED_REPO.replace("/", "--"))
    good = json.dumps({"algorithm": "kmeans", "centroids": [[0.0]], "cluster_models": ["m"]}).encode()
    pinned = hashlib.sha256(good).hexdigest()
    (repo / "blobs").mkdir()
    blob = repo / "blobs" / pinned
    blob.write_bytes(b'{"algorithm": "kmeans", "tampered": true}')
    (repo / "snapshots" / ("c" * 40) / "kmeans_model.json").symlink_to(Path("..") / ".." / "blobs" / pinned)
    with pytest.raises(DataError, match=r"kmeans_model.json has SHA-256 [0-9a-f]{64}, not the " + pinned):
        load_pretrained(cache_dir=cache)
    assert not blob.exists()


def test_pretrained_files_are_evaluated_like_our_own(run_dir, smoke_run, exported, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, out = exported
    ours = json.loads((out / "kmeans_model.json").read_text())
    cache = _hf_cache(tmp_path / "hf", {"kmeans_model.json": ours}, "b" * 40)
    flat = stage_values(smoke_run, "evaluate") | {"n_bootstrap": 50}
    res = evaluate_pretrained(pool=POOL, cache_dir=str(cache), embed=EmbedSettings(flat["embed_batch_size"], flat["device"]), **flat)
    pre = res[res["kind"] == "pretrained"]
    assert len(pre) == 1
    own = res[res["strategy"] == label("kmeans")]
    assert pre["avg_quality"].iloc[0] == pytest.approx(own["avg_quality"].iloc[0])


# --------------------------------------------------------------------------- CLI


def test_add_cli_registers_subcommands():
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    stage = object()
    add_cli(sub, evaluate_config=stage)
    args = parser.parse_args(["export", "--run-dir", "runs/x", "--pool", "all5", "--export-dir", "out"])
    assert (args.run_dir, args.pool, args.export_dir, args.func) == ("runs/x", "all5", "out", _cli_export)
    args = parser.parse_args(["evaluate-config", "--run-dir", "runs/x", "--config", "c.yaml", "--n-bootstrap", "10"])
    assert (args.config, args.n_bootstrap, args.func) == ("c.yaml", 10, _cli_evaluate_config)
    assert args.evaluate_config is stage
    # The default run folder is the dataset's own (the first dataset unless --dataset names one).
    from mlsel.deploy.commands import _dataset

    args = parser.parse_args(["export", "--dataset", "routerbench"])
    assert (_dataset(args).base.run_dir, list(_dataset(args).base.pools)) == ("runs/default/routerbench", ["all11"])
    assert _dataset(parser.parse_args(["evaluate-config"])).base.run_dir == "runs/default/mmlu_pro"


def test_evaluate_config_command_end_to_end(run_dir, capsys):
    """`mlsel evaluate-config` runs the ship stage's routing-config step and prints its markdown."""
    from mlsel import cli

    tables = run_paths(run_dir)["tables"]
    for name in ("router_config_results.csv", "router_config_results.md"):
        (tables / name).unlink(missing_ok=True)
    assert cli.main(["evaluate-config", "--run-dir", run_dir, "--config", str(SAMPLE), "--n-bootstrap", "20"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## Router config `router_config.yaml` on the held-out queries")
    assert (tables / "router_config_results.csv").is_file() and "Router config (router_config.yaml)" in out


# --------------------------------------------------------------------------- shipped files in the ship stage


def test_export_writes_runtime_config_snippet(exported):
    manifest, out = exported
    cfg = yaml.safe_load((out / "runtime_config.yaml").read_text())
    ml = cfg["global"]["router"]["model_selection"]["ml"]
    assert ml["models_path"] == str(out)
    assert ml["embedding_model"] == manifest["embedder"] and ml["embedding_dim"] == manifest["feature_dim"] - 14 == 384
    knn = json.loads((out / "knn_model.json").read_text())
    km = json.loads((out / "kmeans_model.json").read_text())
    svm = json.loads((out / "svm_model.json").read_text())
    assert ml["knn"]["k"] == knn["k"] == 5 * len(manifest["models"])
    assert ml["kmeans"]["num_clusters"] == km["num_clusters"]
    assert ml["svm"] == {"kernel": "rbf", "gamma": svm["gamma"]}
    assert manifest["sizes"]["knn_model.json"] == (out / "knn_model.json").stat().st_size


def test_ship_stage_scores_the_shipped_files_on_held_out_queries(smoke_run, tmp_path):
    """router_export.csv: every file exact, and the shipped quality is the quality the results table reports for the selector."""
    from mlsel import stages
    from mlsel.params import stage_params

    run = tmp_path / "run"
    src = Path(smoke_run.base.run_dir)
    for part in ("data", "models", "tables", "manifest.json"):
        (shutil.copytree if (src / part).is_dir() else shutil.copy)(src / part, run / part)
    p = stage_params(smoke_run, "ship").model_copy(update={"run_dir": str(run)})
    assert p.export_pools == ["small4"]
    table = stages.export_router_models(p)
    csv = pd.read_csv(run / "tables" / "router_export.csv")
    assert list(csv["algorithm"]) == ["knn", "kmeans", "svm"] and set(csv["pool"]) == {"small4"}
    assert (csv["rule"] == "exact").all() and (csv["agreement_rate"] == 1.0).all()
    assert "folder" in table and "folder" not in csv  # no machine path in the published table
    queries, outcomes = load_prepared(str(run))
    matrix = pool_matrix(queries, outcomes, p.pools["small4"])
    _, test = split_masks(queries, matrix)
    held_out = matrix.subset(test)
    smanifest = load_selector(run / "models" / "small4", "knn")[1]
    X = features_for(held_out, smanifest["embedder"], smanifest["onehot_weight"], EmbedSettings.from_params(p))
    results = pd.read_csv(run / "tables" / "selection_results.csv")
    for name in ("knn", "kmeans", "svm"):
        sel, _ = load_selector(run / "models" / "small4", name)
        chosen = sel.predict(X)
        by_hand = np.mean([held_out.quality[i, list(held_out.models).index(m)] for i, m in enumerate(chosen)])
        row = csv[csv["algorithm"] == name].iloc[0]
        assert row["selector_quality"] == pytest.approx(by_hand, abs=1e-6)
        assert row["runtime_quality"] == pytest.approx(by_hand, abs=1e-6)
        assert row["n_test"] == len(X)
        published = results[(results["pool"] == "small4") & (results["strategy"] == label(name))]["avg_quality"].iloc[0]
        assert published == pytest.approx(by_hand, abs=1e-6)


def test_knn_exact_distance_ties_go_to_the_lowest_index_in_selector_and_runtime_rule():
    """Duplicate training rows at the k-th place: the selector (one query or a batch) and the runtime rule take the same rows."""
    rng = np.random.default_rng(7)
    base = rng.standard_normal((40, 5)).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    X = np.vstack([base, base[:20]])  # rows 40..59 duplicate rows 0..19
    Q = rng.random((60, 3))
    sel = KNNSelector(k=3, store_decimals=0).fit(X, Q, models=list("abc"))
    queries = base[:20] + 0.01 * rng.standard_normal((20, 5)).astype(np.float32)
    _, batch_idx = sel.kneighbors(queries)
    for i, q in enumerate(queries):
        d2, one_idx = sel.kneighbors(q[None, :])
        assert list(one_idx[0]) == list(batch_idx[i])
        # A row and its duplicate are at the same distance; the lower index (the original) is taken first.
        assert all(j < 40 or j - 40 in one_idx[0] for j in one_idx[0])
    tied = knn_boundary_ties(sel, queries)
    assert tied.any()  # the duplicates make the k-th and (k+1)-th distances equal for some queries
    assert list(runtime_knn_select(knn_artifact(sel), queries)) == list(sel.predict(queries))
