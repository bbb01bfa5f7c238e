"""The one orchestrator: runs the stage notebooks in order with papermill.

The CLI (``mlsel run``), the Makefile and the tests all call :func:`run`.
Each stage notebook is executed through papermill's Python API with the
stage's parameters (``stage_params``) injected, into the run folder's
``notebooks/`` (git-ignored). The run folder's ``manifest.json`` gets each
stage's resolved parameters and hash, timing, and the executed notebook path;
the stages themselves add input checksums and dropped-record counts.

A failed stage stops the run and leaves the partly executed notebook and all
earlier stages' outputs in place. Datasets run side by side (``parallel_datasets``,
one process each, :func:`run_datasets`): a dataset already running when another
fails finishes its stages first.

Progress bars of a stage's kernel (:mod:`mlsel.progress`) go to a channel file
that a thread copies to this process's stderr while the stage runs: they show
live on the terminal (``bar``) or as a line every 30 s when stderr is not a
terminal (``lines``, for CI logs), and never inside the executed notebooks.

After the report stage the executed notebooks, the report's own included,
are published beside the page as self-contained HTML
(:func:`mlsel.report.notebook_pages.publish_notebooks`), and the page links them.

Every stage but the report runs once per dataset (``base.datasets``, each
defined under ``dataset_defs``) into ``<run_dir>/<dataset>/``, with its own
manifest and executed notebooks; the report stage then runs once over the
run folder and builds the cross-dataset page.

Where the report goes (:func:`report_folder`): only the default run (the
project's params.yaml, no ``-p`` overrides, no ``--smoke``) or ``publish=True``
(``mlsel run --publish``) writes the published report, ``reports/``. Any other
run (another parameter file, overrides, the smoke profile, a subset of the
datasets) writes its report into its own run folder, ``<run_dir>/report``,
unless ``report_dir`` is set explicitly (a ``-p report_dir=...`` override, or a
parameter file of its own naming a folder other than ``reports``); naming the
published folder that way without ``publish`` is an error. Every published
file goes through :func:`mlsel.publish.publishable` (credentials masked, local
paths relative).

Up-to-date stages are skipped, as make or DVC would: a stage reruns only when
its fingerprint changes — its parameters, its notebook, the ``mlsel`` source,
and what it reads. ``train``, ``evaluate``, ``tune`` and ``ship`` read the bytes of
their dataset's run folder (``ship`` also the routing config it evaluates); ``prepare`` reads the source files its last run
recorded in the data log (their size and modification time, as make compares
them; the mirror and cache folders named), and has no fingerprint before its
first run; the ``report`` reads every dataset's manifest, tables and executed
notebooks, and needs its page in ``report_dir``. ``benchmark`` (which resumes by
itself) always runs. ``force=True`` reruns everything.
"""

from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator

import mlsel
from mlsel.files import sha256_file
from mlsel.manifest import params_hash, read_manifest, update_manifest
from mlsel.params import (
    STAGES,
    ConfigError,
    Params,
    apply_overrides,
    apply_smoke,
    dataset_params,
    load_params,
    parse_overrides,
    stage_values,
)
from mlsel.paths import NOTEBOOKS, PUBLISHED_REPORT_DIR, cache_dir, data_dir, params_path, project_root, resolve_path, run_paths
from mlsel.progress import mode as progress_mode
from mlsel.publish import MASK, is_secret_name, publishable
from mlsel.report.notebook_pages import KERNEL_CWD, publish_notebooks

log = logging.getLogger(__name__)

def planned_stages(params: Params, stages: Iterable[str] | None = None) -> list[str]:
    """Stages to run, in dependency order.

    By default every stage; ``benchmark`` runs only when the prepare stage
    reads its output (``source: benchmark``), and then before ``prepare``.
    """
    source = params.prepare.source
    if stages:
        wanted = list(stages)
        for s in wanted:
            if s not in STAGES:
                raise ConfigError(f"unknown stage {s!r}; expected one of {STAGES}")
    else:
        wanted = [s for s in STAGES if s != "benchmark" or source == "benchmark"]
    order = list(STAGES)
    if source == "benchmark":
        order.remove("benchmark")
        order.insert(0, "benchmark")
    return [s for s in order if s in wanted]


