"""Running untrusted, model-generated code for the ``code_eval`` metric.

:func:`run_untrusted` executes the code and its assertion strings in a
separate ``python -I`` process, never in-process (the reference benchmark's
``exec`` in a worker thread broke recursion, imports and its SIGALRM timeout,
and ran the code with the benchmark's own privileges and secrets).

What is enforced
----------------
* **Separate process**, isolated mode (``-I``: no user site, no ``PYTHON*``
  environment variables, script directory not on ``sys.path``), in its own
  session / process group.
* **Wall-clock timeout**: after ``timeout_s`` the whole process group is
  killed with SIGKILL.
* **Resource limits** set in ``preexec_fn`` before ``exec``: ``RLIMIT_AS``
  (address space, ``memory_mb``), ``RLIMIT_CPU`` (CPU seconds, the timeout
  rounded up plus one), ``RLIMIT_FSIZE`` (largest file written, 16 MiB),
  ``RLIMIT_CORE`` 0 and ``RLIMIT_NPROC`` (64 processes for the user). Note:
  the kernel does not apply ``RLIMIT_NPROC`` to root, so a fork bomb is only
  bounded by the timeout when the suite runs as root. A hard limit the
  parent already has below ours is kept; a limit that cannot be set is a
  :class:`SandboxError` and the code is not run.
* **Working directory**: a fresh :class:`tempfile.TemporaryDirectory`, deleted
  afterwards; relative writes land there. Absolute paths are *not* blocked
  (no filesystem namespace): this is a guard against accidents and runaway
  code, not a security boundary against a deliberate attacker.
* **Minimal environment**: only ``PATH``, ``HOME``/``TMPDIR`` (the temp dir),
  ``LANG`` and ``PYTHONHASHSEED``; no API keys or other variables are
  inherited.
* **No network**: on Linux the child runs under ``unshare -rn`` (a new user
  and network namespace holding only a down loopback device). Where that
  namespace cannot be created (no ``unshare``, not Linux, user namespaces
  disabled; checked once, at the first call) :func:`run_untrusted` raises
  :class:`SandboxError` saying why, and the code is not run: the benchmark
  then records the pair as ``skipped_code_eval`` with that reason, counted in
  its summary. The child's preamble also replaces :mod:`socket` connection
  functions with ones that raise ``OSError`` (defence in depth only: code can
  undo that, the namespace it cannot).

Semantics
---------
The code runs once as ``__main__`` in one namespace (so recursive functions
and imports work); then each assertion string is executed in that namespace.
``passed`` is True only if the code ran and every assertion passed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from functools import lru_cache

log = logging.getLogger(__name__)

FSIZE_LIMIT_BYTES = 16 * 1024 * 1024
NPROC_LIMIT = 64


class SandboxError(RuntimeError):
    """The sandbox could not be set up as documented; the untrusted code was not run."""


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one sandboxed run.

    Attributes
    ----------
    passed : bool
        The code ran and all assertions passed.
    n_passed, n_total : int
        Assertions passed / given.
    error : str or None
        First error (exception type and message, or "timeout after X s"), None on success.
    timed_out : bool
        The wall-clock limit was hit and the process group killed.
    network_isolated : bool
        The child ran in its own network namespace (``unshare -rn``); always True, since
        :func:`run_untrusted` refuses to run without one.
    """

    passed: bool
    n_passed: int
    n_total: int
    error: str | None
    timed_out: bool = False
    network_isolated: bool = False


# The child's program. It is written to the temp dir and run with ``python -I``.
_RUNNER = r'''
import json, socket, sys

def _no_network(*args, **kwargs):
    raise OSError("network access is disabled in the mlsel sandbox")

socket.socket.connect = _no_network
socket.socket.connect_ex = _no_network
socket.socket.sendto = _no_network
socket.create_connection = _no_network
socket.getaddrinfo = _no_network

_dump, _open = json.dump, open
with _open(sys.argv[1]) as fh:
    _spec = json.load(fh)
_result = {"code_ok": False, "n_passed": 0, "errors": []}

def _fmt(exc):
    msg = str(exc)
    return type(exc).__name__ + (": " + msg[:300] if msg else "")

_ns = {"__name__": "__main__", "__builtins__": __builtins__}
try:
    exec(compile(_spec["code"], "<solution>", "exec"), _ns)
    _result["code_ok"] = True
except BaseException as exc:  # SystemExit, KeyboardInterrupt, MemoryError, ...
    _result["errors"].append("code: " + _fmt(exc))
if _result["code_ok"]:
    for _i, _test in enumerate(_spec["tests"]):
        try:
            exec(compile(_test, "<test %d>" % _i, "exec"), _ns)
            _result["n_passed"] += 1
        except BaseException as exc:
            _result["errors"].append("test %d: %s" % (_i, _fmt(exc)))
with _open(sys.argv[2], "w") as fh:
    _dump(_result, fh)
'''


