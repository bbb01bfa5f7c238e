"""Benchmark-runner throughput against a local LLM at concurrency 1, 2 and 4.

Starts SmolLM2-135M-Instruct (Q4_1 GGUF) with ``llama_cpp.server`` through
``local_llm_server`` of tests/llm_server.py, writes N real MMLU-Pro questions
with :func:`mlsel.llm.queries.write_mmlu_pro_queries`, and runs
:func:`mlsel.llm.benchmark.run_benchmark` once per concurrency level (fresh
output file each time). Writes benchmarks/results/concurrency.json and
concurrency.md. Run:

    MLSEL_DATA_DIR=../shared/data .venv/bin/python benchmarks/bench_concurrency.py [N]

requests/s = pairs / wall-clock of the run; tokens/s = completion tokens
reported by the server / wall-clock; latency = mean ``response_time`` (one
successful attempt, seconds).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from mlsel.llm.benchmark import run_benchmark
from mlsel.llm.queries import write_mmlu_pro_queries

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from llm_server import local_llm_server  # noqa: E402  (a test helper: tests/llm_server.py)

OUT = Path(__file__).resolve().parent / "results"
LEVELS = (1, 2, 4)
MAX_TOKENS = 64


def main(n: int = 12) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as tmp, local_llm_server(n_ctx=2048, log_path=Path(tmp) / "server.log") as endpoint:
        queries = write_mmlu_pro_queries(Path(tmp) / "q.jsonl", n=n, seed=1)
        # warm-up request so the first level does not pay for cold caches
        run_benchmark(queries, Path(tmp) / "warm.jsonl", models=["smollm2"], endpoint=endpoint, limit=1, max_tokens=8, progress=False)
        for c in LEVELS:
            out = Path(tmp) / f"out_c{c}.jsonl"
            t0 = time.perf_counter()
            summary = run_benchmark(queries, out, models=["smollm2"], endpoint=endpoint, concurrency=c, max_tokens=MAX_TOKENS, timeout_s=300, progress=False)
            wall = time.perf_counter() - t0
            recs = [json.loads(line) for line in out.read_text().splitlines()]
            tokens = [r.get("completion_tokens") for r in recs if r["status"] == "ok"]
            n_tok = sum(t for t in tokens if isinstance(t, int))
            rows.append(
                {
                    "concurrency": c,
                    "n_requests": len(recs),
                    "n_ok": int(summary["n_ok"].sum()),
                    "wall_s": round(wall, 2),
                    "requests_per_s": round(len(recs) / wall, 3),
                    "completion_tokens": n_tok,
                    "tokens_per_s": round(n_tok / wall, 2) if n_tok else None,
                    "latency_s_mean": round(float(summary["response_time_s_mean"].iloc[0]), 3),
                }
            )
            print(rows[-1], flush=True)
    meta = {
        "date": date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, no GPU, {platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "server": "llama-cpp-python llama_cpp.server, SmolLM2-135M-Instruct Q4_1 GGUF, n_ctx 2048, defaults otherwise",
        "queries": f"{n} MMLU-Pro questions (seed 1) with 10 lettered options, em_mc, max_tokens {MAX_TOKENS}, temperature 0",
        "note": "the machine was shared with other jobs while this ran; llama_cpp.server answers one request at a time",
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "concurrency.json").write_text(json.dumps({"meta": meta, "results": rows}, indent=2) + "\n")
    lines = [
        "# Benchmark runner throughput vs concurrency",
        "",
        f"Date: {meta['date']}. Machine: {meta['machine']}.",
        f"Server: {meta['server']}. Queries: {meta['queries']}.",
        "",
        "| concurrency | requests | wall s | requests/s | tokens/s | mean latency s |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['concurrency']} | {r['n_requests']} | {r['wall_s']} | {r['requests_per_s']} | {r['tokens_per_s']} | {r['latency_s_mean']} |")
    lines += ["", f"Note: {meta['note']}."]
    (OUT / "concurrency.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 12)