SKIPPABLE: dict[str, tuple[tuple[str, ...], str]] = {
    # stage: (run-folder inputs as glob patterns, an output that must exist)
    "prepare": ((), "data/outcomes.csv"),
    "train": (("data/*.csv",), "models"),
    "evaluate": (("data/*.csv", "models/**/*"), "tables/selection_results.csv"),
    "tune": (("data/*.csv",), "tables/tuned_results.csv"),
    "ship": (("data/*.csv", "models/**/*", "tune/cv_results.csv", "tune/cv_fold_scores.csv", "tune/models/**/*"), "tables/ship.csv"),
    "report": ((), "index.html"),  # its inputs are per dataset (REPORT_INPUTS); its output is in report_dir
}
REPORT_INPUTS = ("manifest.json", "tables/**/*", "notebooks/*.ipynb")
"""What the report reads in each dataset's folder."""


def _source_inputs(run_dir: Path) -> list[str] | None:
    """The source files the last prepare run read (its data log's ``inputs``); None before any."""
    inputs = read_manifest(str(run_dir))["stages"].get("prepare", {}).get("data", {}).get("inputs")
    return sorted(inputs) if inputs else None


def _stage_inputs(stage: str, stage_params: dict[str, Any], run_dir: Path) -> list[Path]:
    if stage == "report":
        return [p for ds in stage_params["datasets"] for pattern in REPORT_INPUTS for p in sorted((run_dir / ds).glob(pattern))]
    files = [p for pattern in SKIPPABLE[stage][0] for p in sorted(run_dir.glob(pattern))]
    if stage == "ship" and stage_params["router_config"]:
        files.append(resolve_path(stage_params["router_config"]))
    return files


def fingerprint(stage: str, stage_params: dict[str, Any], run_dir: Path, notebook: Path) -> str | None:
    """What a stage's outputs depend on; None for stages that always run (and for ``prepare`` before its first run)."""
    if stage not in SKIPPABLE:
        return None
    h = hashlib.sha256(json.dumps(stage_params, sort_keys=True, default=str).encode())
    package = Path(mlsel.__file__).parent
    files = sorted(package.rglob("*.py")) + sorted(package.rglob("*.j2")) + [notebook] + _stage_inputs(stage, stage_params, run_dir)
    for f in files:
        h.update(str(f).encode())
        h.update(sha256_file(f).encode() if f.is_file() else b"missing")
    if stage == "prepare":
        sources = _source_inputs(run_dir)
        if sources is None:
            return None
        h.update(f"{data_dir(stage_params['data_dir'])} {cache_dir()}".encode())
        for name in sources:
            st = os.stat(name) if os.path.isfile(name) else None
            h.update(f"{name} {st.st_size} {st.st_mtime_ns}".encode() if st else f"{name} missing".encode())
    return h.hexdigest()[:16]


def _up_to_date(stage: str, fp: str | None, entry: dict[str, Any], run_dir: Path, output_dir: Path) -> bool:
    if fp is None or entry.get("fingerprint") != fp:
        return False
    notebook = entry.get("executed_notebook")
    return bool(notebook) and Path(notebook).is_file() and (output_dir / SKIPPABLE[stage][1]).exists()


def _check_no_secrets(stage_params: dict[str, Any], stage: str) -> None:
    for key, value in stage_params.items():
        if is_secret_name(key) and value:
            raise ConfigError(
                f"stage {stage}: parameter {key!r} looks like a secret; papermill would record it in the executed "
                "notebook. Put secrets in the environment and reference them as ${VAR} in models.yaml."
            )
        if isinstance(value, str) and MASK in publishable(value, local_paths=False) and MASK not in value:
            log.warning("stage %s: parameter %r holds a credential; the run folder's executed notebook records it, the published "
                        "pages show it masked. Prefer ${VAR} in models.yaml.", stage, key)


def report_folder(file_params: Params, params_file: str | Path | None, overrides: dict[str, Any] | list[str] | None,
                  smoke: bool, publish: bool) -> str:
    """The folder the report stage writes (absolute; see the module docstring).

    ``file_params`` is the parameter file as loaded (no smoke profile, no overrides).
    """
    published = resolve_path(PUBLISHED_REPORT_DIR)
    explicit = [v for k, v in parse_overrides(overrides or []) if k.split(".")[-1] == "report_dir"]
    chosen = resolve_path(str(explicit[-1])) if explicit else None
    if publish:
        if chosen is not None and chosen != published:
            raise ConfigError(f"--publish writes the published report ({published}); drop -p report_dir={explicit[-1]} or --publish")
        return str(published)
    if chosen is not None:
        if chosen == published:
            raise ConfigError(f"report_dir {explicit[-1]!r} is the published report: only the default run writes it; add --publish")
        return str(chosen)
    default_file = params_file is None or resolve_path(params_file) == params_path().resolve()
    if default_file and not overrides and not smoke:
        return str(resolve_path(file_params.report.report_dir))
    if not default_file and resolve_path(file_params.report.report_dir) != published:
        return str(resolve_path(file_params.report.report_dir))  # the parameter file names its own report folder
    top = apply_overrides(apply_smoke(file_params) if smoke else file_params, overrides)
    return str(resolve_path(top.base.run_dir) / "report")


