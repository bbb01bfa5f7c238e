"""Rewrite each stage notebook's parameters cell from the parameter model (:func:`notebook_parameters_source`).

Run after a parameter is added or changed: ``python tools/render_parameters_cells.py``. Only the cell tagged
``parameters`` changes; the notebooks stay stripped of outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

from mlsel import paths
from mlsel.params import STAGES
from mlsel.params.render import notebook_parameters_source

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    for stage in STAGES:
        path = ROOT / "notebooks" / paths.NOTEBOOKS[stage]
        nb = json.loads(path.read_text())
        cell = next(c for c in nb["cells"] if "parameters" in c["metadata"].get("tags", []))
        source = notebook_parameters_source(stage)
        if "".join(cell["source"]) != source:
            cell["source"] = source.splitlines(keepends=True)
            path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
            print(f"rewrote the parameters cell of {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
