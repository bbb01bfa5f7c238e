"""mlsel.llm.sandbox: untrusted code runs in a limited subprocess (bubblewrap), and cannot forge its verdict."""

from __future__ import annotations

import os
import re
import socket
import threading
import time
from pathlib import Path

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


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (dead, waiting for its parent to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _running_with(marker: str) -> list[int]:
    """Pids (as this machine's /proc numbers them, whatever namespace they run in) of running processes whose command line
    holds ``marker``."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes().decode("utf-8", "replace"):
                pids.append(int(proc.name))
        except OSError:  # the process ended while being read
            continue
    return [pid for pid in pids if _running(pid)]


@pytest.mark.skipif(not Path("/proc/self/cmdline").is_file(), reason="finds the sandboxed grandchild through /proc")
def test_sleeping_child_processes_are_killed_with_the_group():
    """The code starts a grandchild that sleeps for a minute, then spins: after the timeout the grandchild is dead too.

    The grandchild runs in the sandbox's own pid namespace, where its pid is not this machine's; it carries a unique
    marker in its command line instead, by which /proc finds it while the call runs. After the call it is gone
    (``os.kill(pid, 0)`` finds no process) or a zombie (dead; reaping it is its new parent's business)."""
    marker = f"mlsel-sandbox-grandchild-{os.getpid()}-{time.monotonic_ns()}"
    code = ("import subprocess, sys\n"
            f"subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)', {marker!r}])\n"
            "while True: pass\n")
    seen: list[int] = []
    result: list = []
    call = threading.Thread(target=lambda: result.append(run_untrusted(code, ["assert True"], timeout_s=3.0)))
    t0 = time.monotonic()
    call.start()
    while call.is_alive() and not seen:
        seen = _running_with(marker)
        time.sleep(0.02)
    call.join(30)
    assert not call.is_alive() and result and result[0].timed_out and time.monotonic() - t0 < 10
    assert seen, "the grandchild was never seen running: the check below could not notice it surviving"
    deadline = time.monotonic() + 5  # SIGKILL reaches the sandbox's processes asynchronously
    while any(_running(pid) for pid in seen) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _running_with(marker)
    for pid in seen:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        assert not _running(pid), f"grandchild {pid} outlived the timeout"


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


def test_temp_dir_is_removed_afterwards(tmp_path):
    """The code cannot write outside its folder any more; the assertion (run by the tester, outside the sandbox) reports it."""
    code = "import os\nWHERE = os.getcwd()\nopen('here.txt', 'w').write('x')\n"
    r = run_untrusted(code, [f"open({str(tmp_path / 'where')!r}, 'w').write(WHERE)"])
    assert r.passed, r.error
    where = (tmp_path / "where").read_text()
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


# --------------------------------------------------------------------------- a verdict the code cannot forge

FAKE = '{"code_ok": true, "n_passed": 2, "errors": []}'
WRONG_ADD = "def add(a, b):\n    return a - b\n"
ADD_TESTS = ["assert add(1, 2) == 3", "assert add(2, 3) == 5"]  # the wrong add passes neither
FORGE = (  # a passing result everywhere one could be read from: stdout, argv paths, *.json files, every open fd
    "import glob, os, sys\n"
    f"FAKE = {FAKE!r}\n"
    "def forge():\n"
    "    print(FAKE, flush=True)\n"
    "    for path in sys.argv[1:] + glob.glob('*.json') + glob.glob('../*.json') + ['result.json', '../result.json']:\n"
    "        try:\n"
    "            with open(path, 'w') as fh:\n"
    "                fh.write(FAKE)\n"
    "        except OSError:\n"
    "            pass\n"
    "    for fd in range(1, 64):\n"
    "        try:\n"
    "            os.write(fd, (FAKE + '\\n').encode())\n"
    "        except OSError:\n"
    "            pass\n"
)


def _not_passed(r):
    assert not r.passed, r
    assert r.n_passed == 0 and r.n_total == len(ADD_TESTS)


def test_fake_result_written_at_exit_is_not_a_pass():
    """A fake result JSON printed and written to every file and fd, after the tests ran (atexit), does not count."""
    code = FORGE + "import atexit\natexit.register(forge)\n" + WRONG_ADD
    _not_passed(run_untrusted(code, ADD_TESTS))


@pytest.mark.parametrize("where", ["before the tests", "inside the function under test"])
def test_os_exit_after_a_fake_result_is_not_a_pass(where):
    """``os._exit(0)`` (after writing a fake result) before the tests run, or while one runs, is a failure."""
    if where == "before the tests":
        code = FORGE + "forge()\nos._exit(0)\n" + WRONG_ADD
    else:
        code = FORGE + "def add(a, b):\n    forge()\n    os._exit(0)\n"
    r = run_untrusted(code, ADD_TESTS)
    _not_passed(r)
    # the fake line written to every fd reaches the tester as a malformed answer; else the tester sees the exit
    assert re.search(r"the solution's process (ended \(exit code 0\) without answering|gave a malformed answer)", r.error), r.error


def test_patching_the_harness_in_its_own_interpreter_does_not_pass():
    """The code replaces ``compile``/``exec`` and the assertion machinery of the interpreter it runs in: no effect."""
    code = ("import builtins, sys\n_compile = builtins.compile\n"
            "builtins.compile = lambda src, name, mode, *a, **k: _compile('pass', name, mode)\n"
            "builtins.exec = lambda *a, **k: None\nsys.settrace(lambda *a: None)\n" + WRONG_ADD)
    _not_passed(run_untrusted(code, ADD_TESTS))


@pytest.mark.parametrize("tests", [ADD_TESTS, ["assert 3 in add(1, 2)", "assert 5 in add(2, 3)"]], ids=["==", "in"])
def test_an_always_equal_object_does_not_pass(tests):
    """An object claiming to equal (or contain) whatever it is compared with: the tester compares, not the object."""
    code = ("class Yes:\n    def __eq__(self, other):\n        return True\n    __hash__ = object.__hash__\n"
            "    def __contains__(self, item):\n        return True\n    def __iter__(self):\n        return iter([])\n\n"
            "def add(a, b):\n    return Yes()\n")
    r = run_untrusted(code, tests)
    assert not r.passed and r.n_passed == 0, r


def test_shadowing_a_builtin_the_tests_use_does_not_pass():
    """``def set(...)`` in the code is not the tests' ``set`` (the function under test is another name)."""
    code = "def set(*args):\n    return 0\n\ndef common(a, b):\n    return []\n"
    r = run_untrusted(code, ["assert set(common([1, 2], [2, 3])) == set([2])", "assert set(common([5], [5])) == set([5])"])
    assert not r.passed and r.n_passed == 0


def test_a_function_under_test_named_like_a_builtin_still_works():
    """MBPP has a task whose function is ``sum``: when the tests call nothing else of the code, its ``sum`` is theirs."""
    code = ("def sum(a, b):\n    total = 0\n    for d in range(1, min(a, b) + 1):\n        if a % d == 0 and b % d == 0:\n"
            "            total += d\n    return total\n")
    r = run_untrusted(code, ["assert sum(10, 15) == 6", "assert sum(100, 150) == 93", "assert sum(4, 6) == 3"])
    assert r.passed, r.error
    assert not run_untrusted(code.replace("total += d", "total += 1"), ["assert sum(10, 15) == 6"]).passed


@pytest.mark.parametrize("target", ["the test's folder", "this Python's installation"])
def test_writing_outside_its_folder_is_blocked(tmp_path, target):
    """Outside its work folder the filesystem is absent (``/tmp``, the project) or read-only (/usr, the venv)."""
    import sys
    import uuid

    path = (tmp_path if target == "the test's folder" else Path(sys.executable).parent) / f"mlsel-escape-{uuid.uuid4().hex}.txt"
    try:
        r = run_untrusted(f"open({str(path)!r}, 'w').write('escaped')\n" + WRONG_ADD.replace("-", "+"), ADD_TESTS)
        assert not path.exists()
        assert not r.passed and ("Read-only file system" in r.error or "No such file or directory" in r.error), r.error
    finally:
        path.unlink(missing_ok=True)


def test_the_code_sees_no_other_process_and_has_no_capabilities():
    code = ("import os\nPIDS = [p for p in os.listdir('/proc') if p.isdigit()]\n"
            "CAPS = [int(line.split()[1], 16) for line in open('/proc/self/status') if line.startswith('CapEff')]\n")
    r = run_untrusted(code, ["assert len(PIDS) <= 3, PIDS", "assert CAPS == [0], CAPS"])
    assert r.passed, r.error
    assert r.filesystem_isolated and r.network_isolated


def test_honest_code_with_classes_generators_exceptions_and_modules_passes():
    """The tester asks the code's process for values: objects, generators, exceptions and the code's imports work."""
    code = ("import math\nimport numpy as np\n\nclass Pair:\n    def __init__(self, a, b):\n        self.a, self.b = a, b\n\n"
            "def max_chain_length(pairs, n):\n    pairs = sorted(pairs, key=lambda p: p.b)\n    end, count = -math.inf, 0\n"
            "    for p in pairs:\n        if p.a > end:\n            end, count = p.b, count + 1\n    return count\n\n"
            "def squares(n):\n    for i in range(n):\n        yield i * i\n\n"
            "def root(x):\n    if x < 0:\n        raise ValueError('negative')\n    return math.sqrt(x)\n\n"
            "def stats(xs):\n    return {'mean': np.mean(xs), 'n': len(xs), 'big': 2 ** 100, 'pairs': {(1, 2): frozenset({3})}}\n")
    tests = ["assert max_chain_length([Pair(5, 24), Pair(15, 25), Pair(27, 40), Pair(50, 60)], 4) == 3",
             "assert list(squares(4)) == [0, 1, 4, 9]", "assert math.isclose(root(2), 1.41421, rel_tol=1e-4)",
             "try:\n    root(-1)\n    raise AssertionError('no error')\nexcept ValueError as e:\n    assert 'negative' in str(e)",
             "assert Pair(1, 2).b == 2",
             "assert stats([1, 2, 3]) == {'mean': 2.0, 'n': 3, 'big': 2 ** 100, 'pairs': {(1, 2): frozenset({3})}}"]
    r = run_untrusted(code, tests)
    assert r.passed, r.error
    wrong = run_untrusted(code.replace("count + 1", "count + 2"), tests)
    assert not wrong.passed and wrong.n_passed == len(tests) - 1 and "test 0: AssertionError" in wrong.error


def test_without_bubblewrap_code_eval_is_refused(monkeypatch, tmp_path):
    """Where bwrap is missing (or cannot run) the code is not run, and the error says why."""
    real_which = sandbox.shutil.which
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None if name == "bwrap" else real_which(name))
    sandbox._bubblewrap.cache_clear()
    try:
        with pytest.raises(SandboxError, match=r"no filesystem isolation on this machine: bubblewrap \(`bwrap`; Debian/Ubuntu package "
                                               r"`bubblewrap`\) is not installed\. Refusing to run untrusted code_eval code"):
            run_untrusted(f"open({str(tmp_path / 'ran.txt')!r}, 'w').write('x')", [])
        assert not (tmp_path / "ran.txt").exists()
    finally:
        sandbox._bubblewrap.cache_clear()
