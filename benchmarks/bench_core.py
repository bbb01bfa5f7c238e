"""Core speed benchmark: embedding throughput, selector fit time, selection latency.

Writes benchmarks/results/core.json and core.md. Run:

    MLSEL_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_core.py

Uses the real MMLU-Pro questions (12,032; 11,642 distinct texts) and the
default embedder. The cold embedding pass embeds a sample of 2,000 texts into an empty
temporary cache; the fit timings use every text's embedding from the shared
cache (MLSEL_CACHE_DIR).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from mlsel.data.outcomes import resolve_duplicates, restrict_to_pool, to_matrix
from mlsel.data.readers import read_mmlu_pro
from mlsel.data.records import DataLog
from mlsel.data.sources import MMLU_PRO_MODELS
from mlsel.features import DEFAULT_EMBEDDER, EMBED_BATCH_SIZE, Embedder, build_features
from mlsel.paths import data_dir
from mlsel.selection.registry import make_selector, selector_params

OUT = Path(__file__).resolve().parent / "results"
N_EMBED = 2000  # texts embedded for the cold/warm throughput (a sample keeps the script short)
SIZES = (1000, 4000, 0)  # 0: every distinct query (11,642), the "12k" point


def main() -> None:
    df = read_mmlu_pro(data_dir=data_dir())
    df = resolve_duplicates(df, "mean", DataLog())
    pool = list(MMLU_PRO_MODELS[:4])
    m = to_matrix(restrict_to_pool(df, pool, "drop", DataLog()), pool)
    texts = list(m.queries)
    result: dict = {"machine": f"{os.cpu_count()} cores, {platform.machine()}, no GPU", "date": date.today().isoformat(),
                    "n_texts": len(texts), "embedder": DEFAULT_EMBEDDER}
    sample = list(np.random.default_rng(0).choice(texts, size=N_EMBED, replace=False))
    with tempfile.TemporaryDirectory() as cache:  # the default batch size; bench_embed.py compares batch sizes
        e = Embedder(cache_dir=cache, progress=False)
        e.embed(sample[:16])  # load the model outside the timing
        t0 = time.perf_counter()
        e.embed(sample[16:])
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        Embedder(cache_dir=cache, progress=False).embed(sample)
        warm = time.perf_counter() - t0
    result["embed_cold_queries_per_s"] = round((N_EMBED - 16) / cold, 1)
    result["embed_warm_queries_per_s"] = round(N_EMBED / warm, 1)
    result["embed_sample"] = N_EMBED
    # Features of every text from the shared cache (embeds what is missing), with the default batch size.
    emb = Embedder(progress=False).embed(texts)
    X = build_features(emb, m.categories, 1.0)
    rng = np.random.default_rng(0)
    fits = []
    for n in SIZES:
        n = n or len(X)
        idx = rng.choice(len(X), size=n, replace=False)
        for name in ("knn", "kmeans", "svm"):
            sel = make_selector(name, selector_params())
            t0 = time.perf_counter()
            sel.fit(X[idx], m.quality[idx], models=pool)
            fit_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for i in range(50):
                sel.predict(X[i:i + 1])
            single_ms = (time.perf_counter() - t0) / 50 * 1000
            t0 = time.perf_counter()
            sel.predict(X[:1000])
            batch_ms = (time.perf_counter() - t0) / 1000 * 1000
            fits.append({"selector": name, "n_train": n, "fit_s": round(fit_s, 3), "select_single_ms": round(single_ms, 3),
                         "select_batched_ms_per_query": round(batch_ms, 4)})
    result["selectors"] = fits
    OUT.mkdir(exist_ok=True)
    (OUT / "core.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [f"Measured {result['date']} on {result['machine']}; {len(texts)} MMLU-Pro query texts, {result['embedder']}.", "",
             f"- Embedding {N_EMBED} sampled texts (default batch size, {EMBED_BATCH_SIZE}): "
             f"{result['embed_cold_queries_per_s']} queries/s cold (empty cache, model loaded), {result['embed_warm_queries_per_s']} "
             "queries/s warm (cache hit, model never loaded).", "",
             "| selector | training queries | fit (s) | select one query (ms) | select in a batch of 1000 (ms/query) |", "|---|---|---|---|---|"]
    lines += [f"| {r['selector']} | {r['n_train']} | {r['fit_s']} | {r['select_single_ms']} | {r['select_batched_ms_per_query']} |" for r in fits]
    (OUT / "core.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
