"""int8 embeddings against routing quality: may ``embed_backend: onnx_int8`` become the default?

One cold default run with ``-p embed_backend=onnx_int8`` (every dataset, its own run folder) against a run of
the default (``onnx``, fp32) on the same code: per summary row, the router chosen on CV and its best CV
utility, the verdict, the held-out Gain@B with its interval, and the sign of every interval against 0 in the
summary. int8 may become the default only if no verdict, chosen router or interval's sign changes.

Writes benchmarks/results/embed_int8.json and embed_int8.md. Run (one cold default run, ~10 min on 2 cores):

    MLSEL_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_embed_int8.py [--fp32-run runs/default]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from datetime import date
from pathlib import Path

import pandas as pd

from mlsel import runner
from mlsel.params import load_params

OUT = Path(__file__).resolve().parent / "results"
RUN_DIR = "runs/bench-int8"


def cv_best(run: Path, dataset: str) -> pd.DataFrame:
    """Per pool, each router's mean CV utility at its chosen setting (cv_results.csv of the tune stage)."""
    cv = pd.read_csv(run / dataset / "tune" / "cv_results.csv")
    return cv[cv["chosen"].astype(bool)][["pool", "selector", "cv_utility_mean"]]


def rows(run: Path) -> pd.DataFrame:
    out = []
    for ds in load_params().base.datasets:
        s = pd.read_csv(run / ds / "tables" / "summary.csv")
        cv = cv_best(run, ds)
        for r in s.to_dict("records"):
            chosen = r["router"].split(" (")[0].lower()
            hit = cv[(cv["pool"] == r["pool"]) & (cv["selector"] == chosen)]["cv_utility_mean"]
            signs = {c: (r[c] > 0) - (r[c] < 0) for c in s.columns if c.endswith(("_ci_low", "_ci_high")) and pd.notna(r[c])}
            out.append({"dataset": ds, "pool": r["pool"], "router": r["router"], "cv_utility": float(hit.iloc[0]) if len(hit) else None,
                        "verdict": r["verdict"], "gain_at_b": r["gain_at_b"], "gain_at_b_ci_low": r["gain_at_b_ci_low"],
                        "gain_at_b_ci_high": r["gain_at_b_ci_high"], "matched_router": r.get("matched_router"),
                        "aiq_router": r.get("aiq_router"), "signs": signs})
    return pd.DataFrame(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fp32-run", default=load_params().base.run_dir, help="a finished default (onnx fp32) run folder")
    ap.add_argument("--reuse", action="store_true", help="compare an int8 run already in runs/bench-int8")
    a = ap.parse_args()
    t0 = time.perf_counter()
    if not a.reuse:
        runner.run(overrides={"run_dir": RUN_DIR, "report_dir": f"{RUN_DIR}/report", "embed_backend": "onnx_int8"})
    seconds = round(time.perf_counter() - t0, 1)
    fp32, int8 = rows(Path(a.fp32_run)), rows(Path(RUN_DIR))
    changes = []
    for (_, f), (_, q) in zip(fp32.iterrows(), int8.iterrows()):
        where = f"{f['dataset']}/{f['pool']}"
        for col in ("router", "verdict", "matched_router", "aiq_router"):
            if f[col] != q[col]:
                changes.append(f"{where}: {col} {f[col]} -> {q[col]}")
        for col, sign in f["signs"].items():
            if q["signs"].get(col) != sign:
                changes.append(f"{where}: sign of {col} {sign:+d} -> {q['signs'].get(col)}")
    out = {"date": date.today().isoformat(), "machine": f"{os.cpu_count()} cores, {platform.machine()}, no GPU",
           "int8_run_seconds": seconds if not a.reuse else None, "changes": changes,
           "fp32": fp32.drop(columns="signs").to_dict("records"), "int8": int8.drop(columns="signs").to_dict("records")}
    (OUT / "embed_int8.json").write_text(json.dumps(out, indent=1, default=str) + "\n")
    lines = [f"# int8 embeddings against routing quality ({out['date']}, {out['machine']})", "",
             "Every default row: the router chosen on CV (its best CV utility), the verdict and the held-out Gain@B [95% CI], "
             "with the fp32 ONNX embeddings (the default) and with int8 ones (`embed_backend: onnx_int8`).", "",
             "| dataset / pool | router (CV utility), fp32 | router (CV utility), int8 | Gain@B fp32 | Gain@B int8 | verdict fp32 | verdict int8 |",
             "|---|---|---|---|---|---|---|"]
    for (_, f), (_, q) in zip(fp32.iterrows(), int8.iterrows()):
        def gain(r):
            return f"{r['gain_at_b']:+.4f} [{r['gain_at_b_ci_low']:+.4f}, {r['gain_at_b_ci_high']:+.4f}]"

        def cvu(r):
            return f"{r['router']} ({r['cv_utility']:.4f})" if r["cv_utility"] is not None else r["router"]
        lines.append(f"| {f['dataset']} / {f['pool']} | {cvu(f)} | {cvu(q)} | {gain(f)} | {gain(q)} | {f['verdict']} | {q['verdict']} |")
    lines += ["", f"Changes of a chosen router, verdict or interval's sign against 0: {len(changes)}."]
    lines += [f"- {c}" for c in changes]
    lines += ["", "int8 " + ("may become the default: nothing changes." if not changes else
                             "stays an opt-in: the conclusions above change with it.")]
    (OUT / "embed_int8.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
