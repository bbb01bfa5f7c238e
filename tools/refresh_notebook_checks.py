"""Record the notebooks' checked outputs (``notebooks/checks/<notebook>.json``).

Each stage notebook ends with a cell that prints a result following from the
data and the seed alone (counts, exact baseline qualities, the CV grid, the
published files) through :func:`mlsel.notebook_checks.checked_output`. When the
notebook runs with the parameters a check was recorded with (its defaults, as
nbval runs it in ``make test``), a different output is an error. The source
notebooks stay stripped of outputs.

Run this after a change that legitimately changes a checked output, then review
the diff: it runs every notebook with its defaults through papermill, as nbval
does, with ``MLSEL_RECORD_NOTEBOOK_CHECKS=1`` so the cells record instead of
compare.

    HF_HUB_OFFLINE=1 MLSEL_DATA_DIR=../shared/data .venv/bin/python tools/refresh_notebook_checks.py
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import papermill as pm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlsel.params import STAGES  # noqa: E402
from mlsel.paths import NOTEBOOKS  # noqa: E402


def main() -> int:
    os.environ["MLSEL_RECORD_NOTEBOOK_CHECKS"] = "1"  # inherited by the kernels
    with tempfile.TemporaryDirectory() as tmp:
        for stage in STAGES:
            src = ROOT / "notebooks" / NOTEBOOKS[stage]
            pm.execute_notebook(str(src), str(Path(tmp) / src.name), cwd=str(ROOT), kernel_name="python3", progress_bar=False)
            print(f"notebooks/checks/{src.stem}.json recorded")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
