"""Refresh the committed outputs of the notebooks' checked cells (tag ``nbval-check-output``).

``make test`` runs the source notebooks with nbval: every cell must execute, and
the output of each cell tagged ``nbval-check-output`` must equal the output
committed in the notebook. Those cells print results that follow from the data
and the seed alone (counts, exact baseline qualities, file lists), never timings
or embedding-dependent numbers. All other outputs stay stripped.

Run this after a change that legitimately changes a checked output, then review
the diff: it runs every notebook with its default (smoke) parameters through
papermill, as nbval does, and copies the tagged cells' outputs into the source
notebooks.

    HF_HUB_OFFLINE=1 MLSEL_DATA_DIR=../shared/data .venv/bin/python tools/refresh_notebook_checks.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import papermill as pm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mlsel.paths import NOTEBOOKS, STAGES  # noqa: E402

TAG = "nbval-check-output"


def checked_outputs(executed: dict) -> dict[int, list]:
    """Cell index -> outputs of the tagged cells (stdout only, as the hygiene test wants)."""
    out = {}
    for i, cell in enumerate(executed["cells"]):
        if TAG in cell.get("metadata", {}).get("tags", []):
            out[i] = [o for o in cell.get("outputs", []) if o.get("output_type") == "stream" and o.get("name") == "stdout"]
    return out


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        for stage in STAGES:
            src = ROOT / "notebooks" / NOTEBOOKS[stage]
            done = Path(tmp) / src.name
            pm.execute_notebook(str(src), str(done), cwd=str(ROOT), kernel_name="python3", progress_bar=False)
            nb = json.loads(src.read_text())
            found = checked_outputs(json.loads(done.read_text()))
            if not found:
                raise SystemExit(f"{src}: no cell tagged {TAG!r}")
            for i, outputs in found.items():
                nb["cells"][i]["outputs"] = outputs
                nb["cells"][i]["execution_count"] = 1  # nbval compares only cells of a run reference (a count set)
            src.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            print(f"{src.relative_to(ROOT)}: {len(found)} checked cell(s) refreshed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
