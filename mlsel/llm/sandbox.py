"""Running untrusted, model-generated code for the ``code_eval`` metric, with a verdict the code cannot forge.

Design: the code never runs in the process that decides or reports the verdict. :func:`run_untrusted` starts a
*tester* that starts the *solution process* in bubblewrap and never runs a line of the code. The solution process
runs the code once as ``__main__``, then only answers requests on a pipe pair ("call object 3 with these
arguments", "attribute x", "len", "iter", ...) with plain data (None, bool, int, float, complex, str, bytes, list,
tuple, dict, set, frozenset as tagged JSON; no pickle, no eval) or an opaque handle to one of its objects. The
tester runs each assertion in its own interpreter on real builtin values (its own ``==``, ``set``, ``assert``) and
writes the verdict to its stdout, a pipe only the parent holds. The code chooses what its functions return, no more:

* no channel to the parent (its fds: the two pipes and /dev/null): fake JSON, a fake result file or an exit
  (``os._exit(0)``) only ends or garbles its own answers, and a test without an answer fails;
* no way to the tester: own pid, IPC and user namespaces (the tester is not in its ``/proc``), no capabilities;
  patching "the harness" in its interpreter patches its own answering loop;
* a handle never equals plain data and ``in`` runs here, so "always equal" objects fail ``f(x) == 3``, ``3 in f(x)``;
* a name bound to the stdlib module of that name (``math``) is the tester's own module (other modules, ``np``, are
  the code's objects: a test calling them trusts the code); names shadowing builtins or stdlib modules
  (``def set(...)``) are hidden from the tests unless the tests call no other name of the code and call that one in
  every test (the function under test is itself named ``sum``, as in an MBPP task).

Tests cannot pass a function into the code nor see it mutate an argument (arguments are copies); none of MBPP's
1,650 assertions does. Sandbox: a read-only view of ``/usr``, ``/bin``, ``/lib``, a few ``/etc`` files and this
Python; writable only a fresh work folder (cwd, HOME, TMPDIR) and a private ``/dev/shm``; homes, the project and
``/tmp`` absent; new user, pid, IPC, UTS and network namespaces; no capabilities; dies with its parent. No network:
the tester runs under ``unshare -rn``, the code in bwrap's namespace (with :mod:`socket` connections patched to
fail). Limits (``preexec_fn``, inherited by both children): ``RLIMIT_AS`` (``memory_mb``), ``RLIMIT_CPU`` (timeout
rounded up, plus one), ``RLIMIT_FSIZE`` 16 MiB, ``RLIMIT_CORE`` 0, ``RLIMIT_NPROC`` 64 (not applied to root);
after ``timeout_s`` the tester's process group is killed, the sandbox with it. Environment: ``PATH``, ``HOME``,
``TMPDIR``, ``LANG``, ``PYTHONHASHSEED`` only. Where ``unshare -rn`` or bwrap cannot run (checked once) or a limit
cannot be set, :func:`run_untrusted` raises :class:`SandboxError` saying why and runs nothing; the benchmark
records the pair as ``skipped_code_eval`` with the reason. ``passed``: the code ran and every assertion passed.
"""

from __future__ import annotations

import json
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

