"""The suite's embedding path per backend: speed, agreement with torch, and whether a vector depends on the cache's history.

On a seeded sample of MMLU-Pro question texts, through :class:`mlsel.features.Embedder` (the path a run takes:
hashing, cache reads and writes, the progress bar off), for the backends ``torch`` (one text per pass, the
default before ONNX), ``onnx`` (the default), ``onnx_int8`` and ``torch`` in batches of 16:

- cold throughput (texts per second into an empty cache, the model and its graph loaded outside the timing),
  rounds interleaved across backends and the median taken, so a busy machine slows every backend alike;
- the bare torch call (``SentenceTransformer.encode``, one text per pass, no cache) in the same rounds,
  to show what the suite adds per text;
- agreement with torch's vectors: the smallest cosine and the largest absolute difference;
- history: the sample embedded into a cold cache against the same sample embedded after every other text
  was cached; the texts whose vector differs in any bit;
- the FLOP-based limit: the model's multiply-adds for the sample's real token counts, over the float32
  matrix product rate measured on this machine in the same run (numpy, 2048 x 2048): the texts per
  second a perfect fp32 implementation could reach here.

Writes benchmarks/results/embed.json and embed.md. Run:

    MLSEL_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_embed.py
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np

from mlsel.data.readers import read_mmlu_pro
from mlsel.features import DEFAULT_EMBEDDER, Embedder
from mlsel.manifest import compute_platform
from mlsel.paths import data_dir

RESULTS = Path(__file__).resolve().parent / "results"
N = 300
ROUNDS = 3
PATHS = (("torch", 1), ("onnx", 1), ("onnx_int8", 1), ("torch", 16))


def _name(backend: str, bs: int) -> str:
    return backend if bs == 1 else f"{backend}, batches of {bs}"


def matmul_gflops() -> float:
    """float32 matrix product rate of this machine (numpy's BLAS, all its threads), best of 5."""
    a = np.random.default_rng(0).standard_normal((2048, 2048), dtype=np.float32)
    best = 0.0
    for _ in range(5):
        t0 = time.perf_counter()
        a @ a
        best = max(best, 2 * 2048 ** 3 / (time.perf_counter() - t0) / 1e9)
    return best


def model_flops(model, texts: list[str]) -> float:
    """Multiply-adds x 2 of the transformer for these texts, one text per pass (dense layers plus attention)."""
    cfg = model[0].auto_model.config
    d, ff, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    total = 0.0
    for t in texts:
        n = int(model.preprocess([t])["attention_mask"].sum())
        total += 2 * layers * (n * (4 * d * d + 2 * d * ff) + 2 * n * n * d)
    return total


def main() -> None:
    texts = sorted(set(read_mmlu_pro(data_dir=data_dir())["query"]))
    sample = [str(t) for t in np.random.default_rng(0).choice(texts, size=N, replace=False)]
    rates: dict[str, list[float]] = {_name(b, bs): [] for b, bs in PATHS}
    rates["bare torch encode"] = []
    vectors: dict[str, np.ndarray] = {}
    with tempfile.TemporaryDirectory() as tmp:
        loaded = {}
        for b, bs in PATHS:  # load the model and export its graphs outside the timing
            e = Embedder(cache_dir=Path(tmp) / "graphs", batch_size=bs, backend=b, progress=False)
            e.embed(sample[:1])
            loaded[(b, bs)] = e
        st = loaded[("torch", 1)]._load()
        for r in range(ROUNDS):
            for b, bs in PATHS:
                e = Embedder(cache_dir=Path(tmp) / "graphs", batch_size=bs, backend=b, progress=False)
                e.cache_path = Path(tmp) / f"round{r}" / _name(b, bs)
                e._model, e._encoder, e.info = loaded[(b, bs)]._model, loaded[(b, bs)]._encoder, loaded[(b, bs)].info
                t0 = time.perf_counter()
                vectors[_name(b, bs)] = e.embed(sample)
                rates[_name(b, bs)].append(N / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            for t in sample:
                st.encode([t], batch_size=1, show_progress_bar=False, convert_to_numpy=True, normalize_embeddings=True)
            rates["bare torch encode"].append(N / (time.perf_counter() - t0))
        history = {}
        for b, bs in PATHS:
            kw = {"batch_size": bs, "backend": b, "progress": False, "cache_dir": Path(tmp) / f"hist-{b}-{bs}"}
            Embedder(**kw).embed(sample[::2])
            warm = Embedder(**kw).embed(sample)
            history[_name(b, bs)] = int((np.abs(vectors[_name(b, bs)] - warm).max(axis=1) > 0).sum())
        flops = model_flops(st, sample)
    gflops = matmul_gflops()
    ref = vectors["torch"]
    out: dict = {"machine": f"{os.cpu_count()} cores, {platform.machine()}, no GPU", "cpu": compute_platform()["cpu"], "cpu_flags": compute_platform()["cpu_flags"], "date": date.today().isoformat(),
                 "embedder": DEFAULT_EMBEDDER, "n_texts": N, "rounds": ROUNDS, "load_average_1min": round(os.getloadavg()[0], 2),
                 "matmul_gflops": round(gflops, 1), "flop_limit_texts_per_s": round(gflops * 1e9 / (flops / N), 1),
                 "mean_tokens": None, "paths": {}}
    out["mean_tokens"] = round(float(np.mean([len(st.tokenizer(t, truncation=True, max_length=st.max_seq_length)["input_ids"])
                                              for t in sample])), 1)
    torch_rate = statistics.median(rates["torch"])
    for name, rs in rates.items():
        row = {"texts_per_s": round(statistics.median(rs), 1), "vs_torch": round(statistics.median(rs) / torch_rate, 2),
               "rounds": [round(x, 1) for x in rs]}
        if name in vectors:
            v = vectors[name]
            row |= {"cosine_min": round(float((v * ref).sum(axis=1).min()), 6), "max_abs_difference": float(np.abs(v - ref).max()),
                    "texts_differing_cold_vs_half_warm": history[name]}
        out["paths"][name] = row
    (RESULTS / "embed.json").write_text(json.dumps(out, indent=1) + "\n")
    lines = [f"# Embedding backends ({out['date']}, {out['machine']}, {out['cpu']}, flags {out['cpu_flags']}, {DEFAULT_EMBEDDER})", "",
             f"{N} sampled MMLU-Pro question texts ({out['mean_tokens']} tokens on average), through the suite's embedding path "
             f"(`Embedder.embed` into an empty cache), median of {ROUNDS} interleaved rounds; 1-min load average "
             f"{out['load_average_1min']} at the end. History: the sample embedded into a cold cache against the same sample "
             "embedded after every other text was cached.", "",
             "| path | texts/s | vs torch | cosine to torch, min | largest difference | texts differing, cold vs half-warm cache |",
             "|---|---|---|---|---|---|"]
    for name, row in out["paths"].items():
        if "cosine_min" in row:
            lines.append(f"| {name} | {row['texts_per_s']} | {row['vs_torch']:.2f}x | {row['cosine_min']:.6f} | "
                         f"{row['max_abs_difference']:.2g} | {row['texts_differing_cold_vs_half_warm']} of {N} |")
        else:
            lines.append(f"| {name} (no cache, for comparison) | {row['texts_per_s']} | {row['vs_torch']:.2f}x | | | |")
    onnx = out["paths"]["onnx"]
    lines += ["", f"FLOP-based limit: the model needs {flops / N / 1e9:.2f} GFLOP per text on this sample; float32 matrix products "
              f"run at {gflops:.0f} GFLOP/s here (numpy, 2048 x 2048), so no fp32 implementation passes "
              f"{out['flop_limit_texts_per_s']} texts/s; the onnx path reaches {onnx['texts_per_s'] / out['flop_limit_texts_per_s']:.0%} of it.",
              "", "One text per pass (onnx, onnx_int8, torch) gives a vector that depends on its text alone; batches of 16 tie its "
              "last bits to its batch mates, so a run's numbers would depend on what the cache held."]
    (RESULTS / "embed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