def _relay(channel: str, stop: threading.Event, poll_s: float = 0.1) -> None:
    """Copy what is appended to ``channel`` to stderr until ``stop`` is set, then copy the rest once more."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character may straddle two reads
    ends_line = True
    with open(channel, "rb") as fh:
        while True:
            last = stop.is_set()
            text = decoder.decode(fh.read(), final=last)
            ends_line = text.endswith("\n") if text else ends_line
            if last and not ends_line:
                text += "\n"  # a bar cut short by a failing cell: what the runner logs next starts on a line of its own
            if text:
                sys.stderr.write(text)
                sys.stderr.flush()
            if last:
                return
            stop.wait(poll_s)


@contextlib.contextmanager
def progress_relay(stage: str) -> Iterator[str]:
    """While in the block, kernels started from this process write their progress bars to a channel file (its path is
    yielded) that a thread copies to our stderr. ``MLSEL_PROGRESS`` becomes ``bar`` when stderr is a terminal, else
    ``lines``, unless it is set already; the environment is restored and the file removed afterwards."""
    chosen = progress_mode()  # a bad value fails here, before the stage runs
    fd, channel = tempfile.mkstemp(prefix=f"mlsel-{stage}-", suffix=".progress")
    os.close(fd)
    saved = {k: os.environ.get(k) for k in ("MLSEL_PROGRESS", "MLSEL_PROGRESS_FILE")}
    tty = bool(getattr(sys.stderr, "isatty", lambda: False)())
    os.environ["MLSEL_PROGRESS"] = chosen or ("bar" if tty else "lines")
    os.environ["MLSEL_PROGRESS_FILE"] = channel  # the kernel inherits the environment
    stop = threading.Event()
    thread = threading.Thread(target=_relay, args=(channel, stop), name=f"mlsel-progress-{stage}", daemon=True)
    thread.start()
    try:
        yield channel
    finally:
        stop.set()
        thread.join(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        Path(channel).unlink(missing_ok=True)


def run_stage(stage: str, params: Params, force: bool = False, progress: bool = False) -> dict[str, Any]:
    """Run one stage notebook with papermill into ``params``' run folder (skipped when up to date); its record."""
    import papermill as pm

    root = project_root()
    layout = run_paths(params.base.run_dir)
    layout["notebooks"].mkdir(parents=True, exist_ok=True)
    sp = stage_values(params, stage)
    _check_no_secrets(sp, stage)
    nb_in = root / "notebooks" / NOTEBOOKS[stage]
    nb_out = layout["notebooks"] / NOTEBOOKS[stage]
    fp = fingerprint(stage, sp, layout["root"], nb_in)
    previous = read_manifest(params.base.run_dir)["stages"].get(stage, {})
    output_dir = resolve_path(sp["report_dir"]) if stage == "report" else layout["root"]
    if not force and _up_to_date(stage, fp, previous, layout["root"], output_dir):
        log.info("%s: stage %s is up to date (fingerprint %s): skipped", layout["root"], stage, fp)
        return {"notebook": str(nb_out), "seconds": 0.0, "skipped": True}
    log.info("stage %s: %s -> %s", stage, nb_in, nb_out)
    t0 = time.perf_counter()
    with progress_relay(stage):
        pm.execute_notebook(
            str(nb_in), str(nb_out), parameters=sp, kernel_name="python3", cwd=str(KERNEL_CWD),
            progress_bar=progress, log_output=False, report_mode=False,
        )
    seconds = round(time.perf_counter() - t0, 1)
    if stage == "prepare":  # its fingerprint names the source files this run read
        fp = fingerprint(stage, sp, layout["root"], nb_in)
    manifest = read_manifest(params.base.run_dir)
    entry = manifest["stages"].get(stage, {})
    entry.update({"executed_notebook": str(nb_out), "seconds": seconds, "params": sp, "params_hash": params_hash(sp), "fingerprint": fp})
    update_manifest(params.base.run_dir, stage, entry)
    log.info("stage %s done in %.1f s", stage, seconds)
    return {"notebook": str(nb_out), "seconds": seconds, "skipped": False}


