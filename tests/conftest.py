"""Shared fixtures: the real-data mirror and a small real-data run folder.

The data mirror is found through MLSEL_DATA_DIR (CI sets it to ../shared/data)
or at ../shared/data beside the project. It is read in place, never copied.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mlsel import stages
from mlsel.params import apply_overrides, apply_smoke, load_params, stage_params

ROOT = Path(__file__).resolve().parent.parent


def _mirror() -> Path:
    env = os.environ.get("MLSEL_DATA_DIR")
    return Path(env).resolve() if env else (ROOT.parent / "shared" / "data").resolve()


@pytest.fixture(scope="session", autouse=True)
def _environment(tmp_path_factory):
    """Offline, isolated caches shared by the session; the project root is fixed."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MLSEL_DATA_DIR", str(_mirror()))
    os.environ["MLSEL_ROOT"] = str(ROOT)
    if "MLSEL_CACHE_DIR" not in os.environ:
        os.environ["MLSEL_CACHE_DIR"] = str(tmp_path_factory.mktemp("mlsel-cache"))
    yield


@pytest.fixture(scope="session")
def data_dir() -> Path:
    d = _mirror()
    if not (d / "mmlu-pro-model-outputs").is_dir():
        pytest.fail(f"real-data mirror not found at {d}; set MLSEL_DATA_DIR")
    return d


@pytest.fixture(scope="session")
def smoke_params(tmp_path_factory, data_dir):
    """params.yaml with the smoke profile, pointed at a temporary run folder (a validated ``Params``)."""
    run_dir = tmp_path_factory.mktemp("run-smoke")
    params = apply_smoke(load_params(ROOT / "params.yaml"))
    params = apply_overrides(params, {"run_dir": str(run_dir), "report_dir": str(run_dir / "report")})
    return params


@pytest.fixture(scope="session")
def smoke_run(smoke_params):
    """A run folder after prepare -> train -> evaluate on 600 real MMLU-Pro queries."""
    stages.prepare_data(stage_params(smoke_params, "prepare"))
    stages.train_selectors(stage_params(smoke_params, "train"))
    stages.evaluate_selectors(stage_params(smoke_params, "evaluate"))
    return smoke_params
