"""Does the published-tables check still catch a changed formula? Reruns one dataset's evaluate, tune, ship and report
stages with one formula mutated and compares the tables with the published ones (tests/published_tables.py's rule).

    python tools/mutation_check.py RUN_DIR [DATASET]

RUN_DIR is a finished default run (its prepared data, embeddings and selectors are reused; it is copied, never
changed). Each mutation runs in a copy of the package put first on PYTHONPATH, so the stage kernels import it.
Prints one line per mutation: caught (with the first difference) or missed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from published_tables import table_differences  # noqa: E402

MUTATIONS: list[tuple[str, str, str, str]] = [
    ("uplift over random divided by the oracle", "mlsel/metrics/evaluate.py",
     '"uplift_vs_random_pct": 100 * (Q - Qr) / Qr', '"uplift_vs_random_pct": 100 * (Q - Qr) / Qo'),
    ("gap closed from the best single, not random", "mlsel/metrics/evaluate.py",
     '"gap_closed_pct": 100 * (Q - Qr) / (Qo - Qr)', '"gap_closed_pct": 100 * (Q - Qb) / (Qo - Qr)'),
    ("Best Model x over random inverted", "mlsel/metrics/evaluate.py",
     '"best_model_x_vs_random": hit_rate / rand_hit', '"best_model_x_vs_random": rand_hit / hit_rate'),
    ("Best Model % interval from the quality draws", "mlsel/metrics/evaluate.py",
     '"best_model_pct_ci_low": 100 * ci95(boot_hit[s.name])[0]', '"best_model_pct_ci_low": 100 * ci95(boot[s.name])[0]'),
    ("random as one uniform draw's mask without normalising", "mlsel/selection/baselines.py",
     "return np.tile(mask / mask.sum(), (len(X), 1))", "return np.tile(mask / (mask.sum() + 1), (len(X), 1))"),
    ("shares as the largest probability", "mlsel/metrics/evaluate.py",
     "share = s.proba.mean(axis=0)", "share = s.proba.max(axis=0)"),
    ("AIQ normalised by the top cost only", "mlsel/metrics/frontier.py",
     "return float(area / (cost_max - cost_min))", "return float(area / cost_max)"),
    ("90% intervals instead of 95%", "mlsel/metrics/bootstrap.py",
     "np.percentile(x, [2.5, 97.5])", "np.percentile(x, [5, 95])"),
]


def check(run_dir: Path, dataset: str, name: str, path: str, old: str, new: str, work: Path) -> str:
    pkg = work / "pkg"
    shutil.rmtree(pkg, ignore_errors=True)
    shutil.copytree(ROOT / "mlsel", pkg / "mlsel")
    src = (pkg / path).read_text()
    if old and src.count(old) != 1:
        return f"{name}: mutation does not apply to {path}"
    (pkg / path).write_text(src.replace(old, new) if old else src)
    run = work / "run"
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(run_dir / dataset, run / dataset, symlinks=True)  # the one dataset's prepared data, embeddings, selectors
    report = work / "report"
    shutil.rmtree(report, ignore_errors=True)
    env = dict(os.environ, PYTHONPATH=str(pkg), MLSEL_PROGRESS="off")
    cmd = [str(Path(sys.executable).parent / "mlsel"), "run", "--force", "-p", f"datasets=[{dataset}]", "-p", f"run_dir={run}",
           "-p", f"report_dir={report}", "--stage", "evaluate", "--stage", "tune", "--stage", "ship",
           "--stage", "report"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode:
        return f"{name}: run failed: {done.stderr.strip().splitlines()[-1:]}"
    diff = table_differences(report / "tables" / dataset, ROOT / "reports" / "tables" / dataset)
    return f"{name}: {'caught, ' + str(len(diff)) + ' differences, e.g. ' + diff[0] if diff else 'not caught'}"


def main(argv: list[str]) -> int:
    run_dir, dataset = Path(argv[0]).resolve(), (argv[1] if len(argv) > 1 else "routerbench")
    with tempfile.TemporaryDirectory(prefix="mlsel-mutation-") as tmp:
        for m in [("no mutation (control: must pass)", "mlsel/__init__.py", "", "")] + MUTATIONS:
            print(check(run_dir, dataset, *m, Path(tmp)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