def _dataset_stages(name: str, params: Params, stages: list[str], force: bool, progress: bool) -> dict[str, Any]:
    """One dataset's stages in order; their records by ``<dataset>/<stage>``."""
    done = {}
    for stage in stages:
        log.info("dataset %s: stage %s", name, stage)
        done[f"{name}/{stage}"] = run_stage(stage, params, force, progress)
    return done


def run_datasets(work: list[tuple[str, Params, list[str]]], jobs: int, force: bool = False, progress: bool = False) -> dict[str, Any]:
    """Each dataset's stages (``(name, params, stages)``), ``jobs`` datasets side by side, one process each; the records
    in the order of ``work`` whatever finished first.

    Datasets share nothing but the embedding cache, whose folder lock (:class:`mlsel.features.Embedder`) makes a text
    embedded once. A failed stage stops its dataset; the datasets already running finish their stages (nothing
    computed is lost), none is started after it, and the first failure is raised.
    """
    jobs = min(jobs, len(work))
    if jobs <= 1:
        return {k: v for name, params, st in work for k, v in _dataset_stages(name, params, st, force, progress).items()}
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from multiprocessing import get_context

    log.info("running %d datasets, %d side by side", len(work), jobs)
    waiting, running, results, failure = list(enumerate(work)), {}, {}, None
    # fork: the children inherit the logging setup, the environment and the imported package
    with ProcessPoolExecutor(jobs, mp_context=get_context("fork")) as pool:
        while waiting or running:
            while waiting and len(running) < jobs and failure is None:  # a dataset is handed over only when a process is free
                i, (name, params, st) = waiting.pop(0)
                running[pool.submit(_dataset_stages, name, params, st, force, progress)] = i
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                i = running.pop(f)
                if f.exception() is not None:
                    failure = failure or f.exception()
                else:
                    results[i] = f.result()
    if failure is not None:
        raise failure
    return {k: v for i in sorted(results) for k, v in results[i].items()}


def run(
    stages: Iterable[str] | None = None,
    overrides: dict[str, Any] | list[str] | None = None,
    params_file: str | Path | None = None,
    smoke: bool = False,
    progress: bool = False,
    force: bool = False,
    publish: bool = False,
) -> dict[str, Any]:
    """Run stages with papermill: every stage but the report once per dataset, then the report over all.

    Returns ``{"<dataset>/<stage>" or "report": {"notebook": path, "seconds": t, "skipped": bool}}``; the report's entry
    also has ``"index"`` (the page written) and ``"published"`` (whether that is the published report).
    Dataset ``d`` runs into ``<run_dir>/d/`` with the parameters of
    :func:`mlsel.params.dataset_params`; the report reads every dataset's folder
    and writes the cross-dataset page.

    Parameters
    ----------
    stages : stage names (default: all, see :func:`planned_stages`)
    overrides : ``{"knn_k": 7}`` or ``["knn_k=7", "train.svm_c=2", "datasets=[llmrouter]"]``
    params_file : default ``<project root>/params.yaml``
    smoke : apply the params.yaml ``smoke`` profile (small, fast values) first
    force : rerun stages that are up to date (see the module docstring)
    publish : write the report to the published folder (``reports/``) though this is not the default run
    """
    file_params = load_params(params_file)
    top = apply_overrides(apply_smoke(file_params) if smoke else file_params, overrides)
    top = apply_overrides(top, {"report_dir": report_folder(file_params, params_file, overrides, smoke, publish)})
    per_dataset = [(name, dataset_params(file_params, name, smoke, overrides)) for name in top.base.datasets]
    work = [(name, params, [s for s in planned_stages(params, stages) if s != "report"]) for name, params in per_dataset]
    done: dict[str, Any] = run_datasets(work, top.base.parallel_datasets, force, progress)
    if "report" in planned_stages(top, stages):
        done["report"] = run_stage("report", top, force, progress)
        # The pages of every executed notebook, the report's own included (it has finished now), beside the page that links them.
        publish_notebooks(top.base.run_dir, list(top.base.datasets), top.report.report_dir)
        index = Path(top.report.report_dir) / "index.html"
        done["report"].update(index=str(index), published=index.parent == resolve_path(PUBLISHED_REPORT_DIR))
        log.info("report: %s (%s)", index, "the published report" if done["report"]["published"] else "this run's own; reports/ unchanged")
    return done
