"""Routing on measured latency and real USD (BFCL, pool api8): the targets of the published tables.

Reads ``reports/tables/`` (or ``--tables DIR``), which the default run writes
(every choice made on the training split; intervals are 95% paired bootstrap
over held-out queries), and checks:

- ``bfcl`` (cost axis USD): the operating point chosen on CV keeps >= 98% of the
  best single model's held-out quality at <= 25% of its USD cost;
- ``bfcl_latency`` (cost axis seconds): the operating point keeps >= 98% of that
  quality at <= 75% of its mean latency;
- the CV-chosen router's Gain@B CI low >= -0.005 on both;

and quotes the utility-weight sweep's extremes, the repeatability sentence and the one on the routers' latency
predictions.
Writes benchmarks/results/latency.json and latency.md (the README quotes the
table). Run after ``make run``:

    .venv/bin/python benchmarks/bench_latency.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from mlsel.metrics.latency import prediction_sentence, repeatability_sentence

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "results"
FLOOR = -0.005


def _ci(v: float, lo: float, hi: float, fmt: str = "+.4f") -> str:
    return f"{v:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def targets(summary: pd.DataFrame) -> list[dict]:
    out = []
    for dataset, share, what in (("bfcl", 25.0, "USD cost"), ("bfcl_latency", 75.0, "mean latency")):
        row = summary[summary["dataset"] == dataset]
        if row.empty:
            continue
        r = row.iloc[0]
        where = f"{dataset} {r['pool']}"
        out.append({"target": f"{where}: an operating point chosen on CV keeps >= 98% of the best single model's quality at <= {share:.0f}% "
                              f"of its {what}",
                    "measured": f"{r['matched_router']} (lambda {r['matched_cost_lambda']}): quality "
                                f"{_ci(r['matched_quality_pct'], r['matched_quality_pct_ci_low'], r['matched_quality_pct_ci_high'], '.1f')}% "
                                f"at {_ci(r['matched_cost_pct'], r['matched_cost_pct_ci_low'], r['matched_cost_pct_ci_high'], '.1f')}% "
                                f"({r['cost_unit']})",
                    "reached": bool(r["matched_quality_pct"] >= 98.0 and r["matched_cost_pct"] <= share)})
        out.append({"target": f"{where}: the CV-chosen router's Gain@B CI low >= {FLOOR}",
                    "measured": f"{r['router']}: {_ci(r['gain_at_b'], r['gain_at_b_ci_low'], r['gain_at_b_ci_high'])}",
                    "reached": bool(r["gain_at_b_ci_low"] >= FLOOR)})
    return out


def sweep_lines(sweep: pd.DataFrame) -> list[str]:
    """Per strategy, quality and p90 latency at the highest and lowest weight swept."""
    lines = ["| strategy | quality_weight | quality | mean latency | p90 latency |", "|---|---|---|---|---|"]
    for name, df in sweep.groupby("strategy", sort=False):
        for r in (df.loc[df["quality_weight"].idxmax()], df.loc[df["quality_weight"].idxmin()]):
            lines.append(f"| {name} | {r['quality_weight']:g} | {r['avg_quality']:.4f} | {r['avg_latency_s']:.2f} s | {r['p90_latency_s']:.2f} s |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default=str(ROOT / "reports" / "tables"), help="the published tables folder")
    args = ap.parse_args()
    tables = Path(args.tables)
    result = {"targets": targets(pd.read_csv(tables / "summary.csv"))}
    lines = ["| target | measured | reached |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {'yes' if t['reached'] else '**no**'} |" for t in result["targets"]]
    sweep = tables / "bfcl" / "latency_weight_sweep.csv"
    if sweep.is_file():
        result["sweep"] = sweep_lines(pd.read_csv(sweep))
        lines += ["", "Utility-weight sweep (bfcl api8, held-out queries; `latency_weight_sweep.csv`):", "", *result["sweep"]]
    repeat = tables / "bfcl" / "latency_repeatability.csv"
    if repeat.is_file():
        result["repeatability"] = repeatability_sentence(pd.read_csv(repeat))
        lines += ["", f"Repeatability (bfcl api8, `latency_repeatability.csv`): {result['repeatability']}"]
    predicted = tables / "bfcl_latency" / "latency_prediction.csv"
    if predicted.is_file():
        result["prediction"] = prediction_sentence(pd.read_csv(predicted))
        lines += ["", f"The routers' per-query predictions (bfcl_latency api8, `latency_prediction.csv`): {result['prediction']}"]
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "latency.json").write_text(json.dumps(result, indent=1) + "\n")
    (OUT / "latency.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
