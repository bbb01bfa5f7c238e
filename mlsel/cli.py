"""Command line: ``mlsel run``, ``mlsel results``, ``mlsel benchmark``, ``mlsel export``, ``mlsel evaluate-config``.

``mlsel run`` is a thin front of :func:`mlsel.runner.run`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

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
        print(f"{stage:<28} {status:>20}  {info['notebook']}")
    return 0


def _results(args: argparse.Namespace) -> int:
    """The cross-dataset matrix (``tables/summary.csv``), then each dataset's two seed tables."""
    import pandas as pd

    from mlsel.report.overview import dataset_title, summary_markdown

    params = load_params(args.params)
    run_dir = Path(args.run_dir or params.base.run_dir)
    summary = run_paths(str(run_dir))["tables"] / "summary.csv"
    seed_tables = {ds: run_paths(str(run_dir / ds))["tables"] / "seed_tables.md" for ds in params.base.datasets}
    if not summary.is_file() and not any(p.is_file() for p in seed_tables.values()):
        print(f"{run_dir}: no results (no tables/summary.csv, no <dataset>/tables/seed_tables.md); run `mlsel run` first", file=sys.stderr)
        return 1
    if summary.is_file():
        print("## Does routing pay? (held-out queries)\n")
        print(summary_markdown(pd.read_csv(summary)))
    for ds, path in seed_tables.items():
        if path.is_file():
            print(f"## {dataset_title(ds)}: the reference's two tables\n")
            print(path.read_text())
            print(f"(tidy table: {path.with_name('selection_results.csv')})\n")
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

    p = sub.add_parser("results", help="print the cross-dataset matrix and each dataset's two seed tables (held-out results) of a run")
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
