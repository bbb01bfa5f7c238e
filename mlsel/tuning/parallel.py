"""Where the tune stage's joblib work runs: local processes, or a Dask cluster (``tune_dask_scheduler``).

On a cluster the workers run :func:`mlsel.tuning.cv.cv_task` and
:func:`mlsel.tuning.final.final_task` themselves, so each worker needs the
same ``mlsel`` and dependency versions installed as the client.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

from mlsel.params import ConfigError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 10.0
"""How long to try to reach the Dask scheduler before giving up with a ConfigError."""


def connect(address: str, timeout: float = CONNECT_TIMEOUT_S) -> Any:
    """A ``distributed.Client`` on the scheduler at ``address``; a clear ConfigError if there is none."""
    try:
        from distributed import Client
        from distributed.comm import get_address_host_port
    except ImportError as e:  # pragma: no cover - distributed is a pinned dependency
        raise ConfigError(f"tune_dask_scheduler={address!r} needs the dask and distributed packages: "
                          "pip install 'dask[distributed]'") from e
    try:
        get_address_host_port(address)  # a malformed address fails here, before a client thread starts
    except ValueError as e:
        raise ConfigError(f"tune_dask_scheduler={address!r} is not a Dask scheduler address ({e}); "
                          "expected e.g. tcp://host:8786, or empty for local joblib workers") from e
    client = Client.__new__(Client)  # built in two steps so that a half-started client can still be closed
    try:
        client.__init__(address, timeout=timeout, set_as_default=False)
        return client
    except Exception as e:  # any failure to connect is a bad tune_dask_scheduler
        with suppress(Exception):
            client.close(timeout=timeout)
        raise ConfigError(f"tune_dask_scheduler={address!r}: could not connect to a Dask scheduler there "
                          f"(timeout {timeout:g} s; {type(e).__name__}: {e}); set a running scheduler's address (tcp://host:8786) "
                          "or leave tune_dask_scheduler empty for local joblib workers") from e


@contextmanager
def joblib_backend(n_jobs: int, scheduler: str = "", timeout: float = CONNECT_TIMEOUT_S) -> Iterator[int]:
    """Run the ``joblib.Parallel`` calls inside on local workers or on a Dask cluster; yields the ``n_jobs`` to pass.

    Empty ``scheduler``: nothing changes (joblib's default, loky processes) and
    ``n_jobs`` is yielded as given. An address (``tcp://host:8786``): a client
    connects to that scheduler (failing after ``timeout`` seconds with a
    ConfigError naming ``tune_dask_scheduler``), joblib's ``dask`` backend is
    active inside, with every worker thread of the cluster (``-1``; with a
    single one, joblib runs the calls in this process), and the client is
    closed afterwards.
    """
    if not scheduler:
        yield n_jobs
        return
    from joblib import parallel_config

    client = connect(scheduler, timeout)
    try:
        log.info("tune: joblib on the Dask cluster at %s (%d worker threads)", scheduler, sum(client.ncores().values()))
        with parallel_config(backend="dask", client=client):
            yield -1
    finally:
        client.close()


def call_with(func: Callable[[Any], Any], task: Any, **fields: Any) -> Any:
    """``func(task._replace(**fields))``, on a worker.

    Passing a task's large shared arrays as separate arguments lets joblib's
    dask backend send each array to the cluster once per call rather than once
    per task (loky already shares them through memory maps).
    """
    return func(task._replace(**fields))


def indexed(i: int, func: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[int, Any]:
    """``(i, func(*args, **kwargs))``: a result that says which call it answers, for a generator that yields in completion order."""
    return i, func(*args, **kwargs)
