"""The test LLM server itself: a build that runs on every CPU of this machine kind, and a death that names its cause.

Both need the real llama-cpp-python build the Makefile installs (``make env-test``).
"""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path

import httpx
import pytest
from llm_server import ServerDied, free_port, local_llm_server, log_tail
from test_benchmark_llm import _unavailable

pytestmark = pytest.mark.llm

NEWER_THAN_X86_64_V3 = ("AVX512", "AVX512_VBMI", "AVX512_VNNI", "AVX512_BF16", "AMX_INT8", "AVX_VNNI")
"""Instruction sets some CPUs of this machine kind lack: a build that uses one can die on another CPU."""


def _require_server() -> None:
    why = _unavailable()
    if why:
        pytest.skip(why)  # a failure under CI=true (conftest.py)


def _server_pid(port: int) -> int:
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"llama_cpp.server" in args and str(port).encode() in args:
            return int(cmdline.parent.name)
    raise AssertionError(f"no llama_cpp.server process on port {port}")


def test_log_tail_keeps_the_last_lines(tmp_path):
    log = tmp_path / "server.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert log_tail(log, 3) == "line 97\nline 98\nline 99"
    assert log_tail(tmp_path / "missing.log").startswith("(no log:")


def test_the_server_build_is_portable_and_answers_a_completion(tmp_path):
    """ggml reports the instruction sets it was built with: none newer than x86-64-v3, and a completion is answered."""
    _require_server()
    log_path = tmp_path / "server.log"
    with local_llm_server(n_ctx=512, log_path=log_path) as endpoint:
        r = httpx.post(f"{endpoint}/chat/completions", timeout=120,
                       json={"messages": [{"role": "user", "content": "Say yes."}], "max_tokens": 4, "temperature": 0})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] is not None
    features = next((ln for ln in log_path.read_text(errors="replace").splitlines() if "AVX2 = 1" in ln), None)
    assert features is not None, f"no CPU feature line in the server log:\n{log_tail(log_path)}"
    used = {name for name, on in re.findall(r"(\w+) = (\d)", features) if on == "1"}
    assert not used & set(NEWER_THAN_X86_64_V3), f"the build uses {sorted(used & set(NEWER_THAN_X86_64_V3))}: {features}"


def test_a_server_that_dies_in_use_is_reported_with_its_log(tmp_path):
    """A crash while in use (here a SIGSEGV sent to it) surfaces as ServerDied with the log's last lines, not a bare refused connection."""
    _require_server()
    log_path = tmp_path / "server.log"
    port = free_port()
    with pytest.raises(ServerDied) as info:
        with local_llm_server(port=port, n_ctx=512, log_path=log_path) as endpoint:
            os.kill(_server_pid(port), signal.SIGSEGV)
            for _ in range(50):  # until the port is closed
                httpx.get(f"{endpoint}/models", timeout=5)
    msg = str(info.value)
    assert f"exited with code {-signal.SIGSEGV}" in msg and "while in use" in msg
    assert log_tail(log_path, 5).splitlines()[-1] in msg  # the log's last line is in the message
    assert isinstance(info.value.__cause__, httpx.ConnectError)