FSIZE_LIMIT_BYTES = 16 * 1024 * 1024
NPROC_LIMIT = 64
_ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "localtime", "passwd", "group", "nsswitch.conf", "alternatives", "ssl", "mime.types")


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
    network_isolated, filesystem_isolated : bool
        Own network namespace / bubblewrap with a read-only filesystem; always True (:func:`run_untrusted` refuses otherwise).
    """

    passed: bool
    n_passed: int
    n_total: int
    error: str | None
    timed_out: bool = False
    network_isolated: bool = False
    filesystem_isolated: bool = False


# Plain data as tagged JSON, in both children: a JSON list is always [tag, ...]; any other object is a handle, ref(x).
_CODEC = r'''
import json, sys
_TAGS = (("T", tuple), ("L", list), ("D", dict), ("F", frozenset), ("S", set))
def enc(x, ref, d=0):
    if d > 200: raise ValueError("value nested too deeply")
    if x is None or isinstance(x, (bool, str, float)): return x
    if isinstance(x, int): return x if -2 ** 62 < x < 2 ** 62 else ["I", hex(x)]
    if isinstance(x, (complex, bytes, bytearray)): return ["C", x.real, x.imag] if isinstance(x, complex) else ["B", bytes(x).hex()]
    tag = next((t for t, cls in _TAGS if isinstance(x, cls)), None)
    if tag == "D": return ["D", [[enc(k, ref, d + 1), enc(v, ref, d + 1)] for k, v in x.items()]]
    if tag: return [tag, [enc(v, ref, d + 1) for v in x]]
    if type(x).__module__ == "numpy" and getattr(x, "ndim", None) == 0: return enc(x.item(), ref, d + 1)
    return ref(x)
def dec(v, deref, d=0):
    if v is None or type(v) in (bool, int, float, str): return v
    if type(v) is not list or not v or d > 200: raise ValueError("not a tagged value")
    tag, a = v[0], v[1:]
    if tag in ("R", "M"): return deref(v)
    if tag in ("I", "B"): return int(a[0], 16) if tag == "I" else bytes.fromhex(a[0])
    if tag == "C": return complex(float(a[0]), float(a[1]))
    if tag == "D": return {dec(k, deref, d + 1): dec(x, deref, d + 1) for k, x in a[0]}
    return {"T": tuple, "L": list, "F": frozenset, "S": set}[tag]([dec(x, deref, d + 1) for x in a[0]])
'''

# The solution process (in bwrap): answers the requests read from fd argv[1] on fd argv[2]; the first one runs the code.
_SERVER = _CODEC + r'''
import os, socket
def _no_network(*args, **kwargs): raise OSError("network access is disabled in the mlsel sandbox")
socket.socket.connect = socket.socket.connect_ex = socket.socket.sendto = _no_network
socket.create_connection = socket.getaddrinfo = _no_network
_rx, _tx = os.fdopen(int(sys.argv[1]), "r", encoding="utf-8"), os.fdopen(int(sys.argv[2]), "w", encoding="utf-8")
_ns, _refs = {"__name__": "__main__", "__builtins__": __builtins__}, []
_OPS = {"call": lambda o, *a, **k: o(*a, **k), "getattr": getattr, "len": len, "getitem": lambda o, i: o[i],
        "bool": bool, "str": str, "repr": repr, "iter": list, "next": next, "eq": lambda o, p: o == p}
def _ref(x):
    _refs.append(x)
    return ["M", x.__name__, len(_refs) - 1] if isinstance(x, type(sys)) else ["R", len(_refs) - 1]
def _safe(x):
    try:
        return enc(x, _ref)
    except BaseException:
        return _ref(x)
def _answer(op, target, args, kwargs):
    if op == "exec":
        exec(compile(args, "<solution>", "exec"), _ns)
        return ["D", [[k, _safe(v)] for k, v in list(_ns.items()) if not k.startswith("__")]]
    deref = lambda v: _refs[v[-1]]
    return _safe(_OPS[op](_refs[target], *dec(args, deref), **dec(kwargs, deref)))
for _line in _rx:
    try:
        _reply = json.dumps(["ok", _answer(*json.loads(_line))])
    except BaseException as exc:  # SystemExit, KeyboardInterrupt, MemoryError, ...
        try:
            _reply = json.dumps(["err", type(exc).__name__, str(exc)[:300]])
        except BaseException:
            _reply = json.dumps(["err", type(exc).__name__, ""])
    _tx.write(_reply + "\n")
    _tx.flush()
'''

# The tester (never runs solution code): the spec on stdin, the verdict on its original stdout.
_TESTER = _CODEC + r'''
import ast, builtins, importlib, os, subprocess
_out = os.fdopen(os.dup(1), "w")
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # what the tests print never reaches the verdict's channel
_spec = json.loads(sys.stdin.read())
_ENV = set(dir(builtins)) | set(sys.stdlib_module_names)
_OWN = set(sys.stdlib_module_names) - {"antigravity", "this", "idlelib", "tkinter", "turtle", "turtledemo", "webbrowser", "__main__"}
_dead = []
class SolutionError(Exception):
    """An error raised in the solution's process (not of a builtin exception type), or that process ending."""
