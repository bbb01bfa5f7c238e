"""The ``mlsel benchmark`` subcommand: argparse wiring for :func:`mlsel.llm.benchmark.run_benchmark`."""

from __future__ import annotations

import argparse
import sys

from mlsel.llm.benchmark import run_benchmark
from mlsel.llm.client import BenchmarkError
from mlsel.params import BenchmarkParams

BENCH = BenchmarkParams().model_dump(by_alias=True)
"""The benchmark parameters' defaults (mlsel.params), shared with ``params.yaml``'s benchmark section."""


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``benchmark`` subcommand (handler: :func:`mlsel.llm.benchmark.run_benchmark`)."""
    p = subparsers.add_parser("benchmark", help="send queries to LLM endpoints, score the answers, write outcome JSONL")
    p.add_argument("--queries", required=True, help="input JSONL (query, category, ground_truth, metric, choices, task_name)")
    p.add_argument("--model-config", default=None, help="models.yaml with endpoints, keys (${VAR}) and settings")
    p.add_argument("--models", default=None, help="comma-separated model names at --endpoint (alternative to --model-config)")
    p.add_argument("--endpoint", default=BENCH["endpoint"], help="OpenAI-compatible base URL (default: %(default)s)")
    p.add_argument("--output", default="benchmark_output.jsonl", help="output JSONL; an existing file is resumed (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=BENCH["concurrency"], help="parallel requests (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="only the first N unique queries")
    p.add_argument("--max-tokens", type=int, default=BENCH["max_tokens"], help="default completion limit (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=BENCH["temperature"], help="default temperature (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=BENCH["timeout_s"], help="per-attempt timeout in seconds (default: %(default)s)")
    p.add_argument("--max-retries", type=int, default=BENCH["max_retries"], help="retries after the first attempt (default: %(default)s)")
    p.add_argument("--enable-code-eval", action="store_true", help="execute code_eval assertions in the sandbox")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli_main)
    return p


def _cli_main(args: argparse.Namespace) -> int:
    if not args.model_config and not args.models:
        print("mlsel benchmark: give --model-config or --models", file=sys.stderr)
        return 2
    try:
        summary = run_benchmark(
            queries=args.queries,
            output=args.output,
            model_config=args.model_config,
            models=args.models,
            endpoint=args.endpoint,
            concurrency=args.concurrency,
            limit=args.limit,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            timeout_s=args.timeout,
            max_retries=args.max_retries,
            enable_code_eval=args.enable_code_eval,
            progress=not args.no_progress,
        )
    except BenchmarkError as exc:
        print(f"mlsel benchmark: {exc}", file=sys.stderr)
        return 2
    print(summary.to_string(index=False))
    print(f"(records: {args.output})")
    return 0 if summary["n_failed"].sum() == 0 else 1
