"""Talking to OpenAI-compatible chat endpoints: model specs, ``models.yaml``, retries, secrets.

Models, either a list of names (all at one ``endpoint``) or a ``models.yaml``::

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
        pricing: {prompt_per_1m: 0.15, completion_per_1m: 0.6}  # optional, USD per 1M tokens (mlsel.llm.pricing)

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
them).

Secrets
-------
``api_key`` and header values (and the token after a ``Bearer``/``Token``
scheme) are never written to the output and are replaced by ``***`` in
every error message and log line this package emits (:class:`Redactor`).
"""

from __future__ import annotations

import logging
import math
import os
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from mlsel.files import read_yaml
from mlsel.llm.pricing import Pricing, parse_pricing, usage_tokens
from mlsel.params import BenchmarkParams, default

log = logging.getLogger(__name__)

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class BenchmarkError(ValueError):
    """Bad benchmark input: queries file, model config or arguments."""


class RetryableError(Exception):
    """A reply worth retrying (429, 5xx, malformed body); ``retry_after`` in seconds if the server said."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class MalformedResponseError(RetryableError):
    """The reply was not JSON or had no ``choices[0].message.content``."""


class HTTPStatusError(Exception):
    """A non-retryable HTTP error status."""


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
    pricing: Pricing | None = None

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


_MODEL_KEYS = {"name", "model", "endpoint", "api_key", "headers", "max_tokens", "temperature", "system_prompt", "prompt_template", "pricing"}


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


def _spec_from_entry(e: dict[str, Any], where: str) -> ModelSpec:
    """A spec from one merged entry (function values < file defaults < entry)."""
    headers = e["headers"] or {}
    if not isinstance(headers, dict):
        raise BenchmarkError(f"{where}: 'headers' must be a mapping")
    pricing = parse_pricing(e["pricing"], where, BenchmarkError)
    try:
        return ModelSpec(
            name=str(e["name"]),
            endpoint=str(e["endpoint"]).rstrip("/"),
            model=str(e["model"] or e["name"]),
            max_tokens=int(e["max_tokens"]),
            temperature=float(e["temperature"]),
            api_key=str(e["api_key"]) if e["api_key"] not in (None, "") else None,
            headers={str(k): str(v) for k, v in headers.items()},
            system_prompt=e["system_prompt"],
            prompt_template=e["prompt_template"],
            pricing=pricing,
        )
    except (TypeError, ValueError) as exc:
        raise BenchmarkError(f"{where}: bad max_tokens or temperature ({type(exc).__name__})") from None


def load_model_config(
    path: str | os.PathLike[str],
    endpoint: str = default(BenchmarkParams, "endpoint"),
    max_tokens: int = default(BenchmarkParams, "max_tokens"),
    temperature: float = default(BenchmarkParams, "temperature"),
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
        unknown keys, a bad ``pricing`` block, or an unset ``${VAR}`` (the message names file, entry and
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
    unknown = set(defaults) - (_MODEL_KEYS - {"name", "model", "pricing"})  # pricing is per model
    if unknown:
        raise BenchmarkError(f"{p}: unknown keys in defaults: {sorted(unknown)}")
    # the function's values, then the file's defaults, then each entry
    base = {**dict.fromkeys(_MODEL_KEYS), "max_tokens": max_tokens, "temperature": temperature}
    base.update(_expand(defaults, f"{p}: defaults", env))
    specs: list[ModelSpec] = []
    for i, entry in enumerate(doc["models"]):
        if not isinstance(entry, dict) or not entry.get("name"):
            raise BenchmarkError(f"{p}: models[{i}] needs a 'name'")
        where = f"{p}: model entry {i} ({entry['name']})"
        unknown = set(entry) - _MODEL_KEYS
        if unknown:
            raise BenchmarkError(f"{where}: unknown keys {sorted(unknown)}")
        merged = {**base, **_expand(entry, where, env)}
        merged["endpoint"] = merged["endpoint"] or endpoint
        specs.append(_spec_from_entry(merged, where))
    names = [s.name for s in specs]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise BenchmarkError(f"{p}: duplicate model names {dup}")
    return specs


def model_specs(
    model_config: str | os.PathLike[str] | None,
    models: Sequence[str] | str | None,
    endpoint: str,
    max_tokens: int,
    temperature: float,
) -> list[ModelSpec]:
    """Specs from a ``models.yaml`` when given, else from model names (a list or comma-separated) at ``endpoint``."""
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


# --------------------------------------------------------------------------- calling


class Redactor:
    """Callable replacing every secret string in a text by ``***`` (longest first)."""

    def __init__(self, secrets: Sequence[str]):
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for s in self.secrets:
            text = text.replace(s, "***")
        return text


@dataclass(frozen=True)
class RetryPolicy:
    """Per-attempt timeout and retry schedule of :func:`call_model`."""

    timeout_s: float
    max_retries: int
    backoff_initial_s: float
    backoff_max_s: float


@dataclass
class Answer:
    """A successful completion: text, wall-clock of that attempt, attempts used, server-reported tokens (``usage``)."""

    text: str
    response_time: float
    attempts: int
    completion_tokens: int | None
    prompt_tokens: int | None = None


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        s = float(value)
    except ValueError:
        return None  # HTTP-date form: fall back to backoff
    return s if s >= 0 and math.isfinite(s) else None


def _build_prompt(spec: ModelSpec, query: str) -> list[dict[str, str]]:
    content = spec.prompt_template.replace("{query}", query) if spec.prompt_template else query
    messages = []
    if spec.system_prompt:
        messages.append({"role": "system", "content": spec.system_prompt})
    messages.append({"role": "user", "content": content})
    return messages


def _post_once(client: Any, url: str, body: dict[str, Any], headers: dict[str, str], timeout_s: float, attempt: int) -> Answer:
    """One HTTP attempt; raises :class:`RetryableError` / :class:`HTTPStatusError` on a bad reply."""
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
    prompt_tokens, completion_tokens = usage_tokens(reply)
    return Answer(text, elapsed, attempt, completion_tokens, prompt_tokens)


def _retrying(spec: ModelSpec, policy: RetryPolicy, redact: Redactor) -> Any:
    """The tenacity retry controller: Retry-After when sent, else exponential backoff with jitter."""
    import httpx
    import tenacity

    def wait(state: tenacity.RetryCallState) -> float:
        # Retry-After when the server sent one, else initial * 2**(n-1) plus up to `initial` of jitter
        exc = state.outcome.exception() if state.outcome else None
        ra = getattr(exc, "retry_after", None)
        if ra is not None:
            return min(float(ra), policy.backoff_max_s)
        base = policy.backoff_initial_s * 2 ** (state.attempt_number - 1)
        return min(policy.backoff_max_s, base + random.uniform(0, policy.backoff_initial_s))

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.debug(
            "%s: attempt %d failed (%s), retrying in %.2f s",
            spec.name,
            state.attempt_number,
            redact(f"{type(exc).__name__}: {exc}"),
            state.next_action.sleep if state.next_action else 0.0,
        )

    return tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(0, int(policy.max_retries)) + 1),
        wait=wait,
        retry=tenacity.retry_if_exception_type((RetryableError, httpx.TransportError)),
        before_sleep=before_sleep,
        reraise=True,
    )


def call_model(client: Any, spec: ModelSpec, query: str, policy: RetryPolicy, redact: Redactor, max_tokens: int | None = None) -> Answer:
    """One chat completion with retries on an ``httpx.Client``.

    Raises the last error when the retries are exhausted (or at once for a
    non-retryable one), with the number of attempts made in its
    ``mlsel_attempts`` attribute.
    """
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

    def attempt() -> Answer:
        nonlocal attempts
        attempts += 1
        return _post_once(client, url, body, headers, policy.timeout_s, attempts)

    try:
        return _retrying(spec, policy, redact)(attempt)
    except Exception as exc:
        exc.mlsel_attempts = attempts  # type: ignore[attr-defined]
        raise
