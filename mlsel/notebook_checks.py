"""The notebooks' checked outputs: each stage notebook's last cell, compared with the text recorded for it.

Used by the notebooks (their last cell), by ``tools/refresh_notebook_checks.py`` (which records the texts into
``notebooks/checks/``) and by the tests.
"""

from __future__ import annotations

import json
import os
from typing import Any

from mlsel.files import write_atomic
from mlsel.manifest import params_hash
from mlsel.paths import project_root


def checked_output(p: Any, notebook: str, text: str) -> str:
    """``text``, after comparing it with the output committed for ``notebook`` in ``notebooks/checks/<notebook>.json``.

    Each stage notebook ends with one cell that prints a result following from
    the data and the seed alone (counts, exact baselines, the CV grid, the
    published files). When the notebook runs with the parameters the check was
    recorded with (its defaults, as nbval in ``make test`` runs it), a
    different text is an error showing both; with other parameters (a papermill
    run of the suite) nothing is compared. ``tools/refresh_notebook_checks.py``
    records the checks; the notebooks themselves stay stripped of outputs.
    """
    path = project_root() / "notebooks" / "checks" / f"{notebook}.json"
    if os.environ.get("MLSEL_RECORD_NOTEBOOK_CHECKS") == "1":  # set by tools/refresh_notebook_checks.py only
        write_atomic(path, json.dumps({"params_hash": params_hash(p.model_dump(by_alias=True)), "output": text}, indent=1) + "\n")
        return text
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no recorded check; run tools/refresh_notebook_checks.py")
    want = json.loads(path.read_text())
    if want["params_hash"] == params_hash(p.model_dump(by_alias=True)) and want["output"] != text:
        raise AssertionError(f"{notebook}: the checked output differs from {path.name}.\nrecorded:\n{want['output']}\nproduced:\n{text}")
    return text
