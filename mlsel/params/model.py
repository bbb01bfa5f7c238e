"""The parameter model: every params.yaml section as a pydantic model, and one flat model per stage.

A field's default, type, constraints and description are the only definition of that
parameter; everything else (params.yaml, the notebooks' parameters cells, the CLI, the
stage functions, the selectors' and routers' constructors) takes its value from here.
"""

from __future__ import annotations

import copy
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from mlsel.paths import PUBLISHED_REPORT_DIR

SELECTOR_NAMES = ("knn", "kmeans", "svm")
"""The reference's three selector algorithms."""


ROUTER_NAMES = ("knn_reg", "mlp", "logreg", "scoreboard", "guarded")
PEER_NAMES = ("routerbench_knn", "routerbench_mlp", "llmrouter_knn", "llmrouter_svm", "llmrouter_mlp", "llmrouter_mf", "embedllm_mf",
              "avengers_pro", "hiershrink")
"""The cost-aware routers (:mod:`mlsel.selection.cost_aware`)."""


_POOLS = {
    "small4": ["Phi-3-mini-4k-instruct", "Mistral-7B-Instruct-v0.2", "Meta-Llama-3.1-8B-Instruct", "Qwen1.5-7B-Chat"],
    "all5": ["Phi-3-mini-4k-instruct", "Mistral-7B-Instruct-v0.2", "Meta-Llama-3.1-8B-Instruct", "Qwen1.5-7B-Chat",
             "Meta-Llama-3.1-70B-Instruct"],
}


_LLMROUTER_MODELS = ["qwen2.5-7b-instruct", "llama-3.1-8b-instruct", "mistral-7b-instruct-v0.3", "gemma-2-9b-it", "codegemma-7b",
                     "llama3-chatqa-1.5-8b", "llama3-chatqa-1.5-70b", "llama-3.1-nemotron-51b-instruct",
                     "llama-3.3-nemotron-super-49b-v1"]
_ROUTERBENCH_MODELS = ["gpt-4-1106-preview", "gpt-3.5-turbo-1106", "claude-v1", "claude-v2", "claude-instant-v1",
                       "meta/llama-2-70b-chat", "meta/code-llama-instruct-34b-chat", "mistralai/mistral-7b-chat",
                       "mistralai/mixtral-8x7b-chat", "zero-one-ai/Yi-34B-Chat", "WizardLM/WizardLM-13B-V1.2"]
_BFCL_MODELS = ["claude-3-5-sonnet-20240620", "gpt-4o-mini-2024-07-18", "gemini-1.5-flash-preview-0514", "gpt-4-turbo-2024-04-09",
                "claude-3-haiku-20240307", "open-mixtral-8x22b", "gpt-3.5-turbo-0125", "command-r-plus"]

DATASET_DEFS: dict[str, dict[str, Any]] = {
    "mmlu_pro": {"source": "mmlu_pro", "pools": _POOLS, "export_pools": ["small4"]},
    "llmrouter": {"source": "llmrouter", "pools": {"all9": _LLMROUTER_MODELS}, "router_config": "", "export_pools": []},
    "llmrouter_by_task": {"source": "llmrouter", "pools": {"all9": _LLMROUTER_MODELS}, "split": "by_task",
                          "test_tasks": ["gpqa", "human_eval", "commonsense_qa", "agentverse-mgsm"], "router_config": "", "export_pools": []},
    "routerbench": {"source": "routerbench", "pools": {"all11": _ROUTERBENCH_MODELS}, "split": "source", "missing_quality_policy": "drop",
                    "router_config": "", "export_pools": [], "tune_match_quality_ratio": 0.97},
    "bfcl": {"source": "bfcl", "pools": {"api8": _BFCL_MODELS}, "router_config": "", "export_pools": []},
    "bfcl_latency": {"source": "bfcl", "pools": {"api8": _BFCL_MODELS}, "router_config": "", "export_pools": [], "cost_axis": "latency_s",
                     "quality_weight": 1.0, "quality_weight_sweep": []},
}
"""The datasets defined: each is the parameters it sets differently from the sections."""

DEFAULT_DATASETS = list(DATASET_DEFS)
"""The datasets of the default run: all defined. ``bfcl`` and ``bfcl_latency`` are the same data; the first weighs cost in
USD, the second in seconds of measured latency (its utility is the quality alone, so latency is not counted twice)."""


def _field(default: Any, doc: str, **constraints: Any) -> Any:
    if isinstance(default, (list, dict)):
        return Field(default_factory=lambda: copy.deepcopy(default), description=doc, **constraints)
    return Field(default, description=doc, **constraints)


