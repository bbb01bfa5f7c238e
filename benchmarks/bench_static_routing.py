"""Static routing against ML routing: the targets of the published cross-dataset summary.

Reads ``reports/tables/summary.csv`` (or ``--tables DIR``), which the default
run writes (every choice made on the training split; intervals are 95% paired
bootstrap over held-out queries), and checks:

- every dataset and pool: the CV-chosen router's gain over the best single
  model and over the per-category lookup each have CI low >= -0.005;
- LLMRouter all9: Gain@B >= +0.045 with CI low > 0;
- LLMRouter, unseen tasks: Gain@B >= +0.02 with CI low > 0;
- every dataset and pool: the shipped routing config (``<dataset>/ship.csv``, the ship stage's choice by the
  one-standard-error rule) has a held-out gain over the best single model and over the per-category lookup with CI
  low >= -0.005, and the runtime routes every held-out query as evaluated (agreement 1.0).

Writes benchmarks/results/static_routing.json and static_routing.md (the
README quotes the table). Run after ``make run``:

    .venv/bin/python benchmarks/bench_static_routing.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).resolve().parent / "results"
FLOOR = -0.005


def _ci(v: float, lo: float, hi: float) -> str:
    return f"{v:+.4f} [{lo:+.4f}, {hi:+.4f}]"


def targets(summary: pd.DataFrame) -> list[dict]:
    out = []
    for r in summary.itertuples(index=False):
        where = f"{r.dataset} {r.pool}"
        ok = r.gain_at_b_ci_low >= FLOOR and r.gain_vs_lookup_ci_low >= FLOOR
        out.append({"target": f"{where}: router's gain over the best single model and over the per-category lookup, CI low >= {FLOOR}",
                    "measured": f"{r.router}: vs best single {_ci(r.gain_at_b, r.gain_at_b_ci_low, r.gain_at_b_ci_high)}; "
                                f"vs lookup {_ci(r.gain_vs_lookup, r.gain_vs_lookup_ci_low, r.gain_vs_lookup_ci_high)}",
                    "reached": bool(ok)})
    for dataset, gain in (("llmrouter", 0.045), ("llmrouter_by_task", 0.02)):
        row = summary[summary["dataset"] == dataset]
        if row.empty:
            continue
        r = row.iloc[0]
        out.append({"target": f"{dataset} {r['pool']}: Gain@B >= +{gain} with CI low > 0",
                    "measured": f"{r['router']}: {_ci(r['gain_at_b'], r['gain_at_b_ci_low'], r['gain_at_b_ci_high'])}",
                    "reached": bool(r["gain_at_b"] >= gain and r["gain_at_b_ci_low"] > 0)})
    return out


def ship_targets(tables: Path, datasets: list[str]) -> list[dict]:
    """The shipped config's targets per dataset and pool, from ``<tables>/<dataset>/ship.csv``."""
    out = []
    for dataset in datasets:
        path = tables / dataset / "ship.csv"
        if not path.is_file():
            continue
        for r in pd.read_csv(path).itertuples(index=False):
            ok = r.gain_vs_best_single_ci_low >= FLOOR and r.gain_vs_lookup_ci_low >= FLOOR and r.runtime_agreement == 1.0
            out.append({"target": f"{dataset} {r.pool}: shipped config's gain over the best single model and over the lookup, CI low "
                                  f">= {FLOOR}; runtime agreement 1.0",
                        "measured": f"{r.label}: vs best single {_ci(r.gain_vs_best_single, r.gain_vs_best_single_ci_low, r.gain_vs_best_single_ci_high)}; "
                                    f"vs lookup {_ci(r.gain_vs_lookup, r.gain_vs_lookup_ci_low, r.gain_vs_lookup_ci_high)}; "
                                    f"agreement {r.runtime_agreement:.4f}",
                        "reached": bool(ok)})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tables", default=str(ROOT / "reports" / "tables"), help="folder holding summary.csv")
    args = ap.parse_args()
    summary = pd.read_csv(Path(args.tables) / "summary.csv")
    result = {"tables": str(Path(args.tables).resolve().relative_to(ROOT)) if Path(args.tables).resolve().is_relative_to(ROOT) else args.tables,
              "targets": targets(summary) + ship_targets(Path(args.tables), list(dict.fromkeys(summary["dataset"]))),
              "verdicts": {f"{r.dataset} {r.pool}": r.verdict for r in summary.itertuples(index=False)}}
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "static_routing.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["| target | measured | reached |", "|---|---|---|"]
    lines += [f"| {t['target']} | {t['measured']} | {'yes' if t['reached'] else '**no**'} |" for t in result["targets"]]
    (OUT / "static_routing.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
