"""Embedding batch size: speed, and whether a vector depends on the cache's history.

On a seeded sample of MMLU-Pro question texts, for batch sizes 1 (the default)
and 16, in fresh caches:

- cold throughput (texts per second, the model loaded outside the timing);
- history: the sample embedded in one call (a cold cache) against the same
  sample embedded after every other text was already cached (a half-warm
  cache). It counts the texts whose vector differs in any bit and the largest
  difference.

Writes benchmarks/results/embed.json and embed.md. Run:

    MLSEL_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_embed.py
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

from mlsel.data.readers import read_mmlu_pro
from mlsel.features import DEFAULT_EMBEDDER, Embedder
from mlsel.paths import data_dir

RESULTS = Path(__file__).resolve().parent / "results"
N = 1000


def main() -> None:
    texts = sorted(set(read_mmlu_pro(data_dir=data_dir())["query"]))
    sample = [str(t) for t in np.random.default_rng(0).choice(texts, size=N, replace=False)]
    out: dict = {"machine": f"{os.cpu_count()} cores, {platform.machine()}, no GPU", "date": date.today().isoformat(),
                 "embedder": DEFAULT_EMBEDDER, "n_texts": N, "batch_sizes": {}}
    for bs in (1, 16):
        with tempfile.TemporaryDirectory() as tmp:
            cold_e = Embedder(cache_dir=Path(tmp) / "cold", batch_size=bs, progress=False)
            cold_e._load()
            t0 = time.perf_counter()
            cold = cold_e.embed(sample)
            seconds = time.perf_counter() - t0
            Embedder(cache_dir=Path(tmp) / "warm", batch_size=bs, progress=False).embed(sample[::2])
            warm = Embedder(cache_dir=Path(tmp) / "warm", batch_size=bs, progress=False).embed(sample)
        diff = np.abs(cold - warm).max(axis=1)
        out["batch_sizes"][bs] = {"cold_texts_per_s": round(N / seconds, 1), "texts_differing_cold_vs_half_warm": int((diff > 0).sum()),
                                  "max_abs_difference": float(diff.max())}
    (RESULTS / "embed.json").write_text(json.dumps(out, indent=1) + "\n")
    b1, b16 = out["batch_sizes"][1], out["batch_sizes"][16]
    lines = [f"# Embedding batch size ({out['date']}, {out['machine']}, {DEFAULT_EMBEDDER})", "",
             f"{N} sampled MMLU-Pro question texts, fresh caches. History: the sample embedded into a cold cache against the same "
             "sample embedded after every other text was cached.", "",
             "| batch size | cold texts/s | texts whose vector differs, cold vs half-warm cache | largest difference |", "|---|---|---|---|"]
    lines += [f"| {bs} | {r['cold_texts_per_s']} | {r['texts_differing_cold_vs_half_warm']} of {N} | {r['max_abs_difference']:.2g} |"
              for bs, r in out["batch_sizes"].items()]
    lines += ["", f"Batches of 16 are {b16['cold_texts_per_s'] / b1['cold_texts_per_s']:.2f}x faster, but a vector then depends on "
              "its batch mates, so a run's numbers depend on what the cache held; with one text per pass they do not."]
    (RESULTS / "embed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