class Section(BaseModel):
    """A params.yaml section: unknown keys are errors, values are validated on assignment too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


class BaseParams(Section):
    """Shared by every stage."""

    run_dir: str = _field("runs/default", "run folder: data, models, tables, executed notebooks, manifest")
    seed: int = _field(42, "every stochastic step (split, KMeans, bootstrap, tuning) takes it")
    data_dir: str = _field("", "local mirror of the source data; MLSEL_DATA_DIR wins; empty: download and cache")
    datasets: list[str] = _field(DEFAULT_DATASETS, "datasets run, each defined under dataset_defs; a one-item list runs one dataset alone")
    parallel_datasets: int = _field(2, "datasets whose stages run side by side (one process each; the report waits for all); "
                                    "1: one dataset after another", ge=1)
    pools: dict[str, list[str]] = _field(_POOLS, "model pools evaluated side by side (names as in the data)")
    selector_names: list[Literal["knn", "kmeans", "svm"]] = _field(list(SELECTOR_NAMES), "selectors trained and evaluated")
    quality_weight: float = _field(0.9, "utility: w*quality + (1-w)/(1+latency_s); no effect without measured latency", ge=0.0, le=1.0)
    lookup_min_queries: int = _field(20, "static lookups (best model per category or task on train): a group with fewer training "
                                     "queries keeps the best single model (counted)", ge=1)
    n_bootstrap: int = _field(1000, "bootstrap draws for the 95% confidence intervals of the evaluate and ship stages", ge=1)
    embed_batch_size: int = _field(1, "texts per forward pass; 1: a text's vector depends on the text alone, so cold and warm caches "
                                   "give the same run (16 is 1.3x faster on 2 CPU cores but ties a vector's last bits to its batch mates)", ge=1)
    device: Literal["cpu", "cuda", "mps"] = _field("cpu", "torch device for the embedder: cpu | cuda | mps")
    embed_backend: Literal["onnx", "onnx_int8", "torch"] = _field(
        "onnx", "what runs the embedder: onnx (its weights exported once to ONNX Runtime, one text per pass, faster than torch on "
        "the CPU, same vectors to float rounding) | onnx_int8 (int8 weights: faster, vectors move) | torch (needed for "
        "embed_batch_size > 1 or a GPU); a model that does not export uses torch, and the manifest says why")


class PrepareParams(Section):
    """The prepare stage (00_prepare_data): reading, validating and splitting the outcome data."""

    source: Literal["mmlu_pro", "llmrouter", "routerbench", "bfcl", "seed_jsonl", "benchmark"] = _field(
        "mmlu_pro", "mmlu_pro | llmrouter | routerbench | bfcl | seed_jsonl | benchmark")
    source_path: str = _field(
        "", "seed_jsonl: a file path or \"hf:<file>\" from the HF dataset; benchmark: default <run_dir>/benchmark/output.jsonl")
    max_queries: int = _field(0, "0: all queries; otherwise a seeded, stratified sample of this many", ge=0)
    split: Literal["seeded", "source", "by_task"] = _field(
        "seeded", "seeded: by query, stratified by category | source: the source's own train/test files | by_task: test_tasks held out")
    test_size: float = _field(0.2, "split seeded: share of queries held out for the final evaluation", gt=0.0, lt=1.0)
    test_tasks: list[str] = _field([], "split by_task: the tasks whose queries form the test split (no query of them is trained on)")
    duplicate_policy: Literal["error", "mean", "first"] = _field(
        "mean", "repeated (query, model) rows: error | mean | first (MMLU-Pro repeats some question texts)")
    incomplete_policy: Literal["drop", "error"] = _field("drop", "queries not scored by every pool model: drop | error")
    missing_quality_policy: Literal["error", "drop"] = _field(
        "error", "empty/NaN quality cells: error (names file and row) | drop (counted; then incomplete_policy)")
    unknown_category_policy: Literal["error", "other"] = _field("error", "category outside the 14: error | other")


class BenchmarkParams(Section):
    """The benchmark stage (10_benchmark_models): asking LLM endpoints every query."""

    queries: str = _field(
        "", "input JSONL (query, category, ground_truth, metric, choices, task_name); empty: no benchmark, recorded data is used")
    model_config_path: str = Field("", alias="model_config", description=(
        "models.yaml with endpoints (api keys as ${VAR} from the environment, never here)"))
    models: str = _field("", "comma-separated model names, alternative to model_config (all on `endpoint`)")
    endpoint: str = _field("http://localhost:8000/v1", "OpenAI-compatible endpoint used with `models`")
    output: str = _field(
        "", "output JSONL; empty: <run_dir>/benchmark/output.jsonl (appended as results arrive; a rerun resumes)")
    concurrency: int = _field(4, "parallel requests", ge=1)
    limit: int = _field(0, "0: all queries; otherwise the first N", ge=0)
    max_tokens: int = _field(1024, "default max tokens per answer (a model entry in models.yaml wins)", ge=1)
    temperature: float = _field(0.0, "default sampling temperature (a model entry in models.yaml wins)", ge=0.0)
    timeout_s: float = _field(120.0, "per-request timeout in seconds", gt=0.0)
    max_retries: int = _field(4, "retries on 429, 5xx, connection errors and malformed replies", ge=0)
    enable_code_eval: bool = _field(False, "opt in to running model-written code (sandboxed subprocess) for code_eval")

    # `model_config` is pydantic's own attribute name: the field is stored as
    # `model_config_path` and read and written under its params.yaml name.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class TrainParams(Section):
    """The train stage (20_train_selectors): features and the reference selectors."""

    embedder: str = _field("sentence-transformers/all-MiniLM-L6-v2", "any sentence-transformers id, e.g. Qwen/Qwen3-Embedding-0.6B")
    onehot_weight: float = _field(1.0, "weight of the 14-dim category one-hot appended to the embedding", ge=0.0)
    knn_k: int = _field(5, "KNN neighbours", ge=1)
    kmeans_num_clusters: int = _field(8, "KMeans clusters", ge=1)
    svm_kernel: Literal["rbf", "linear"] = _field("rbf", "SVM kernel: rbf | linear")
    svm_gamma: float = _field(1.0, "SVM RBF gamma", gt=0.0)
    svm_c: float = _field(1.0, "SVM regularisation C", gt=0.0)
    store_decimals: int = _field(
        3, "decimal places of KNN's stored training rows and SVM's support vectors (0: unrounded); the rounded model is the one evaluated and exported", ge=0)


class EvaluateParams(Section):
    """The evaluate stage (30_evaluate_selectors): held-out tables, the reference's tables, the latency sweep."""

    quality_weight_sweep: list[float] = _field(
        [1.0, 0.9, 0.8, 0.7, 0.5, 0.3], "where latency is measured: the quality_weight values the selectors are refitted with and "
        "scored at on the test queries (tables/latency_weight_sweep.csv)")


