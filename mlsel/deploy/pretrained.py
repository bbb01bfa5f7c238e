"""The reference's pretrained model files: pulling them, checking their feature layout, evaluating them like our own.

:func:`load_pretrained` pulls the ``*_model.json`` files of the Hugging Face
repo ``abdallah1008/semantic-router-ml-models``; :func:`check_compatible`
checks a file's feature dimension and model names against a run;
:func:`evaluate_pretrained` evaluates the files with the runtime's rules
(:mod:`mlsel.deploy.runtime`) beside the run's own selectors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from mlsel import paths
from mlsel.data.outcomes import load_prepared, pool_matrix, split_masks
from mlsel.data.sources import verify_hf_cached
from mlsel.deploy.artifacts import runtime_onehot_order, to_runtime_layout
from mlsel.deploy.evaluate_config import feature_settings, onehot
from mlsel.deploy.routing_config import ALGORITHMS
from mlsel.deploy.runtime import RUNTIME_SELECT, IncompatibleArtifactError
from mlsel.features import EmbedSettings, features_for
from mlsel.files import write_csv
from mlsel.metrics.evaluate import Strategy, evaluate, saved_selector_strategies
from mlsel.params import BaseParams, default
from mlsel.paths import run_paths

PRETRAINED_REPO = "abdallah1008/semantic-router-ml-models"
"""Hugging Face repo of the reference's pretrained model files."""


def load_pretrained(repo_id: str = PRETRAINED_REPO, revision: str | None = None, cache_dir: str | os.PathLike[str] | None = None) -> dict[str, dict]:
    """Download (or find in the cache) the repo's ``*_model.json`` files; ``{algorithm: artifact}``.

    Uses ``huggingface_hub.snapshot_download`` with the cache under
    ``mlsel.paths.cache_dir()/hf`` by default. With ``HF_HUB_OFFLINE=1`` it
    reads the local Hugging Face cache only (``refs/<revision>`` and
    ``snapshots/<commit>/``). Each file must match the digest its cache blob
    is named by (:func:`mlsel.data.sources.verify_hf_cached`).
    """
    from huggingface_hub import snapshot_download

    cache = Path(cache_dir) if cache_dir else paths.cache_dir() / "hf"
    offline = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
    folder = Path(snapshot_download(repo_id, revision=revision, cache_dir=str(cache), allow_patterns=["*_model.json"], local_files_only=offline))
    out: dict[str, dict] = {}
    for path in sorted(folder.rglob("*_model.json")):
        verify_hf_cached(path, f"{repo_id}:{path.relative_to(folder)}")
        algo = path.name[: -len("_model.json")]
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise IncompatibleArtifactError(f"{path}: malformed JSON: {exc.msg} (line {exc.lineno})") from exc
        if not isinstance(data, dict):
            raise IncompatibleArtifactError(f"{path}: expected a JSON object")
        data.setdefault("algorithm", algo)
        data["_source"] = f"{repo_id}@{revision or 'main'}:{path.relative_to(folder)}"
        out[algo] = data
    if not out:
        raise FileNotFoundError(f"{repo_id} ({folder}): no *_model.json files")
    return out


def artifact_feature_dim(artifact: dict[str, Any]) -> int:
    """The feature dimension a model file expects."""
    algo = artifact.get("algorithm")
    try:
        if algo == "knn":
            return len(artifact["embeddings"][0])
        if algo == "kmeans":
            return len(artifact["centroids"][0])
        if algo == "svm":
            for clf in artifact.get("linear_classifiers") or []:
                return len(clf["weights"])
            for clf in artifact.get("rbf_classifiers") or []:
                return len(clf["support_vectors"][0])
        if artifact.get("feature_dim"):
            return int(artifact["feature_dim"])
    except (KeyError, IndexError, TypeError) as exc:
        raise IncompatibleArtifactError(f"{algo} model file {artifact.get('_source', '')}: malformed ({exc!r})") from exc
    raise IncompatibleArtifactError(f"{algo} model file {artifact.get('_source', '')}: cannot tell its feature dimension")