def _fmt(exc):
    msg = str(exc)
    return msg[:300] if isinstance(exc, SolutionError) else type(exc).__name__ + (": " + msg[:300] if msg else "")
def _remote_error(name, msg):
    cls = getattr(builtins, str(name), None)
    try:
        if isinstance(cls, type) and issubclass(cls, Exception):
            return cls(msg) if msg else cls()
    except Exception:
        pass
    return SolutionError("%s: %s" % (name, msg) if msg else str(name))
def _arg(x):
    if isinstance(x, Remote):
        return ["R", object.__getattribute__(x, "_i")]
    raise TypeError("a %s cannot be passed to the solution's process (plain data and its own objects only)" % type(x).__name__)
def _deref(v):
    try:
        return importlib.import_module(v[1]) if v[0] == "M" and v[1] in _OWN else Remote(int(v[-1]))
    except Exception:  # a stdlib module that does not import here: the code's own object
        return Remote(int(v[-1]))
def _ask(msg):
    if _dead:
        raise SolutionError(_dead[0])
    try:
        _tx.write(json.dumps(msg) + "\n")
        _tx.flush()
        line = _rx.readline(1 << 26)
    except OSError:
        line = ""
    try:
        kind, value, *rest = json.loads(line)
        if kind == "ok" and not rest:
            return dec(value, _deref)
        err = _remote_error(value, str(rest[0])) if kind == "err" and len(rest) == 1 else None
    except Exception:
        err = None
    if err is not None:
        raise err
    try:
        how = "ended (exit code %s) without answering" % _child.wait(2) if not line.endswith("\n") else "gave a malformed answer"
    except subprocess.TimeoutExpired:
        how = "gave an answer too long"
    _dead.append("the solution's process " + how)
    raise SolutionError(_dead[0])
def _op(obj, name, *args, **kwargs):
    return _ask([name, object.__getattribute__(obj, "_i"), enc(args, _arg), enc(kwargs, _arg)])
def _text(obj, name):
    s = _op(obj, name)
    return s if type(s) is str else "<solution object>"
class Remote:
    """Handle to an object in the solution's process: every use is a request, answered with plain data or a handle."""
    __slots__ = ("_i",)
    def __init__(self, i): object.__setattr__(self, "_i", i)
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _op(self, "getattr", name)
    def __eq__(self, other): return _op(self, "eq", other) if isinstance(other, Remote) else NotImplemented
    def __hash__(self): return hash(("mlsel-remote", object.__getattribute__(self, "_i")))
    __call__ = lambda self, *a, **k: _op(self, "call", *a, **k)
    __bool__ = lambda self: _op(self, "bool") is True
    __contains__ = lambda self, item: item in _op(self, "iter")  # decided here: the code never sees the item a test looks for
    __len__ = lambda self: _op(self, "len")
    __iter__ = lambda self: iter(_op(self, "iter"))
    __next__ = lambda self: _op(self, "next")
    __getitem__ = lambda self, key: _op(self, "getitem", key)
    __str__ = lambda self: _text(self, "str")
    __repr__ = lambda self: _text(self, "repr")
def _visible(defs, tests):
    """The code's names the tests see (module docstring: stdlib modules, names shadowing builtins or stdlib modules)."""
    called = []
    for test in tests:
        try:
            called.append({n.func.id for n in ast.walk(ast.parse(test)) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)})
        except SyntaxError:
            called.append(set())
    names = {k for k in defs if type(k) is str and not k.startswith("__")}
    env_ok = set() if any((c & names) - _ENV for c in called) else set.intersection(*called) if called else set()
    own = lambda k, v: v.__name__ == k or k not in _ENV if isinstance(v, type(sys)) else k not in _ENV or k in env_ok
    return {k: defs[k] for k in names if own(k, defs[k])}
