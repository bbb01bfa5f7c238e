"""Benchmark run: send every query to every model endpoint, score, record.

:func:`run_benchmark` (and the ``mlsel benchmark`` subcommand of
:mod:`mlsel.llm.commands`) reproduces the reference ``benchmark.py`` with its
bugs fixed. Models, ``models.yaml``, HTTP calls, retries and secret redaction
are described in :mod:`mlsel.llm.client`; scoring rules in
:mod:`mlsel.llm.scoring`. Requests run on a thread pool of ``concurrency``
workers.

The queries JSONL is described in :mod:`mlsel.llm.queries`.

Output JSONL
------------
One record per (query, model), in the seed's format: ``query``,
``category`` (``"other"`` when the input has none), ``model_name``,
``response``, ``ground_truth``, ``performance``, ``response_time`` plus
``status``, ``error``, ``attempts``, ``metric``, ``task_name``,
``prompt_tokens`` and ``completion_tokens`` (from the server's ``usage``,
null where the reply had none), ``cost_usd`` (USD, from the model's
``pricing`` and those counts, :mod:`mlsel.llm.pricing`; null when the model
is unpriced or the reply had no usage: never estimated) and the extra input
fields. ``status`` is

* ``ok``: scored; ``performance`` in [0, 1];
* ``failed``: no answer after the retries; ``performance`` null and ``error``
  holds the exception class and (redacted) message. Never a quality 0;
* ``unscored``: answered, but there is no ground truth, or one its metric
  cannot read (``error`` says why, e.g. a multiple-choice truth that is no
  letter nor choice); ``performance`` null, never a quality 0;
* ``skipped_code_eval``: a ``code_eval`` record while ``enable_code_eval`` is
  False, or while the sandbox refuses to run code on this machine (no
  network isolation, a resource limit that cannot be set: ``error`` says
  why); ``performance`` null.

Only ``ok`` rows are outcomes; the data stage drops the others.
Records are appended and flushed as results arrive, so a killed run loses
nothing it completed. Rerunning with the same ``output`` resumes: pairs
already ``ok`` or ``unscored`` are skipped, ``failed`` pairs are called
again, and ``skipped_code_eval`` pairs are re-scored from their stored
response once ``enable_code_eval`` is True. At the end the file is rewritten
atomically (:func:`mlsel.files.write_atomic`) with the latest record per
pair, ordered by input query order then model order; records of pairs not in
this run (e.g. an earlier, larger ``limit``) are kept after them in file
order. A line cut short by a kill is skipped with a warning.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any, Callable, Collection, Iterator, Sequence

import pandas as pd

from mlsel.files import write_atomic
from mlsel.llm.client import BenchmarkError, ModelSpec, Redactor, RetryPolicy, call_model, model_specs
from mlsel.llm.pricing import cost_summary, cost_usd
from mlsel.llm.queries import load_queries, write_mmlu_pro_queries
from mlsel.llm.sandbox import SandboxError
from mlsel.llm.scoring import has_ground_truth, resolve_metric, score
from mlsel.params import BenchmarkParams, default
from mlsel.progress import progress_bar

__all__ = ["BenchmarkError", "STATUSES", "SUMMARY_COLUMNS", "load_queries", "run_benchmark", "summarize", "write_mmlu_pro_queries"]

log = logging.getLogger(__name__)

STATUSES: tuple[str, ...] = ("ok", "failed", "unscored", "skipped_code_eval")
SUMMARY_COLUMNS: list[str] = [
    "model", "n", "n_ok", "n_failed", "n_unscored", "n_skipped_code_eval", "quality_mean", "response_time_s_mean", "share_quality_gt_0",
    "cost_usd_total", "cost_usd_mean", "n_usage_missing",
]

Pair = tuple[dict[str, Any], ModelSpec]
Key = tuple[str, str]


# --------------------------------------------------------------------------- records


def _make_record(q: dict[str, Any], spec: ModelSpec) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "query": q["query"],
        "category": q.get("category") or "other",
        "model_name": spec.name,
        "response": None,
        "ground_truth": q.get("ground_truth"),
        "performance": None,
        "response_time": None,
        "status": "failed",
        "error": None,
        "attempts": 0,
        "metric": q.get("metric") or resolve_metric(q.get("metric"), q.get("choices")),
        "task_name": q.get("task_name"),
        "prompt_tokens": None,
        "completion_tokens": None,
        "cost_usd": None,
    }
    return {**rec, **{k: v for k, v in q.items() if k not in rec}}  # then the query's own other fields


@functools.lru_cache(maxsize=8)
def _warn_once(message: str) -> None:
    log.warning(message)


def _score_into(rec: dict[str, Any], q: dict[str, Any], enable_code_eval: bool, redact: Redactor) -> None:
    gt = q.get("ground_truth")
    metric = resolve_metric(q.get("metric"), q.get("choices"))
    rec["performance"] = None
    if not has_ground_truth(gt):
        rec["status"] = "unscored"
        return
    if metric == "code_eval" and not enable_code_eval:
        rec["status"] = "skipped_code_eval"
        return
    try:
        rec["performance"] = score(rec["response"], gt, q.get("metric"), q.get("choices"), enable_code_eval=enable_code_eval)
    except SandboxError as exc:  # the machine cannot run model-written code safely: not scored, and said why
        _warn_once(f"benchmark: code_eval records are not scored: {exc}")
        rec["status"] = "skipped_code_eval"
        rec["error"] = redact(str(exc))
        return
    except ValueError as exc:  # e.g. a code_eval ground truth that is not a list of assertions
        rec["status"] = "unscored"
        rec["error"] = redact(f"scoring: {exc}")
        return
    rec["status"] = "ok" if rec["performance"] is not None else "unscored"


def _read_existing(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    out = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s:%d: unreadable line (a run killed mid-write?) skipped", path, lineno)
                continue
            if isinstance(rec, dict) and "query" in rec and "model_name" in rec:
                out.append(rec)
    return out


def _jsonl(rec: dict[str, Any]) -> str:
    return json.dumps(rec, ensure_ascii=False) + "\n"


def summarize(records: list[dict[str, Any]], model_order: Sequence[str] | None = None, priced: Collection[str] | None = None) -> pd.DataFrame:
    """Per-model summary of output records.

    ``priced`` names the models with a ``pricing``; by default a model is
    priced when one of its records has a ``cost_usd``.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SUMMARY_COLUMNS`: ``n`` records, ``n_ok`` scored,
        ``n_failed`` failed calls, ``n_unscored`` answers without a usable
        ground truth (none, or one the metric cannot read: the record's
        ``error`` says why), ``n_skipped_code_eval``; ``quality_mean``, ``response_time_s_mean``
        and ``share_quality_gt_0`` over the ``ok`` records only;
        ``cost_usd_total`` and ``cost_usd_mean`` over the records with a cost
        (NaN for an unpriced model) and ``n_usage_missing``, the answers of a
        priced model whose reply had no usage, so no cost
        (:func:`mlsel.llm.pricing.cost_summary`).
    """
    order = list(model_order) if model_order else []
    for r in records:
        if r["model_name"] not in order:
            order.append(r["model_name"])
    rows = []
    for m in order:
        recs = [r for r in records if r["model_name"] == m]
        ok = [r for r in recs if r.get("status") == "ok"]
        perf = [float(r["performance"]) for r in ok]
        times = [float(r["response_time"]) for r in ok if r.get("response_time") is not None]
        is_priced = m in priced if priced is not None else any(r.get("cost_usd") is not None for r in recs)
        rows.append(
            {
                "model": m,
                "n": len(recs),
                "n_ok": len(ok),
                "n_failed": sum(r.get("status") == "failed" for r in recs),
                "n_unscored": sum(r.get("status") == "unscored" for r in recs),
                "n_skipped_code_eval": sum(r.get("status") == "skipped_code_eval" for r in recs),
                "quality_mean": sum(perf) / len(perf) if perf else float("nan"),
                "response_time_s_mean": sum(times) / len(times) if times else float("nan"),
                "share_quality_gt_0": sum(p > 0 for p in perf) / len(perf) if perf else float("nan"),
                **cost_summary(recs, is_priced),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


# --------------------------------------------------------------------------- the run


def _plan(qs: list[dict[str, Any]], specs: list[ModelSpec], latest: dict[Key, dict[str, Any]], enable_code_eval: bool) -> tuple[list[Pair], list[Pair]]:
    """Pairs to call and pairs to re-score from their stored response; logs the plan."""
    todo: list[Pair] = []
    rescore: list[Pair] = []
    for q in qs:
        for spec in specs:
            prev = latest.get((q["query"], spec.name))
            status = prev.get("status", "ok") if prev else None
            if status in ("ok", "unscored"):
                continue
            if status == "skipped_code_eval" and not enable_code_eval:
                continue
            if status == "skipped_code_eval" and prev.get("response") is not None:
                rescore.append((q, spec))
                continue
            todo.append((q, spec))
    n_pairs = len(qs) * len(specs)
    log.info("benchmark: %d queries x %d models = %d pairs; %d to call, %d already done%s", len(qs), len(specs), n_pairs, len(todo),
             n_pairs - len(todo) - len(rescore), f", {len(rescore)} to re-score with code_eval" if rescore else "")
    return todo, rescore


def _call_pair(client: Any, q: dict[str, Any], spec: ModelSpec, policy: RetryPolicy, redact: Redactor, enable_code_eval: bool, code_eval_min_tokens: int) -> dict[str, Any]:
    """Call one (query, model) pair and score it; any failure of the call becomes a failed record."""
    rec = _make_record(q, spec)
    metric = resolve_metric(q.get("metric"), q.get("choices"))
    mt = max(spec.max_tokens, code_eval_min_tokens) if metric == "code_eval" else spec.max_tokens
    try:
        ans = call_model(client, spec, q["query"], policy, redact, mt)
    except Exception as exc:  # any failure of the call becomes a failed record
        rec["attempts"] = getattr(exc, "mlsel_attempts", 1)
        rec["error"] = redact(f"{type(exc).__name__}: {exc}")[:500]
        log.warning("%s failed after %d attempts: %s", spec.name, rec["attempts"], rec["error"])
        return rec
    rec.update(response=ans.text, response_time=round(ans.response_time, 6), attempts=ans.attempts)
    rec.update(prompt_tokens=ans.prompt_tokens, completion_tokens=ans.completion_tokens)
    rec["cost_usd"] = cost_usd(spec.pricing, ans.prompt_tokens, ans.completion_tokens)
    _score_into(rec, q, enable_code_eval, redact)
    return rec


def _call_all(
    todo: list[Pair], work: Callable[..., dict[str, Any]], emit: Callable[[dict[str, Any]], None], concurrency: int, timeout_s: float, progress: bool
) -> None:
    """Run ``work(client, q, spec)`` for every pair on a thread pool, emitting records as they complete."""
    import httpx

    limits = httpx.Limits(max_connections=int(concurrency), max_keepalive_connections=int(concurrency))
    with httpx.Client(limits=limits, timeout=timeout_s) as client:
        with ThreadPoolExecutor(max_workers=int(concurrency), thread_name_prefix="mlsel-bench") as pool, \
                progress_bar(len(todo), "benchmark", "call", enabled=progress) as bar:
            futures = [pool.submit(work, client, q, spec) for q, spec in todo]
            try:
                for fut in as_completed(futures):
                    emit(fut.result())
                    bar.update(1)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise


@contextlib.contextmanager
def _appender(out: Path, latest: dict[Key, dict[str, Any]]) -> Iterator[Callable[[dict[str, Any]], None]]:
    """``emit(record)``: append and flush at once (a killed run loses nothing it completed), and track it in ``latest``.

    A file whose last line was cut short by a kill gets a newline first, so the torn line stays a line
    of its own (skipped when read) and the first new record is not glued to it.
    """
    torn = False
    if out.is_file() and out.stat().st_size > 0:
        with out.open("rb") as last:
            last.seek(-1, os.SEEK_END)
            torn = last.read(1) != b"\n"
    with out.open("a", encoding="utf-8") as fh:
        if torn:
            fh.write("\n")
        lock = threading.Lock()

        def emit(rec: dict[str, Any]) -> None:
            with lock:
                latest[(rec["query"], rec["model_name"])] = rec
                fh.write(_jsonl(rec))
                fh.flush()

        yield emit


def _finish(out: Path, latest: dict[Key, dict[str, Any]], qs: list[dict[str, Any]], specs: list[ModelSpec]) -> pd.DataFrame:
    """Rewrite ``out`` atomically in query x model order (older pairs after); summarise this run's pairs."""
    keys = [(q["query"], s.name) for q in qs for s in specs]
    this_run = [latest[k] for k in keys if k in latest]
    used = {k for k in keys if k in latest}
    ordered = this_run + [rec for k, rec in latest.items() if k not in used]
    write_atomic(out, "".join(_jsonl(rec) for rec in ordered))
    summary = summarize(this_run, [s.name for s in specs], priced={s.name for s in specs if s.pricing is not None})
    log.info("benchmark summary (%s):\n%s", out, summary.to_string(index=False))
    missing = {m: int(n) for m, n in zip(summary["model"], summary["n_usage_missing"]) if n}
    if missing:
        log.warning("benchmark: %d answers of priced models had no usage in the reply, so no cost_usd (n_usage_missing): %s",
                    sum(missing.values()), missing)
    counts = {st: sum(r.get("status") == st for r in this_run) for st in STATUSES}
    log.info("benchmark statuses: %s", counts)
    return summary


def run_benchmark(
    queries: str | os.PathLike[str],
    output: str | os.PathLike[str],
    model_config: str | os.PathLike[str] | None = None,
    models: Sequence[str] | str | None = None,
    endpoint: str = default(BenchmarkParams, "endpoint"),
    concurrency: int = default(BenchmarkParams, "concurrency"),
    limit: int | None = None,
    max_tokens: int = default(BenchmarkParams, "max_tokens"),
    temperature: float = default(BenchmarkParams, "temperature"),
    timeout_s: float = default(BenchmarkParams, "timeout_s"),
    max_retries: int = default(BenchmarkParams, "max_retries"),
    enable_code_eval: bool = False,
    progress: bool = True,
    backoff_initial_s: float = 1.0,
    backoff_max_s: float = 60.0,
    code_eval_min_tokens: int = 256,
) -> pd.DataFrame:
    """Benchmark every query on every model and write the outcome records.

    Parameters
    ----------
    queries : path-like
        Queries JSONL (format in :mod:`mlsel.llm.queries`).
    output : path-like
        Output JSONL; an existing file is resumed (see module docstring).
    model_config : path-like, optional
        ``models.yaml`` (:mod:`mlsel.llm.client`); takes precedence over ``models``.
    models : list of str or comma-separated str, optional
        Model names served at ``endpoint``.
    endpoint : str
        Base URL of an OpenAI-compatible API (``.../v1``); default for entries without one.
    concurrency : int
        Parallel requests (thread pool size).
    limit : int, optional
        Keep only the first N unique queries.
    max_tokens, temperature
        Defaults for the models (per-model settings win). ``code_eval``
        queries get at least ``code_eval_min_tokens``.
    timeout_s, max_retries : float, int
        Per-attempt HTTP timeout in seconds; retries after the first attempt.
    enable_code_eval : bool
        Execute ``code_eval`` assertions in :mod:`mlsel.llm.sandbox`.
    progress : bool
        Show a progress bar (:func:`mlsel.progress.progress_bar`).
    backoff_initial_s, backoff_max_s : float
        Exponential backoff start and cap, seconds (also caps Retry-After).

    Returns
    -------
    pandas.DataFrame
        Per-model summary of this run's pairs (:func:`summarize`), with the
        cost columns of the models that have a ``pricing``.
    """
    if int(concurrency) < 1:
        raise BenchmarkError(f"concurrency must be >= 1, got {concurrency}")
    specs = model_specs(model_config, models, endpoint, max_tokens, temperature)
    qs = load_queries(queries, limit)
    redact = Redactor([s for spec in specs for s in spec.secrets()])
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    latest = {(rec["query"], rec["model_name"]): rec for rec in _read_existing(out)}
    todo, rescore = _plan(qs, specs, latest, enable_code_eval)
    policy = RetryPolicy(timeout_s, max_retries, backoff_initial_s, backoff_max_s)
    work = functools.partial(_call_pair, policy=policy, redact=redact, enable_code_eval=enable_code_eval, code_eval_min_tokens=code_eval_min_tokens)
    with _appender(out, latest) as emit:
        for q, spec in rescore:
            rec = dict(latest[(q["query"], spec.name)])
            _score_into(rec, q, enable_code_eval, redact)
            emit(rec)
        if todo:
            _call_all(todo, work, emit, concurrency, timeout_s, progress)
    return _finish(out, latest, qs, specs)