@lru_cache(maxsize=1)
def _network_namespace() -> tuple[tuple[str, ...], str]:
    """``(("unshare", "-rn"), "")`` if a network namespace can be created here, else ``((), why not)``."""
    if not sys.platform.startswith("linux"):
        return (), f"network namespaces need Linux; this is {sys.platform}"
    exe = shutil.which("unshare")
    if not exe:
        return (), "the `unshare` command (util-linux) is not installed"
    try:
        r = subprocess.run([exe, "-rn", "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return (), f"`unshare -rn true` could not run ({exc})"
    if r.returncode != 0:
        err = r.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit code {r.returncode}"]
        return (), f"`unshare -rn true` failed ({err[0]}): unprivileged user namespaces are probably disabled"
    return (exe, "-rn"), ""


def _unshare_prefix() -> tuple[str, ...]:
    """The command prefix that runs the child in its own network namespace; :class:`SandboxError` if there is none."""
    prefix, why = _network_namespace()
    if not prefix:
        raise SandboxError(f"sandbox: no network isolation on this machine: {why}. Refusing to run untrusted code_eval code "
                           "with network access (socket patching alone can be undone by the code).")
    return prefix


def _limits(memory_mb: int, cpu_s: int):
    """A preexec_fn that applies the resource limits (values computed before fork)."""
    mem = int(memory_mb) * 1024 * 1024
    settings = [
        (resource.RLIMIT_AS, mem),
        (resource.RLIMIT_CPU, cpu_s),
        (resource.RLIMIT_FSIZE, FSIZE_LIMIT_BYTES),
        (resource.RLIMIT_CORE, 0),
    ]
    if hasattr(resource, "RLIMIT_NPROC"):
        settings.append((resource.RLIMIT_NPROC, NPROC_LIMIT))

    # A hard limit the parent already has below ours is stricter: keep it (setrlimit cannot raise a hard limit).
    clipped = []
    for which, value in settings:
        hard = resource.getrlimit(which)[1]
        clipped.append((which, value if hard == resource.RLIM_INFINITY else min(value, hard)))

    def apply() -> None:
        for which, value in clipped:
            resource.setrlimit(which, (value, value))  # an error aborts the child; run_untrusted then refuses

    return apply


def run_untrusted(code: str, tests: list[str], timeout_s: float = 5.0, memory_mb: int = 512) -> SandboxResult:
    """Run ``code`` then each assertion of ``tests`` in a resource-limited subprocess.

    Parameters
    ----------
    code : str
        Python source (e.g. a model's answer); executed once as ``__main__``.
    tests : list of str
        Assertion statements executed one by one in the code's namespace.
    timeout_s : float
        Wall-clock limit for the whole run, in seconds.
    memory_mb : int
        Address-space limit of the child, in MiB.

    Returns
    -------
    SandboxResult

    Raises
    ------
    SandboxError
        No network namespace can be created here, or a resource limit cannot
        be applied; the code was not run.
    """
    tests = list(tests)
    prefix = _unshare_prefix()
    with tempfile.TemporaryDirectory(prefix="mlsel-sandbox-") as tmp:
        spec_path = os.path.join(tmp, "spec.json")
        result_path = os.path.join(tmp, "result.json")
        runner_path = os.path.join(tmp, "runner.py")
        with open(spec_path, "w") as fh:
            json.dump({"code": code, "tests": tests}, fh)
        with open(runner_path, "w") as fh:
            fh.write(_RUNNER)
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "HOME": tmp,
            "TMPDIR": tmp,
            "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0",
        }
        cmd = [*prefix, sys.executable, "-I", runner_path, spec_path, result_path]
        timed_out = False
        try:
            proc = subprocess.Popen(
                cmd,
                cwd=tmp,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_limits(memory_mb, int(math.ceil(timeout_s)) + 1),
            )
        except subprocess.SubprocessError as exc:  # raised for an exception in preexec_fn
            raise SandboxError(f"sandbox: the resource limits (address space {memory_mb} MiB, CPU, file size, core, processes) "
                               f"could not be applied to the child ({exc}); refusing to run untrusted code") from exc
        try:
            _out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(proc)
            _out, err = proc.communicate()
        if timed_out:
            return SandboxResult(False, 0, len(tests), f"timeout after {timeout_s:g} s", True, bool(prefix))
        try:
            with open(result_path) as fh:
                res = json.load(fh)
        except (OSError, ValueError):
            tail = (err or b"").decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
            how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
            return SandboxResult(False, 0, len(tests), f"sandbox process ended without a result ({how}) {tail[0]}".strip(), False, bool(prefix))
    n_passed = int(res.get("n_passed", 0))
    errors = res.get("errors") or []
    passed = bool(res.get("code_ok")) and n_passed == len(tests)
    return SandboxResult(passed, n_passed, len(tests), errors[0] if errors else None, False, bool(prefix))


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
