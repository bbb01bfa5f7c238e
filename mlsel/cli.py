"""Command line: ``mlsel run``, ``mlsel results``, ``mlsel benchmark``, ``mlsel export``, ``mlsel evaluate-config``.

``mlsel run`` is a thin front of :func:`mlsel.runner.run`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

from mlsel import runner, stages
from mlsel.deploy.commands import add_cli as add_deploy_cli
from mlsel.llm.commands import add_cli as add_benchmark_cli
from mlsel.paths import PUBLISHED_REPORT_DIR, project_root, resolve_path


def _shown(path: Path) -> str:
    """A path as the user sees it: relative to the project root when inside it."""
    path = resolve_path(path)
    return str(path.relative_to(project_root())) if path.is_relative_to(project_root()) else str(path)


def _run(args: argparse.Namespace) -> int:
    done = runner.run(stages=args.stage or None, overrides=args.param, params_file=args.params, smoke=args.smoke,
                      progress=args.progress, force=args.force, publish=args.publish)
    for stage, info in done.items():
        status = "up to date, skipped" if info["skipped"] else f"{info['seconds']:.1f} s"
        print(f"{stage:<28} {status:>20}  {info['notebook']}")
    if "index" in done.get("report", {}):
        where = "the published report" if done["report"]["published"] else f"this run's own; {PUBLISHED_REPORT_DIR}/ unchanged"
        print(f"report: {_shown(Path(done['report']['index']))} ({where})")
    return 0


def _has_seed_tables(tables: Path) -> bool:
    """Whether a dataset's tables folder holds its two seed tables (``seed_tables.md``, or the tidy table they come from)."""
    return (tables / "seed_tables.md").is_file() or (tables / "selection_results.csv").is_file()


def _dataset_tables(root: Path, summary: pd.DataFrame | None) -> dict[str, Path]:
    """Each dataset's tables folder under ``root`` (``<root>/<dataset>/tables`` of a run folder, ``<root>/<dataset>`` of a
    published one): the matrix's datasets in its order, then any other folder holding the seed tables."""
    def tables(folder: Path) -> Path:
        return folder / "tables" if (folder / "tables").is_dir() else folder

    found = {d.name: tables(d) for d in sorted(root.iterdir()) if d.is_dir()} if root.is_dir() else {}
    found = {ds: t for ds, t in found.items() if _has_seed_tables(t)}
    order = [ds for ds in (summary["dataset"].tolist() if summary is not None and "dataset" in summary else []) if ds in found]
    return {ds: found[ds] for ds in dict.fromkeys(order + list(found))}


def _is_dataset_folder(folder: Path, summary: pd.DataFrame | None) -> bool:
    """Whether a run folder is one dataset's (``<run>/<dataset>``): its own seed tables in ``tables/``, or a summary without
    the ``dataset`` column the run's cross-dataset matrix has."""
    return _has_seed_tables(folder / "tables") or (summary is not None and "dataset" not in summary.columns)


def _results(args: argparse.Namespace) -> int:
    """The cross-dataset matrix, then each dataset's two seed tables: of the published report (``reports/tables/``, what a
    fresh clone has) or, with ``--run``, of a run folder (``<run>/tables/summary.csv``, ``<run>/<dataset>/tables/``) or of
    one dataset's folder in it (``<run>/<dataset>``: its summary rows and its seed tables, named by the folder)."""
    from mlsel.report.overview import dataset_title, summary_markdown
    from mlsel.report.tables import seed_tables_markdown

    folder = resolve_path(args.run) if args.run else resolve_path(PUBLISHED_REPORT_DIR)
    summary_path = folder / "tables" / "summary.csv"
    summary = pd.read_csv(summary_path) if summary_path.is_file() else None
    if args.run and _is_dataset_folder(folder, summary):
        if summary is not None and "dataset" not in summary.columns:
            summary.insert(0, "dataset", folder.name)  # a dataset's own summary rows, as the run's matrix has them
        datasets = {folder.name: folder / "tables"} if _has_seed_tables(folder / "tables") else {}
    else:
        datasets = _dataset_tables(folder if args.run else folder / "tables", summary)
    if summary is None and not datasets:
        print(f"{args.run or _shown(folder)}: no results (no tables/summary.csv, no <dataset>/tables/selection_results.csv); "
              "run `mlsel run` first", file=sys.stderr)
        return 1
    what = f"the run {_shown(folder)}" if args.run else "the published report (`mlsel results --run <run_dir>` for a run's own)"
    print(f"# Results of {what}\n")
    if summary is not None:
        print(f"## Does routing pay? (held-out queries; {_shown(summary_path)})\n")
        print(summary_markdown(summary))
    for ds, tables in datasets.items():
        print(f"## {dataset_title(ds)}: the reference's two tables\n")
        md = tables / "seed_tables.md"
        print(md.read_text() if md.is_file() else seed_tables_markdown(pd.read_csv(tables / "selection_results.csv")) + "\n")
        print(f"(tidy table: {_shown(tables / 'selection_results.csv')})\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlsel", description="ML-based LLM model selection: benchmark, train, evaluate, report.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run the stage notebooks with papermill (all stages by default)")
    p.add_argument("--stage", action="append", help="run only this stage (repeatable): prepare, benchmark, train, evaluate, tune, ship, report")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE", help="override a params.yaml key, e.g. -p knn_k=7 or -p train.knn_k=7")
    p.add_argument("--params", default=None, help="parameter file (default: params.yaml at the project root)")
    p.add_argument("--smoke", action="store_true", help="apply the small, fast 'smoke' profile of params.yaml")
    p.add_argument("--progress", action="store_true", help="show papermill's cell progress bar")
    p.add_argument("--force", action="store_true", help="rerun stages that are up to date")
    p.add_argument("--publish", action="store_true",
                   help=f"write the report to the published {PUBLISHED_REPORT_DIR}/ (only the default run does otherwise; "
                        "any other run writes <run_dir>/report)")
    p.set_defaults(func=_run)

    p = sub.add_parser("results", help="print the cross-dataset matrix and each dataset's two seed tables (held-out results): "
                                       f"the published ones ({PUBLISHED_REPORT_DIR}/tables), or a run's with --run")
    p.add_argument("--run", "--run-dir", dest="run", default=None, metavar="RUN_DIR",
                   help=f"a run folder, e.g. runs/default (default: the published report, {PUBLISHED_REPORT_DIR}/tables)")
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