def artifact_models(artifact: dict[str, Any]) -> list[str]:
    """The model names a model file can choose."""
    algo = artifact.get("algorithm")
    if algo == "knn":
        names = artifact.get("labels") or []
    elif algo == "kmeans":
        names = artifact.get("cluster_models") or []
    elif algo == "svm":
        names = [c["model_name"] for c in (artifact.get("linear_classifiers") or []) + (artifact.get("rbf_classifiers") or [])]
    else:
        names = artifact.get("model_names") or []
    return list(dict.fromkeys(names))


def check_compatible(artifact: dict[str, Any], feature_dim: int, models: Sequence[str], embedder: str = "") -> None:
    """Raise :class:`IncompatibleArtifactError` unless the file fits this run's features and models.

    The algorithm must be one mlsel can run (knn, kmeans, svm), its feature
    dimension must equal ``feature_dim`` and every model it can choose must
    be one of ``models``.
    """
    algo = artifact.get("algorithm")
    src = artifact.get("_source", "")
    what = f"{algo} model file" + (f" {src}" if src else "")
    if algo not in ALGORITHMS:
        raise IncompatibleArtifactError(f"{what}: algorithm {algo!r} has no runtime reference in mlsel; expected one of {list(ALGORITHMS)}")
    dim = artifact_feature_dim(artifact)
    if dim != feature_dim:
        emb = f" (embedder {embedder})" if embedder else ""
        raise IncompatibleArtifactError(f"{what}: embedding dimension {dim} != {feature_dim} of this run's features{emb}")
    names = artifact_models(artifact)
    unknown = [m for m in names if m not in models]
    if unknown or not names:
        raise IncompatibleArtifactError(f"{what}: models {unknown or names} are not among this run's models {list(models)}")


def evaluate_pretrained(
    run_dir: str,
    pool: str,
    seed: int,
    n_bootstrap: int,
    repo_id: str = PRETRAINED_REPO,
    revision: str | None = None,
    cache_dir: str | None = None,
    pools: dict[str, list[str]] | None = None,
    quality_weight: float = default(BaseParams, "quality_weight"),
    embed: EmbedSettings = EmbedSettings(),
    **other_stage_params: Any,
) -> pd.DataFrame:
    """Evaluate the pretrained files with the runtime rules on a pool's held-out queries.

    Rows: the oracle, our own fitted selectors (those the train stage saved),
    each pretrained file (``Pretrained <ALG> (<repo>)``) and the baselines.
    The pool's models are ``pools[pool]`` (else those of its saved KNN
    selector). Every file must pass :func:`check_compatible` (else the error
    names the mismatch). ``embed`` says how the queries are embedded
    (:meth:`mlsel.features.EmbedSettings.from_params` of the stage's
    parameters); ``other_stage_params`` (``embed_batch_size`` and ``device``
    among them) are ignored. Writes ``tables/pretrained_results.csv``; returns it.
    """
    artifacts = load_pretrained(repo_id, revision, cache_dir)
    queries, outcomes = load_prepared(run_dir)
    folder = run_paths(run_dir)["models"] / pool
    models = list(pools[pool]) if pools and pool in pools else json.loads((folder / f"{ALGORITHMS[0]}.manifest.json").read_text())["models"]
    embedder, onehot_weight = feature_settings(run_dir)
    matrix = pool_matrix(queries, outcomes, models)
    train, test = split_masks(queries, matrix)
    te = matrix.subset(test)
    Xte = features_for(te, embedder, onehot_weight, embed)
    for art in artifacts.values():
        check_compatible(art, Xte.shape[1], models, embedder)
    names = [a for a in ALGORITHMS if (folder / f"{a}.manifest.json").is_file()]
    strategies = saved_selector_strategies(folder, names, models, te, matrix.subset(train), float(quality_weight), embed)
    Xrt = to_runtime_layout(Xte, runtime_onehot_order())  # the files were trained on the runtime's one-hot order
    for algo, art in artifacts.items():
        chosen = RUNTIME_SELECT[algo](art, Xrt)
        strategies.insert(1, Strategy(f"Pretrained {algo.upper()} ({repo_id})", "pretrained", onehot(models, list(chosen))))
    res = evaluate(te, strategies, pool, n_bootstrap=n_bootstrap, seed=seed)["results"]
    write_csv(res, run_paths(run_dir)["tables"] / "pretrained_results.csv")
    return res
