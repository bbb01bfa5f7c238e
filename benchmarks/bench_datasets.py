"""Cross-dataset benchmark: the default run's time (cold and warm) and the datasets-and-cost targets.

Writes benchmarks/results/datasets.json and datasets.md. Run:

    MLSEL_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_datasets.py
    .venv/bin/python benchmarks/bench_datasets.py --run-dir runs/default --no-timing   # targets of an existing run only
    .venv/bin/python benchmarks/bench_datasets.py --run-dir runs/default --warm-only   # re-time the warm rerun only
    MLSEL_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_datasets.py --run-dir runs/default
        # time the default run itself, cold then warm: its folder is emptied first and it publishes reports/

Timing: ``mlsel run`` with every default dataset into its own run folder
(``runs/bench-datasets``) and an empty embedding cache (a fresh
``MLSEL_CACHE_DIR``: every text is embedded), then the same command again
(warm: nothing changed, the skippable stages are skipped).

Targets, from the run's ``tables/summary.csv`` (every choice made on the
training split's CV; see :mod:`mlsel.tuning.summary`):

- RouterBench, USD: the matched operating point (cheapest CV point keeping
  ``tune_match_quality_ratio`` of the best single model's CV quality) keeps
  >= 97% of the best single model's held-out quality at <= 50% of its cost;
  AIQ minus the zero router's has its CI above 0.
- LLMRouter: Gain@B >= +0.04 with the CI above 0; >= 65% of the random ->
  oracle gap closed.
- MMLU-Pro small4: the CI lower bound of Gain@B >= -0.005 (the router never
  does worse than the best single model).
- Cold run <= 8 min on 2 cores; warm rerun <= 30 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd

from mlsel import runner
from mlsel.params import load_params
from mlsel.paths import project_root

OUT = Path(__file__).resolve().parent / "results"
RUN_DIR = "runs/bench-datasets"


def run_overrides(run_dir: str) -> dict[str, str] | None:
    """The default run's folder runs as ``mlsel run`` (no overrides: its report is the published one); any other folder
    gets its own report folder."""
    return None if load_params().base.run_dir == run_dir else {"run_dir": run_dir, "report_dir": f"{run_dir}/report"}


def timed_runs(run_dir: str) -> dict[str, object]:
    """A cold run (fresh embedding cache, empty run folder), then a warm one; seconds per stage and in total."""
    root = project_root()
    shutil.rmtree(root / run_dir, ignore_errors=True)
    overrides = run_overrides(run_dir)
    out: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="mlsel-cold-cache-") as cache:
        previous = os.environ.get("MLSEL_CACHE_DIR")
        os.environ["MLSEL_CACHE_DIR"] = cache
        try:
            for name in ("cold", "warm"):
                t0 = time.perf_counter()
                done = runner.run(overrides=overrides)
                out[f"{name}_seconds"] = round(time.perf_counter() - t0, 1)
                out[f"{name}_stages"] = {k: ("skipped" if v["skipped"] else v["seconds"]) for k, v in done.items()}
        finally:
            if previous is None:
                os.environ.pop("MLSEL_CACHE_DIR")
            else:
                os.environ["MLSEL_CACHE_DIR"] = previous
    return out


def warm_run(run_dir: str) -> dict[str, object]:
    """A warm rerun of an existing, complete run folder (nothing changed since it ran); seconds per stage and in total."""
    t0 = time.perf_counter()
    done = runner.run(overrides=run_overrides(run_dir))
    return {"warm_seconds": round(time.perf_counter() - t0, 1), "warm_stages": {k: ("skipped" if v["skipped"] else v["seconds"])
                                                                               for k, v in done.items()},
            "warm_measured": date.today().isoformat()}


def _row(summary: pd.DataFrame, dataset: str, pool: str | None = None) -> pd.Series:
    rows = summary[(summary["dataset"] == dataset) & ((summary["pool"] == pool) if pool else True)]
    if rows.empty:
        raise SystemExit(f"summary.csv has no row for dataset {dataset!r}" + (f", pool {pool!r}" if pool else ""))
    return rows.iloc[0]


def targets(summary: pd.DataFrame, timing: dict[str, object]) -> list[dict[str, object]]:
    """Each target: what it asks, what was measured, and whether it is reached."""
    rb, lr, mm = _row(summary, "routerbench"), _row(summary, "llmrouter"), _row(summary, "mmlu_pro", "small4")
    out = [
        {"target": "RouterBench (USD): CV-chosen operating point keeps >= 97% of the best single model's held-out quality at <= 50% of its cost",
         "measured": f"{rb['matched_router']} at cost_lambda {rb['matched_cost_lambda']}: {rb['matched_quality_pct']:.1f}% "
                     f"[{rb['matched_quality_pct_ci_low']:.1f}, {rb['matched_quality_pct_ci_high']:.1f}] of {rb['best_single']}'s quality at "
                     f"{rb['matched_cost_pct']:.1f}% [{rb['matched_cost_pct_ci_low']:.1f}, {rb['matched_cost_pct_ci_high']:.1f}] of its cost",
         "reached": bool(rb["matched_quality_pct"] >= 97 and rb["matched_cost_pct"] <= 50)},
        {"target": "RouterBench (USD): AIQ above the zero router's, CI above 0",
         "measured": f"{rb['aiq_router']}: {rb['aiq_minus_zero']:+.4f} [{rb['aiq_minus_zero_ci_low']:+.4f}, {rb['aiq_minus_zero_ci_high']:+.4f}]",
         "reached": bool(rb["aiq_minus_zero_ci_low"] > 0)},
        {"target": "LLMRouter: Gain@B >= +0.04 with the CI above 0",
         "measured": f"{lr['router']}: {lr['gain_at_b']:+.4f} [{lr['gain_at_b_ci_low']:+.4f}, {lr['gain_at_b_ci_high']:+.4f}]",
         "reached": bool(lr["gain_at_b"] >= 0.04 and lr["gain_at_b_ci_low"] > 0)},
        {"target": "LLMRouter: >= 65% of the random -> oracle gap closed",
         "measured": f"{lr['gap_closed_random_pct']:.1f}% (best single -> oracle: {lr['gap_closed_pct']:.1f}%)",
         "reached": bool(lr["gap_closed_random_pct"] >= 65)},
        {"target": "MMLU-Pro small4: CI lower bound of Gain@B >= -0.005",
         "measured": f"{mm['router']}: {mm['gain_at_b']:+.4f} [{mm['gain_at_b_ci_low']:+.4f}, {mm['gain_at_b_ci_high']:+.4f}]",
         "reached": bool(mm["gain_at_b_ci_low"] >= -0.005)},
    ]
    if "cold_seconds" in timing:
        out += [
            {"target": "cold `mlsel run`, every default dataset, <= 8 min", "measured": f"{timing['cold_seconds']:.0f} s",
             "reached": bool(timing["cold_seconds"] <= 480)},
            {"target": "warm rerun <= 30 s", "measured": f"{timing['warm_seconds']:.1f} s", "reached": bool(timing["warm_seconds"] <= 30)},
        ]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default=RUN_DIR, help="run folder (relative to the project root)")
    ap.add_argument("--no-timing", action="store_true", help="only read the targets of an existing run")
    ap.add_argument("--keep-timing", action="store_true",
                    help="with --no-timing: keep the timing of the previous results/datasets.json (say so in the output)")
    ap.add_argument("--warm-only", action="store_true",
                    help="time a warm rerun of the existing run folder --run-dir (run it with the same overrides first); keep the "
                         "previous cold timing (say so in the output)")
    args = ap.parse_args()
    timing = {} if args.no_timing or args.warm_only else timed_runs(args.run_dir)
    if (args.no_timing and args.keep_timing) or args.warm_only:
        previous = json.loads((OUT / "datasets.json").read_text())
        timing = {k: previous[k] for k in ("cold_seconds", "warm_seconds", "cold_stages", "warm_stages")}
        timing["timing_measured"] = previous["timing_measured"] if "timing_measured" in previous else previous["date"]
        timing["warm_measured"] = previous.get("warm_measured", timing["timing_measured"])
    if args.warm_only:
        timing.update(warm_run(args.run_dir))
    summary = pd.read_csv(project_root() / args.run_dir / "tables" / "summary.csv")
    result = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores", **timing,
              "targets": targets(summary, timing)}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "datasets.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = [f"# Cross-dataset benchmark ({result['date']}, {result['machine']})", ""]
    if timing:
        kept = f" (timing kept from the run of {timing['timing_measured']}; targets read from {args.run_dir})" if args.keep_timing else ""
        if args.warm_only:
            kept = (f" (cold: the run of {timing['timing_measured']}, kept; warm: a rerun of {args.run_dir} on {timing['warm_measured']},"
                    " with the code of that day: stages the cold run did not have show —)")
        lines += [f"Cold run (fresh embedding cache): {timing['cold_seconds']:.0f} s; warm rerun: {timing['warm_seconds']:.1f} s{kept}.", "",
                  "| stage | cold (s) | warm (s) |", "|---|---|---|"]
        stages = list(dict.fromkeys([*timing["warm_stages"], *timing["cold_stages"]]))  # the warm run's order: the runner's
        lines += [f"| {k} | {timing['cold_stages'].get(k, '—')} | {timing['warm_stages'].get(k, '—')} |" for k in stages] + [""]
    lines += ["| target | measured | reached |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {'yes' if t['reached'] else '**no**'} |" for t in result["targets"]]
    (OUT / "datasets.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
