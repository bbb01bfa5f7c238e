"""Command line: ``mlsel run``, ``mlsel results``, ``mlsel benchmark``, ``mlsel export``, ``mlsel evaluate-config``.

``mlsel run`` is a thin front of :func:`mlsel.runner.run`.
"""

from __future__ import annotations

import argparse
import logging
import sys

from mlsel import runner, stages
from mlsel.deploy.commands import add_cli as add_deploy_cli
from mlsel.llm.commands import add_cli as add_benchmark_cli
from mlsel.params import load_params
from mlsel.paths import run_paths


def _run(args: argparse.Namespace) -> int:
    done = runner.run(stages=args.stage or None, overrides=args.param, params_file=args.params, smoke=args.smoke,
                      progress=args.progress, force=args.force)
    for stage, info in done.items():
        status = "up to date, skipped" if info["skipped"] else f"{info['seconds']:.1f} s"
        print(f"{stage:<9} {status:>20}  {info['notebook']}")
    return 0


def _results(args: argparse.Namespace) -> int:
    run_dir = args.run_dir or load_params(args.params).base.run_dir
    path = run_paths(run_dir)["tables"] / "seed_tables.md"
    if not path.is_file():
        print(f"{path}: not found; run `mlsel run` (or `mlsel run --stage evaluate`) first", file=sys.stderr)
        return 1
    print(path.read_text())
    csv = run_paths(run_dir)["tables"] / "selection_results.csv"
    print(f"(tidy table: {csv})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlsel", description="ML-based LLM model selection: benchmark, train, evaluate, report.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the stage notebooks with papermill (all stages by default)")
    p.add_argument("--stage", action="append", help="run only this stage (repeatable): prepare, benchmark, train, evaluate, tune, report")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="override a params.yaml key, e.g. -p knn_k=7 or -p train.knn_k=7")
    p.add_argument("--params", default=None, help="parameter file (default: params.yaml at the project root)")
    p.add_argument("--smoke", action="store_true", help="apply the small, fast 'smoke' profile of params.yaml")
    p.add_argument("--progress", action="store_true", help="show papermill's cell progress bar")
    p.add_argument("--force", action="store_true", help="rerun stages that are up to date")
    p.set_defaults(func=_run)

    p = sub.add_parser("results", help="print the seed's two tables (held-out results) of a run")
    p.add_argument("--run-dir", default=None, help="run folder (default: params.yaml run_dir)")
    p.add_argument("--params", default=None)
    p.set_defaults(func=_results)

    add_benchmark_cli(sub)
    add_deploy_cli(sub, evaluate_config=stages.evaluate_router_config)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