class TuneParams(Section):
    """The tune stage (40_tune_selectors): CV search, cost-aware routers and their defaults."""

    tune_n_folds: int = _field(3, "K-fold cross-validation by query inside the training split", ge=2)
    tune_n_seeds: int = _field(1, "repeats of the K-fold over seeds seed, seed+1, ...", ge=1)
    tune_n_jobs: int = _field(2, "joblib workers")
    tune_dask_scheduler: str = _field(
        "", "Dask scheduler address (tcp://host:8786): CV and final fits run on that cluster through joblib's dask backend; empty: local joblib")
    tune_grid: Literal["default", "small"] = _field("default", "named search space in mlsel.tuning (default | small)")
    tune_router_names: list[Literal["knn_reg", "mlp", "logreg", "scoreboard", "guarded"]] = _field(
        list(ROUTER_NAMES), "cost-aware routers tuned besides selector_names (mlsel.selection.cost_aware)")
    tune_peer_names: list[Literal[PEER_NAMES]] = _field(
        list(PEER_NAMES), "peers' published routers fitted with their sources' settings as baselines (mlsel.selection.peers; never tuned)")
    tune_embedders: list[str] = _field([], "embedder ids searched by the tuning; empty: only the train stage's embedder")
    cost_axis: Literal["auto", "cost_usd", "latency_s", "response_chars", "list_price"] = _field(
        "auto", "the cost the cost-aware routers, frontier, AIQ and matched point use; auto: real USD, else measured latency, "
        "else answer length, else list price (the first the data has)")
    tune_cost_lambdas: list[float] = _field(
        [0.0, 0.01, 0.02, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 100.0],
        "cost weights swept to trace each router's cost-quality curve")
    tune_match_quality_ratio: float = _field(
        0.98, "matched operating point: cheapest cost weight keeping this share of the best single model's CV quality", gt=0.0, le=1.0)
    tune_n_bootstrap: int = _field(1000, "bootstrap draws for the tuned results' and AIQ's 95% confidence intervals", ge=1)
    cost_lambda: float = _field(
        0.0, "router utility: predicted quality - cost_lambda * cost / (highest mean model cost); cost is the pool's cost axis (cost_axis)",
        ge=0.0)
    knn_reg_k: int = _field(200, "KNN regressor router: neighbours (CV on MMLU-Pro picks 100-400)", ge=1)
    knn_reg_weights: Literal["uniform", "distance"] = _field("distance", "KNN regressor router: neighbour weights, uniform | distance")
    knn_reg_shrink: float = _field(0.0, "KNN regressor router: pseudo-neighbours at each model's overall mean (shrinkage)", ge=0.0)
    mlp_hidden: list[int] = _field([128], "MLP router: hidden layer sizes")
    mlp_alpha: float = _field(10.0, "MLP router: L2 penalty (strong: 9k noisy 0/1 targets)", gt=0.0)
    logreg_c: float = _field(0.1, "logistic router: inverse L2 strength per model", gt=0.0)
    scoreboard_clusters: int = _field(60, "Avengers-Pro scoreboard router: KMeans clusters", ge=1)
    scoreboard_alpha: float = _field(1.0, "scoreboard: quality share of the cluster score alpha*p + (1-alpha)*(1-c)", ge=0.0, le=1.0)
    scoreboard_top_p: int = _field(4, "scoreboard: nearest clusters averaged per query", ge=1)
    guard_k: int = _field(100, "guarded router: neighbours whose paired differences against the static choice are the evidence", ge=2)
    guard_z: float = _field(2.0, "guarded router: standard errors the mean paired difference must reach to leave the static choice "
                                 "(inf: never)", ge=0.0)
    guard_shrink: float = _field(0.0, "guarded router: pseudo-neighbours at the static group's mean difference (shrinks the "
                                      "neighbours' evidence toward the static choice)", ge=0.0)
    guard_base: Literal["category", "global"] = _field("category", "guarded router: the static choice, per-category lookup | best single model")
    guard_novelty: float = _field(1.0, "guarded router: a query farther from its nearest training query than this quantile of the "
                                       "training queries' own distances keeps the static choice (1: off)", gt=0.0, le=1.0)


