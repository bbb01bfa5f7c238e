"""The ``mlsel export`` and ``mlsel evaluate-config`` subcommands (registered by :func:`add_cli`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable

from mlsel.deploy.runtime import ARTIFACT_FILES, export_router_models
from mlsel.features import EmbedSettings
from mlsel.params import Params, dataset_params, for_stage, load_params, stage_params, stage_values
from mlsel.paths import run_paths


def _default_pool(pools: dict[str, list[str]]) -> str:
    return max(pools, key=lambda p: len(pools[p]))


def _dataset(args: argparse.Namespace) -> Params:
    """The parameters of ``--dataset`` (default: the first of ``datasets``), run folder ``<run_dir>/<dataset>``."""
    params = load_params(args.params)
    return dataset_params(params, args.dataset or params.base.datasets[0])


def _cli_export(args: argparse.Namespace) -> int:
    p = stage_params(_dataset(args), "ship")
    run_dir = args.run_dir or p.run_dir
    pool = args.pool or _default_pool(p.pools)
    export_dir = args.export_dir if args.export_dir is not None else p.export_dir
    manifest = export_router_models(run_dir, pool, export_dir, EmbedSettings.from_params(p))
    print(f"router model files for pool {pool!r} written to {manifest['export_dir']}")
    for name, a in manifest["agreement"].items():
        print(f"  {ARTIFACT_FILES[name]:<18} {manifest['sizes'][ARTIFACT_FILES[name]] / 1e6:6.1f} MB  runtime rule agrees with mlsel on "
              f"{a['n_agree']}/{a['n_queries']} test queries ({100 * a['rate']:.1f}%); held-out quality {a['runtime_quality']:.4f} "
              f"(selector {a['selector_quality']:.4f})")
    print(f"  runtime config snippet: {manifest['export_dir']}/{manifest['runtime_config']}")
    return 0


def _evaluate_config_args(args: argparse.Namespace) -> dict[str, Any]:
    """The ship stage's parameters with the command line's overrides."""
    values = stage_values(_dataset(args), "ship")
    if args.run_dir:
        values["run_dir"] = args.run_dir
    if args.config:
        values["router_config"] = args.config
    if args.n_bootstrap is not None:
        values["n_bootstrap"] = args.n_bootstrap
    return values


def _cli_evaluate_config(args: argparse.Namespace) -> int:
    values = _evaluate_config_args(args)
    if not values["router_config"]:
        print("no router config: pass --config or set ship.router_config in params.yaml", file=sys.stderr)
        return 1
    args.evaluate_config(for_stage("ship", values, where="evaluate-config"))
    md = run_paths(values["run_dir"])["tables"] / "router_config_results.md"
    print(md.read_text())
    print(f"(tidy table: {md.with_suffix('.csv')})")
    return 0


def add_cli(subparsers: Any, evaluate_config: Callable[[Any], Any]) -> None:
    """Register the ``export`` and ``evaluate-config`` subcommands (``args.func(args)`` runs them).

    ``evaluate_config`` is the stage function that evaluates the router config
    and writes its CSV and markdown (``mlsel.stages.evaluate_router_config``,
    taking the ship stage's validated parameters); the deploy layer cannot
    import it, so the CLI hands it over.
    """
    p = subparsers.add_parser("export", help="write a run's fitted selectors as router model files (knn/kmeans/svm_model.json + manifest.json)")
    p.add_argument("--dataset", default=None, help="dataset of params.yaml (default: the first of datasets)")
    p.add_argument("--run-dir", default=None, help="run folder (default: <params.yaml run_dir>/<dataset>)")
    p.add_argument("--pool", default=None, help="model pool to export (default: the dataset's largest pool)")
    p.add_argument("--export-dir", default=None, help="output folder (default: params.yaml export_dir; empty: <run_dir>/router_models)")
    p.add_argument("--params", default=None, help="parameter file (default: params.yaml at the project root)")
    p.set_defaults(func=_cli_export)

    p = subparsers.add_parser("evaluate-config", help="evaluate a router config.yaml (per-decision algorithms) on a run's held-out queries")
    p.add_argument("--dataset", default=None, help="dataset of params.yaml (default: the first of datasets)")
    p.add_argument("--run-dir", default=None, help="run folder (default: <params.yaml run_dir>/<dataset>)")
    p.add_argument("--config", default=None, help="router config YAML (default: params.yaml router_config)")
    p.add_argument("--n-bootstrap", type=int, default=None, help="bootstrap draws (default: params.yaml n_bootstrap)")
    p.add_argument("--params", default=None, help="parameter file (default: params.yaml at the project root)")
    p.set_defaults(func=_cli_evaluate_config, evaluate_config=evaluate_config)
