"""mlsel.llm.sandbox: untrusted code runs in a limited subprocess."""

from __future__ import annotations

import os
import re
import socket
import threading
import time

import pytest

from mlsel.llm import sandbox
from mlsel.llm.sandbox import SandboxError, run_untrusted

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the sandbox uses POSIX resource limits")


def test_passing_code():
    r = run_untrusted("def add(a, b):\n    return a + b\n", ["assert add(1, 2) == 3", "assert add(-1, 1) == 0"])
    assert r.passed and r.n_passed == 2 and r.n_total == 2 and r.error is None


def test_failing_assert_counts_passes():
    r = run_untrusted("def add(a, b):\n    return a - b\n", ["assert add(1, 0) == 1", "assert add(1, 2) == 3"])
    assert not r.passed
    assert (r.n_passed, r.n_total) == (1, 2)
    assert "AssertionError" in r.error


def test_syntax_error_in_code():
    r = run_untrusted("def f(:\n", ["assert f() == 1"])
    assert not r.passed and "SyntaxError" in r.error


def test_infinite_loop_times_out():
    t0 = time.monotonic()
    r = run_untrusted("while True:\n    pass\n", ["assert True"], timeout_s=1.0)
    assert time.monotonic() - t0 < 5
    assert not r.passed and r.timed_out and "timeout" in r.error


def test_sleeping_child_processes_are_killed_with_the_group():
    code = "import subprocess, sys\nsubprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\nwhile True: pass\n"
    t0 = time.monotonic()
    r = run_untrusted(code, ["assert True"], timeout_s=1.0)
    assert r.timed_out and time.monotonic() - t0 < 5


def test_memory_bomb_is_stopped():
    r = run_untrusted("x = bytearray(4 * 1024 ** 3)\n", ["assert len(x) > 0"], memory_mb=256)
    assert not r.passed
    assert "MemoryError" in r.error or "killed" in r.error


def test_socket_connect_fails():
    # a listening server in this process: the child must not reach it
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    try:
        code = (
            "import socket\n"
            "def try_connect():\n"
            "    try:\n"
            f"        socket.create_connection(('127.0.0.1', {port}), timeout=1)\n"
            "        return 'connected'\n"
            "    except OSError as e:\n"
            "        return 'blocked'\n"
        )
        r = run_untrusted(code, ["assert try_connect() == 'blocked'"])
        assert r.passed, r.error
    finally:
        srv.close()


def test_raw_socket_blocked_even_without_the_patch():
    """The namespace blocks the network even if the code undoes the socket patch (machines without one: next test)."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    try:
        code = (
            "import importlib, socket\n"
            "import _socket\n"
            "def raw():\n"
            "    s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
            "    s.settimeout(1)\n"
            f"    return s.connect_ex(('127.0.0.1', {port}))\n"
        )
        prefix, why = sandbox._network_namespace()
        if not prefix:  # this machine cannot isolate: the sandbox must refuse, never run the code with network access
            with pytest.raises(SandboxError, match="no network isolation on this machine"):
                run_untrusted(code, ["assert raw() != 0"])
            return
        r = run_untrusted(code, ["assert raw() != 0"])
        assert r.passed, r.error
        assert r.network_isolated
    finally:
        srv.close()


@pytest.mark.parametrize("missing, why", [("which", "the `unshare` command (util-linux) is not installed"),
                                          ("fails", "`unshare -rn true` failed (unshare: unshare failed: Operation not permitted)")])
def test_without_network_isolation_code_eval_is_refused(monkeypatch, tmp_path, missing, why):
    """Where no network namespace can be made the code is not run, and the error says why."""
    import subprocess

    sandbox._network_namespace.cache_clear()
    monkeypatch.chdir(tmp_path)
    if missing == "which":
        monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    else:
        real_run = subprocess.run

        def run(cmd, **kw):
            if cmd[1:] == ["-rn", "true"]:
                return subprocess.CompletedProcess(cmd, 1, b"", b"unshare: unshare failed: Operation not permitted\n")
            return real_run(cmd, **kw)

        monkeypatch.setattr(sandbox.subprocess, "run", run)
    try:
        with pytest.raises(SandboxError, match=re.escape(why) + ".*Refusing to run untrusted code_eval code with network access"):
            run_untrusted(f"open({str(tmp_path / 'ran.txt')!r}, 'w').write('x')", [])
        assert not (tmp_path / "ran.txt").exists()
    finally:
        sandbox._network_namespace.cache_clear()


def test_files_land_in_the_temp_dir_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = "import os\nwith open('out.txt', 'w') as f:\n    f.write('x')\nWHERE = os.getcwd()\n"
    r = run_untrusted(code, ["assert os.path.exists(os.path.join(WHERE, 'out.txt'))", f"assert WHERE != {str(tmp_path)!r}"])
    assert r.passed, r.error
    assert not (tmp_path / "out.txt").exists()
    assert list(tmp_path.iterdir()) == []


def test_temp_dir_is_removed_afterwards():
    code = "import os\nWHERE = os.getcwd()\nprint(WHERE)\n"
    r = run_untrusted(code + "open('/tmp/.mlsel_where', 'w').write(WHERE)\n", ["assert True"])
    assert r.passed, r.error
    where = open("/tmp/.mlsel_where").read()
    os.remove("/tmp/.mlsel_where")
    assert "mlsel-sandbox-" in where and not os.path.exists(where)


def test_environment_has_no_secrets(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-123")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    r = run_untrusted(
        "import os\nENV = dict(os.environ)\n",
        ["assert 'OPENAI_API_KEY' not in ENV", "assert 'HF_TOKEN' not in ENV", "assert 'sk-test-secret-123' not in str(ENV)"],
    )
    assert r.passed, r.error


def test_recursion_and_imports_work():
    code = "import math\nfrom functools import lru_cache\n\ndef fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n\ndef root(x):\n    return math.sqrt(x)\n"
    r = run_untrusted(code, ["assert fib(15) == 610", "assert root(16) == 4.0", "import json; assert json.loads('[1]') == [1]"])
    assert r.passed, r.error


def test_system_exit_in_code_is_a_failure():
    r = run_untrusted("import sys\nsys.exit(0)\n", ["assert True"])
    assert not r.passed and "SystemExit" in r.error


def test_works_from_worker_threads():
    results = []

    def work(i):
        results.append(run_untrusted(f"def f():\n    return {i}\n", [f"assert f() == {i}"]))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 4 and all(r.passed for r in results)


def test_unappliable_resource_limit_refuses_to_run(monkeypatch):
    """A limit the child cannot set is an error, never silently skipped (the code is not run)."""
    import mlsel.llm.sandbox as sb

    def denied(which, limits):
        raise OSError("setrlimit denied")

    monkeypatch.setattr(sb.resource, "setrlimit", denied)
    with pytest.raises(sb.SandboxError, match="could not be applied to the child.*refusing to run untrusted code"):
        sb.run_untrusted("open('ran.txt', 'w').write('x')", [])