class ShipParams(Section):
    """The ship stage (50_ship_selector): the per-decision routing config and the router's model files."""

    router_config: str = _field("examples/router_config.yaml", "per-decision routing config evaluated offline (empty: skip)")
    export_pools: list[str] = _field(
        [], "pools whose selectors are exported as router model files and scored with the runtime's rules (a KNN file holds every training row once per model)")
    export_dir: str = _field("", "where router model files go, one folder per pool; empty: <run_dir>/router_models")


class ReportParams(Section):
    """The report stage (90_build_report)."""

    report_dir: str = _field(PUBLISHED_REPORT_DIR, "where index.html and tables/*.csv are published")


SECTIONS: dict[str, type[Section]] = {
    "base": BaseParams, "prepare": PrepareParams, "benchmark": BenchmarkParams, "train": TrainParams,
    "evaluate": EvaluateParams, "tune": TuneParams, "ship": ShipParams, "report": ReportParams,
}
"""params.yaml's sections, in file order."""


SMOKE: dict[str, Any] = {
    "run_dir": "runs/smoke", "report_dir": "runs/smoke/report", "tune_grid": "small", "export_pools": ["small4"],
    "max_queries": 600, "n_bootstrap": 200,
}
"""The smoke profile: small, fast values (the notebooks' own defaults and the tests' runs)."""


STAGES: tuple[str, ...] = ("prepare", "benchmark", "train", "evaluate", "tune", "ship", "report")
"""Stage names, in run order; each is a section of params.yaml."""


STAGE_SECTIONS: dict[str, tuple[str, ...]] = {
    "prepare": ("prepare",),
    "benchmark": ("benchmark",),
    "train": ("train",),
    "evaluate": ("evaluate",),
    "tune": ("train", "tune"),  # tuning searches around the train stage's values
    "ship": ("ship",),
    "report": ("report",),
}
"""The sections each stage reads, besides ``base``."""


def _key_name(section: type[Section], field: str) -> str:
    alias = section.model_fields[field].alias
    return alias or field


def keys_of(section: type[Section]) -> list[str]:
    """The params.yaml key names of a section, in definition order."""
    return [_key_name(section, f) for f in section.model_fields]


def default(section: type[Section], key: str) -> Any:
    """The default of one key (for constructors that must agree with the parameter model)."""
    for name, info in section.model_fields.items():
        if _key_name(section, name) == key:
            return info.get_default(call_default_factory=True)
    raise KeyError(f"{section.__name__} has no key {key!r}")


