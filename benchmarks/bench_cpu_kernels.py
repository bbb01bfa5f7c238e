"""Same answer on another CPU: the default pipeline under other float-kernel paths against the published tables.

For each kernel setting (torch's ``ATEN_CPU_CAPABILITY`` and OpenBLAS's
``OPENBLAS_CORETYPE``, which make this CPU run another CPU's kernels), one cold
default run (its own embedding cache) into a temporary folder, its tables
compared with ``reports/tables`` by the published-tables rule
(``tests/published_tables.py``): the differences beyond the rule (none
expected) and how many numeric cells moved within it, with the largest move as
a fraction of its tolerance. Also the KNN tie test's one-query and batch order
under each setting.

Writes benchmarks/results/cpu_kernels.json and cpu_kernels.md. Run (about 15 min per setting on 2 cores):

    MLSEL_DATA_DIR=../shared/data HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/bench_cpu_kernels.py [avx2 default ...]
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tools"))
from compare_tables import moved_cells  # noqa: E402
from published_tables import table_differences  # noqa: E402

SETTINGS = {
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "OPENBLAS_CORETYPE": "Haswell"},
    "default": {"ATEN_CPU_CAPABILITY": "default", "OPENBLAS_CORETYPE": "Prescott"},
    "native": {},
}
"""Kernel settings: an AVX2 CPU's kernels, the generic (no SIMD beyond SSE) kernels, and this CPU's own."""


def run_setting(name: str, env_extra: dict[str, str], tmp: Path) -> dict:
    env = dict(os.environ, MLSEL_CACHE_DIR=str(tmp / "cache"), MLSEL_PROGRESS="lines", **env_extra)
    for k in ("ATEN_CPU_CAPABILITY", "OPENBLAS_CORETYPE"):
        if k not in env_extra:
            env.pop(k, None)
    cmd = [str(Path(sys.executable).parent / "mlsel"), "run", "-p", f"run_dir={tmp / 'run'}", "-p", f"report_dir={tmp / 'report'}"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if done.returncode:
        return {"setting": name, "env": env_extra, "error": done.stderr.strip().splitlines()[-5:]}
    fresh = tmp / "report" / "tables"
    diff = table_differences(fresh, ROOT / "reports" / "tables")
    knn = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_router.py", "-k",
                          "test_knn_exact_distance_ties"], cwd=ROOT, env=env, capture_output=True, text=True)
    platform_info = json.loads((tmp / "run" / "mmlu_pro" / "manifest.json").read_text()).get("platform", {})
    return {"setting": name, "env": env_extra, "seconds": round(seconds, 1), "platform": platform_info,
            "differences_beyond_rule": diff, "moved": {k: list(v) for k, v in moved_cells(fresh, ROOT / "reports" / "tables").items()},
            "knn_tie_test": knn.stdout.strip().splitlines()[-1] if knn.stdout.strip() else knn.stderr[-300:]}


def write_md(out: dict) -> None:
    lines = [f"# Same answer on another CPU ({out['date']}, {out['machine']})", "",
             "Each setting: one cold default run, its tables against `reports/tables` by the rule of `tests/published_tables.py`.", "",
             "| setting | torch kernels | BLAS | differences beyond the rule | cells moved within it (of compared) | largest move / tolerance | KNN tie test |",
             "|---|---|---|---|---|---|---|"]
    for r in out["runs"]:
        if "error" in r:
            lines.append(f"| {r['setting']} | run failed: {' '.join(r['error'])} | | | | | |")
            continue
        n = sum(v[0] for v in r["moved"].values())
        moved = sum(v[1] for v in r["moved"].values())
        worst = max((v[2] for v in r["moved"].values()), default=0.0)
        lines.append(f"| {r['setting']} ({' '.join(f'{k}={v}' for k, v in r['env'].items()) or 'no override'}) | "
                     f"{r['platform'].get('torch_cpu_capability', '?')} | {r['platform'].get('blas', '?')} | "
                     f"{len(r['differences_beyond_rule'])} | {moved} of {n} | {worst:.2f} | {r['knn_tie_test']} |")
    (RESULTS / "cpu_kernels.md").write_text("\n".join(lines) + "\n")


def main(names: list[str]) -> None:
    out = {"machine": f"{os.cpu_count()} cores, {platform.machine()}, no GPU", "date": date.today().isoformat(), "runs": []}
    for name in names or ["avx2", "default"]:
        with tempfile.TemporaryDirectory(prefix=f"mlsel-kernels-{name}-") as tmp:
            out["runs"].append(run_setting(name, SETTINGS[name], Path(tmp)))
        print(json.dumps(out["runs"][-1], indent=1)[:2000], flush=True)
        (RESULTS / "cpu_kernels.json").write_text(json.dumps(out, indent=1) + "\n")
        write_md(out)


if __name__ == "__main__":
    main(sys.argv[1:])
