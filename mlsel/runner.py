"""The one orchestrator: runs the stage notebooks in order with papermill.

The CLI (``mlsel run``), the Makefile and the tests all call :func:`run`.
Each stage notebook is executed through papermill's Python API with the
stage's parameters (``config.stage_params``) injected, into the run folder's
``notebooks/`` (git-ignored). The run folder's ``manifest.json`` gets each
stage's resolved parameters and hash, timing, and the executed notebook path;
the stages themselves add input checksums and dropped-record counts.

A failed stage stops the run and leaves the partly executed notebook and all
earlier stages' outputs in place.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Iterable

from mlsel import config

log = logging.getLogger(__name__)

SECRET_HINTS = frozenset({"key", "apikey", "token", "secret", "password"})
"""Name parts (split on ``_``) that mark a parameter as a secret: ``api_key``, ``hf_token``; not ``max_tokens``."""


def planned_stages(params: dict[str, dict[str, Any]], stages: Iterable[str] | None = None) -> list[str]:
    """Stages to run, in dependency order.

    By default every stage; ``benchmark`` runs only when the prepare stage
    reads its output (``source: benchmark``), and then before ``prepare``.
    """
    source = params.get("prepare", {}).get("source")
    if stages:
        wanted = list(stages)
        for s in wanted:
            if s not in config.STAGES:
                raise config.ConfigError(f"unknown stage {s!r}; expected one of {config.STAGES}")
    else:
        wanted = [s for s in config.STAGES if s != "benchmark" or source == "benchmark"]
    order = list(config.STAGES)
    if source == "benchmark":
        order.remove("benchmark")
        order.insert(0, "benchmark")
    return [s for s in order if s in wanted]


def _check_no_secrets(stage_params: dict[str, Any], stage: str) -> None:
    for key, value in stage_params.items():
        if SECRET_HINTS & set(key.lower().split("_")) and value:
            raise config.ConfigError(
                f"stage {stage}: parameter {key!r} looks like a secret; papermill would record it in the executed "
                "notebook. Put secrets in the environment and reference them as ${VAR} in models.yaml."
            )


def run(
    stages: Iterable[str] | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
    params_file: str | Path | None = None,
    smoke: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Run stages with papermill; returns ``{stage: {"notebook": path, "seconds": t}}``.

    Parameters
    ----------
    stages : stage names (default: all, see :func:`planned_stages`)
    overrides : ``{"knn_k": 7}`` or ``["knn_k=7", "train.svm_c=2"]``
    params_file : default ``<project root>/params.yaml``
    smoke : apply the params.yaml ``smoke`` profile (small, fast values) first
    """
    import papermill as pm

    from mlsel import stages as stage_fns

    params = config.load_params(params_file)
    if smoke:
        params = config.apply_smoke(params)
    params = config.apply_overrides(params, overrides)
    root = config.project_root()
    run_paths = config.run_paths(params["base"]["run_dir"])
    run_paths["notebooks"].mkdir(parents=True, exist_ok=True)
    done: dict[str, Any] = {}
    for stage in planned_stages(params, stages):
        sp = config.stage_params(params, stage)
        _check_no_secrets(sp, stage)
        nb_in = root / "notebooks" / config.NOTEBOOKS[stage]
        nb_out = run_paths["notebooks"] / config.NOTEBOOKS[stage]
        log.info("stage %s: %s -> %s", stage, nb_in, nb_out)
        t0 = time.perf_counter()
        pm.execute_notebook(
            str(nb_in), str(nb_out), parameters=sp, kernel_name="python3", cwd=str(root / "notebooks"),
            progress_bar=progress, log_output=False, report_mode=False,
        )
        seconds = round(time.perf_counter() - t0, 1)
        done[stage] = {"notebook": str(nb_out), "seconds": seconds}
        manifest = stage_fns.read_manifest(params["base"]["run_dir"])
        entry = manifest["stages"].get(stage, {})
        entry.update({"executed_notebook": str(nb_out), "seconds": seconds, "params": sp, "params_hash": config.params_hash(sp)})
        stage_fns.update_manifest(params["base"]["run_dir"], stage, entry)
        log.info("stage %s done in %.1f s", stage, seconds)
    return done