_r_req, _w_req = os.pipe()
_r_rep, _w_rep = os.pipe()
_child = subprocess.Popen(_spec["cmd"] + [str(_r_req), str(_w_rep)], pass_fds=(_r_req, _w_rep), stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
os.close(_r_req)
os.close(_w_rep)
_tx, _rx = os.fdopen(_w_req, "w", encoding="utf-8"), os.fdopen(_r_rep, "r", encoding="utf-8")
_result, _ns = {"code_ok": False, "n_passed": 0, "errors": []}, {"__name__": "__main__", "__builtins__": builtins}
try:
    _defs = _ask(["exec", None, _spec["code"], None])
    if type(_defs) is not dict:
        raise SolutionError("the solution's process gave a malformed answer")
    _ns.update(_visible(_defs, _spec["tests"]))
    _result["code_ok"] = True
except BaseException as exc:
    _result["errors"].append("code: " + _fmt(exc))
for _i, _test in enumerate(_spec["tests"] if _result["code_ok"] else []):
    try:
        exec(compile(_test, "<test %d>" % _i, "exec"), _ns)
        _result["n_passed"] += 1
    except BaseException as exc:
        _result["errors"].append("test %d: %s" % (_i, _fmt(exc)))
_out.write(json.dumps(_result))
_out.flush()
try:
    _tx.close()
    _child.wait(1)
except (OSError, subprocess.TimeoutExpired):
    _child.kill()
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


def _bwrap_args(bwrap: str, work: str) -> list[str]:
    """bwrap's options: read-only OS and Python, ``work`` the one writable folder, new namespaces, no capabilities."""
    args = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", "--ro-bind", "/usr", "/usr"]
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top) or os.path.isdir(top):
            args += ["--symlink", os.readlink(top), top] if os.path.islink(top) else ["--ro-bind", top, top]
    args += [a for name in _ETC for a in ("--ro-bind-try", f"/etc/{name}", f"/etc/{name}")]
    exe = {os.path.dirname(sys.executable), os.path.dirname(os.path.realpath(sys.executable))}
    for p in sorted({sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix} | exe):
        if p and p != "/usr" and not p.startswith("/usr/"):
            args += ["--ro-bind", p, p]
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": work, "TMPDIR": work, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
    args += ["--dev", "/dev", "--proc", "/proc", "--bind", work, work, "--remount-ro", "/", "--chdir", work, "--clearenv"]
    return args + [a for k, v in env.items() for a in ("--setenv", k, v)]


