"""Shipped router files: agreement, size and selection speed of KNN, KMeans and SVM.

Writes benchmarks/results/export.json and export.md. Run after ``make run``
(it reads the default run's fitted selectors):

    MLSEL_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_export.py

1. Agreement. Every pool of every dataset in the run folder is exported
   (into a temporary folder) and the router runtime's rules on the written
   files are applied to the pool's held-out queries: the share where they
   pick the Python selector's model, and both ones' mean quality. Target:
   100% for every file.
2. Stored precision (MMLU-Pro small4, the default export): the KNN file's
   size and the selector's held-out quality at ``store_decimals`` 0 (full
   float32), 4, 3, 2, and the share of held-out choices equal to the
   unrounded selector's. Target: the KNN file <= 100 MB at 100% agreement.
3. Speed. The three selectors fitted with their default parameters on every
   MMLU-Pro query (11,642 texts, small4), each timed in the same run as the
   bare numpy float32 products that bound it: one query against one
   matrix-vector product over the 11,642 training rows (target <= 1.5x),
   a batch of 1000 queries against one (1000 x d) @ (d x 11,642) product
   (target <= 2x). Medians over 200 different queries (3 passes) and 3
   batches (3 passes), each selector call interleaved with a bound call so
   both see the same machine state. scikit-learn's cosine NearestNeighbors (the KNN's former
   search) is timed for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from mlsel.data.outcomes import load_prepared, pool_matrix, resolve_duplicates, restrict_to_pool, split_masks, to_matrix
from mlsel.data.readers import read_mmlu_pro
from mlsel.data.records import DataLog
from mlsel.data.sources import MMLU_PRO_MODELS
from mlsel.deploy.artifacts import knn_artifact, runtime_onehot_order, to_runtime_layout
from mlsel.deploy.runtime import export_router_models, runtime_knn_select
from mlsel.features import DEFAULT_EMBEDDER, Embedder, EmbedSettings, build_features, features_for
from mlsel.paths import data_dir, resolve_path
from mlsel.selection.classic import KNNSelector
from mlsel.selection.registry import load_selector, make_selector, selector_params

OUT = Path(__file__).resolve().parent / "results"
DECIMALS = (0, 4, 3, 2)
SIZE_TARGET_MB = 100.0
SINGLE_TARGET = 1.5
BATCH_TARGET = 2.0


def agreement_rows(run_dir: Path) -> list[dict]:
    """Export every pool of every dataset folder in ``run_dir`` and measure its files on held-out queries."""
    rows = []
    for ds in sorted(p for p in run_dir.iterdir() if (p / "models").is_dir()):
        for pool_dir in sorted(p for p in (ds / "models").iterdir() if (p / "knn.manifest.json").is_file()):
            with tempfile.TemporaryDirectory() as tmp:
                t0 = time.perf_counter()
                m = export_router_models(str(ds), pool_dir.name, tmp)
                took = time.perf_counter() - t0
            for alg, a in m["agreement"].items():
                rows.append({"dataset": ds.name, "pool": pool_dir.name, "algorithm": alg, "n_test": a["n_queries"], "n_agree": a["n_agree"],
                             "agreement": a["rate"], "n_boundary_ties": a.get("n_boundary_ties"), "selector_quality": round(a["selector_quality"], 6),
                             "runtime_quality": round(a["runtime_quality"], 6), "size_mb": round(m["sizes"][f"{alg}_model.json"] / 1e6, 1),
                             "export_s": round(took, 1)})
            print(f"exported {ds.name}/{pool_dir.name} in {took:.0f} s")
    return rows


def precision_rows(run_dir: Path) -> list[dict]:
    """KNN of MMLU-Pro small4 at each ``store_decimals``: file size, held-out quality, choices vs unrounded, agreement."""
    ds = run_dir / "mmlu_pro"
    base_sel, sman = load_selector(ds / "models" / "small4", "knn")
    queries, outcomes = load_prepared(str(ds))
    matrix = pool_matrix(queries, outcomes, sman["models"])
    train, test = split_masks(queries, matrix)
    Xtr = features_for(matrix.subset(train), sman["embedder"], sman["onehot_weight"], EmbedSettings(16, "cpu"))
    held = matrix.subset(test)
    Xte = features_for(held, sman["embedder"], sman["onehot_weight"], EmbedSettings(16, "cpu"))
    tr = matrix.subset(train)
    rows, ref = [], None
    order = runtime_onehot_order()
    for d in DECIMALS:
        sel = KNNSelector(k=base_sel.k, quality_weight=base_sel.quality_weight, store_decimals=d).fit(
            Xtr, tr.quality, None if tr.latency_s is None else tr.latency_s, models=sman["models"])
        ours = sel.predict(Xte)
        ref = ours if ref is None else ref
        text = json.dumps(knn_artifact(sel, onehot_order=order), separators=(",", ":"))  # as the export writes it
        art = json.loads(text)
        size = len(text.encode())
        theirs = runtime_knn_select(art, to_runtime_layout(Xte, order))
        cols = np.asarray([sman["models"].index(c) for c in ours])
        rows.append({"store_decimals": d, "knn_file_mb": round(size / 1e6, 1), "agreement": float((ours == theirs).mean()),
                     "same_choice_as_unrounded": float((ours == ref).mean()),
                     "held_out_quality": round(float(np.asarray(held.quality)[np.arange(len(cols)), cols].mean()), 6)})
        print(f"store_decimals={d}: {rows[-1]}")
    return rows


def _interleaved_ms(fns: dict, args: list, repeats: int) -> dict:
    """Median time (ms) of each function over ``args``, calls interleaved (f1(a0), f2(a0), f1(a1), ...) so both see the same machine state."""
    for fn in fns.values():
        fn(args[0])
    times: dict = {name: [] for name in fns}
    for _ in range(repeats):
        for a in args:
            for name, fn in fns.items():
                t0 = time.perf_counter()
                fn(a)
                times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(v) * 1000) for name, v in times.items()}


def speed_rows() -> tuple[dict, list[dict]]:
    """Selection time of each selector against the bare float32 products over the same training rows."""
    df = resolve_duplicates(read_mmlu_pro(data_dir=data_dir()), "mean", DataLog())
    pool = list(MMLU_PRO_MODELS[:4])
    m = to_matrix(restrict_to_pool(df, pool, "drop", DataLog()), pool)
    X = build_features(Embedder(batch_size=16, progress=False).embed(list(m.queries)), m.categories, 1.0)
    R = np.ascontiguousarray(X, dtype=np.float32)
    singles = [np.ascontiguousarray(R[i:i + 1]) for i in range(0, 4000, 20)]  # 200 different queries
    batches = [np.ascontiguousarray(R[i:i + 1000]) for i in (0, 3000, 6000)]
    info = {"n_train": len(R), "dim": int(R.shape[1]), "single_queries": len(singles), "batches": f"{len(batches)} x 1000, 3 repeats"}
    rows = []
    sels: dict = {name: make_selector(name, selector_params()) for name in ("knn", "kmeans", "svm")}
    for name, sel in sels.items():
        t0 = time.perf_counter()
        sel.fit(R, m.quality, models=pool)
        fit_s = time.perf_counter() - t0
        one = _interleaved_ms({"bound": lambda x: R @ x[0], "sel": lambda x: sel.predict(x)}, singles, 3)
        many = _interleaved_ms({"bound": lambda b: b @ R.T, "sel": lambda b: sel.predict(b)}, batches, 3)
        n_rows = len(getattr(sel, "aug_", getattr(sel, "sv_", getattr(sel, "centroids_", []))))
        rows.append({"selector": name, "fit_s": round(fit_s, 2), "stored_rows": n_rows, "single_ms": round(one["sel"], 3),
                     "matvec_ms": round(one["bound"], 3), "single_ratio": round(one["sel"] / one["bound"], 2),
                     "batch1000_ms": round(many["sel"], 1), "matmul_ms": round(many["bound"], 1), "batch_ratio": round(many["sel"] / many["bound"], 2)})
        print(rows[-1])
    # The former search, for comparison: scikit-learn's cosine NearestNeighbors (brute) with k=5.
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=5, metric="cosine").fit(R)
    one = _interleaved_ms({"bound": lambda x: R @ x[0], "sel": lambda x: nn.kneighbors(x)}, singles, 1)
    many = _interleaved_ms({"bound": lambda b: b @ R.T, "sel": lambda b: nn.kneighbors(b)}, batches, 1)
    rows.append({"selector": "sklearn NearestNeighbors (cosine, k=5; former KNN search)", "fit_s": None, "stored_rows": len(R),
                 "single_ms": round(one["sel"], 3), "matvec_ms": round(one["bound"], 3), "single_ratio": round(one["sel"] / one["bound"], 2),
                 "batch1000_ms": round(many["sel"], 1), "matmul_ms": round(many["bound"], 1), "batch_ratio": round(many["sel"] / many["bound"], 2)})
    print(rows[-1])
    return info, rows


def _table(rows: list[dict]) -> list[str]:
    cols = list(rows[0])
    return ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)] + [
        "| " + " | ".join("" if r[c] is None else str(r[c]) for c in cols) + " |" for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/default", help="a finished run folder with one folder per dataset")
    args = ap.parse_args()
    run_dir = resolve_path(args.run_dir)
    result: dict = {"machine": f"{os.cpu_count()} cores, {platform.machine()}, no GPU", "date": date.today().isoformat(),
                    "run_dir": args.run_dir, "embedder": DEFAULT_EMBEDDER}
    result["agreement"] = agreement_rows(run_dir)
    result["precision"] = precision_rows(run_dir)
    result["speed_info"], result["speed"] = speed_rows()
    small4 = next(r for r in result["agreement"] if r["dataset"] == "mmlu_pro" and r["pool"] == "small4" and r["algorithm"] == "knn")
    sel_rows = [r for r in result["speed"] if r["fit_s"] is not None]
    result["targets"] = {
        "agreement_100pct_every_file": all(r["agreement"] == 1.0 for r in result["agreement"]),
        "knn_small4_le_100mb": small4["size_mb"] <= SIZE_TARGET_MB,
        "single_within_1_5x": all(r["single_ratio"] <= SINGLE_TARGET for r in sel_rows),
        "batch_within_2x": all(r["batch_ratio"] <= BATCH_TARGET for r in sel_rows),
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "export.json").write_text(json.dumps(result, indent=2) + "\n")
    t = result["targets"]
    yes = {True: "reached", False: "**not reached**"}
    lines = [f"Measured {result['date']} on {result['machine']} (`benchmarks/bench_export.py`, run folder `{args.run_dir}`).", "",
             "## Agreement of the exported files with the evaluated selectors (held-out queries)", "",
             f"Target: 100% for every file: {yes[t['agreement_100pct_every_file']]}.", ""]
    lines += _table(result["agreement"])
    lines += ["", "## Stored precision: KNN of MMLU-Pro small4", "",
              f"Target: KNN file <= {SIZE_TARGET_MB:g} MB at 100% agreement: {yes[t['knn_small4_le_100mb']]} "
              f"({small4['size_mb']} MB at the default store_decimals).", ""]
    lines += _table(result["precision"])
    lines += ["", f"## Selection speed ({result['speed_info']['n_train']} training queries x {result['speed_info']['dim']} dims, small4)", "",
              f"Targets: one query <= {SINGLE_TARGET}x one float32 matrix-vector product over the training rows: "
              f"{yes[t['single_within_1_5x']]}; a batch of 1000 <= {BATCH_TARGET}x one float32 matrix product: {yes[t['batch_within_2x']]}.", ""]
    lines += _table(result["speed"])
    (OUT / "export.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
