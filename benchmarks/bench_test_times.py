"""Time the test tiers and CI in a fresh clone; write the README's speed table.

Clones the committed HEAD into a temporary folder next to a link named
``shared`` to the data mirror's parent (CI has ``../shared`` beside the
checkout), then measures, one after the other:

1. ``CI=true bash .ci/run``: builds ``.venv`` from the pip cache, then runs
   ``make test`` (every test: unit, real data, the full-data run, nbval, the
   real LLM server, the browser check). This is what CI runs.
2. ``make test-fast`` in the same clone (the venv now exists): no full-data
   run, no LLM server, no browser, no notebooks.

3. ``make run`` in a second fresh clone with an empty embedding cache: the
   main job as a newcomer runs it, building its ``.venv`` first.

It writes ``benchmarks/results/test_times.json`` and
``benchmarks/results/speed.md``. ``speed.md`` is the README's "Measured speed"
table (``tests/test_readme.py`` checks the README holds it verbatim); its
``mlsel run`` rows come from ``benchmarks/results/datasets.json``
(``bench_datasets.py``). ``--table-only`` rewrites ``speed.md`` from the JSON
files without measuring.

    python benchmarks/bench_test_times.py --mirror ../shared
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from mlsel.manifest import compute_platform  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TARGETS = {"ci": 30 * 60, "pytest": 20 * 60, "fast": 2 * 60, "run": 8 * 60}
"""Seconds: `.ci/run` in all, `make test`'s pytest, `make test-fast`, and the cold run itself (`mlsel run`, environment excluded)."""
SUMMARY = re.compile(r"^=+ (?P<counts>.*?) in (?P<seconds>[\d.]+)s(?: \(.*\))? =+$")


def pytest_summary(output: str) -> dict:
    """Counts (passed, failed, skipped, ...) and pytest's own seconds from its last summary line."""
    for line in reversed(output.splitlines()):
        m = SUMMARY.match(line.strip())
        if m:
            counts = {k: int(n) for n, k in re.findall(r"(\d+) (\w+)", m["counts"])}
            return {"counts": counts, "pytest_seconds": float(m["seconds"])}
    raise ValueError("no pytest summary line in the output")


def timed(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> dict:
    t0 = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - t0
    out = log.read_text()
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {rc}); see {log}")
    return {"command": " ".join(cmd), "seconds": round(seconds, 1), **pytest_summary(out)}


def measure(mirror: Path, keep: Path | None, make_run: bool = True) -> dict:
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    base = Path(tempfile.mkdtemp(prefix="mlsel-times-"))
    (base / "shared").symlink_to(mirror.resolve())
    clone = base / "main"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", commit], cwd=clone, check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLSEL_", "VIRTUAL_ENV"))}
    env["CI"] = "true"
    logs = keep or base
    ci = timed(["bash", ".ci/run"], clone, env, logs / "ci.log")
    fast_env = {**env, "HF_HUB_OFFLINE": "1", "MLSEL_DATA_DIR": str(base / "shared" / "data")}
    fast = timed(["make", "test-fast"], clone, fast_env, logs / "test-fast.log")
    run = timed_run(mirror, base, env, logs / "make-run.log", commit) if make_run else None
    return {
        "date": date.today().isoformat(),
        "commit": commit,
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {round(os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30)} GiB",
        "cpu": compute_platform()["cpu"],
        "cpu_flags": compute_platform()["cpu_flags"],
        "ci": ci,
        "fast": fast,
        "make_run": run,
    }


def timed_run(mirror: Path, base: Path, env: dict[str, str], log: Path, commit: str) -> dict:
    """``make run`` in a fresh clone with an empty embedding cache: seconds in all, and the run's own (its stages)."""
    clone = base / "run-clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", commit], cwd=clone, check=True)
    run_env = {**env, "HF_HUB_OFFLINE": "1", "MLSEL_DATA_DIR": str(mirror.resolve() / "data"), "MLSEL_CACHE_DIR": str(base / "run-cache")}
    run_env.pop("CI", None)
    t0 = time.perf_counter()
    with log.open("w") as fh:
        rc = subprocess.run(["make", "run"], cwd=clone, env=run_env, stdout=fh, stderr=subprocess.STDOUT).returncode
    seconds = time.perf_counter() - t0
    if rc != 0:
        raise SystemExit(f"make run failed (exit {rc}); see {log}")
    manifests = [json.loads(p.read_text()) for p in sorted((clone / "runs" / "default").glob("*/manifest.json"))]
    stage_seconds = sum(e.get("seconds", 0.0) for m in manifests for e in m["stages"].values())
    return {"command": "make run", "seconds": round(seconds, 1), "stage_seconds_sum": round(stage_seconds, 1)}


