"""Tuning benchmark: time the default grid on the full MMLU-Pro data and check the targets.

Writes benchmarks/results/tune.json and tune.md. Run:

    MLSEL_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_tune.py [--reuse]

Prepares all MMLU-Pro queries (max_queries 0) into its own run folder
``runs/bench-tune`` (``--reuse`` skips prepare/train when that folder already
holds them), fits the default selectors (train stage), then times
:func:`mlsel.tuning.tune_selectors` with ``tune_grid: default`` and both pools.

Every choice the targets rely on is made on the training split's CV, never on
the test split:

(a) pool ``small4``: the selector with the highest CV utility; its test
    uplift over the best single model (chosen on train) with the 95% CI, and
    the share of the random -> oracle gap it closes.
(b) pool ``all5``: the router whose matched operating point (cheapest cost
    weight keeping >= 98% of the best single model's CV quality) has the
    lowest CV cost; its test quality and cost proxy relative to Llama-3.1-70B.
    AIQ: the router with the highest CV AIQ (computed from the CV sweep and
    the single models' training means); its test AIQ minus the zero router's,
    with the 95% CI.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from mlsel import stages
from mlsel.data.outcomes import load_prepared, pool_matrix, split_masks
from mlsel.manifest import read_manifest
from mlsel.metrics.frontier import aiq
from mlsel.params import apply_overrides, load_params, stage_params
from mlsel.paths import run_paths
from mlsel.selection.registry import label
from mlsel.tuning import tune_selectors

OUT = Path(__file__).resolve().parent / "results"
RUN_DIR = "runs/bench-tune"
BIG = "Meta-Llama-3.1-70B-Instruct"


def _cv_aiq(run_dir: str, pool: str, models: list[str]) -> dict[str, float]:
    """AIQ of each router's CV sweep, over the single models' training-mean cost range (training data only)."""
    queries, outcomes = load_prepared(run_dir)
    m = pool_matrix(queries, outcomes, models)
    train, _ = split_masks(queries, m)
    tr = m.subset(train)
    sq, sc = tr.quality.mean(axis=0), np.nanmean(tr.response_chars, axis=0)
    sweep = pd.read_csv(run_paths(run_dir)["tune"] / "cv_frontier.csv")
    out = {"Zero router": aiq(sc, sq, sc.min(), sc.max())}
    for router, g in sweep[sweep["pool"] == pool].groupby("router"):
        out[router] = aiq(g["cv_avg_response_chars"], g["cv_quality_mean"], sc.min(), sc.max())
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reuse", action="store_true", help="reuse the prepared and trained run folder")
    args = ap.parse_args()
    params = apply_overrides(load_params(), {"run_dir": RUN_DIR, "max_queries": 0, "tune_grid": "default"})
    run_dir = params.base.run_dir
    if not (args.reuse and (run_paths(run_dir)["data"] / "queries.csv").is_file()):
        stages.prepare_data(stage_params(params, "prepare"))
        stages.train_selectors(stage_params(params, "train"))
    tp = stage_params(params, "tune")
    load_before = os.getloadavg()
    t0 = time.perf_counter()
    tuned = tune_selectors(tp)
    seconds = time.perf_counter() - t0
    load_after = os.getloadavg()
    paths = run_paths(run_dir)
    cv = pd.read_csv(paths["tune"] / "cv_results.csv")
    doc = yaml.safe_load((paths["tune"] / "tuned_params.yaml").read_text())
    aiq = pd.read_csv(paths["tables"] / "aiq.csv")
    manifest = read_manifest(run_dir)["stages"]["tune"]

    # (a) small4: the selector chosen on CV.
    ch = cv[(cv["pool"] == "small4") & cv["chosen"]].sort_values("cv_utility_mean", ascending=False)
    pick_a = ch.iloc[0]["selector"]
    ra = tuned[(tuned["pool"] == "small4") & (tuned["strategy"] == label(pick_a, tuned=True))].iloc[0]
    a = {
        "selector_chosen_on_cv": pick_a, "cv_quality": float(ch.iloc[0]["cv_quality_mean"]),
        "test_quality": float(ra["avg_quality"]),
        "best_single_test_quality": float(tuned[(tuned["pool"] == "small4") & (tuned["kind"] == "best_single")]["avg_quality"].iloc[0]),
        "uplift_vs_best_single": float(ra["uplift_vs_best_single"]),
        "uplift_ci": [float(ra["uplift_vs_best_single_ci_low"]), float(ra["uplift_vs_best_single_ci_high"])],
        "gap_closed_pct": float(ra["gap_closed_pct"]),
        "gap_closed_pct_ci": [float(ra["gap_closed_pct_ci_low"]), float(ra["gap_closed_pct_ci_high"])],
    }
    a["target"] = ">= +0.02 over best single with CI low > 0, and >= 40% of the random->oracle gap closed"
    a["reached"] = bool(a["uplift_vs_best_single"] >= 0.02 and a["uplift_ci"][0] > 0 and a["gap_closed_pct"] >= 40)

    # (b) all5: matched operating point chosen on CV; AIQ of the router with the best CV AIQ.
    t5 = tuned[tuned["pool"] == "all5"]
    big = t5[t5["strategy"] == f"Always {BIG}"].iloc[0]
    ops = doc["pools"]["all5"].get("operating_points", {})
    b: dict = {"big_model": BIG, "big_test_quality": float(big["avg_quality"]), "big_test_avg_response_chars": float(big["avg_response_chars"])}
    if ops:
        pick_b = min(ops, key=lambda r: ops[r]["cv_avg_response_chars"])
        op = ops[pick_b]
        row = t5[t5["strategy"] == f"{pick_b.upper()} (tuned, matched lambda={op['cost_lambda']:g})"].iloc[0]
        b.update({
            "router_chosen_on_cv": pick_b, "cost_lambda": op["cost_lambda"],
            "test_quality": float(row["avg_quality"]), "test_avg_response_chars": float(row["avg_response_chars"]),
            "quality_vs_big_pct": 100 * float(row["avg_quality"]) / float(big["avg_quality"]),
            "cost_proxy_vs_big_pct": 100 * float(row["avg_response_chars"]) / float(big["avg_response_chars"]),
            "quality_minus_best_single": float(row["uplift_vs_best_single"]),
            "quality_minus_best_single_ci": [float(row["uplift_vs_best_single_ci_low"]), float(row["uplift_vs_best_single_ci_high"])],
        })
    cv_aiq = _cv_aiq(run_dir, "all5", params.base.pools["all5"])
    routers_only = {k: v for k, v in cv_aiq.items() if k != "Zero router"}
    pick_aiq = max(routers_only, key=routers_only.get)
    ar = aiq[(aiq["pool"] == "all5") & (aiq["router"] == pick_aiq)].iloc[0]
    zr = aiq[(aiq["pool"] == "all5") & (aiq["router"] == "Zero router")].iloc[0]
    b.update({
        "aiq_router_chosen_on_cv": pick_aiq, "cv_aiq": {k: round(v, 6) for k, v in cv_aiq.items()},
        "aiq": float(ar["aiq"]), "aiq_ci": [float(ar["ci_low"]), float(ar["ci_high"])], "zero_router_aiq": float(zr["aiq"]),
        "aiq_minus_zero_router": float(ar["aiq_minus_zero_router"]),
        "aiq_minus_zero_router_ci": [float(ar["aiq_minus_zero_router_ci_low"]), float(ar["aiq_minus_zero_router_ci_high"])],
    })
    b["target"] = ">= 98% of the 70B's quality at <= 75% of its cost proxy; AIQ above the zero router with CI above 0"
    b["reached_quality_cost"] = bool(ops) and b.get("quality_vs_big_pct", 0) >= 98 and b.get("cost_proxy_vs_big_pct", 1e9) <= 75
    b["reached_aiq"] = b["aiq_minus_zero_router_ci"][0] > 0

    result = {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, no GPU", "date": date.today().isoformat(),
        "load_average_1min_before_after": [round(load_before[0], 2), round(load_after[0], 2)],
        "run_dir": RUN_DIR, "grid": "default", "tune_n_folds": tp.tune_n_folds, "tune_n_seeds": tp.tune_n_seeds,
        "tune_n_jobs": tp.tune_n_jobs, "n_cv_fits": manifest["n_cv_fits"], "tune_seconds": round(seconds, 1),
        "cv_seconds": manifest["cv_seconds"], "cv_cpu_seconds_summed_over_tasks": manifest["cv_cpu_seconds"], "n_test_queries": int(tuned["n_queries"].iloc[0]),
        "chosen": manifest["chosen"], "target_a_small4": a, "target_b_all5": b,
        "tuned_results": tuned[["pool", "strategy", "avg_quality", "avg_quality_ci_low", "avg_quality_ci_high", "avg_response_chars",
                                "uplift_vs_best_single", "uplift_vs_best_single_ci_low", "uplift_vs_best_single_ci_high",
                                "gap_closed_pct"]].round(4).to_dict("records"),
        "aiq": aiq.round(4).to_dict("records"),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "tune.json").write_text(json.dumps(result, indent=2, default=float) + "\n")

    def yes(flag: bool) -> str:
        return "**reached**" if flag else "**not reached**"

    lines = [
        f"Measured {result['date']} on {result['machine']} (1-min load average {result['load_average_1min_before_after'][0]} before, "
        f"{result['load_average_1min_before_after'][1]} after; the machine was shared). Full MMLU-Pro mirror, both pools, "
        f"{result['n_test_queries']} held-out test queries; MiniLM embeddings (cached).",
        "",
        f"- `tune_selectors`, grid `default`, {tp.tune_n_folds}-fold x {tp.tune_n_seeds} seed CV inside the training split, "
        f"n_jobs={tp.tune_n_jobs}: **{result['tune_seconds']} s** in total ({result['cv_seconds']} s CV, {result['n_cv_fits']} CV fits; "
        f"the CV tasks used {result['cv_cpu_seconds_summed_over_tasks']} CPU-seconds in total, i.e. about "
        f"{result['cv_cpu_seconds_summed_over_tasks'] / max(1, tp.tune_n_jobs):.0f} s of wall time on {tp.tune_n_jobs} otherwise idle cores).",
        "",
        "### (a) `small4`: beat the best single model",
        "",
        f"Selector chosen on CV: `{a['selector_chosen_on_cv']}`. Test quality {a['test_quality']:.4f} vs best single "
        f"{a['best_single_test_quality']:.4f}: **{a['uplift_vs_best_single']:+.4f}** [95% CI {a['uplift_ci'][0]:+.4f}, {a['uplift_ci'][1]:+.4f}]; "
        f"random->oracle gap closed **{a['gap_closed_pct']:.1f}%** [{a['gap_closed_pct_ci'][0]:.1f}, {a['gap_closed_pct_ci'][1]:.1f}]. "
        f"Target ({a['target']}): {yes(a['reached'])}.",
        "",
        "### (b) `all5`: quality and cost against Llama-3.1-70B",
        "",
    ]
    if ops:
        lines.append(
            f"Operating point chosen on CV: `{b['router_chosen_on_cv']}` at cost_lambda={b['cost_lambda']:g}: quality {b['test_quality']:.4f} = "
            f"**{b['quality_vs_big_pct']:.1f}%** of the 70B's {b['big_test_quality']:.4f} (difference {b['quality_minus_best_single']:+.4f} "
            f"[{b['quality_minus_best_single_ci'][0]:+.4f}, {b['quality_minus_best_single_ci'][1]:+.4f}]), at **{b['cost_proxy_vs_big_pct']:.1f}%** "
            f"of its mean response length ({b['test_avg_response_chars']:.0f} vs {b['big_test_avg_response_chars']:.0f} characters; a proxy, not a time). "
            f"Target: {yes(b['reached_quality_cost'])}.")
    else:
        lines.append("No router kept >= 98% of the best single model's CV quality at any cost weight: no operating point.")
    lines += [
        "",
        f"AIQ (router chosen by CV AIQ: `{b['aiq_router_chosen_on_cv']}`): {b['aiq']:.4f} [{b['aiq_ci'][0]:.4f}, {b['aiq_ci'][1]:.4f}] vs zero router "
        f"{b['zero_router_aiq']:.4f}: difference **{b['aiq_minus_zero_router']:+.4f}** [{b['aiq_minus_zero_router_ci'][0]:+.4f}, "
        f"{b['aiq_minus_zero_router_ci'][1]:+.4f}]. Target: {yes(b['reached_aiq'])}.",
        "",
        "### Tuned results (test split)",
        "",
        "| pool | strategy | quality [95% CI] | avg response chars | vs best single [95% CI] | gap closed |",
        "|---|---|---|---|---|---|",
    ]
    for r in result["tuned_results"]:
        lines.append(f"| {r['pool']} | {r['strategy']} | {r['avg_quality']:.4f} [{r['avg_quality_ci_low']:.4f}, {r['avg_quality_ci_high']:.4f}] | "
                     f"{r['avg_response_chars']:.0f} | {r['uplift_vs_best_single']:+.4f} [{r['uplift_vs_best_single_ci_low']:+.4f}, "
                     f"{r['uplift_vs_best_single_ci_high']:+.4f}] | {r['gap_closed_pct']:.1f}% |")
    lines += ["", "### AIQ (test split, cost = response characters)", "", "| pool | router | AIQ [95% CI] | minus zero router [95% CI] | cost to match best single |", "|---|---|---|---|---|"]
    for r in result["aiq"]:
        lines.append(f"| {r['pool']} | {r['router']} | {r['aiq']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}] | {r['aiq_minus_zero_router']:+.4f} "
                     f"[{r['aiq_minus_zero_router_ci_low']:+.4f}, {r['aiq_minus_zero_router_ci_high']:+.4f}] | {r['cost_to_match_best_single']:.0f} |")
    (OUT / "tune.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