@lru_cache(maxsize=1)
def _bubblewrap() -> tuple[str, str]:
    """``(path of bwrap, "")`` if bwrap runs this Python read-only inside the network namespace, else ``("", why not)``."""
    exe = shutil.which("bwrap")
    if not exe:
        return "", "bubblewrap (`bwrap`; Debian/Ubuntu package `bubblewrap`) is not installed"
    with tempfile.TemporaryDirectory(prefix="mlsel-sandbox-probe-") as work:
        cmd = [*_network_namespace()[0], *_bwrap_args(exe, work), sys.executable, "-I", "-c", "open('/probe', 'w')"]
        try:
            r = subprocess.run(cmd, capture_output=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as exc:
            return "", f"`bwrap` could not run ({exc})"
    err = r.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit code {r.returncode}"]
    if "Read-only file system" not in err[0]:  # the probe must start Python in the sandbox and be refused a write to /
        return "", f"`bwrap` could not start Python read-only in a sandbox ({err[0]})"
    return exe, ""


def _sandbox_commands() -> tuple[tuple[str, ...], str]:
    """The network-namespace prefix and bwrap's path; :class:`SandboxError` saying why if either is missing."""
    prefix, why = _network_namespace()
    if not prefix:
        raise SandboxError(f"sandbox: no network isolation on this machine: {why}. Refusing to run untrusted code_eval code "
                           "with network access (socket patching alone can be undone by the code).")
    bwrap, why = _bubblewrap()
    if not bwrap:
        raise SandboxError(f"sandbox: no filesystem isolation on this machine: {why}. Refusing to run untrusted code_eval code "
                           "that could write outside its folder and share a process namespace with the test runner.")
    return prefix, bwrap


def _limits(memory_mb: int, cpu_s: int):
    """A preexec_fn that applies the resource limits (values computed before fork)."""
    settings = [(resource.RLIMIT_AS, int(memory_mb) * 1024 * 1024), (resource.RLIMIT_CPU, cpu_s),
                (resource.RLIMIT_FSIZE, FSIZE_LIMIT_BYTES), (resource.RLIMIT_CORE, 0)]
    settings += [(resource.RLIMIT_NPROC, NPROC_LIMIT)] if hasattr(resource, "RLIMIT_NPROC") else []
    # A hard limit the parent already has below ours is stricter: keep it (setrlimit cannot raise a hard limit).
    hard = {which: resource.getrlimit(which)[1] for which, _ in settings}
    clipped = [(which, value if hard[which] == resource.RLIM_INFINITY else min(value, hard[which])) for which, value in settings]

    def apply() -> None:
        for which, value in clipped:
            resource.setrlimit(which, (value, value))  # an error aborts the child; run_untrusted then refuses
    return apply


def run_untrusted(code: str, tests: list[str], timeout_s: float = 5.0, memory_mb: int = 512) -> SandboxResult:
    """Run ``code`` sandboxed, then each assertion of ``tests`` in a tester that asks the code's process for values.

    Parameters
    ----------
    code : str
        Python source (e.g. a model's answer); executed once as ``__main__`` in bubblewrap.
    tests : list of str
        Assertion statements executed one by one in the tester, in a namespace holding the code's names.
    timeout_s : float
        Wall-clock limit for the whole run, in seconds.
    memory_mb : int
        Address-space limit of each child process, in MiB.

    Returns
    -------
    SandboxResult

    Raises
    ------
    SandboxError
        No network namespace or bubblewrap sandbox here, or a resource limit cannot be applied; the code was not run.
    """
    tests = list(tests)
    prefix, bwrap = _sandbox_commands()
    with tempfile.TemporaryDirectory(prefix="mlsel-sandbox-", ignore_cleanup_errors=True) as tmp:
        work = os.path.join(tmp, "work")
        os.mkdir(work)
        spec = json.dumps({"code": code, "tests": tests, "cmd": [*_bwrap_args(bwrap, work), sys.executable, "-I", "-c", _SERVER]})
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8", "PYTHONHASHSEED": "0"}
        try:
            proc = subprocess.Popen([*prefix, sys.executable, "-I", "-c", _TESTER], cwd=tmp, env=env, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                                    preexec_fn=_limits(memory_mb, int(math.ceil(timeout_s)) + 1))
        except subprocess.SubprocessError as exc:  # raised for an exception in preexec_fn
            raise SandboxError(f"sandbox: the resource limits (address space {memory_mb} MiB, CPU, file size, core, processes) "
                               f"could not be applied to the child ({exc}); refusing to run untrusted code") from exc
        try:
            out, err = proc.communicate(spec.encode("utf-8"), timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the tester's session; the sandbox dies with the tester (--die-with-parent)
            proc.communicate()
            return SandboxResult(False, 0, len(tests), f"timeout after {timeout_s:g} s", True, True, True)
    try:
        res = json.loads(out)
        n_passed, errors, code_ok = int(res["n_passed"]), list(res["errors"]), res["code_ok"] is True
    except (ValueError, TypeError, KeyError):
        tail = (err or b"").decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        how = f"killed by signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
        return SandboxResult(False, 0, len(tests), f"sandbox process ended without a result ({how}) {tail[0]}".strip(), False, True, True)
    passed = code_ok and n_passed == len(tests)
    return SandboxResult(passed, n_passed, len(tests), str(errors[0]) if errors else None, False, True, True)