def _mmss(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m and s else f"{m} min" if m else f"{s} s"


def _tests(counts: dict) -> str:
    parts = [f"{counts.get('passed', 0)} tests passed"]
    parts += [f"{n} {k}" for k, n in counts.items() if k != "passed"]
    return ", ".join(parts) if len(parts) > 1 else parts[0] + ", none skipped"


def _reached(seconds: float, target: float) -> str:
    return f"target ≤ {_mmss(target)}: {'reached' if seconds <= target else '**not reached**'}"


def speed_table(times: dict, datasets: dict) -> str:
    """The README's speed table (markdown) from the measured JSON files."""
    ci, fast, run = times["ci"], times["fast"], times.get("make_run")
    when = datasets.get("timing_measured", datasets["date"])  # bench_datasets.py keeps an older timing with --no-timing
    rows = [
        (f"`make test` in a fresh clone via `CI=true bash .ci/run` (builds `.venv` from the pip cache, then every test: unit, "
         f"real data, the full-data run of that commit's default datasets with a cold embedding cache, nbval, the LLM server, the browser; "
         f"{_tests(ci['counts'])})",
         f"**{_mmss(ci['seconds'])}** ({_reached(ci['seconds'], TARGETS['ci'])}); pytest {_mmss(ci['pytest_seconds'])} "
         f"({_reached(ci['pytest_seconds'], TARGETS['pytest'])})"),
        (f"`make test-fast` (no full-data run, no LLM server, no browser, no notebooks; {_tests(fast['counts'])})",
         f"**{_mmss(fast['seconds'])}** (pytest {_mmss(fast['pytest_seconds'])}; {_reached(fast['seconds'], TARGETS['fast'])})"),
        ("`mlsel run`, cold (fresh embedding cache), every default dataset; per-stage times in `benchmarks/results/datasets.md`",
         f"**{_mmss(datasets['cold_seconds'])}** ({when}; {_reached(datasets['cold_seconds'], TARGETS['run'])})"),
        ("`mlsel run` again, nothing changed (every up-to-date stage skipped, see `mlsel.runner`)",
         f"**{datasets['warm_seconds']:.1f} s** ({datasets.get('warm_measured', when)})"),
    ]
    if run:
        rows.insert(2, ("`make run` in a fresh clone (builds `.venv` from the pip cache, then the cold run of every default dataset "
                        "with an empty embedding cache; what a newcomer waits for the first report)", f"**{_mmss(run['seconds'])}**"))
    cpu = f"{times['cpu']} (flags {times['cpu_flags']}), " if "cpu" in times else ""
    head = (f"Measured on {cpu}{times['machine']}, no GPU; the fresh-clone rows on {times['date']} at commit {times['commit'][:7]} "
            "(`benchmarks/bench_test_times.py`, results in `benchmarks/results/test_times.json`).\n\n")
    lines = ["| what | measured |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return head + "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mirror", type=Path, default=ROOT.parent / "shared", help="folder holding data/ (linked as ../shared in the clone)")
    ap.add_argument("--logs", type=Path, help="keep the command logs here")
    ap.add_argument("--table-only", action="store_true", help="rewrite speed.md from the results files, measure nothing")
    ap.add_argument("--no-make-run", action="store_true", help="leave out the `make run` in a second fresh clone")
    args = ap.parse_args()
    if not args.table_only:
        if not (args.mirror / "data").is_dir():
            raise SystemExit(f"{args.mirror}/data: not found; pass --mirror")
        times = measure(args.mirror, args.logs, make_run=not args.no_make_run)
        (RESULTS / "test_times.json").write_text(json.dumps(times, indent=1) + "\n")
    times = json.loads((RESULTS / "test_times.json").read_text())
    datasets = json.loads((RESULTS / "datasets.json").read_text())
    (RESULTS / "speed.md").write_text(speed_table(times, datasets))
    print((RESULTS / "speed.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