KEY_SECTION: dict[str, str] = {k: s for s, cls in SECTIONS.items() for k in keys_of(cls)}


assert len(KEY_SECTION) == sum(len(keys_of(c)) for c in SECTIONS.values()), "parameter names must be unique across sections"


STAGE_BASE_KEYS: dict[str, tuple[str, ...]] = {
    "prepare": ("run_dir", "seed", "data_dir", "pools"),
    "benchmark": ("run_dir",),
    "train": ("run_dir", "seed", "pools", "selector_names", "quality_weight", "embed_batch_size", "device", "embed_backend"),
    "evaluate": ("run_dir", "seed", "pools", "selector_names", "quality_weight", "lookup_min_queries", "n_bootstrap", "embed_batch_size",
                 "device", "embed_backend"),
    "tune": ("run_dir", "seed", "pools", "selector_names", "quality_weight", "lookup_min_queries", "embed_batch_size", "device",
             "embed_backend"),
    "ship": ("run_dir", "seed", "pools", "quality_weight", "lookup_min_queries", "n_bootstrap", "embed_batch_size", "device",
             "embed_backend"),
    "report": ("run_dir", "datasets"),
}
"""The ``base`` keys each stage reads: a notebook is passed these and its sections' keys, nothing it ignores."""


class _Stage(Section):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


def _stage_model(stage: str, doc: str) -> type[Section]:
    """One flat model per stage: the base keys it reads (STAGE_BASE_KEYS), then its sections' keys (STAGE_SECTIONS)."""
    fields: dict[str, Any] = {k: (BaseParams.model_fields[k].annotation, BaseParams.model_fields[k]) for k in STAGE_BASE_KEYS[stage]}
    for section in STAGE_SECTIONS[stage]:
        fields.update({k: (f.annotation, f) for k, f in SECTIONS[section].model_fields.items()})
    model = create_model(f"{stage.capitalize()}StageParams", __base__=_Stage, __doc__=doc, **fields)
    model.__module__ = __name__
    return model


STAGE_MODELS: dict[str, type[Section]] = {
    "prepare": _stage_model("prepare", "The prepare stage's parameters: the base keys it reads + prepare."),
    "benchmark": _stage_model("benchmark", "The benchmark stage's parameters: run_dir + benchmark."),
    "train": _stage_model("train", "The train stage's parameters: the base keys it reads + train."),
    "evaluate": _stage_model("evaluate", "The evaluate stage's parameters: the base keys it reads + evaluate."),
    "tune": _stage_model("tune", "The tune stage's parameters: the base keys it reads + train + tune (tuning searches around the "
                                 "train stage's values)."),
    "ship": _stage_model("ship", "The ship stage's parameters: the base keys it reads + ship."),
    "report": _stage_model("report", "The report stage's parameters: run_dir, datasets + report."),
}
"""One flat model per stage (the base keys it reads + the sections it reads): what its notebook takes and its stage function reads."""


class Params(BaseModel):
    """All of params.yaml, validated."""

    model_config = ConfigDict(extra="forbid")

    base: BaseParams = Field(default_factory=BaseParams)
    prepare: PrepareParams = Field(default_factory=PrepareParams)
    benchmark: BenchmarkParams = Field(default_factory=BenchmarkParams)
    train: TrainParams = Field(default_factory=TrainParams)
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams)
    tune: TuneParams = Field(default_factory=TuneParams)
    ship: ShipParams = Field(default_factory=ShipParams)
    report: ReportParams = Field(default_factory=ReportParams)
    smoke: dict[str, Any] = Field(default_factory=lambda: dict(SMOKE))
    dataset_defs: dict[str, dict[str, Any]] = Field(default_factory=lambda: copy.deepcopy(DATASET_DEFS))

    def section_values(self, section: str) -> dict[str, Any]:
        return getattr(self, section).model_dump(by_alias=True)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """``{section: {key: value}}`` with params.yaml's key names."""
        out = {s: self.section_values(s) for s in SECTIONS}
        out["smoke"] = dict(self.smoke)
        out["dataset_defs"] = copy.deepcopy(self.dataset_defs)
        return out


def describe(section: type[Section]) -> list[tuple[str, Any, str]]:
    """``(key, default, description)`` of every key of a section."""
    return [(_key_name(section, f), info.get_default(call_default_factory=True), info.description or "")
            for f, info in section.model_fields.items()]
